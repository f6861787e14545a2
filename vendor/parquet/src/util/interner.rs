// Licensed to the Apache Software Foundation (ASF) under one
// or more contributor license agreements.  See the NOTICE file
// distributed with this work for additional information
// regarding copyright ownership.  The ASF licenses this file
// to you under the Apache License, Version 2.0 (the
// "License"); you may not use this file except in compliance
// with the License.  You may obtain a copy of the License at
//
//   http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing,
// software distributed under the License is distributed on an
// "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
// KIND, either express or implied.  See the License for the
// specific language governing permissions and limitations
// under the License.

use crate::data_type::AsBytes;
use hashbrown::HashTable;

const DEFAULT_DEDUP_CAPACITY: usize = 4096;

/// Storage trait for [`Interner`]
pub trait Storage {
    type Key: Copy;

    type Value: AsBytes + ?Sized;

    /// Gets an element by its key
    fn get(&self, idx: Self::Key) -> &Self::Value;

    /// Adds a new element, returning the key
    fn push(&mut self, value: &Self::Value) -> Self::Key;

    /// Return an estimate of the memory used in this storage, in bytes
    fn estimated_memory_size(&self) -> usize;
}

/// A generic value interner supporting various different [`Storage`]
#[derive(Debug, Default)]
pub struct Interner<S: Storage> {
    state: ahash::RandomState,

    /// compactor's patch: the seed of [`hash_word`] for values of 4 or 8 bytes, drawn from
    /// `state` so that it is as random.
    word_seed: u64,

    /// Used to provide a lookup from value to unique value
    dedup: HashTable<S::Key>,

    /// compactor's patch: values of 4 bytes (`[0]`) and of 8 (`[1]`) by their word, with their
    /// keys. A lookup compares the word where it finds it, without reading the value from
    /// `storage`: on a dictionary larger than the cache (ids), that read was a second cache
    /// miss after the table's own.
    words: [HashTable<(u64, S::Key)>; 2],

    storage: S,
}

impl<S: Storage> Interner<S> {
    /// Create a new `Interner` with the provided storage
    pub fn new(storage: S) -> Self {
        let state = ahash::RandomState::default();
        Self {
            word_seed: state.hash_one(0x243F_6A88_85A3_08D3_u64),
            state,
            // compactor's patch: the tables get their capacity when first used; a column uses
            // one of the three.
            dedup: HashTable::new(),
            words: [HashTable::new(), HashTable::new()],
            storage,
        }
    }

    /// Intern the value, returning the interned key, and if this was a new value
    pub fn intern(&mut self, value: &S::Value) -> S::Key {
        // compactor's patch: values of 4 or 8 bytes (the integer and float columns) are hashed
        // and compared as one word, not as byte slices (a general hash, and a call to `memcmp`
        // for every comparison).
        let bytes = value.as_bytes();
        if let Ok(word) = <[u8; 8]>::try_from(bytes) {
            return self.intern_word(1, u64::from_le_bytes(word), value);
        }
        if let Ok(word) = <[u8; 4]>::try_from(bytes) {
            return self.intern_word(0, u64::from(u32::from_le_bytes(word)), value);
        }
        let (state, storage) = (&self.state, &self.storage);
        let hash = state.hash_one(bytes);
        let rehash = |key: &S::Key| state.hash_one(storage.get(*key).as_bytes());
        if self.dedup.capacity() == 0 {
            self.dedup.reserve(DEFAULT_DEDUP_CAPACITY, rehash);
        }

        *self
            .dedup
            .entry(
                hash,
                // Compare bytes rather than directly comparing values so NaNs can be interned
                |index| bytes == storage.get(*index).as_bytes(),
                rehash,
            )
            .or_insert_with(|| self.storage.push(value))
            .get()
    }

    /// compactor's patch: [`Self::intern`] for a value whose bytes (4 or 8 of them: `wide` 0
    /// or 1) are the word `word`.
    #[inline]
    fn intern_word(&mut self, wide: usize, word: u64, value: &S::Value) -> S::Key {
        let seed = self.word_seed;
        let rehash = |(word, _): &(u64, S::Key)| hash_word(seed, *word);
        let table = &mut self.words[wide];
        if table.capacity() == 0 {
            table.reserve(DEFAULT_DEDUP_CAPACITY, rehash);
        }
        let storage = &mut self.storage;
        table
            .entry(hash_word(seed, word), |(w, _)| *w == word, rehash)
            .or_insert_with(|| (word, storage.push(value)))
            .get()
            .1
    }

    /// Return estimate of the memory used, in bytes
    pub fn estimated_memory_size(&self) -> usize {
        self.storage.estimated_memory_size()
            + self.dedup.allocation_size()
            + self.words.iter().map(HashTable::allocation_size).sum::<usize>()
    }

    /// Returns the storage for this interner
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Unwraps the inner storage
    #[cfg(feature = "arrow")]
    pub fn into_inner(self) -> S {
        self.storage
    }
}

/// compactor's patch: a seeded hash of one word: a full multiplication by an odd constant,
/// its two halves folded together, so that both the low bits (hashbrown's bucket) and the high
/// bits (its tag) depend on every bit of the word.
#[inline]
fn hash_word(seed: u64, word: u64) -> u64 {
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
    let full = u128::from(word ^ seed) * u128::from(MULTIPLIER);
    (full as u64) ^ ((full >> 64) as u64)
}

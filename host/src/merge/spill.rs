//! Encoded pages of the row group being written are kept in a temporary file, not in memory.
//!
//! parquet's writer holds every finished page of a row group until the row group closes, so
//! its memory grows with the row group size (64 MiB by default, per merge in flight). Spilled,
//! a merge holds only the pages being filled and the dictionaries; the pages come back from
//! the file (usually still in the page cache) one at a time when the row group is written out.
//!
//! The column chunks of a row group share one anonymous temporary file, which the system
//! removes when its last chunk is written (and after a kill). A file per column chunk cost a
//! new inode each: on ext4, allocating one looks through the recently deleted ones, and for a
//! table of 800 columns that was a quarter of a merge's CPU time, in the kernel.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use parquet::arrow::arrow_writer::{PageKey, PageStore, PageStoreArgs, PageStoreFactory};
use parquet::errors::{ParquetError, Result};

/// Makes a [`SpillFile`] per column chunk in `dir`; the chunks alive at once (those of the row
/// group being written) share one file.
#[derive(Debug)]
pub struct SpillFactory {
    dir: PathBuf,
    /// The file of the row group being written, while any of its chunks is alive.
    current: Mutex<Weak<SharedFile>>,
}

impl SpillFactory {
    pub fn new(dir: PathBuf) -> SpillFactory {
        SpillFactory {
            dir,
            current: Mutex::new(Weak::new()),
        }
    }

    /// A store for one column chunk.
    fn store(&self) -> Result<SpillFile> {
        Ok(SpillFile {
            shared: self.shared_file()?,
            pages: Vec::new(),
        })
    }

    fn shared_file(&self) -> Result<Arc<SharedFile>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = current.upgrade() {
            return Ok(file);
        }
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
            ParquetError::General(format!("spill file in {}: {e}", self.dir.display()))
        })?;
        let file = Arc::new(SharedFile {
            file,
            end: AtomicU64::new(0),
        });
        *current = Arc::downgrade(&file);
        Ok(file)
    }
}

impl PageStoreFactory for SpillFactory {
    fn create(&self, _args: &PageStoreArgs<'_>) -> Result<Box<dyn PageStore>> {
        Ok(Box::new(self.store()?))
    }
}

/// One temporary file that pages are appended to, from any of the chunks sharing it.
#[derive(Debug)]
struct SharedFile {
    file: File,
    /// Where the next page goes.
    end: AtomicU64,
}

impl SharedFile {
    /// Appends `page`; returns where it starts.
    fn append(&self, page: &[u8]) -> std::io::Result<u64> {
        let offset = self.end.fetch_add(page.len() as u64, Ordering::Relaxed);
        self.file.write_all_at(page, offset)?;
        Ok(offset)
    }
}

/// The pages of one column chunk, in its row group's shared file; each is read back once, by
/// its position.
struct SpillFile {
    shared: Arc<SharedFile>,
    /// (offset, length) of each page, by key.
    pages: Vec<(u64, usize)>,
}

impl PageStore for SpillFile {
    fn put(&mut self, page: Bytes) -> Result<PageKey> {
        let offset = self.shared.append(&page)?;
        self.pages.push((offset, page.len()));
        Ok(PageKey::new(self.pages.len() as u64 - 1))
    }

    fn take(&mut self, key: PageKey) -> Result<Bytes> {
        let (offset, len) = usize::try_from(key.get())
            .ok()
            .and_then(|i| self.pages.get(i).copied())
            .ok_or_else(|| ParquetError::General(format!("no spilled page {}", key.get())))?;
        let mut page = vec![0u8; len];
        self.shared.file.read_exact_at(&mut page, offset)?;
        Ok(Bytes::from(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(factory: &SpillFactory, n: usize) -> Vec<SpillFile> {
        (0..n).map(|_| factory.store().unwrap()).collect()
    }

    #[test]
    fn the_chunks_of_a_row_group_share_one_file_and_get_their_own_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let factory = SpillFactory::new(dir.path().to_path_buf());
        let mut chunks = stores(&factory, 3);
        let page = |c: usize, p: usize| Bytes::from(vec![(c * 10 + p) as u8; 1000 + c * 7 + p]);
        // Pages of the three chunks interleaved, as the writer fills them.
        let mut keys = vec![Vec::new(); 3];
        for p in 0..4 {
            for (c, chunk) in chunks.iter_mut().enumerate() {
                keys[c].push(chunk.put(page(c, p)).unwrap());
            }
        }
        let shared = factory.current.lock().unwrap().upgrade().unwrap();
        assert_eq!(Arc::strong_count(&shared), 4, "one file for all three");
        assert_eq!(
            shared.file.metadata().unwrap().len(),
            (0..3)
                .flat_map(|c| (0..4).map(move |p| page(c, p).len() as u64))
                .sum::<u64>()
        );
        drop(shared);
        for (c, chunk) in chunks.iter_mut().enumerate() {
            for (p, key) in keys[c].iter().enumerate() {
                assert_eq!(chunk.take(*key).unwrap(), page(c, p), "chunk {c} page {p}");
            }
        }
        // Once the row group's chunks are gone, so is its file; the next row group gets a
        // new one.
        drop(chunks);
        assert!(factory.current.lock().unwrap().upgrade().is_none());
        let mut next = stores(&factory, 1);
        let key = next[0].put(page(0, 0)).unwrap();
        assert_eq!(next[0].take(key).unwrap(), page(0, 0));
        // Nothing named was left in the directory: the files are anonymous.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! glibc's allocator, tuned for merging: memory kept where a merge reuses it, and handed back
//! when the merge ends.
//!
//! glibc gives each thread that allocates an arena of its own (up to eight per core) and keeps
//! what is freed there for reuse, so without care a long run's resident memory grows with the
//! number of threads that ever merged and with every merge's leftovers; and with its default
//! thresholds it hands large buffers back and forth to the kernel all through a merge.
//! Elsewhere (musl, macOS) these are no-ops.

/// Tunes glibc's allocator for merging. Call first thing in `main`, before any other thread
/// exists.
///
/// - Arenas: two per core (at least 2, at most 16): about one for each thread that allocates
///   all through a merge (its encoder, and its decoder or file reader). glibc's default, eight
///   per core, made the peak of one 4 GB partition 535 MiB, against 263 MiB with two arenas.
///   One per core was too few: threads that share an arena wait for its lock (on the large
///   benchmark set, 6 interleaved pairs, two arenas on 2 cores against four: wall time 7.64 →
///   7.26 s and CPU time 14.5 → 13.9 s by medians, faster in every pair, 7 MiB more at the
///   peak; the 4 GB partition alone, 84 → 96 MiB).
/// - Buffers of up to 32 MiB come from the heap, and freed memory stays there up to 128 MiB
///   ([`release_free_memory`] hands it back when a merge ends). By default glibc maps every
///   buffer above a threshold it moves as it goes, and trims the heap's top whenever 128 KiB
///   of it are free; a merge allocates and frees buffers of hundreds of KiB (pages, decoded
///   columns) thousands of times, and each round trip to the kernel costs page faults and TLB
///   flushes on the other core. Measured in interleaved runs (as in docs/benchmarks.md):
///   large set system time 2.7–2.9 s → 1.2–1.5 s and wall time 5–8% lower, small set 20%
///   lower; peaks 2–7 MiB higher.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune() {
    let arenas = crate::config::cpu_count().saturating_mul(2).clamp(2, 16) as libc::c_int;
    // SAFETY: mallopt only tunes the allocator; a refusal (return 0) just leaves glibc's
    // default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// Hands the free memory of every arena back to the system. Called when a merge ends: the
/// pages, dictionaries and buffers it freed would otherwise stay resident, and a run of many
/// merges crept upwards (a 4 GB partition, 30 merges one after another: 65 MiB resident
/// after the first, 106 MiB by the last). Takes about a millisecond.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns unused pages to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

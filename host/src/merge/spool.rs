//! One merge from a store into a local file: inputs are downloaded ahead of the decoder (each
//! only if it is still the listed version; several at once from a remote store), decoded and
//! re-encoded on a blocking thread into a temporary file. Shared by the commit protocol
//! ([`crate::compact`]) and by `compactor merge`.
//!
//! A shutdown that reaches [`Phase::Abandoning`] drops the download; the merge thread stops at
//! its next input and removes its temporary file before this returns.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::StreamExt;
use parquet::file::metadata::KeyValue;
use tempfile::NamedTempFile;

use super::MergeError;
use super::footer::InputFile;
use super::rewrite::MergeStats;
use super::{Decoding, write_output};
use crate::config::MergeConfig;
use crate::shutdown::{Phase, Stop};
use crate::store::Store;

/// Names of merged files being written start with this: hidden, so that a merge killed while
/// writing into a directory that readers see (`compactor merge`'s OUT_DIR) leaves nothing they
/// take for data (Spark, Hive and Trino skip names starting with `.`; `*.parquet` globs too).
pub const SPOOL_PREFIX: &str = ".compactor-";

/// Whether `name` is a merged file being written, by this version or one before it (which
/// named them without the leading dot).
pub fn is_spool_name(name: &str) -> bool {
    name.strip_prefix('.')
        .unwrap_or(name)
        .starts_with(&SPOOL_PREFIX[1..])
        && name.ends_with(".parquet")
}

/// Test hooks: a delay in milliseconds from the environment variable `var`.
/// `COMPACTOR_TEST_SLOW_FETCH_MS` delays each input's download (and makes them one at a
/// time), so tests can stop the process while a merge is in flight;
/// `COMPACTOR_TEST_SLOW_UPLOAD_MS` delays each merged file's upload, as a slow store would.
pub fn test_delay(var: &str) -> Option<std::time::Duration> {
    let ms = std::env::var(var).ok()?;
    ms.parse().ok().map(std::time::Duration::from_millis)
}

/// How many inputs are downloaded ahead of the decoder: as many reads as the store gains from
/// having in flight ([`Store::reads_at_once`]: a remote store answers each after a round trip,
/// about as long as decoding a small file takes), within the store's
/// [`Store::read_ahead_bytes`] of the largest input, and at least one.
fn read_ahead(store: &dyn Store, largest_input: u64) -> usize {
    files_ahead(
        store.reads_at_once(),
        store.read_ahead_bytes(),
        largest_input,
    )
}

fn files_ahead(reads_at_once: usize, bytes: u64, largest_input: u64) -> usize {
    let within_bytes = bytes / largest_input.max(1);
    reads_at_once
        .min(usize::try_from(within_bytes).unwrap_or(usize::MAX))
        .max(1)
}

fn largest(inputs: &[InputFile]) -> u64 {
    inputs.iter().map(|i| i.meta.size).max().unwrap_or(0)
}

/// Input files a merge of `inputs` from `store` holds in memory at most: the one being
/// decoded, and when they are fetched (not read on the spot, see [`Store::blocking_reader`])
/// those downloaded ahead and one waiting for the decoder.
pub fn inputs_held(store: &dyn Store, inputs: &[InputFile]) -> u64 {
    match store.blocking_reader() {
        Some(_) => 1,
        None => read_ahead(store, largest(inputs)) as u64 + 2,
    }
}

/// A new temporary file in `dir` for a merged file.
fn new_spool(dir: &Path) -> Result<NamedTempFile, MergeError> {
    let work_dir =
        |e: std::io::Error| MergeError::Write(format!("work dir {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(work_dir)?;
    tempfile::Builder::new()
        .prefix(SPOOL_PREFIX)
        .suffix(".parquet")
        .tempfile_in(dir)
        .map_err(work_dir)
}

/// Into how many parts a merge is cut, and where the slots for its parts come from.
pub struct Parts<'a> {
    /// See [`super::stitch::useful_parts`]; 1 merges whole.
    pub count: usize,
    /// The cores the merge may keep busy: its share of the slots, which may be more than the
    /// parts it can be cut into, and the cores no slot counts when `parallelism` is below the
    /// core count (see [`super::Decoding`]).
    pub cores: usize,
    /// The run's merge slots, of which the merge holds one already. Each part beyond the first
    /// runs on a slot that is free now or frees up while parts are left (another merge has
    /// ended), else on the merge's own slot once its part before is done.
    pub slots: &'a tokio::sync::Semaphore,
}

impl<'a> Parts<'a> {
    /// The parts of a merge of `inputs` in a run whose `progress` counts the bytes merged of
    /// all it has to merge: as many as the merge's share of the bytes left allows (see
    /// [`super::stitch::slots_for`] and [`super::stitch::useful_parts`]).
    pub fn of(
        inputs: &[InputFile],
        cfg: &MergeConfig,
        progress: &indicatif::ProgressBar,
        slots: &'a tokio::sync::Semaphore,
    ) -> Self {
        let bytes: u64 = inputs.iter().map(|i| i.meta.size).sum();
        let left = progress
            .length()
            .unwrap_or(0)
            .saturating_sub(progress.position());
        let share = super::stitch::slots_for(bytes, left, cfg.parallelism);
        let unslotted = crate::config::cpu_count().saturating_sub(cfg.parallelism);
        Parts {
            count: super::stitch::useful_parts(inputs, cfg, share),
            cores: share + unslotted,
            slots,
        }
    }
}

/// Merges `inputs` into a new temporary file in `dir`, adding `metadata` to its footer.
/// `on_progress` is told the size of each input once its rows are written.
///
/// With `parts.count` above 1, consecutive runs of the inputs are merged each into a file of
/// its own, at once as slots allow, and then stitched into one.
#[allow(clippy::too_many_arguments)]
pub async fn merge_to_spool(
    store: &dyn Store,
    inputs: &[InputFile],
    schema: SchemaRef,
    cfg: &MergeConfig,
    metadata: Vec<KeyValue>,
    dir: &Path,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    stop: &Stop,
    parts: Parts<'_>,
) -> Result<(NamedTempFile, MergeStats), MergeError> {
    let sizes: Vec<u64> = inputs.iter().map(|i| i.meta.size).collect();
    let runs = super::stitch::cut(&sizes, parts.count);
    let decoding = Decoding::for_merge(parts.cores, runs.len());
    if runs.len() <= 1 {
        return merge_one(
            store,
            inputs,
            schema,
            cfg,
            metadata,
            dir,
            on_progress,
            stop,
            decoding,
        )
        .await;
    }
    tracing::info!(parts = runs.len(), files = inputs.len(), "merging in parts");
    let started = std::time::Instant::now();
    let merge_part = |run: std::ops::Range<usize>| {
        let (schema, on_progress) = (schema.clone(), on_progress.clone());
        merge_one(
            store,
            &inputs[run],
            schema,
            cfg,
            Vec::new(),
            dir,
            on_progress,
            stop,
            decoding,
        )
    };
    let merged = in_parts(runs, parts.slots, merge_part).await?;
    let part_rows: u64 = merged.iter().map(|(_, stats)| stats.rows).sum();
    tracing::debug!(seconds = started.elapsed().as_secs_f32(), "parts merged");
    let started = std::time::Instant::now();
    let spool = new_spool(dir)?;
    let stitched = tokio::task::spawn_blocking(move || {
        let paths: Vec<&Path> = merged.iter().map(|(part, _)| part.path()).collect();
        let stats = super::stitch::stitch(&paths, metadata, spool.path());
        stats.map(|s| (spool, s))
    })
    .await
    .map_err(|e| MergeError::Write(format!("stitch task failed: {e}")))??;
    tracing::debug!(seconds = started.elapsed().as_secs_f32(), "parts stitched");
    if stitched.1.rows != part_rows {
        return Err(MergeError::Write(format!(
            "stitched {} rows but the parts hold {part_rows}",
            stitched.1.rows
        )));
    }
    Ok(stitched)
}

/// Runs `merge_part` on each of `runs` and returns their results in order: the first on the
/// caller's own slot, the others as soon as a slot of `slots` is free; a worker that finds no
/// part left gives its slot back at once. Every part taken runs to its end before this returns
/// (no merge thread is left writing a part nobody will read), and none is taken after one has
/// failed.
async fn in_parts<T, F, Fut>(
    runs: Vec<std::ops::Range<usize>>,
    slots: &tokio::sync::Semaphore,
    merge_part: F,
) -> Result<Vec<T>, MergeError>
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<T, MergeError>>,
{
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (all_taken, taken) = tokio::sync::watch::channel(false);
    let take = || {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i + 1 >= runs.len() {
            all_taken.send_replace(true);
        }
        runs.get(i).map(|run| (i, run.clone()))
    };
    let work = || async {
        let mut done = Vec::new();
        while let Some((i, run)) = take() {
            let result = merge_part(run).await;
            if result.is_err() {
                next.store(runs.len(), Ordering::SeqCst);
                all_taken.send_replace(true);
            }
            done.push((i, result));
        }
        done
    };
    let helper = || async {
        let mut taken = taken.clone();
        let permit = tokio::select! {
            biased;
            permit = slots.acquire() => permit.ok(),
            _ = taken.wait_for(|&all| all) => None,
        };
        match permit {
            Some(_permit) => work().await,
            None => Vec::new(),
        }
    };
    let helpers = (1..runs.len()).map(|_| helper());
    let (own, others) = futures::future::join(work(), futures::future::join_all(helpers)).await;
    let mut results: Vec<_> = own
        .into_iter()
        .chain(others.into_iter().flatten())
        .collect();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Where a merge thread gets its inputs' data, in order: read on the spot with the store's
/// [`Store::blocking_reader`], or from the fetch in the channel.
struct InputSource<'a> {
    inputs: &'a [InputFile],
    /// How many of `inputs` were read on the spot.
    read: usize,
    reader: Option<crate::store::BlockingReader>,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, MergeError>>,
}

impl InputSource<'_> {
    fn next(&mut self) -> Option<Result<Bytes, MergeError>> {
        let Some(reader) = &self.reader else {
            return self.rx.blocking_recv();
        };
        let input = self.inputs.get(self.read)?;
        self.read += 1;
        Some(match &input.stashed {
            Some(stashed) => read_stashed(input, stashed),
            None => reader(&input.meta.key, &input.meta.etag).map_err(MergeError::from),
        })
    }
}

/// An input kept in the work dir when its footer was read (see `read_inputs`).
fn read_stashed(input: &InputFile, stashed: &super::footer::Stashed) -> Result<Bytes, MergeError> {
    stashed.read().map_err(|e| {
        MergeError::Write(format!(
            "{}: reading it back from the work dir: {e}",
            input.meta.key
        ))
    })
}

/// [`merge_to_spool`] in one part.
#[allow(clippy::too_many_arguments)]
async fn merge_one(
    store: &dyn Store,
    inputs: &[InputFile],
    schema: SchemaRef,
    cfg: &MergeConfig,
    metadata: Vec<KeyValue>,
    dir: &Path,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
    stop: &Stop,
    decoding: Decoding,
) -> Result<(NamedTempFile, MergeStats), MergeError> {
    let spool = new_spool(dir)?;

    let slow = test_delay("COMPACTOR_TEST_SLOW_FETCH_MS");
    // A local disk's inputs are read by the merge thread itself, each when it is needed: a
    // copy from the page cache takes about a millisecond, less than handing it over from
    // another thread costs in wake-ups (and in glibc's allocator, whose arena a buffer freed
    // by another thread must lock). The tests that slow each download down use the fetch.
    let reader = match slow {
        Some(_) => None,
        None => store.blocking_reader(),
    };
    // Otherwise inputs are downloaded ahead of the decoder, in order (see `read_ahead`); one
    // more waits in the channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, MergeError>>(1);
    let fetched = reader.is_none();
    let fetch = async {
        if !fetched {
            return;
        }
        // Made up front, as in `read_inputs`; each does nothing until polled.
        let gets: Vec<_> = inputs
            .iter()
            .map(|input| async move {
                if let Some(delay) = slow {
                    tokio::time::sleep(delay).await;
                }
                // Exactly the version that was listed and planned with (its footer read).
                match &input.stashed {
                    Some(stashed) => read_stashed(input, stashed),
                    None => store
                        .get_unchanged(&input.meta.key, &input.meta.etag)
                        .await
                        .map_err(MergeError::from),
                }
            })
            .collect();
        // The tests that slow each download down count on the delays adding up, one input
        // after another, to keep a merge in flight for as long as they need.
        let ahead = match slow {
            Some(_) => 1,
            None => read_ahead(store, largest(inputs)),
        };
        let mut downloads = futures::stream::iter(gets).buffered(ahead);
        while let Some(data) = downloads.next().await {
            let failed = data.is_err();
            if tx.send(data).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut merge = {
        let inputs = inputs.to_vec();
        let cfg = cfg.clone();
        let cancelled = cancelled.clone();
        // The temporary file travels with the merge thread, which removes it if it fails.
        tokio::task::spawn_blocking(move || {
            let mut source = InputSource {
                inputs: &inputs,
                read: 0,
                reader,
                rx,
            };
            let mut next = || {
                if cancelled.load(Ordering::SeqCst) {
                    return Some(Err(MergeError::Abandoned));
                }
                source.next()
            };
            let stats = write_output(
                &inputs,
                schema,
                &mut next,
                &cfg,
                metadata,
                spool.path(),
                &*on_progress,
                decoding,
            );
            crate::malloc::release_free_memory();
            stats.map(|s| (spool, s))
        })
    };
    let merged = tokio::select! {
        ((), merged) = async { tokio::join!(fetch, &mut merge) } => merged,
        () = stop.reached(Phase::Abandoning) => {
            // Nothing is uploaded. The merge thread stops at its next input (the fetch is
            // gone); wait for it, so its temporary file is removed before the process exits.
            cancelled.store(true, Ordering::SeqCst);
            let _ = merge.await;
            return Err(MergeError::Abandoned);
        }
    };
    merged.map_err(|e| MergeError::Write(format!("merge task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::{MergeError, files_ahead, in_parts, inputs_held, is_spool_name, new_spool};
    use crate::store::{LocalStore, Store};

    /// Merged files being written are hidden, and a killed run's are found by this version's
    /// name and the one before (`compactor-*.parquet`, not hidden).
    #[test]
    fn spool_files_are_hidden_and_recognised_by_either_name() {
        let dir = tempfile::tempdir().unwrap();
        let spool = new_spool(dir.path()).unwrap();
        let name = spool.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with('.') && is_spool_name(name), "{name}");
        assert!(is_spool_name("compactor-x1Y2z3.parquet"));
        for other in [
            "part-00000.parquet",
            ".compactor-x1Y2z3",
            "my-compactor-x.parquet",
        ] {
            assert!(!is_spool_name(other), "{other}");
        }
    }

    /// `in_parts` over `runs` parts of one input each, every part taking `ms`; returns the
    /// results and the order in which the parts started.
    async fn run_parts(
        runs: usize,
        slots: &Semaphore,
        ms: u64,
        fail: Option<usize>,
    ) -> (Result<Vec<usize>, MergeError>, Vec<usize>) {
        let started = Mutex::new(Vec::new());
        let result = in_parts((0..runs).map(|i| i..i + 1).collect(), slots, |run| {
            started.lock().unwrap().push(run.start);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                match fail {
                    Some(f) if f == run.start => Err(MergeError::Write(format!("part {f}"))),
                    _ => Ok(run.start * 10),
                }
            }
        })
        .await;
        (result, started.into_inner().unwrap())
    }

    #[tokio::test]
    async fn parts_wait_for_slots_that_free_up_and_otherwise_run_on_the_merges_own() {
        // Every other slot held by merges that never end: the parts run one after the other
        // on the merge's own slot, in order, and none waits for a slot forever.
        let slots = Semaphore::new(2);
        let _others = slots.acquire_many(2).await.unwrap();
        let (result, started) = run_parts(3, &slots, 1, None).await;
        assert_eq!(result.unwrap(), vec![0, 10, 20]);
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(slots.available_permits(), 0);

        // A slot that frees up while parts are left takes one: two at once, so four parts of
        // 100 ms each end in about 200 ms, not 400.
        let slots = Semaphore::new(1);
        let other = slots.acquire().await.unwrap();
        let freed = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(other);
        };
        let begun = std::time::Instant::now();
        let ((result, _), ()) = tokio::join!(run_parts(4, &slots, 100, None), freed);
        let took = begun.elapsed();
        assert_eq!(result.unwrap(), vec![0, 10, 20, 30]);
        assert!(took < Duration::from_millis(350), "took {took:?}");
        // Given back once no part is left.
        assert_eq!(slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn no_part_is_taken_after_one_has_failed() {
        let slots = Semaphore::new(0);
        let (result, started) = run_parts(4, &slots, 1, Some(1)).await;
        assert!(matches!(result, Err(MergeError::Write(m)) if m == "part 1"));
        assert_eq!(started, vec![0, 1]);
    }

    #[test]
    fn inputs_are_read_ahead_as_far_as_the_store_gains_within_the_byte_bound() {
        const MIB: u64 = 1 << 20;
        // One read at a time: one file ahead.
        assert_eq!(files_ahead(1, 16 * MIB, MIB), 1);
        // As many as the store takes at once, while they fit in the bound...
        assert_eq!(files_ahead(8, 16 * MIB, MIB), 8);
        assert_eq!(files_ahead(32, 16 * MIB, MIB), 16);
        assert_eq!(files_ahead(32, 16 * MIB, 5 * MIB), 3);
        // ...and always at least one, however large the inputs.
        assert_eq!(files_ahead(32, 16 * MIB, 100 * MIB), 1);
        assert_eq!(files_ahead(32, 16 * MIB, 0), 32);
        // A local directory's inputs are read on the spot, one at a time.
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::try_new(dir.path()).unwrap();
        assert!(local.blocking_reader().is_some());
        assert_eq!(inputs_held(&local, &[]), 1);
    }
}

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
use super::write_output;
use crate::config::MergeConfig;
use crate::shutdown::{Phase, Stop};
use crate::store::Store;

/// Names of merged files being written start with this.
pub const SPOOL_PREFIX: &str = "compactor-";

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

/// Input files a merge of `inputs` from `store` holds in memory at most: those downloaded
/// ahead, one waiting for the decoder and the one being decoded.
pub fn inputs_held(store: &dyn Store, inputs: &[InputFile]) -> u64 {
    read_ahead(store, largest(inputs)) as u64 + 2
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

/// Merges `inputs` into a new temporary file in `dir`, adding `metadata` to its footer.
/// `on_progress` is told the size of each input once its rows are written.
///
/// With `parts` above 1 (see [`super::stitch::useful_parts`]), consecutive runs of the inputs
/// are merged at once, each into a file of its own, and then stitched into one.
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
    parts: usize,
) -> Result<(NamedTempFile, MergeStats), MergeError> {
    let sizes: Vec<u64> = inputs.iter().map(|i| i.meta.size).collect();
    let runs = super::stitch::cut(&sizes, parts);
    if runs.len() <= 1 {
        return merge_one(store, inputs, schema, cfg, metadata, dir, on_progress, stop).await;
    }
    tracing::info!(parts = runs.len(), files = inputs.len(), "merging in parts");
    let started = std::time::Instant::now();
    let merges = runs.into_iter().map(|run| {
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
        )
    });
    // Every part runs to its end (or its first error) before this returns, so no merge thread
    // is left writing a part that nobody will read.
    let merged = futures::future::join_all(merges)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, MergeError>>()?;
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
) -> Result<(NamedTempFile, MergeStats), MergeError> {
    let spool = new_spool(dir)?;

    // Inputs are downloaded ahead of the decoder, in order (see `read_ahead`); one more waits
    // in the channel.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, MergeError>>(1);
    let slow = test_delay("COMPACTOR_TEST_SLOW_FETCH_MS");
    let fetch = async {
        // Made up front, as in `read_inputs`; each does nothing until polled.
        let gets: Vec<_> = inputs
            .iter()
            .map(|input| async move {
                if let Some(delay) = slow {
                    tokio::time::sleep(delay).await;
                }
                // Exactly the version that was listed and planned with (its footer read).
                match &input.stashed {
                    Some(stashed) => stashed.read().map_err(|e| {
                        MergeError::Write(format!(
                            "{}: reading it back from the work dir: {e}",
                            input.meta.key
                        ))
                    }),
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
            let mut next = || {
                if cancelled.load(Ordering::SeqCst) {
                    return Some(Err(MergeError::Abandoned));
                }
                rx.blocking_recv()
            };
            let stats = write_output(
                &inputs,
                schema,
                &mut next,
                &cfg,
                metadata,
                spool.path(),
                &*on_progress,
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
    use super::{files_ahead, read_ahead};
    use crate::store::LocalStore;

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
        // A local directory reads small files several ahead, and files of a megabyte or
        // more one ahead.
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::try_new(dir.path()).unwrap();
        assert_eq!(read_ahead(&local, 12 << 10), 8);
        assert_eq!(read_ahead(&local, 500_000), 2);
        assert_eq!(read_ahead(&local, 1_200_000), 1);
    }
}

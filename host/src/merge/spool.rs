//! One merge from a store into a local file: inputs are downloaded one ahead of the decoder
//! (each only if it is still the listed version), decoded and re-encoded on a blocking thread
//! into a temporary file. Shared by the commit protocol ([`crate::compact`]) and by
//! `compactor merge`.
//!
//! A shutdown that reaches [`Phase::Abandoning`] drops the download; the merge thread stops at
//! its next input and removes its temporary file before this returns.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_schema::SchemaRef;
use bytes::Bytes;
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
/// `COMPACTOR_TEST_SLOW_FETCH_MS` delays each input's download, so tests can stop the process
/// while a merge is in flight; `COMPACTOR_TEST_SLOW_UPLOAD_MS` delays each merged file's
/// upload, as a slow store would.
pub fn test_delay(var: &str) -> Option<std::time::Duration> {
    let ms = std::env::var(var).ok()?;
    ms.parse().ok().map(std::time::Duration::from_millis)
}

/// Merges `inputs` into a new temporary file in `dir`, adding `metadata` to its footer.
/// `on_progress` is told the size of each input once its rows are written.
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
) -> Result<(NamedTempFile, MergeStats), MergeError> {
    let work_dir =
        |e: std::io::Error| MergeError::Write(format!("work dir {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(work_dir)?;
    let spool = tempfile::Builder::new()
        .prefix(SPOOL_PREFIX)
        .suffix(".parquet")
        .tempfile_in(dir)
        .map_err(work_dir)?;

    // Fetch inputs one ahead of the decoder: memory holds at most two input files.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, MergeError>>(1);
    let slow = test_delay("COMPACTOR_TEST_SLOW_FETCH_MS");
    let fetch = async {
        for input in inputs {
            if let Some(delay) = slow {
                tokio::time::sleep(delay).await;
            }
            // Exactly the version that was listed and planned with (its footer read).
            let data = store
                .get_unchanged(&input.meta.key, &input.meta.etag)
                .await
                .map_err(MergeError::from);
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

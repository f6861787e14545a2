//! Carrying out a [`CompactionPlan`]: per partition, finish earlier commits, then for each group
//! merge → upload → verify → delete exactly the inputs, unchanged. A failure skips that group
//! (or partition) with a message naming it; the run goes on and the summary reports it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::Instrument;

use crate::config::MergeConfig;
use crate::journal::{self, Journal, JournalInput};
use crate::merge::MergeError;
use crate::merge::footer::{InputFile, read_input};
use crate::merge::rewrite::{MergeStats, merge_to_file};
use crate::merge::schema::split_compatible;
use crate::plan::{Action, CompactionPlan, GroupPlan, PartitionPlan};
use crate::store::{ObjectMeta, Store};
use crate::summary::RunSummary;

/// Hooks for tests of the commit protocol: stop the process at a given step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the merged file is uploaded and verified, before any input is deleted.
    AfterUpload,
}

impl CrashPoint {
    /// Read from `COMPACTOR_CRASH_AT` (`after-upload`); only tests set it.
    pub fn from_env() -> Option<CrashPoint> {
        match std::env::var("COMPACTOR_CRASH_AT").ok()?.as_str() {
            "after-upload" => Some(CrashPoint::AfterUpload),
            _ => None,
        }
    }
}

pub async fn execute(
    store: Arc<dyn Store>,
    plan: &CompactionPlan,
    cfg: &MergeConfig,
) -> RunSummary {
    let start = Instant::now();
    let mut summary = RunSummary::default();
    let total_bytes: u64 = plan
        .tables
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| match &p.action {
            Action::Compact { groups } => Some(groups.iter().map(GroupPlan::bytes).sum::<u64>()),
            _ => None,
        })
        .sum();
    let progress = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let crash = CrashPoint::from_env();

    for table in &plan.tables {
        for prefix in &table.hot {
            summary.skip("hot", format!("{prefix}: hot (policy), not listed"));
        }
        // Uploads a killed run left behind (invisible, but billed and counted by S3).
        let ours = |key: &str| crate::layout::is_output(key);
        match store
            .abort_stale_uploads(&table.prefix, cfg.stale_upload_after_ms, &ours)
            .await
        {
            Ok(0) => {}
            Ok(n) => summary.recoveries += n as u64,
            Err(e) => tracing::warn!(table = %table.table, "could not clean up stale uploads: {e}"),
        }
    }
    // Partitions in parallel, up to the configured bound: the merges themselves run on
    // blocking threads, so this is what puts every core to work.
    let jobs = plan
        .tables
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.table.as_str(), p)));
    let partials: Vec<RunSummary> = futures::stream::iter(jobs)
        .map(|(table, p)| {
            let span =
                tracing::info_span!("partition", table = %table, partition = %p.partition.prefix);
            execute_partition(store.as_ref(), p, cfg, &progress, crash).instrument(span)
        })
        .buffer_unordered(cfg.parallelism.max(1))
        .collect()
        .await;
    for partial in partials {
        summary.absorb(partial);
    }
    progress.finish_and_clear();
    summary.elapsed = start.elapsed();
    summary
}

/// One partition: finish earlier commits, then carry out its action. Returns its part of the
/// run's summary.
async fn execute_partition(
    store: &dyn Store,
    p: &PartitionPlan,
    cfg: &MergeConfig,
    progress: &ProgressBar,
    crash: Option<CrashPoint>,
) -> RunSummary {
    let mut summary = RunSummary::default();
    let prefix = p.partition.prefix.as_str();
    let mut recovery_failed = false;
    for recovery in &p.recoveries {
        match journal::apply(store, recovery).await {
            Ok(n) => {
                tracing::info!(
                    deleted = n,
                    "finished an earlier run's commit: {recovery:?}"
                );
                summary.recoveries += 1;
            }
            Err(e) => {
                summary.fail(format!("{prefix}: {e}"));
                recovery_failed = true;
            }
        }
    }
    if recovery_failed {
        return summary;
    }
    match &p.action {
        Action::Skip { reason } => {
            tracing::debug!("skipped: {reason}");
            let class = if reason.starts_with("hot") {
                "hot"
            } else {
                "policy"
            };
            summary.skip(class, format!("{prefix}: {reason}"));
        }
        Action::Failed { error } => {
            tracing::error!("{error}");
            summary.fail(format!("{prefix}: {error}"));
        }
        Action::Compact { groups } => {
            let (mut merged_any, mut failed_any) = (false, false);
            for group in groups {
                progress.set_message(prefix.to_string());
                match execute_group(store, prefix, group, cfg, progress, crash).await {
                    Ok(outcome) => {
                        merged_any |= !outcome.merged.is_empty();
                        for note in &outcome.notes {
                            tracing::warn!("{note}");
                            summary.skipped.push(format!("{prefix}: {note}"));
                        }
                        for m in outcome.merged {
                            summary.groups_merged += 1;
                            summary.files_in += m.files;
                            summary.bytes_in += m.bytes_in;
                            summary.files_out += 1;
                            summary.bytes_out += m.stats.bytes;
                            summary.rows += m.stats.rows;
                        }
                    }
                    Err(e) => {
                        failed_any = true;
                        tracing::error!("group of {} files: {e}", group.inputs.len());
                        let left = match e {
                            MergeError::NotDeleted { .. } => "",
                            _ => "; its files were left in place",
                        };
                        summary.fail(format!("{prefix}: {e}{left}"));
                    }
                }
            }
            if merged_any {
                summary.partitions_compacted += 1;
            } else if !failed_any {
                *summary
                    .partitions_skipped
                    .entry("schema".into())
                    .or_default() += 1;
            }
        }
    }
    summary
}

struct Merged {
    files: u64,
    bytes_in: u64,
    stats: MergeStats,
}

#[derive(Default)]
struct GroupOutcome {
    merged: Vec<Merged>,
    /// Schema splits and inputs left alone, said out loud.
    notes: Vec<String>,
}

async fn execute_group(
    store: &dyn Store,
    prefix: &str,
    group: &GroupPlan,
    cfg: &MergeConfig,
    progress: &ProgressBar,
    crash: Option<CrashPoint>,
) -> Result<GroupOutcome, MergeError> {
    let mut inputs = Vec::with_capacity(group.inputs.len());
    for meta in &group.inputs {
        inputs.push(read_input(store, meta, cfg.max_row_group_bytes).await?);
    }
    let (sets, mut notes) = split_compatible(&inputs);
    let mut outcome = GroupOutcome::default();
    let single_file_group = group.inputs.len() == 1;
    for set in sets {
        let members: Vec<InputFile> = set.inputs.iter().map(|&i| inputs[i].clone()).collect();
        if members.len() < 2 && !single_file_group {
            notes.push(format!(
                "{} left as it is: no other file in its group shares its schema",
                members[0].meta.key
            ));
            continue;
        }
        let stats = commit_set(store, prefix, &members, set.schema, cfg, progress, crash).await?;
        outcome.merged.push(Merged {
            files: members.len() as u64,
            bytes_in: members.iter().map(|m| m.meta.size).sum(),
            stats,
        });
    }
    outcome.notes = notes;
    Ok(outcome)
}

/// Merge, upload, verify, delete: the commit protocol for one compatible set of inputs.
async fn commit_set(
    store: &dyn Store,
    prefix: &str,
    inputs: &[InputFile],
    schema: arrow_schema::SchemaRef,
    cfg: &MergeConfig,
    progress: &ProgressBar,
    crash: Option<CrashPoint>,
) -> Result<MergeStats, MergeError> {
    let metas: Vec<ObjectMeta> = inputs.iter().map(|i| i.meta.clone()).collect();
    let output = journal::output_key(prefix, &metas);
    let journal = Journal {
        version: 1,
        rows: inputs.iter().map(|i| i.rows).sum(),
        inputs: inputs
            .iter()
            .map(|i| JournalInput {
                key: i.meta.key.clone(),
                size: i.meta.size,
                etag: i.meta.etag.clone(),
                rows: i.rows,
            })
            .collect(),
    };

    std::fs::create_dir_all(&cfg.work_dir)
        .map_err(|e| MergeError::Write(format!("work dir {}: {e}", cfg.work_dir.display())))?;
    let spool = tempfile::Builder::new()
        .prefix("compactor-")
        .suffix(".parquet")
        .tempfile_in(&cfg.work_dir)
        .map_err(|e| MergeError::Write(format!("work dir {}: {e}", cfg.work_dir.display())))?;

    // Fetch inputs one ahead of the decoder: memory holds at most two input files.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, MergeError>>(1);
    let fetch = async {
        for meta in &metas {
            let data = store.get(&meta.key).await.map_err(MergeError::from);
            let failed = data.is_err();
            if tx.send(data).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
    };
    let merge = {
        let inputs = inputs.to_vec();
        let cfg = cfg.clone();
        let dest = spool.path().to_path_buf();
        let kv = vec![journal.to_key_value()];
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let mut next = || rx.blocking_recv();
            merge_to_file(&inputs, schema, &mut next, &cfg, kv, &dest, &|bytes| {
                progress.inc(bytes)
            })
        })
    };
    let ((), merged) = tokio::join!(fetch, merge);
    let stats = merged.map_err(|e| MergeError::Write(format!("merge task failed: {e}")))??;

    let uploaded = store.put_file(&output, spool.path()).await?;
    if let Err(reason) = journal::verify_output(store, &uploaded, &journal).await {
        // Roll back: the inputs stay, the bad output goes.
        let _ = store.delete_many(std::slice::from_ref(&output)).await;
        return Err(MergeError::Write(format!(
            "{output} failed verification: {reason}"
        )));
    }
    tracing::info!(output = %output, files = inputs.len(), rows = stats.rows, bytes = stats.bytes, "merged");
    if crash == Some(CrashPoint::AfterUpload) {
        tracing::warn!("COMPACTOR_CRASH_AT=after-upload: exiting before deleting inputs");
        std::process::exit(86);
    }

    // Delete exactly the inputs that are unchanged since they were read. One listing of the
    // partition answers for all of them (one request per 1000 keys, not one per file).
    let now = store.list(prefix).await?.objects;
    let mut unchanged = Vec::new();
    for meta in &metas {
        match now.iter().find(|o| o.key == meta.key) {
            Some(o) if o.size == meta.size && o.etag == meta.etag => {
                unchanged.push(meta.key.clone())
            }
            Some(_) => {
                tracing::warn!(file = %meta.key, "changed while being merged; left in place")
            }
            None => tracing::warn!(file = %meta.key, "gone before it could be deleted"),
        }
    }
    let failed = store.delete_many(&unchanged).await;
    if let Some((key, e)) = failed.first() {
        return Err(MergeError::NotDeleted {
            output,
            key: key.clone(),
            reason: e.reason(),
            count: failed.len(),
        });
    }
    Ok(stats)
}

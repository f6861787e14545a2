//! Carrying out a [`CompactionPlan`]: per partition, finish earlier commits, then for each group
//! merge → upload → verify → delete exactly the inputs, unchanged. A failure skips that group
//! (or partition) with a message naming it; the run goes on and the summary reports it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::Instrument;

use crate::config::MergeConfig;
use crate::crash::CrashPoint;
use crate::journal::{self, Journal, JournalInput};
use crate::lease::{self, Acquired, Lease};
use crate::merge::MergeError;
use crate::merge::footer::{InputFile, read_inputs};
use crate::merge::rewrite::MergeStats;
use crate::merge::schema::split_compatible;
use crate::merge::spool::{Parts, inputs_held, is_spool_name, merge_to_spool};
use crate::plan::{Action, CompactionPlan, GroupPlan, PartitionPlan};
use crate::shutdown::{Phase, Stop};
use crate::store::{ObjectMeta, Store};
use crate::summary::RunSummary;

/// A progress bar over `total_bytes` of input on stderr; hidden when stderr is no terminal.
pub fn progress_bar(total_bytes: u64) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    progress
}

/// The class a policy's skip reason is counted under (metric label `reason`): `hot` when it
/// starts with "hot", `too_few_files` when it starts with "too few" or names `min_files`,
/// otherwise `policy`.
pub fn skip_class(reason: &str) -> &'static str {
    let r = reason.trim_start().to_ascii_lowercase();
    if r.starts_with("hot") {
        "hot"
    } else if r.starts_with("too few") || r.contains("min_files") {
        "too_few_files"
    } else {
        "policy"
    }
}

/// Carries out `plan`. Once `stop` drains, no new partition or group starts; once it abandons,
/// merges that have not started uploading are dropped (their inputs stay).
pub async fn execute(
    store: Arc<dyn Store>,
    plan: &CompactionPlan,
    cfg: &MergeConfig,
    stop: &Stop,
) -> RunSummary {
    let start = Instant::now();
    let mut summary = RunSummary::default();
    let groups: Vec<&GroupPlan> = plan
        .tables
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| match &p.action {
            Action::Compact { groups } => groups.as_slice(),
            _ => &[],
        })
        .collect();
    let total_bytes: u64 = groups.iter().map(|g| g.bytes()).sum();
    let progress = progress_bar(total_bytes);
    let memory = MemoryBudget::new(cfg.memory_budget_bytes);
    let merge_slots = tokio::sync::Semaphore::new(cfg.parallelism.max(1));
    let ctx = Ctx {
        store: store.as_ref(),
        shared_store: &store,
        lease: None,
        cfg,
        progress: &progress,
        crash: CrashPoint::from_env(),
        stop,
        memory: &memory,
        merge_slots: &merge_slots,
    };

    // Merged files a killed run was writing (a live run's are younger).
    let spooled = crate::store::local::remove_stale_files(
        &cfg.work_dir,
        std::time::Duration::from_millis(cfg.stale_upload_after_ms.max(0) as u64),
        is_spool_name,
    );
    if spooled > 0 {
        tracing::info!(dir = %cfg.work_dir.display(), "removed {spooled} stale temporary file(s) of a killed run");
    }
    let mut undeletable: HashMap<&str, String> = HashMap::new();
    for table in &plan.tables {
        for prefix in &table.hot {
            summary.skip("hot", format!("{prefix}: hot (policy), not listed"));
        }
        if table.partitions.iter().any(has_work)
            && let Err(why) = check_deletes(store.as_ref(), &table.prefix).await
        {
            tracing::error!(table = %table.table, "{why}");
            undeletable.insert(table.table.as_str(), why);
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
    // The futures are built before the stream, not by a `map` closure inside it: a closure
    // taking borrowed pairs there makes the run's future fail the `Send` check of
    // `tokio::spawn` (a known limit of the compiler's lifetime inference).
    let jobs: Vec<_> = plan
        .tables
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.table.as_str(), p)))
        .filter(|(table, p)| match undeletable.get(table) {
            Some(why) if has_work(p) => {
                summary.fail(format!("{}: not compacted: {why}", p.partition.prefix));
                false
            }
            _ => true,
        })
        .map(|(table, p)| {
            let span =
                tracing::info_span!("partition", table = %table, partition = %p.partition.prefix);
            execute_partition(&ctx, p).instrument(span)
        })
        .collect();
    let partials: Vec<RunSummary> = futures::stream::iter(jobs)
        .buffer_unordered(in_flight(cfg))
        .collect()
        .await;
    for partial in partials {
        summary.absorb(partial);
    }
    progress.finish_and_clear();
    summary.elapsed = start.elapsed();
    summary
}

/// Whether a partition's plan writes or deletes anything: an earlier commit to finish, or merges.
fn has_work(p: &PartitionPlan) -> bool {
    !p.recoveries.is_empty() || matches!(p.action, Action::Compact { .. })
}

/// Name of the object [`check_deletes`] writes and deletes: hidden, so never data.
pub const DELETE_CHECK: &str = "_compactor.delete-check";

/// A merge deletes its inputs once the merged file is safe. A store that lets compactor write
/// but not delete (a policy granting `s3:PutObject` without `s3:DeleteObject`) would leave each
/// merged partition's rows twice, in the inputs and the merged file, for good. So before a
/// table's first merge of a run, a small object is written under its prefix and deleted: if
/// that fails, the table's partitions are not touched, at a cost of two requests.
async fn check_deletes(store: &dyn Store, table_prefix: &str) -> Result<(), String> {
    let key = format!("{table_prefix}{DELETE_CHECK}");
    if let Err(e) = store.put_if_absent(&key, bytes::Bytes::new()).await {
        return Err(format!(
            "cannot write under {table_prefix} ({}), so no merged file could be written",
            e.reason()
        ));
    }
    match store.delete_many(std::slice::from_ref(&key)).await.pop() {
        None => Ok(()),
        Some((_, e)) => Err(format!(
            "cannot delete under {table_prefix} ({}): a merge would leave its inputs beside the \
             merged file, every row twice; allow deletes on the table's prefix \
             (s3:DeleteObject), then run again",
            e.reason()
        )),
    }
}

/// One partition: finish earlier commits, then carry out its action. Returns its part of the
/// run's summary.
async fn execute_partition(ctx: &Ctx<'_>, p: &PartitionPlan) -> RunSummary {
    let started = Instant::now();
    let summary = execute_partition_leased(ctx, p).await;
    crate::metrics::global()
        .partition_duration
        .observe(started.elapsed().as_secs_f64());
    summary
}

/// With `[leases]` on, takes the partition's lease before any work (another replica holding it
/// means: skip it) and checks that the partition is still as planned.
async fn execute_partition_leased(ctx: &Ctx<'_>, p: &PartitionPlan) -> RunSummary {
    let mut summary = RunSummary::default();
    let prefix = p.partition.prefix.as_str();
    if ctx.stop.is_draining() {
        summary.skip(SHUTDOWN, format!("{prefix}: not started (shutting down)"));
        return summary;
    }
    let Some(settings) = ctx.cfg.leases.as_ref().filter(|_| has_work(p)) else {
        return execute_partition_steps(ctx, p).await;
    };
    let lease = match lease::acquire(ctx.shared_store.clone(), prefix, settings).await {
        Ok(Acquired::Yes(lease)) => lease,
        Ok(Acquired::HeldBy { owner, until_ms }) => {
            let until = until_ms.map_or(String::new(), |ms| {
                format!(" for {}s more", (ms - crate::app::now_ms()).max(0) / 1000)
            });
            tracing::info!("leased by {owner}{until}; left to it");
            summary.skip(
                LEASED,
                format!("{prefix}: being compacted by {owner}{until}"),
            );
            return summary;
        }
        Err(e) => {
            summary.fail(format!("{prefix}: cannot take the partition's lease: {e}"));
            return summary;
        }
    };
    let partial = match still_as_planned(ctx.store, p).await {
        Ok(()) => {
            execute_partition_steps(
                &Ctx {
                    lease: Some(&lease),
                    ..*ctx
                },
                p,
            )
            .await
        }
        Err(why) => {
            tracing::info!("{why}");
            let mut s = RunSummary::default();
            s.skip(LEASED, format!("{prefix}: {why}"));
            s
        }
    };
    lease.release(ctx.store).await;
    partial
}

/// Whether every file the plan for `p` relies on is still there, unchanged. Another replica may
/// have compacted the partition between our listing and our lease.
async fn still_as_planned(store: &dyn Store, p: &PartitionPlan) -> Result<(), String> {
    let now = store
        .list(&p.partition.prefix)
        .await
        .map_err(|e| format!("listing it again failed: {e}"))?
        .objects;
    let etags: HashMap<&str, &str> = now
        .iter()
        .map(|o| (o.key.as_str(), o.etag.as_str()))
        .collect();
    let unchanged = |m: &ObjectMeta| etags.get(m.key.as_str()) == Some(&m.etag.as_str());
    let exists = |key: &str| etags.contains_key(key);
    let inputs_ok = match &p.action {
        Action::Compact { groups } => groups.iter().flat_map(|g| &g.inputs).all(unchanged),
        _ => true,
    };
    let recoveries_ok = p
        .recoveries
        .iter()
        .all(|r| r.keys().into_iter().all(exists));
    if inputs_ok && recoveries_ok {
        Ok(())
    } else {
        Err("changed since it was planned (another replica's work); planned afresh next run".into())
    }
}

fn lease_lost(ctx: &Ctx<'_>, before: &str) -> Result<(), MergeError> {
    match ctx.lease {
        Some(lease) if !lease.held() => Err(MergeError::LeaseLost {
            before: before.to_string(),
        }),
        _ => Ok(()),
    }
}

async fn execute_partition_steps(ctx: &Ctx<'_>, p: &PartitionPlan) -> RunSummary {
    let store = ctx.store;
    let mut summary = RunSummary::default();
    let prefix = p.partition.prefix.as_str();
    let mut recovery_failed = false;
    for recovery in &p.recoveries {
        if let (Some(CrashPoint::MidRecovery), journal::Recovery::RollForward { delete, .. }) =
            (ctx.crash, recovery)
            && let Some(first) = delete.first()
        {
            let _ = store.delete_many(std::slice::from_ref(first)).await;
            CrashPoint::MidRecovery.hit(ctx.crash);
        }
        if let Err(e) = lease_lost(ctx, "finishing an earlier commit") {
            summary.fail(format!("{prefix}: {e}"));
            return summary;
        }
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
            summary.skip(skip_class(reason), format!("{prefix}: {reason}"));
        }
        Action::Failed { error } => {
            tracing::error!("{error}");
            summary.fail(format!("{prefix}: {error}"));
        }
        Action::Compact { groups } => {
            let (mut merged_any, mut failed_any) = (false, false);
            let mut abandoned = false;
            // The futures are made before the stream (see `execute`), in plan order, which is
            // also the order their outcomes are reported in.
            let runs: Vec<_> = groups
                .iter()
                .map(|group| run_group(ctx, prefix, group))
                .collect();
            let outcomes: Vec<Option<Result<GroupOutcome, MergeError>>> =
                futures::stream::iter(runs)
                    .buffered(in_flight(ctx.cfg))
                    .collect()
                    .await;
            for (group, outcome) in groups.iter().zip(outcomes) {
                let Some(outcome) = outcome else {
                    abandoned = true; // not started: the run is shutting down
                    continue;
                };
                match outcome {
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
                    Err(MergeError::Abandoned) => {
                        tracing::warn!(
                            "merge of {} files abandoned at shutdown; they stay in place",
                            group.inputs.len()
                        );
                        abandoned = true;
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
            } else if abandoned {
                summary.skip(
                    SHUTDOWN,
                    format!("{prefix}: abandoned at shutdown, nothing deleted"),
                );
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

/// What every step of a run shares.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    store: &'a dyn Store,
    /// The same store, for tasks that outlive a borrow (lease renewal).
    shared_store: &'a Arc<dyn Store>,
    /// The partition's lease, when `[leases]` is on and it is being worked on.
    lease: Option<&'a Lease>,
    cfg: &'a MergeConfig,
    progress: &'a ProgressBar,
    crash: Option<CrashPoint>,
    stop: &'a Stop,
    memory: &'a MemoryBudget,
    /// Merges running at once over the whole run (`[merge] parallelism`): partitions and the
    /// groups of one partition alike take a slot, so a single large partition uses every core.
    /// A slot is held for the merge alone (decoding and encoding, the CPU's work), not while
    /// footers are read or the merged file is uploaded, verified and its inputs deleted.
    /// A merge in parts ([`crate::merge::stitch`]) takes more, for its parts alone.
    merge_slots: &'a tokio::sync::Semaphore,
}

/// Partitions (and groups of one partition) worked on at once: twice the merge slots, so that
/// while some wait on the store (footers, upload, deletes) others keep every slot busy.
fn in_flight(cfg: &MergeConfig) -> usize {
    2 * cfg.parallelism.max(1)
}

/// The memory merges in flight may use together (`[merge] memory_budget`), counted in MiB.
/// A merge holds a few input files (one decoding, the others downloaded ahead:
/// [`inputs_held`]), a decoded row group, the row group being encoded and the encoder's state
/// per column ([`encoder_state_bytes`]); it reserves that estimate before it starts, so
/// parallel partitions never add up to more than the budget. A merge larger than the whole
/// budget still runs, alone.
struct MemoryBudget {
    mib: tokio::sync::Semaphore,
    total_mib: u32,
}

impl MemoryBudget {
    fn new(bytes: u64) -> MemoryBudget {
        let total_mib = (bytes >> 20).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        MemoryBudget {
            mib: tokio::sync::Semaphore::new(total_mib as usize),
            total_mib,
        }
    }

    /// The estimate for merging `inputs` in `parts` at once, in MiB (at least 1, at most the
    /// whole budget). Each part is counted as a whole merge, which overstates it a little.
    fn estimate_mib(
        &self,
        store: &dyn Store,
        inputs: &[InputFile],
        cfg: &MergeConfig,
        parts: usize,
    ) -> u32 {
        let largest = inputs.iter().map(|i| i.meta.size).max().unwrap_or(0);
        // A row group's uncompressed size: what decoding it takes.
        let largest_row_group = inputs
            .iter()
            .map(|i| i.footer.largest_row_group_bytes)
            .max()
            .unwrap_or(0);
        let bytes = inputs_held(store, inputs) * largest
            + largest_row_group
            + 2 * cfg.row_group_bytes
            + encoder_state_bytes(inputs);
        ((bytes * parts.max(1) as u64) >> 20).clamp(1, u64::from(self.total_mib)) as u32
    }

    async fn reserve(
        &self,
        store: &dyn Store,
        inputs: &[InputFile],
        cfg: &MergeConfig,
        parts: usize,
    ) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed, so this only fails in theory; run unbudgeted then.
        self.mib
            .acquire_many(self.estimate_mib(store, inputs, cfg, parts))
            .await
            .ok()
    }
}

/// What the encoder holds per column of the output, whatever the rows: the page being filled,
/// its dictionary, levels and statistics. Measured on tables of 200, 400 and 800 columns of
/// mixed types (one merge peaked at 71, 127 and 264 MiB): about 0.3 MiB a column, the largest
/// part of a wide table's merge (an 18-column one holds 6 MiB of it).
const ENCODER_BYTES_PER_COLUMN: u64 = 320 << 10;

/// The encoder's state for merging `inputs`: [`ENCODER_BYTES_PER_COLUMN`] for each leaf column
/// of the widest input.
fn encoder_state_bytes(inputs: &[InputFile]) -> u64 {
    let columns = inputs
        .iter()
        .map(|i| i.footer.schema.num_columns() as u64)
        .max()
        .unwrap_or(0);
    columns * ENCODER_BYTES_PER_COLUMN
}

/// The skip class of partitions another replica holds (or just compacted).
pub const LEASED: &str = "leased";

/// The skip class of work cut short by a shutdown.
pub const SHUTDOWN: &str = "shutdown";

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

/// One group; `None` when the run started draining before its turn.
async fn run_group(
    ctx: &Ctx<'_>,
    prefix: &str,
    group: &GroupPlan,
) -> Option<Result<GroupOutcome, MergeError>> {
    if ctx.stop.is_draining() {
        return None;
    }
    Some(execute_group(ctx, prefix, group).await)
}

async fn execute_group(
    ctx: &Ctx<'_>,
    prefix: &str,
    group: &GroupPlan,
) -> Result<GroupOutcome, MergeError> {
    let started = Instant::now();
    let inputs = read_inputs(
        ctx.store,
        &group.inputs,
        ctx.cfg.max_row_group_bytes,
        &ctx.cfg.work_dir,
    )
    .await?;
    tracing::debug!(
        files = inputs.len(),
        seconds = started.elapsed().as_secs_f32(),
        "footers read"
    );
    // The policy may choose the group's compression (checked when it answered). Chunks are
    // then only copied as they are (concat) when they already have that codec.
    let mut cfg = ctx.cfg.clone();
    if let Some(codec) = &group.compression {
        cfg.compression = crate::config::parse_compression(codec)
            .map_err(|e| MergeError::Write(format!("compression {codec:?}: {e}")))?;
        if cfg.mode == crate::merge::MergeMode::Concat {
            cfg.mode = crate::merge::MergeMode::Auto;
        }
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
        let stats = commit_set(ctx, &cfg, prefix, &members, set.schema).await?;
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
    ctx: &Ctx<'_>,
    cfg: &MergeConfig,
    prefix: &str,
    inputs: &[InputFile],
    schema: arrow_schema::SchemaRef,
) -> Result<MergeStats, MergeError> {
    let Ctx {
        store,
        progress,
        crash,
        stop,
        memory,
        ..
    } = *ctx;
    let metas: Vec<ObjectMeta> = inputs.iter().map(|i| i.meta.clone()).collect();
    let output = journal::output_key(prefix, &metas);
    let journal = Journal {
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

    // A merge slot for the merge itself (see `Ctx::merge_slots`). A shutdown that has begun,
    // or begins while this waits, leaves the inputs as they are: no merge starts once draining.
    let slot = tokio::select! {
        biased;
        () = stop.reached(Phase::Draining) => return Err(MergeError::Abandoned),
        slot = ctx.merge_slots.acquire() => slot,
    };
    // A merge larger than its share of what is left of the run is cut into parts, which take
    // the slots that are free or that free up (see `merge_to_spool`).
    let parts = Parts::of(inputs, cfg, progress, ctx.merge_slots);
    progress.set_message(prefix.to_string());
    // Held until the merged file is committed: merges beyond the budget wait their turn.
    let _memory = tokio::select! {
        permit = memory.reserve(ctx.store, inputs, cfg, parts.count) => permit,
        () = stop.reached(Phase::Abandoning) => return Err(MergeError::Abandoned),
    };
    let on_progress = {
        let progress = progress.clone();
        Arc::new(move |bytes| progress.inc(bytes))
    };
    let started = Instant::now();
    let (spool, stats) = merge_to_spool(
        store,
        inputs,
        schema,
        cfg,
        vec![journal.to_key_value()],
        &cfg.work_dir,
        on_progress,
        stop,
        parts,
    )
    .await?;
    drop(slot);
    tracing::debug!(
        files = inputs.len(),
        seconds = started.elapsed().as_secs_f32(),
        "merged into a temporary file"
    );
    let started = Instant::now();
    CrashPoint::AfterMerge.hit(crash);
    if let Some(delay) = crate::merge::spool::test_delay("COMPACTOR_TEST_SLOW_UPLOAD_MS") {
        tokio::time::sleep(delay).await;
    }

    lease_lost(ctx, "uploading")?;
    let uploaded = store.put_file(&output, spool.path()).await?;
    if let Err(reason) = journal::verify_output(store, &uploaded, &journal).await {
        // Roll back: the inputs stay, the bad output goes.
        let _ = store.delete_many(std::slice::from_ref(&output)).await;
        return Err(MergeError::Write(format!(
            "{output} failed verification: {reason}"
        )));
    }
    tracing::debug!(output = %output, seconds = started.elapsed().as_secs_f32(), "uploaded and verified");
    tracing::info!(output = %output, files = inputs.len(), rows = stats.rows, bytes = stats.bytes, "merged");
    let started = Instant::now();
    CrashPoint::AfterUpload.hit(crash);

    // Delete exactly the inputs that are unchanged since they were read. One listing of the
    // partition answers for all of them (one request per 1000 keys, not one per file), looked
    // up by key (10,000 inputs in a partition of 10,000 files: 10^8 comparisons otherwise).
    let listing = store.list(prefix).await?.objects;
    let now: HashMap<&str, &ObjectMeta> = listing.iter().map(|o| (o.key.as_str(), o)).collect();
    let mut unchanged = Vec::new();
    for meta in &metas {
        match now.get(meta.key.as_str()) {
            Some(o) if o.size == meta.size && o.etag == meta.etag => {
                unchanged.push(meta.key.clone())
            }
            Some(_) => {
                tracing::warn!(file = %meta.key, "changed while being merged; left in place")
            }
            None => tracing::warn!(file = %meta.key, "gone before it could be deleted"),
        }
    }
    lease_lost(ctx, "deleting inputs")?;
    if crash == Some(CrashPoint::MidDelete)
        && let Some(first) = unchanged.first()
    {
        let _ = store.delete_many(std::slice::from_ref(first)).await;
        CrashPoint::MidDelete.hit(crash);
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
    tracing::debug!(
        files = unchanged.len(),
        seconds = started.elapsed().as_secs_f32(),
        "inputs deleted"
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::store::LocalStore;

    /// A file of `columns` int64 columns and `rows` rows at `key`.
    fn write_table(root: &std::path::Path, key: &str, columns: usize, rows: i64) {
        let fields: Vec<Field> = (0..columns)
            .map(|c| Field::new(format!("c{c}"), DataType::Int64, false))
            .collect();
        let arrays: Vec<ArrayRef> = (0..columns)
            .map(|c| {
                Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|r| r * c as i64),
                )) as _
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// A wide table's merge reserves the encoder's state for each of its columns, though it
    /// holds no more rows than a narrow one's: 800 columns of 100 rows against 8 of 10,000.
    #[tokio::test]
    async fn a_wide_table_reserves_its_encoders_state() {
        let dir = tempfile::tempdir().unwrap();
        write_table(dir.path(), "narrow/part-0.parquet", 8, 10_000);
        write_table(dir.path(), "wide/part-0.parquet", 800, 100);
        let store = LocalStore::try_new(dir.path()).unwrap();
        let cfg = MergeConfig::default();
        let budget = MemoryBudget::new(16 << 30);
        let mut estimates = Vec::new();
        for table in ["narrow/", "wide/"] {
            let metas = store.list(table).await.unwrap().objects;
            let inputs = read_inputs(&store, &metas, u64::MAX, dir.path())
                .await
                .unwrap();
            estimates.push(budget.estimate_mib(&store, &inputs, &cfg, 1));
        }
        let per_column_mib = ENCODER_BYTES_PER_COLUMN as f64 / f64::from(1 << 20);
        let columns_mib = (792.0 * per_column_mib) as u32;
        assert!(
            estimates[1] >= estimates[0] + columns_mib,
            "{estimates:?}, {columns_mib} MiB for 792 more columns"
        );
    }
}

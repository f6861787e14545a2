//! Planning: walk each table's hive prefixes, ask the policy, and produce a [`CompactionPlan`]:
//! plain data that `compactor plan` prints and [`crate::compact`] carries out. Planning reads
//! listings and the footers of earlier merged files (for recovery); it never writes.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::journal::{self, Recovery};
use crate::layout::{DataFiles, Level, Partition, TableFormat, enclosing_prefixes, partition_keys};
use crate::policy::{Decision, PolicyPlugin};
use crate::store::{Listing, ObjectMeta, Store, StoreError};

/// Everything one run would do.
#[derive(Debug, Clone, Serialize)]
pub struct CompactionPlan {
    pub now_ms: i64,
    pub tables: Vec<TablePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    pub table: String,
    /// The table's prefix in the store.
    pub prefix: String,
    pub plugin: String,
    /// Prefixes the policy called hot, not listed.
    pub hot: Vec<String>,
    pub partitions: Vec<PartitionPlan>,
    /// What the table takes as data files (`*.parquet`).
    pub data_files: String,
    /// Visible files the walk found that are not data files by the table's `file_suffix`.
    #[serde(skip_serializing_if = "LeftAlone::is_empty")]
    pub not_data: LeftAlone,
    /// Data files in an archive storage class, unreadable until restored.
    #[serde(skip_serializing_if = "LeftAlone::is_empty")]
    pub archived: LeftAlone,
    /// Where the walk started: the table's prefix, or those a run was narrowed to.
    #[serde(skip)]
    pub walked_from: Vec<String>,
}

/// Files the walk left alone for one reason: how many, and the first by key, for a note.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeftAlone {
    pub count: usize,
    pub first: Option<String>,
}

impl LeftAlone {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add(&mut self, keys: Vec<String>) {
        self.count += keys.len();
        self.first = self.first.take().into_iter().chain(keys).min();
    }
}

/// One partition: first finish earlier runs' commits, then act on the decision.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionPlan {
    pub partition: Partition,
    pub files: usize,
    pub bytes: u64,
    pub recoveries: Vec<Recovery>,
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The policy said no; the reason is its own.
    Skip {
        reason: String,
    },
    /// Planning failed (listing, plugin); the partition is skipped and the run reports it.
    Failed {
        error: String,
    },
    Compact {
        groups: Vec<GroupPlan>,
    },
}

/// Files to merge into one output.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPlan {
    pub inputs: Vec<ObjectMeta>,
    pub target_size: u64,
    /// The policy's choice of compression (checked); `None`: `[merge] compression`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

impl GroupPlan {
    pub fn bytes(&self) -> u64 {
        self.inputs.iter().map(|f| f.size).sum()
    }
}

impl TablePlan {
    /// Notes on what the walk found, one line each: [`Self::nothing_found`], then the files it
    /// left alone.
    pub fn notes(&self) -> Vec<String> {
        self.nothing_found()
            .into_iter()
            .chain(self.left_alone())
            .collect()
    }

    /// A note when the walk found no file at all: most often a table's prefix that is not the
    /// one its writers use, which would otherwise pass as a run with nothing to do.
    fn nothing_found(&self) -> Option<String> {
        let empty = self.hot.is_empty()
            && self.partitions.is_empty()
            && self.not_data.count == 0
            && self.archived.count == 0;
        empty.then(|| {
            format!(
                "no file found under {}: if data is expected there, check the prefix",
                self.walked_from.join(", ")
            )
        })
    }

    /// Notes on the files the walk left alone.
    fn left_alone(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if let Some(first) = &self.not_data.first {
            let n = self.not_data.count;
            notes.push(format!(
                "{n} other file{} left alone, not named {} (first: {first}); if they are Parquet \
                 named otherwise (Hive's 000000_0, Trino, Flink), set this table's file_suffix \
                 (\"\" takes every visible file)",
                plural(n),
                self.data_files
            ));
        }
        if let Some(first) = &self.archived.first {
            let n = self.archived.count;
            notes.push(format!(
                "{n} data file{} left alone in an archive storage class (first: {first}): S3 \
                 cannot read them until they are restored",
                plural(n)
            ));
        }
        notes
    }
}

/// A table with its loaded policy.
#[derive(Clone)]
pub struct TableSpec {
    pub name: String,
    pub prefix: String,
    /// Where the walk starts: the table's prefix, or the prefixes inside it that a run was
    /// narrowed to ([`TableSpec::narrowed_to`]).
    pub walk_from: Vec<String>,
    pub data_files: DataFiles,
    pub plugin: Arc<PolicyPlugin>,
}

impl TableSpec {
    /// The table as a run narrowed to `prefixes` (directories, each empty or ending in `/`)
    /// sees it: whole when one of them encloses its prefix, else walked from those inside it
    /// (the outermost of nested ones); `None` when none concerns it.
    pub fn narrowed_to(mut self, prefixes: &[String]) -> Option<TableSpec> {
        if prefixes.iter().any(|p| self.prefix.starts_with(p.as_str())) {
            return Some(self);
        }
        let mut inside: Vec<String> = prefixes
            .iter()
            .filter(|p| p.starts_with(&self.prefix))
            .cloned()
            .collect();
        inside.sort();
        inside.dedup_by(|deeper, outer| deeper.starts_with(outer.as_str()));
        self.walk_from = inside;
        (!self.walk_from.is_empty()).then_some(self)
    }
}

/// Plans every table.
pub async fn plan(store: &dyn Store, tables: &[TableSpec], now_ms: i64) -> CompactionPlan {
    let mut plan = CompactionPlan {
        now_ms,
        tables: Vec::new(),
    };
    for table in tables {
        plan.tables.push(plan_table(store, table, now_ms).await);
    }
    plan
}

/// Plugin calls running at once, over the whole process: one per core. Prefixes are visited
/// several at once on S3, and each call runs a fresh instance that may use up to the plugin's
/// memory limit, so more calls than cores would only multiply memory.
static PLUGIN_CALLS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
});

async fn call_policy<R: Send + 'static>(
    plugin: &Arc<PolicyPlugin>,
    f: impl FnOnce(&PolicyPlugin) -> Result<R, crate::policy::PolicyError> + Send + 'static,
) -> Result<R, String> {
    let _call = PLUGIN_CALLS
        .acquire()
        .await
        .map_err(|e| format!("plugin call failed: {e}"))?;
    // Plugin calls are short and fuel-bounded, but CPU work: keep them off the reactor.
    let plugin = plugin.clone();
    tokio::task::spawn_blocking(move || f(&plugin))
        .await
        .map_err(|e| format!("plugin call failed: {e}"))?
        .map_err(|e| e.to_string())
}

async fn plan_table(store: &dyn Store, table: &TableSpec, now_ms: i64) -> TablePlan {
    let mut out = TablePlan {
        table: table.name.clone(),
        prefix: table.prefix.clone(),
        plugin: format!(
            "{} {}, compaction:policy@{}",
            table.plugin.name, table.plugin.version, table.plugin.wit_version
        ),
        hot: Vec::new(),
        partitions: Vec::new(),
        data_files: table.data_files.describe(),
        not_data: LeftAlone::default(),
        archived: LeftAlone::default(),
        walked_from: table.walk_from.clone(),
    };
    // Prefixes are visited several at once on a store that gains from it (each listing waits
    // a round trip on S3: a year of hourly partitions is 8,760 of them), then put back in key
    // order, which is the order of a depth-first walk: a prefix sorts before everything below
    // it, and everything below it before its next sibling.
    let mut waiting = std::collections::VecDeque::new();
    let refusals = enclosing_table_refusals(store, table).await;
    for (start, refusal) in table.walk_from.iter().zip(refusals) {
        match refusal {
            None => waiting.push_back(start.clone()),
            Some(refusal) => {
                let partition = Partition {
                    table: table.name.clone(),
                    prefix: start.clone(),
                    keys: partition_keys(&table.prefix, start),
                };
                out.partitions.push(failed(partition, refusal));
            }
        }
    }
    let mut visiting = futures::stream::FuturesUnordered::new();
    let at_once = store.reads_at_once().max(1);
    loop {
        while visiting.len() < at_once
            && let Some(prefix) = waiting.pop_front()
        {
            visiting.push(visit(store, table, prefix, now_ms));
        }
        let Some(visited) = visiting.next().await else {
            break;
        };
        match visited {
            Visited::Hot(prefix) => out.hot.push(prefix),
            Visited::Listed {
                partition,
                others,
                archived,
                below,
            } => {
                waiting.extend(below);
                out.partitions.extend(partition);
                out.not_data.add(others);
                out.archived.add(archived);
            }
        }
    }
    if let Some(note) = out.nothing_found() {
        tracing::warn!(table = %table.name, "{note}");
    }
    for note in out.left_alone() {
        tracing::info!(table = %table.name, "{note}");
    }
    out.hot.sort();
    out.partitions
        .sort_by(|a, b| a.partition.prefix.cmp(&b.partition.prefix));
    out
}

/// What planning found at one prefix.
enum Visited {
    /// The policy called it hot: not listed.
    Hot(String),
    /// Listed (or failed): the partition's plan when it holds data files or failed, the files
    /// left alone (not data, archived), and the prefixes below it.
    Listed {
        partition: Option<PartitionPlan>,
        others: Vec<String>,
        archived: Vec<String>,
        below: Vec<String>,
    },
}

async fn visit(store: &dyn Store, table: &TableSpec, prefix: String, now_ms: i64) -> Visited {
    let partition = Partition {
        table: table.name.clone(),
        keys: partition_keys(&table.prefix, &prefix),
        prefix: prefix.clone(),
    };
    let failed_with = |partition, error| Visited::Listed {
        partition: Some(failed(partition, error)),
        others: Vec::new(),
        archived: Vec::new(),
        below: Vec::new(),
    };
    let p = partition.clone();
    match call_policy(&table.plugin, move |pl| pl.is_cold(&p, now_ms)).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(partition = %prefix, "hot, not listed");
            return Visited::Hot(prefix);
        }
        Err(error) => return failed_with(partition, error),
    }
    let listing = match store.list(&prefix).await {
        Ok(listing) => listing,
        Err(e) => return failed_with(partition, format!("listing failed: {e}")),
    };
    // Checked at every prefix walked, so a table of such a format kept below the configured
    // prefix is found too; it costs nothing but a listing of an Iceberg candidate's `metadata/`.
    if let Some(refusal) = table_format_refusal(store, &listing).await {
        return failed_with(partition, refusal);
    }
    let Level {
        files,
        others,
        archived,
        below,
    } = Level::of(listing, &table.data_files);
    let partition = if files.is_empty() {
        None
    } else {
        Some(plan_partition(store, table, partition, files, now_ms).await)
    };
    Visited::Listed {
        partition,
        others,
        archived,
        below,
    }
}

/// Why a prefix whose listing shows the root of a Delta Lake, Hudi or Iceberg table must not be
/// compacted (see [`TableFormat`]), or `None` for plain Parquet. Nothing at or below it is
/// touched, and the run reports it as failed: a table of this kind in compactor's config is a
/// mistake to fix, not a partition to pass over quietly every hour.
async fn table_format_refusal(store: &dyn Store, listing: &Listing) -> Option<String> {
    for sub in &listing.prefixes {
        match format_marked_by(store, sub).await {
            Ok(None) => {}
            Ok(Some(format)) => return Some(refusal(sub, format, None)),
            Err(e) => {
                return Some(format!(
                    "listing {sub} failed ({}), so whether this is an Iceberg table's metadata \
                     is unknown",
                    e.reason()
                ));
            }
        }
    }
    None
}

/// The same refusal for a table whose walk starts inside such a table (a configured prefix
/// at an Iceberg table's `data/` or one partition of a Delta table, or a `--prefix` there):
/// for each start, in `walk_from`'s order, the refusal if it has one. Each enclosing prefix is
/// asked for each marker, one request apiece, all at once, and once however many starts lie
/// below it. A store that denies these listings (a policy that allows listing the table's
/// prefix only) cannot tell, which is logged and let pass: the check guards against a
/// mistaken prefix, and must not stop every run of a deployment locked down on purpose.
async fn enclosing_table_refusals(store: &dyn Store, table: &TableSpec) -> Vec<Option<String>> {
    let markers_above = |start: &str| -> Vec<String> {
        enclosing_prefixes(start)
            .iter()
            .flat_map(|root| TableFormat::MARKERS.map(|marker| format!("{root}{marker}")))
            .collect()
    };
    let candidates: std::collections::BTreeSet<String> = table
        .walk_from
        .iter()
        .flat_map(|start| markers_above(start))
        .collect();
    let checks = candidates.iter().map(|sub| async move {
        match store.holds_objects(sub).await? {
            false => Ok(None),
            true => format_marked_by(store, sub).await,
        }
    });
    let found: std::collections::HashMap<&String, Result<Option<TableFormat>, StoreError>> =
        candidates
            .iter()
            .zip(futures::future::join_all(checks).await)
            .collect();
    table
        .walk_from
        .iter()
        .map(|start| {
            let subs = markers_above(start);
            enclosing_table_refusal(table, start, subs.iter().map(|sub| (sub, &found[sub])))
        })
        .collect()
}

/// One start's verdict from the answers about the markers above it, nearest the root first.
fn enclosing_table_refusal<'a>(
    table: &TableSpec,
    prefix: &str,
    answers: impl Iterator<Item = (&'a String, &'a Result<Option<TableFormat>, StoreError>)>,
) -> Option<String> {
    let (mut unknown, mut denied) = (None, None);
    for (sub, found) in answers {
        match found {
            Ok(None) => {}
            Ok(Some(format)) => return Some(refusal(sub, *format, Some(prefix))),
            Err(e @ StoreError::Denied { .. }) => denied = denied.or(Some((sub, e))),
            Err(e) => unknown = unknown.or(Some((sub, e))),
        }
    }
    if let Some((sub, e)) = unknown {
        return Some(format!(
            "listing {sub} failed ({}), so whether {prefix} lies inside a Delta Lake, Hudi or \
             Iceberg table is unknown",
            e.reason(),
        ));
    }
    if let Some((sub, e)) = denied {
        tracing::warn!(
            table = %table.name,
            "cannot tell whether {prefix} lies inside a Delta Lake, Hudi or Iceberg table: \
             listing {sub} was denied ({}); compacting it as plain Parquet. Allow listing the \
             prefixes above it to have this checked",
            e.reason()
        );
    }
    None
}

/// The format whose marker directory `sub` is, if it is one: by its name, and for Iceberg's
/// common name `metadata/` by a listing that shows table metadata in it.
async fn format_marked_by(store: &dyn Store, sub: &str) -> Result<Option<TableFormat>, StoreError> {
    let Some(format) = TableFormat::marked_by(sub) else {
        return Ok(None);
    };
    if format == TableFormat::Iceberg {
        let metadata = store.list(sub).await?;
        if !metadata
            .objects
            .iter()
            .any(|o| TableFormat::is_iceberg_metadata(&o.key))
        {
            return Ok(None);
        }
    }
    Ok(Some(format))
}

/// The refusal's words: the marker, the format, and what to do instead.
fn refusal(sub: &str, format: TableFormat, configured_inside: Option<&str>) -> String {
    let inside = configured_inside
        .map(|prefix| format!(" that holds {prefix}"))
        .unwrap_or_default();
    format!(
        "{sub} shows a table kept by {format}{inside}: its data files are listed in {format}'s \
         own log or metadata, and merging them behind its back would break the table for its \
         readers; compact it with {}, or point this table's prefix at plain hive-partitioned \
         Parquet",
        format.own_compaction()
    )
}

fn failed(partition: Partition, error: String) -> PartitionPlan {
    PartitionPlan {
        partition,
        files: 0,
        bytes: 0,
        recoveries: Vec::new(),
        action: Action::Failed { error },
    }
}

async fn plan_partition(
    store: &dyn Store,
    table: &TableSpec,
    partition: Partition,
    files: Vec<ObjectMeta>,
    now_ms: i64,
) -> PartitionPlan {
    let (count, bytes) = (files.len(), files.iter().map(|f| f.size).sum());
    let recoveries = match journal::detect(store, &files).await {
        Ok(recoveries) => recoveries,
        Err(error) => {
            return PartitionPlan {
                partition,
                files: count,
                bytes,
                recoveries: Vec::new(),
                action: Action::Failed { error },
            };
        }
    };
    // Files an unfinished commit touches wait for the next run, after the recovery.
    let pending: HashSet<&str> = recoveries.iter().flat_map(|r| r.keys()).collect();
    let candidates: Vec<ObjectMeta> = files
        .iter()
        .filter(|f| !pending.contains(f.key.as_str()))
        .cloned()
        .collect();

    let (p, c) = (partition.clone(), candidates.clone());
    let action = match call_policy(&table.plugin, move |pl| pl.plan(&p, &c, now_ms)).await {
        Err(error) => Action::Failed { error },
        Ok(Decision::Skip(reason)) => Action::Skip { reason },
        Ok(Decision::Compact(groups)) if groups.is_empty() => Action::Skip {
            reason: "the policy chose no groups".into(),
        },
        Ok(Decision::Compact(groups)) => Action::Compact {
            groups: groups
                .into_iter()
                .map(|g| GroupPlan {
                    inputs: g
                        .files
                        .iter()
                        .map(|&i| candidates[i as usize].clone())
                        .collect(),
                    target_size: g.target_size,
                    compression: g.compression,
                })
                .collect(),
        },
    };
    PartitionPlan {
        partition,
        files: count,
        bytes,
        recoveries,
        action,
    }
}

impl std::fmt::Display for CompactionPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::summary::human_bytes;
        for t in &self.tables {
            writeln!(f, "table {} (plugin {})", t.table, t.plugin)?;
            for prefix in &t.hot {
                writeln!(f, "  {prefix}: hot, not listed")?;
            }
            for p in &t.partitions {
                let head = format!(
                    "  {}: {} files, {}",
                    p.partition.prefix,
                    p.files,
                    human_bytes(p.bytes)
                );
                for r in &p.recoveries {
                    writeln!(f, "{head}: would first finish an earlier run: {r:?}")?;
                }
                match &p.action {
                    Action::Skip { reason } => writeln!(f, "{head}: skip ({reason})")?,
                    Action::Failed { error } => writeln!(f, "{head}: FAILED ({error})")?,
                    Action::Compact { groups } => {
                        writeln!(f, "{head}: compact {} group(s)", groups.len())?;
                        for g in groups {
                            writeln!(
                                f,
                                "    {} files, {} -> 1 file (target {}{})",
                                g.inputs.len(),
                                human_bytes(g.bytes()),
                                human_bytes(g.target_size),
                                g.compression
                                    .as_ref()
                                    .map(|c| format!(", compression {c}"))
                                    .unwrap_or_default()
                            )?;
                        }
                    }
                }
            }
            for note in t.notes() {
                writeln!(f, "  {note}")?;
            }
        }
        Ok(())
    }
}

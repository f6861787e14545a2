//! `compactor merge IN_DIR OUT_DIR`: the merge engine on a plain directory tree, with no policy,
//! journal or deletes. The Parquet files of every directory under `IN_DIR` are cut into runs of
//! about the target size (the default policy's even split: each output lands between the target
//! and twice it when the data allows) and each run is merged into one file under the same
//! relative path in `OUT_DIR`. A tool on its own, and what the benchmark harness runs; the
//! engine is exactly the one `once` uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::app::UsageError;
use crate::config::MergeConfig;
use crate::layout::{DataFiles, Level};
use crate::merge::MergeError;
use crate::merge::footer::{InputFile, read_inputs};
use crate::merge::schema::split_compatible;
use crate::merge::spool::{Parts, merge_to_spool};
use crate::shutdown::{Phase, Stop};
use crate::store::{LocalStore, ObjectMeta, Store};

/// What `compactor merge` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MergeDirSummary {
    pub directories: u64,
    pub files_in: u64,
    pub bytes_in: u64,
    pub files_out: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Each output that could not be written, with the file and the reason.
    pub failed: Vec<String>,
    /// Stopped by a signal: the outputs not finished by then were not written.
    pub interrupted: bool,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl std::fmt::Display for MergeDirSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::summary::human_bytes;
        writeln!(
            f,
            "merged {} file{} ({}) in {} director{} into {} file{} ({}), {} rows, {:.2}s",
            self.files_in,
            if self.files_in == 1 { "" } else { "s" },
            human_bytes(self.bytes_in),
            self.directories,
            if self.directories == 1 { "y" } else { "ies" },
            self.files_out,
            if self.files_out == 1 { "" } else { "s" },
            human_bytes(self.bytes_out),
            self.rows,
            self.elapsed.as_secs_f64()
        )?;
        for failure in &self.failed {
            writeln!(f, "  failed  {failure}")?;
        }
        if self.interrupted {
            writeln!(
                f,
                "  interrupted: outputs not finished were not written (nor left half-written)"
            )?;
        }
        Ok(())
    }
}

/// Every directory (as a store prefix) under the store's root with its data files.
async fn directories(
    store: &dyn Store,
    data_files: &DataFiles,
) -> anyhow::Result<Vec<(String, Vec<ObjectMeta>)>> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(prefix) = stack.pop() {
        let Level { files, below, .. } = Level::of(store.list(&prefix).await?, data_files);
        stack.extend(below.into_iter().rev());
        if !files.is_empty() {
            out.push((prefix, files));
        }
    }
    Ok(out)
}

/// One output file's worth of inputs.
struct Job {
    prefix: String,
    inputs: Vec<ObjectMeta>,
    /// Its number within the directory, for the output's name.
    number: usize,
}

/// Merges the data files (by `data_files`) of each directory under `input` into files of
/// about `target_bytes` under the same relative paths in `output`.
pub async fn merge_dir(
    input: &Path,
    output: &Path,
    target_bytes: u64,
    data_files: &DataFiles,
    cfg: &MergeConfig,
    stop: &Stop,
) -> anyhow::Result<MergeDirSummary> {
    let started = Instant::now();
    crate::app::existing_directory(input, "IN_DIR")?;
    let store =
        LocalStore::try_new(input).with_context(|| format!("opening {}", input.display()))?;
    let input_root = store.root().to_path_buf();
    let store: Arc<dyn Store> = Arc::new(store);
    let listed = directories(store.as_ref(), data_files).await?;
    if listed.is_empty() {
        let which = match data_files.suffix() {
            "" => String::new(),
            suffix => format!(" (names ending in {suffix}; --file-suffix chooses others)"),
        };
        tracing::warn!("no data files under {}{which}", input.display());
    }
    check_output(
        &input_root,
        output,
        listed.iter().map(|(p, _)| p),
        data_files,
    )?;
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let mut summary = MergeDirSummary::default();
    let mut jobs = Vec::new();
    for (prefix, files) in listed {
        summary.directories += 1;
        let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        for (number, run) in compactor_plugin_sdk::split_even(&sizes, target_bytes)
            .into_iter()
            .enumerate()
        {
            jobs.push(Job {
                prefix: prefix.clone(),
                inputs: files[run].to_vec(),
                number,
            });
        }
    }
    let total: u64 = jobs.iter().flat_map(|j| &j.inputs).map(|m| m.size).sum();
    let progress = crate::compact::progress_bar(total);
    let slots = tokio::sync::Semaphore::new(cfg.parallelism.max(1));
    let results: Vec<anyhow::Result<MergeDirSummary>> = futures::stream::iter(jobs)
        .map(|job| merge_job(store.as_ref(), job, output, cfg, &slots, &progress, stop))
        .buffer_unordered(cfg.parallelism.max(1))
        .collect()
        .await;
    progress.finish_and_clear();
    // One failed output (a corrupt input, a full disk) does not stop the others; each is listed.
    for partial in results {
        let p = match partial {
            Ok(p) => p,
            Err(e) if is_abandoned(&e) => continue,
            Err(e) => {
                summary.failed.push(format!("{e:#}"));
                continue;
            }
        };
        summary.files_in += p.files_in;
        summary.bytes_in += p.bytes_in;
        summary.files_out += p.files_out;
        summary.bytes_out += p.bytes_out;
        summary.rows += p.rows;
    }
    summary.failed.sort();
    summary.interrupted = stop.is_draining();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Refuses an `output` where merged files would mix with other data, checked before anything
/// is written:
/// * among the inputs (`output` is `input`, lies inside it, or a directory below `output` is
///   one of the inputs'): a merged file would replace an input of the same name, and the next
///   merge of `input` would read merged rows again;
/// * beside data files already in an output directory (an earlier merge's, say): fewer outputs
///   this time would leave some of the old ones, and their rows twice.
fn check_output<'a>(
    input_root: &Path,
    output: &Path,
    prefixes: impl Iterator<Item = &'a String>,
    data_files: &DataFiles,
) -> anyhow::Result<()> {
    let output = resolve(output).with_context(|| format!("resolving {}", output.display()))?;
    for prefix in prefixes {
        let dir = output.join(prefix);
        if dir.starts_with(input_root) {
            return Err(UsageError(format!(
                "OUT_DIR {} would put merged files in {}, inside IN_DIR {}: they would replace \
                 inputs of the same name and be read again by the next merge. Choose an OUT_DIR \
                 outside IN_DIR",
                output.display(),
                dir.display(),
                input_root.display()
            ))
            .into());
        }
        if let Some(found) = first_data_file(&dir, data_files)? {
            return Err(UsageError(format!(
                "{} already holds data files ({found}, ...): merged files beside them would mix \
                 with their rows. Empty it or choose another OUT_DIR",
                dir.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// The first data file directly in `dir`, if it exists.
fn first_data_file(dir: &Path, data_files: &DataFiles) -> anyhow::Result<Option<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|t| t.is_file()) && data_files.matches(&name) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// `path` made absolute with its symbolic links followed, though its last components may not
/// exist yet: the longest existing ancestor is canonicalized and the rest applied to it. A `..`
/// in the rest steps back lexically, as it will once those directories are created.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let mut rest = Vec::new();
    let mut existing = absolute.as_path();
    let mut resolved = loop {
        match existing.canonicalize() {
            Ok(found) => break found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(last), Some(parent)) =
                    (existing.components().next_back(), existing.parent())
                else {
                    return Err(e);
                };
                rest.push(last);
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    };
    for component in rest.into_iter().rev() {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => resolved.push(name),
            _ => {}
        }
    }
    Ok(resolved)
}

fn is_abandoned(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<MergeError>(), Some(MergeError::Abandoned))
}

async fn merge_job(
    store: &dyn Store,
    job: Job,
    output: &Path,
    cfg: &MergeConfig,
    slots: &tokio::sync::Semaphore,
    progress: &indicatif::ProgressBar,
    stop: &Stop,
) -> anyhow::Result<MergeDirSummary> {
    let inputs = read_inputs(store, &job.inputs, cfg.max_row_group_bytes, &cfg.work_dir).await?;
    let dir: PathBuf = output.join(&job.prefix);
    let (sets, notes) = split_compatible(&inputs);
    for note in notes {
        tracing::warn!("{note}");
    }
    let mut out = MergeDirSummary::default();
    for (i, set) in sets.into_iter().enumerate() {
        let members: Vec<InputFile> = set.inputs.iter().map(|&i| inputs[i].clone()).collect();
        let on_progress = {
            let progress = progress.clone();
            Arc::new(move |bytes| progress.inc(bytes))
        };
        // As in `compact`: one slot for the merge, and parts when it is larger than its share.
        // Once a signal came, no merge starts.
        let _slot = tokio::select! {
            slot = slots.acquire() => slot?,
            () = stop.reached(Phase::Draining) => return Err(MergeError::Abandoned.into()),
        };
        let parts = Parts::of(&members, cfg, progress, slots);
        let (spool, stats) = merge_to_spool(
            store,
            &members,
            set.schema,
            cfg,
            Vec::new(),
            &dir,
            on_progress,
            stop,
            parts,
        )
        .await?;
        let suffix = if i == 0 {
            String::new()
        } else {
            format!("-{i}")
        };
        let name = dir.join(format!("part-{:05}{suffix}.parquet", job.number));
        crate::store::local::give_new_file_mode(spool.path())
            .with_context(|| format!("writing {}", name.display()))?;
        spool
            .persist(&name)
            .with_context(|| format!("writing {}", name.display()))?;
        out.files_in += members.len() as u64;
        out.bytes_in += members.iter().map(|m| m.meta.size).sum::<u64>();
        out.files_out += 1;
        out.bytes_out += stats.bytes;
        out.rows += stats.rows;
    }
    Ok(out)
}

//! One merge in parts: a group's inputs cut into consecutive runs, each merged into a file of
//! its own at once on a core of its own, and the parts' row groups then copied one after the
//! other into the merged file, with their statistics, page indexes and bloom filters.
//!
//! A merge alone, decoding on one thread and encoding on another ([`super::Decoding::Ahead`]),
//! keeps only 1.3 of 2 cores busy: the encoder is about two thirds of the work. A merge larger
//! than its share of the run's work (the usual hourly run: one partition has just gone cold,
//! alone or beside smaller ones) is cut into parts, which take the spare slots, and those that
//! smaller merges leave; each part decodes on the thread that encodes it.

use std::ops::Range;
use std::path::Path;

use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaDataReader};

use super::MergeError;
use super::concat::{append_row_groups, new_writer};
use super::footer::InputFile;
use super::rewrite::MergeStats;
use crate::config::MergeConfig;

/// The merge slots (of `parallelism`) a merge of `bytes` may use when `left` bytes are still
/// to merge in the run, this merge's included: its share of them by size, rounded, so that a
/// merge about as large as the others takes one slot, a lone merge all of them, and a large
/// merge beside small ones the slots they leave when they end.
pub fn slots_for(bytes: u64, left: u64, parallelism: usize) -> usize {
    let parallelism = parallelism.max(1) as u128;
    let left = u128::from(left.max(bytes).max(1));
    let share = (u128::from(bytes) * parallelism * 2 + left) / (2 * left);
    share.clamp(1, parallelism) as usize
}

/// Into how many parts (at most `slots`) to cut a merge of `inputs`: each part at least half a
/// row group of input bytes, so that what a part adds (row groups cut to its own rows, not the
/// whole merge's) stays small, and none when the merge copies column chunks (concat: bound by
/// the disk).
pub fn useful_parts(inputs: &[InputFile], cfg: &MergeConfig, slots: usize) -> usize {
    if slots <= 1 || super::concat::applies(inputs, cfg).is_ok() {
        return 1;
    }
    let bytes: u64 = inputs.iter().map(|i| i.meta.size).sum();
    let by_size = bytes / (cfg.row_group_bytes / 2).max(1);
    slots
        .min(usize::try_from(by_size).unwrap_or(usize::MAX))
        .min(inputs.len())
        .max(1)
}

/// Inputs of `sizes` cut into `parts` consecutive runs of nearly equal bytes (fewer when a
/// few large files leave no even cut).
pub fn cut(sizes: &[u64], parts: usize) -> Vec<Range<usize>> {
    let total: u64 = sizes.iter().map(|&s| s.max(1)).sum();
    let share = (total / parts.max(1) as u64).max(1);
    let sizes: Vec<u64> = sizes.iter().map(|&s| s.max(1)).collect();
    compactor_plugin_sdk::split_even(&sizes, share)
}

/// Copies the row groups of the files `parts` (merged from consecutive runs of one group's
/// inputs, with one schema), in order, into a new file at `dest`, adding `metadata` to the
/// first part's footer metadata.
pub fn stitch(
    parts: &[&Path],
    metadata: Vec<KeyValue>,
    dest: &Path,
) -> Result<MergeStats, MergeError> {
    let mut output = Some((super::create_output(dest)?, metadata));
    let mut writer = None;
    let mut rows = 0u64;
    for part in parts {
        let name = part.display().to_string();
        let unreadable = |e: &dyn std::fmt::Display| MergeError::Write(format!("{name}: {e}"));
        let file = std::fs::File::open(part).map_err(|e| unreadable(&e))?;
        let len = file.metadata().map_err(|e| unreadable(&e))?.len();
        let footer = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&file)
            .map_err(|e| unreadable(&e))?;
        if let Some((file, metadata)) = output.take() {
            writer = Some(new_writer(&footer, metadata, file)?);
        }
        let Some(writer) = writer.as_mut() else {
            unreachable!("made for the first part")
        };
        if footer.file_metadata().schema_descr().root_schema()
            != writer.schema_descr().root_schema()
        {
            return Err(unreadable(&"its schema differs from the first part's"));
        }
        rows += append_row_groups(writer, &file, len, &footer, &name)?;
    }
    let writer = writer.ok_or_else(|| MergeError::Write("no parts to stitch".into()))?;
    let written = writer
        .close()
        .map_err(|e| MergeError::Write(e.to_string()))?;
    MergeStats::of_file(dest, rows, &written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_cut_into_runs_of_nearly_equal_bytes() {
        let mib = 1u64 << 20;
        let sizes = vec![mib; 200];
        assert_eq!(cut(&sizes, 2), vec![0..100, 100..200]);
        let runs = cut(&sizes, 7);
        assert_eq!(runs.len(), 7);
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 200);
        assert!(
            runs.iter().all(|r| (28..=29).contains(&r.len())),
            "{runs:?}"
        );
        // Sizes vary: the cut follows the bytes, not the count.
        let sizes = [8 * mib, mib, mib, mib, mib, mib, mib, mib, mib];
        assert_eq!(cut(&sizes, 2), vec![0..1, 1..9]);
        // One large file among small ones: fewer runs, never an empty one.
        let runs = cut(&[100 * mib, mib, mib], 3);
        assert!(runs.iter().all(|r| !r.is_empty()), "{runs:?}");
        assert_eq!(runs.first().map(|r| r.start), Some(0));
        assert_eq!(runs.last().map(|r| r.end), Some(3));
        // Empty files still count as one byte, so every file lands in a run.
        assert_eq!(cut(&[0, 0, 0, 0], 2), vec![0..2, 2..4]);
        assert_eq!(cut(&[mib], 4), vec![0..1]);
    }

    #[test]
    fn a_merge_takes_its_share_of_the_slots_by_size() {
        // Alone: every slot.
        assert_eq!(slots_for(100, 100, 2), 2);
        assert_eq!(slots_for(100, 0, 2), 2);
        // One of two (or of four) alike: one slot.
        assert_eq!(slots_for(100, 200, 2), 1);
        assert_eq!(slots_for(100, 400, 2), 1);
        // The last of four alike, starting while the one before is just under way: still one.
        assert_eq!(slots_for(234, 454, 2), 1);
        // Beside a small one: the slot the small one leaves too.
        assert_eq!(slots_for(1000, 1050, 2), 2);
        assert_eq!(slots_for(750, 1000, 2), 2);
        assert_eq!(slots_for(600, 1000, 2), 1);
        assert_eq!(slots_for(300, 1000, 8), 2);
        assert_eq!(slots_for(100, 100, 0), 1);
    }
}

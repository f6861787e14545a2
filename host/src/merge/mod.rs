//! Merging Parquet files: read every input's footer ([`footer`]), unify their schemas or split
//! them into compatible sets ([`schema`]), then stream the rows into one new file
//! ([`rewrite`]). Inputs are decoded one at a time, so memory is bounded by a file, a batch and
//! the row group being written, whatever the size of the partition.

pub mod concat;
mod encoding;
pub mod footer;
pub mod rewrite;
mod row_groups;
pub mod schema;
pub mod spill;
pub mod spool;
pub mod stitch;

use std::path::Path;

use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::file::metadata::KeyValue;

use crate::config::MergeConfig;
use crate::store::StoreError;
use footer::InputFile;
use rewrite::MergeStats;

/// How merged files are written (`[merge] mode`, `compactor merge --mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MergeMode {
    /// Decode every row and encode it anew: target-sized row groups, one codec, page indexes.
    #[default]
    Rewrite,
    /// Copy column chunks without decoding when the inputs share one schema; else rewrite.
    Concat,
    /// Concat when it gives as good a file (same schema and codec, row groups already large),
    /// else rewrite.
    Auto,
}

/// Where a merge's input data comes from, one file after another in the inputs' order.
pub type NextInput<'a> = dyn FnMut() -> Option<Result<Bytes, MergeError>> + Send + 'a;

/// The data of the input `key`, next from `next_input` (which yields them in order).
fn next_data(next_input: &mut NextInput<'_>, key: &str) -> Result<Bytes, MergeError> {
    next_input().unwrap_or_else(|| {
        Err(MergeError::Write(format!(
            "{key}: input data did not arrive"
        )))
    })
}

/// A merged file being written.
type Output = std::io::BufWriter<std::fs::File>;

/// Creates the output file behind a 1 MiB buffer: parquet's own writer buffers 8 KiB, and a
/// copied column chunk would otherwise go out in 8 KiB system calls.
fn create_output(dest: &Path) -> Result<Output, MergeError> {
    std::fs::File::create(dest)
        .map(|file| std::io::BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| MergeError::Write(format!("{}: {e}", dest.display())))
}

/// Writes the merge of `inputs` (their data from `next_input`, in order) to `dest`, by
/// concatenating column chunks where [`concat::applies`], else by rewriting rows.
pub fn write_output(
    inputs: &[InputFile],
    schema: SchemaRef,
    next_input: &mut NextInput<'_>,
    cfg: &MergeConfig,
    metadata: Vec<KeyValue>,
    dest: &Path,
    on_progress: &dyn Fn(u64),
) -> Result<MergeStats, MergeError> {
    match concat::applies(inputs, cfg) {
        Ok(()) => concat::concat_to_file(inputs, next_input, metadata, dest, on_progress),
        Err(why) => {
            if cfg.mode != MergeMode::Rewrite {
                tracing::debug!(files = inputs.len(), "rewriting, not concatenating: {why}");
            }
            rewrite::merge_to_file(inputs, schema, next_input, cfg, metadata, dest, on_progress)
        }
    }
}

/// Why a set of files could not be merged. Every variant names the object(s) concerned.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{key}: {reason}")]
    Unreadable { key: String, reason: String },
    #[error(
        "{key}: row group {row_group} decompresses to {bytes} bytes, over the {limit}-byte limit \
         ([merge] max_row_group_bytes); refused to protect memory"
    )]
    TooLarge {
        key: String,
        row_group: usize,
        bytes: u64,
        limit: u64,
    },
    #[error(
        "{key}: decoded {decoded} rows but its row groups hold {expected}; refused, since \
         deleting it would lose rows"
    )]
    RowCountMismatch {
        key: String,
        expected: u64,
        decoded: u64,
    },
    #[error("writing the merged file: {0}")]
    Write(String),
    /// The merge is committed, but the store kept some inputs: their rows are in the merged
    /// file too until the next run's recovery deletes them.
    #[error(
        "merged into {output}, but {count} input(s) could not be deleted, first {key} ({reason}); \
         the next run deletes them"
    )]
    NotDeleted {
        output: String,
        key: String,
        reason: String,
        count: usize,
    },
    /// The partition's lease was lost (renewal failed, or it expired): another replica may
    /// take the partition over, so this one stops before the next step.
    #[error(
        "the partition's lease was lost (not renewed in time); stopped before {before}, \
         the next run finishes the work"
    )]
    LeaseLost { before: String },
    /// A shutdown's grace period ended while this merge was being written; nothing was
    /// uploaded and no input deleted.
    #[error("abandoned at shutdown before upload; its files were left in place")]
    Abandoned,
    #[error(transparent)]
    Store(#[from] StoreError),
}

thread_local! {
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside [`catch_panic`], so a panic hook can tell an expected
/// decoder panic (reported as a refusal) from a bug.
pub fn catching_panics() -> bool {
    CATCHING.with(|c| c.get())
}

/// Runs `f`, turning a panic inside the Parquet decoder into an error naming `key`.
/// Some corrupt files make the decoder panic instead of returning an error; one bad file must
/// never take the process down.
pub fn catch_panic<T>(
    key: &str,
    f: impl FnOnce() -> Result<T, MergeError>,
) -> Result<T, MergeError> {
    let outer = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(MergeError::Unreadable {
            key: key.to_string(),
            reason: format!("corrupt file: the Parquet decoder failed ({message})"),
        })
    })
}

/// The zstd that parquet uses is patched (`vendor/zstd`): plain compressors and decompressors
/// run on their thread's shared contexts, the others on their own.
#[cfg(test)]
mod zstd_shared {
    use zstd::bulk::{Compressor, Decompressor};
    use zstd::zstd_safe::{CCtx, CParameter, DParameter};

    #[test]
    fn contexts_with_settings_leave_the_shared_ones_as_new() {
        let dictionary = b"page_view click scroll add_to_cart checkout purchase ".repeat(40);
        let data = dictionary.repeat(50);
        // Compressors and decompressors with a dictionary, level 19, checksums and a window
        // limit, each used once, on contexts of their own...
        for _ in 0..8 {
            let mut c = Compressor::with_dictionary(19, &dictionary).unwrap();
            c.set_parameter(CParameter::ChecksumFlag(true)).unwrap();
            let frame = c.compress(&data).unwrap();
            let mut d = Decompressor::with_dictionary(&dictionary).unwrap();
            d.set_parameter(DParameter::WindowLogMax(20)).unwrap();
            assert_eq!(d.decompress(&frame, data.len()).unwrap(), data);
            assert!(c.has_own_context() && d.has_own_context());
            // (A plain decompressor cannot read a frame made with a dictionary.)
            assert!(
                Decompressor::new()
                    .unwrap()
                    .decompress(&frame, data.len())
                    .is_err()
            );
        }
        // ...leave the shared ones as new: a plain compressor makes the frame a fresh context
        // makes, and a plain decompressor reads it back.
        let mut compressor = Compressor::new(1).unwrap();
        let shared = compressor.compress(&data).unwrap();
        assert_eq!(
            shared,
            fresh_frame(1, &[], &data),
            "same frame as a fresh context"
        );
        let back = Decompressor::new()
            .unwrap()
            .decompress(&shared, data.len())
            .unwrap();
        assert_eq!(back, data);
        // The independent streaming decoder (never shared) agrees.
        assert_eq!(zstd::stream::decode_all(&shared[..]).unwrap(), data);
    }

    #[test]
    fn a_parameter_survives_a_change_of_level() {
        let data = b"event_id,user_id,session_id\n".repeat(4_000);
        let mut compressor = Compressor::new(1).unwrap();
        compressor
            .set_parameter(CParameter::ChecksumFlag(true))
            .unwrap();
        compressor.set_compression_level(5).unwrap();
        assert_eq!(
            compressor.compress(&data).unwrap(),
            fresh_frame(5, &[CParameter::ChecksumFlag(true)], &data)
        );
    }

    /// One frame of `data` from a new context at `level` with `parameters`.
    fn fresh_frame(level: i32, parameters: &[CParameter], data: &[u8]) -> Vec<u8> {
        let mut fresh = CCtx::create();
        fresh
            .set_parameter(CParameter::CompressionLevel(level))
            .unwrap();
        for parameter in parameters {
            fresh.set_parameter(*parameter).unwrap();
        }
        let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        fresh.compress2(&mut frame, data).unwrap();
        frame
    }

    #[test]
    fn a_wide_row_group_makes_no_context_per_column() {
        // A mebibyte of 32-bit ids, like a page of a column.
        let data: Vec<u8> = (0..1u32 << 18)
            .flat_map(|i| (i.wrapping_mul(2_654_435_761) % 200_000).to_le_bytes())
            .collect();
        // The codecs of a wide row group alive at once (parquet makes a compressor and a
        // decompressor per column), at two levels in turn: each frame is the one a fresh
        // context at its own level makes, and each decompressor reads its column back.
        let mut codecs: Vec<_> = (0..800)
            .map(|i| {
                let level = [9, 1][i % 2];
                (
                    level,
                    Compressor::new(level).unwrap(),
                    Decompressor::new().unwrap(),
                )
            })
            .collect();
        for (i, (level, compressor, decompressor)) in codecs.iter_mut().enumerate().take(40) {
            let frame = compressor.compress(&data).unwrap();
            assert_eq!(
                frame,
                fresh_frame(*level, &[], &data),
                "column {i}, level {level}"
            );
            assert_eq!(decompressor.decompress(&frame, data.len()).unwrap(), data);
        }
        // None has a context of its own (a decompression context is ~95 KB before any use, a
        // compression one ~1.3 MB once used at level 3).
        assert!(
            codecs
                .iter()
                .all(|(_, c, d)| !c.has_own_context() && !d.has_own_context())
        );
    }
}

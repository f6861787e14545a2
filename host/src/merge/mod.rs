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
///
/// Not with `File::create`, whose `O_TRUNC` truncates even an empty file: on ext4 (with its
/// default `auto_da_alloc`) a file truncated to nothing and written again is flushed to disk
/// when it is closed, and that close then took 60–100 ms for a merged file of 140 MiB, in the
/// merge's own time, while its core sat idle. The file is usually new and empty (a spool made
/// by `tempfile`); one that already holds bytes is still cut to nothing.
fn create_output(dest: &Path) -> Result<Output, MergeError> {
    let open = || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dest)?;
        if file.metadata()?.len() > 0 {
            file.set_len(0)?;
        }
        Ok(file)
    };
    open()
        .map(|file| std::io::BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| MergeError::Write(format!("{}: {e}", dest.display())))
}

/// Where a rewrite decodes its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// On the thread that encodes, a batch at a time: for a merge (or a part of one) that has
    /// a core of its own and no more. A decoder on a thread of its own only competed with the
    /// other merges for the same cores and handed every batch from one core's cache to the
    /// other's: decoding inline took 4–8% less CPU time on the large benchmark set, 15% less
    /// wall time on the small one.
    Inline,
    /// On a thread of its own, a batch ahead of the encoder: for a merge with a core to spare,
    /// that it is too small to be cut into parts for (a lone 12 MiB partition: 0.14 s against
    /// 0.17 s inline) or that no slot counts (`parallelism` below the core count: one 1 GB
    /// partition at `parallelism = 1` on 2 cores, 10.5 s against 12.7–13.1 s inline), so that
    /// it keeps about 1.3 cores busy instead of one.
    Ahead,
}

impl Decoding {
    /// For a merge in `parts` parts that may keep `cores` cores busy.
    pub fn for_merge(cores: usize, parts: usize) -> Decoding {
        if cores > parts {
            Decoding::Ahead
        } else {
            Decoding::Inline
        }
    }
}

/// Writes the merge of `inputs` (their data from `next_input`, in order) to `dest`, by
/// concatenating column chunks where [`concat::applies`], else by rewriting rows (decoding as
/// `decoding` says).
#[allow(clippy::too_many_arguments)]
pub fn write_output(
    inputs: &[InputFile],
    schema: SchemaRef,
    next_input: &mut NextInput<'_>,
    cfg: &MergeConfig,
    metadata: Vec<KeyValue>,
    dest: &Path,
    on_progress: &dyn Fn(u64),
    decoding: Decoding,
) -> Result<MergeStats, MergeError> {
    match concat::applies(inputs, cfg) {
        Ok(()) => concat::concat_to_file(inputs, next_input, metadata, dest, on_progress),
        Err(why) => {
            if cfg.mode != MergeMode::Rewrite {
                tracing::debug!(files = inputs.len(), "rewriting, not concatenating: {why}");
            }
            rewrite::merge_to_file(
                inputs,
                schema,
                next_input,
                cfg,
                metadata,
                dest,
                on_progress,
                decoding,
            )
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

#[cfg(test)]
mod output_file {
    use std::io::Write;

    #[test]
    fn an_output_holds_only_what_is_written_to_it() {
        let dir = tempfile::tempdir().unwrap();
        // A new file, and one left holding more bytes than the new content.
        let new = dir.path().join("new.parquet");
        let stale = dir.path().join("stale.parquet");
        std::fs::write(&stale, vec![7u8; 10_000]).unwrap();
        for path in [&new, &stale] {
            let mut output = super::create_output(path).unwrap();
            output.write_all(b"PAR1 merged").unwrap();
            output.into_inner().unwrap().sync_all().unwrap();
            assert_eq!(
                std::fs::read(path).unwrap(),
                b"PAR1 merged",
                "{}",
                path.display()
            );
        }
    }
}

/// The parquet crate is patched (`vendor/parquet`): its writer takes a dictionary array's rows
/// a key at a time. What it writes must be what the same rows as plain strings write.
#[cfg(test)]
mod parquet_dictionaries {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    /// Batches of one dictionary column: two sharing a dictionary (one of them sliced), one
    /// with a dictionary of its own; nulls; and entries no row uses, smallest and largest of
    /// all, which must not reach the statistics.
    fn dictionary_batches() -> Vec<ArrayRef> {
        let first = Arc::new(StringArray::from(vec![
            "purchase",
            "aaa-unused",
            "click",
            "view",
            "zzz-unused",
            "scroll",
        ])) as ArrayRef;
        let second = Arc::new(StringArray::from(vec![
            "view",
            "add_to_cart",
            "zz-unused",
            "click",
        ])) as ArrayRef;
        let keys = |n: usize, keys: &[i32]| -> Int32Array {
            (0..n)
                .map(|i| {
                    let key = keys[(i * 7 + i / 3) % keys.len()];
                    (i % 11 != 5).then_some(key)
                })
                .collect()
        };
        let dict = |keys: Int32Array, values: &ArrayRef| -> ArrayRef {
            Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values.clone()).unwrap())
        };
        let sliced = dict(keys(5_000, &[0, 2, 3, 5]), &first).slice(1_000, 3_000);
        vec![
            dict(keys(3_000, &[0, 2, 3, 5]), &first),
            sliced,
            dict(keys(4_000, &[0, 1, 3]), &second),
            dict(keys(2_000, &[2, 3]), &first),
        ]
    }

    /// The file `columns` make as one column "c", without the Arrow schema in the footer (the
    /// only place the column's Arrow type would show).
    fn write(columns: &[ArrayRef], props: WriterProperties) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "c",
            columns[0].data_type().clone(),
            true,
        )]));
        let options = ArrowWriterOptions::new()
            .with_properties(props)
            .with_skip_arrow_metadata(true);
        let mut writer =
            ArrowWriter::try_new_with_options(Vec::new(), schema.clone(), options).unwrap();
        for column in columns {
            let batch = RecordBatch::try_new(schema.clone(), vec![column.clone()]).unwrap();
            writer.write(&batch).unwrap();
            // Row groups of the batches in twos: a dictionary spans batches and row groups.
            if writer.in_progress_rows() >= 6_000 {
                writer.flush().unwrap();
            }
        }
        writer.into_inner().unwrap()
    }

    fn as_strings(columns: &[ArrayRef]) -> Vec<ArrayRef> {
        columns
            .iter()
            .map(|c| arrow_cast::cast(c, &DataType::Utf8).unwrap())
            .collect()
    }

    /// The rows of a file of one string column "c", and each row group's statistics.
    fn rows_and_statistics(file: Vec<u8>) -> (Vec<Option<String>>, Vec<String>) {
        let file = bytes::Bytes::from(file);
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file.clone(), 1024)
                .unwrap();
        let mut rows = Vec::new();
        for batch in reader {
            let column = arrow_cast::cast(batch.unwrap().column(0), &DataType::Utf8).unwrap();
            let strings = column.as_any().downcast_ref::<StringArray>().unwrap();
            rows.extend(strings.iter().map(|s| s.map(str::to_string)));
        }
        let md = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .unwrap();
        let statistics = md
            .row_groups()
            .iter()
            .map(|rg| format!("{:?}", rg.column(0).statistics()))
            .collect();
        (rows, statistics)
    }

    #[test]
    fn dictionary_rows_write_what_their_values_write() {
        let (columns, strings) = (dictionary_batches(), as_strings(&dictionary_batches()));
        let props = || {
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_data_page_row_count_limit(1_000)
                .set_write_batch_size(300)
        };
        // Dictionaries kept throughout, with page statistics and indexes: the same file, byte
        // for byte.
        let from_dictionaries = write(&columns, props().build());
        assert!(
            from_dictionaries == write(&strings, props().build()),
            "the same bytes"
        );
        // The statistics are those of the rows, not of the dictionaries' unused entries.
        let (rows, statistics) = rows_and_statistics(from_dictionaries);
        assert_eq!(rows.len(), 12_000);
        assert_eq!(statistics.len(), 2);
        assert!(
            statistics[0].contains(r#"min: Some(ByteArray { data: "click" })"#),
            "{statistics:?}"
        );
        assert!(
            statistics[0].contains(r#"max: Some(ByteArray { data: "view" })"#),
            "{statistics:?}"
        );
        // A dictionary limit so small that the writer falls back to plain values midway
        // through a chunk. The pages are cut elsewhere (parquet sizes a write of a dictionary
        // array without looking at its values, patched or not), so: the same rows and
        // statistics.
        let props = props().set_dictionary_page_size_limit(24).build();
        assert_eq!(
            rows_and_statistics(write(&columns, props.clone())),
            rows_and_statistics(write(&strings, props))
        );
    }
}

/// The parquet crate is patched (`vendor/parquet`): its dictionaries intern values of 4 or 8
/// bytes as one word. Each distinct value must get one entry, and every row its own value back.
#[cfg(test)]
mod parquet_word_interning {
    use std::sync::Arc;

    use arrow_array::{
        Array, ArrayRef, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
        StringArray,
    };
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    const ROWS: usize = 60_000;

    /// Each column written with a dictionary, read back, with the entries of each column's
    /// first dictionary page.
    fn round_trip(columns: Vec<ArrayRef>) -> (Vec<ArrayRef>, Vec<usize>) {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), false))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        let file = bytes::Bytes::from(writer.into_inner().unwrap());

        let mut read = ParquetRecordBatchReader::try_new(file.clone(), ROWS).unwrap();
        let back = read.next().unwrap().unwrap();
        assert!(read.next().is_none(), "one batch");
        let reader = SerializedFileReader::new(file).unwrap();
        let row_group = reader.get_row_group(0).unwrap();
        let entries = (0..back.num_columns())
            .map(|i| {
                let mut pages = row_group.get_column_page_reader(i).unwrap();
                match pages.get_next_page().unwrap() {
                    Some(Page::DictionaryPage { num_values, .. }) => num_values as usize,
                    other => panic!("column {i}: no dictionary page first: {other:?}"),
                }
            })
            .collect();
        (back.columns().to_vec(), entries)
    }

    #[test]
    fn each_distinct_word_gets_one_entry_and_every_row_its_value() {
        // Values that differ only in their high bits, signs, zeros of both signs, and NaNs of
        // two payloads: distinct as bytes, so distinct entries.
        let floats64 = [
            0.0,
            -0.0,
            f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0001),
            1.5,
        ];
        let floats32 = [0.0, -0.0, f32::NAN, f32::from_bits(0x7fc0_0001), 1.5];
        // Strings of 4 and 8 bytes among others; "abcd" and "abcd\0\0\0\0" make the same word.
        let strings = ["abcd", "abcd\0\0\0\0", "abcdefgh", "abc", "", "abcdefghi"];
        let columns: Vec<ArrayRef> = vec![
            // 40,000 distinct values, pairs of them a bit apart: the interner's table grows.
            Arc::new(Int64Array::from_iter_values(
                (0..ROWS as i64).map(|i| ((i * 7_919) % 20_000) << 40 | (i / 20_000 % 2)),
            )),
            Arc::new(Int32Array::from_iter_values(
                (0..ROWS as i32).map(|i| (i % 3_000) - 1_500),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..ROWS).map(|i| floats64[i % floats64.len()]),
            )),
            Arc::new(Float32Array::from_iter_values(
                (0..ROWS).map(|i| floats32[i % floats32.len()]),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..ROWS).map(|i| strings[i * 5 % strings.len()]),
            )),
        ];
        let (back, entries) = round_trip(columns.clone());
        assert_eq!(entries, vec![40_000, 3_000, 5, 5, 6]);

        let bits = |c: &ArrayRef| -> Vec<u64> {
            if let Some(a) = c.as_any().downcast_ref::<Float64Array>() {
                return a.values().iter().map(|v| v.to_bits()).collect();
            }
            if let Some(a) = c.as_any().downcast_ref::<Float32Array>() {
                return a.values().iter().map(|v| u64::from(v.to_bits())).collect();
            }
            Vec::new()
        };
        for (i, (written, read)) in columns.iter().zip(&back).enumerate() {
            assert_eq!(read.len(), ROWS);
            if written.data_type().is_floating() {
                assert!(bits(written) == bits(read), "column {i}: the same bits");
            } else {
                assert_eq!(written.to_data(), read.to_data(), "column {i}");
            }
        }
    }
}

/// The parquet crate is patched (`vendor/parquet`): a page of strings that are not
/// dictionary-encoded is assembled in the buffer its values were encoded into, the lengths and
/// levels written in room kept in front of them, or copied as before when that room is short.
/// Every row must come back, with either writer version, compressed or not.
#[cfg(test)]
mod parquet_page_assembly {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
    use parquet::basic::{Compression, Encoding, ZstdLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::schema::types::ColumnPath;

    const ROWS: usize = 20_000;

    /// A string of `i`'s own length and bytes, sharing prefixes with its neighbours.
    fn text(i: usize) -> String {
        format!("{:04}-{}", i / 100, "xyz".repeat(i * 7 % 40))
    }

    /// Strings with nulls; `null_every` 1 in so many rows is null, or all but 1 in so many
    /// (negative), spread unevenly so that the definition levels are bit-packed.
    fn strings(null_every: i64) -> ArrayRef {
        let scatter = |i: usize| (i * 7_919 + i / 13) as i64;
        Arc::new(StringArray::from_iter((0..ROWS).map(|i| {
            let null = match null_every {
                n if n > 0 => scatter(i) % n == 0,
                n => scatter(i) % -n != 0,
            };
            (!null).then(|| text(i))
        })))
    }

    /// Lists of 0 to 4 strings, some null: repetition levels too.
    fn lists() -> ArrayRef {
        let mut lists = ListBuilder::new(StringBuilder::new());
        for i in 0..ROWS {
            if i % 9 == 4 {
                lists.append_null();
                continue;
            }
            for j in 0..i % 5 {
                lists.values().append_value(text(i + j));
            }
            lists.append(true);
        }
        Arc::new(lists.finish())
    }

    #[test]
    fn every_row_comes_back_from_pages_assembled_in_place() {
        let columns = [
            ("plain", strings(7), Encoding::PLAIN),
            (
                "delta_length",
                strings(7),
                Encoding::DELTA_LENGTH_BYTE_ARRAY,
            ),
            ("delta", strings(7), Encoding::DELTA_BYTE_ARRAY),
            // Mostly null: the levels outgrow the room kept for them, which is copied instead.
            ("sparse", strings(-10), Encoding::DELTA_LENGTH_BYTE_ARRAY),
            ("lists", lists(), Encoding::DELTA_LENGTH_BYTE_ARRAY),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, c, _)| Field::new(*name, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = columns.iter().map(|(_, c, _)| c.clone()).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();

        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            for compression in [
                Compression::UNCOMPRESSED,
                Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
            ] {
                let what = format!("{version:?}, {compression:?}");
                let mut props = WriterProperties::builder()
                    .set_writer_version(version)
                    .set_compression(compression)
                    .set_dictionary_enabled(false)
                    .set_data_page_size_limit(4 << 10)
                    .set_write_batch_size(100);
                for (name, _, encoding) in &columns {
                    // The list's strings are its leaf, `lists.list.item`.
                    let mut path = vec![name.to_string()];
                    if *name == "lists" {
                        path.extend(["list".into(), "item".into()]);
                    }
                    props = props.set_column_encoding(ColumnPath::new(path), *encoding);
                }
                let mut writer =
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.build())).unwrap();
                // Batches of growing size: pages of few values, then of many.
                let mut offset = 0;
                for len in [50, 950, 4_000, 15_000] {
                    writer.write(&batch.slice(offset, len)).unwrap();
                    offset += len;
                }
                let file = bytes::Bytes::from(writer.into_inner().unwrap());

                let reader = SerializedFileReader::new(file.clone()).unwrap();
                let chunks = reader.metadata().row_group(0).columns();
                for (chunk, (name, _, encoding)) in chunks.iter().zip(&columns) {
                    assert!(chunk.encodings().any(|e| e == *encoding), "{what}: {name}");
                }
                let pages = reader
                    .get_row_group(0)
                    .unwrap()
                    .get_column_page_reader(0)
                    .unwrap()
                    .count();
                assert!(pages > 20, "{what}: many pages, not {pages}");

                let mut read = ParquetRecordBatchReader::try_new(file, ROWS).unwrap();
                let back = read.next().unwrap().unwrap();
                assert!(read.next().is_none(), "{what}: one batch");
                for (i, (name, written, _)) in columns.iter().enumerate() {
                    assert_eq!(back.column(i).len(), ROWS, "{what}: {name}");
                    assert_eq!(
                        back.column(i).to_data(),
                        written.to_data(),
                        "{what}: {name}"
                    );
                }
            }
        }
    }
}

//! Concat mode: the inputs' column chunks are copied byte for byte into the output, nothing is
//! decoded or encoded, so a merge runs at the speed of the disk.
//!
//! It applies only when every input has exactly the same Parquet and Arrow schema. The output
//! keeps the inputs' row groups (so small inputs give small row groups) and their codecs; page
//! indexes are not carried over, bloom filters are. `auto` therefore picks it only when the
//! inputs' row groups are already large and compressed the way the output should be.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::bloom_filter::Sbbf;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use parquet::file::writer::SerializedFileWriter;

use super::footer::{InputFile, parse_footer};
use super::rewrite::MergeStats;
use super::{MergeError, MergeMode};
use crate::config::MergeConfig;

/// Whether concat mode merges `inputs` under `cfg`, or why not.
pub fn applies(inputs: &[InputFile], cfg: &MergeConfig) -> Result<(), String> {
    let Some(first) = inputs.first() else {
        return Err("no inputs".into());
    };
    if cfg.mode == MergeMode::Rewrite {
        return Err("[merge] mode is rewrite".into());
    }
    for input in &inputs[1..] {
        if input.footer.schema.root_schema() != first.footer.schema.root_schema()
            || input.schema.fields() != first.schema.fields()
        {
            return Err(format!(
                "{} and {} differ in schema",
                first.meta.key, input.meta.key
            ));
        }
    }
    if cfg.mode == MergeMode::Auto {
        let same_codec =
            |c: &Compression| std::mem::discriminant(c) == std::mem::discriminant(&cfg.compression);
        if !inputs.iter().flat_map(|i| &i.footer.codecs).all(same_codec) {
            return Err("some inputs use another codec than [merge] compression".into());
        }
        let row_groups: usize = inputs.iter().map(|i| i.footer.row_groups).sum();
        let bytes: u64 = inputs.iter().map(|i| i.footer.compressed_bytes).sum();
        let mean = bytes / row_groups.max(1) as u64;
        if mean < cfg.row_group_bytes / 4 {
            return Err(format!(
                "the inputs' row groups average {mean} bytes, below a quarter of \
                 [merge] row_group_size: rewriting makes fewer, larger ones"
            ));
        }
    }
    Ok(())
}

/// Copies the column chunks of `inputs` (whose data `next_input` yields in order) into a new
/// file at `dest`, with the first input's footer metadata plus `metadata`.
pub fn concat_to_file(
    inputs: &[InputFile],
    next_input: &mut super::NextInput<'_>,
    metadata: Vec<KeyValue>,
    dest: &Path,
    on_progress: &dyn Fn(u64),
) -> Result<MergeStats, MergeError> {
    let write_err = |e: &dyn std::fmt::Display| MergeError::Write(e.to_string());
    let mut output = Some((super::create_output(dest)?, metadata));
    let mut writer = None;

    let mut total_rows = 0u64;
    for input in inputs {
        let key = input.meta.key.as_str();
        let data = super::next_data(next_input, key)?;
        // Statistics kept: the chunks are copied with them.
        let footer = parse_footer(key, &data, Some(&input.footer.schema), true)?;
        // Made from the first input's footer: its schema is every input's (see `applies`).
        if let Some((file, metadata)) = output.take() {
            writer = Some(new_writer(&footer, metadata, file)?);
        }
        let Some(writer) = writer.as_mut() else {
            unreachable!("made for the first input")
        };
        total_rows += append_row_groups(writer, &data, data.len() as u64, &footer, key)?;
        on_progress(input.meta.size);
    }
    let expected: u64 = inputs.iter().map(|i| i.rows).sum();
    let writer = writer.ok_or_else(|| write_err(&"no inputs"))?;
    let written = writer.close().map_err(|e| write_err(&e))?;
    if total_rows != expected {
        return Err(MergeError::Write(format!(
            "copied {total_rows} rows but the inputs hold {expected}"
        )));
    }
    MergeStats::of_file(dest, total_rows, &written)
}

/// Copies every row group of the file `data` (of `len` bytes, whose parsed footer is `footer`)
/// into `writer`, column chunk by column chunk, with its bloom filters and, when `footer` was
/// read with them, its page indexes. Returns the rows copied.
pub(super) fn append_row_groups<R: ChunkReader>(
    writer: &mut SerializedFileWriter<super::Output>,
    data: &R,
    len: u64,
    footer: &ParquetMetaData,
    key: &str,
) -> Result<u64, MergeError> {
    // A chunk outside the data is a corrupt file, refused before anything is written.
    let corrupt = |what: String| MergeError::Unreadable {
        key: key.to_string(),
        reason: format!("corrupt file: {what}"),
    };
    for rg in footer.row_groups() {
        for column in rg.columns() {
            let (start, chunk_len) = column.byte_range();
            if start.saturating_add(chunk_len) > len {
                return Err(corrupt(format!(
                    "column chunk {} at {start}+{chunk_len} lies beyond the file's {len} bytes",
                    column.column_path(),
                )));
            }
        }
    }
    let mut rows = 0u64;
    for (i, rg) in footer.row_groups().iter().enumerate() {
        let index = footer.page_index_for_row_group(i);
        let mut out = writer
            .next_row_group()
            .map_err(|e| MergeError::Write(e.to_string()))?;
        for (c, column) in rg.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: column.compressed_size().max(0) as u64,
                rows_written: rg.num_rows().max(0) as u64,
                metadata: column.clone(),
                bloom_filter: Sbbf::read_from_column_chunk(column, data).ok().flatten(),
                column_index: index.column_index(c).cloned(),
                offset_index: index.offset_index(c).cloned(),
            };
            out.append_column(data, close)
                .map_err(|e| corrupt(e.to_string()))?;
        }
        out.close().map_err(|e| MergeError::Write(e.to_string()))?;
        rows += rg.num_rows().max(0) as u64;
    }
    Ok(rows)
}

/// The output's writer, with `first`'s schema and key-value metadata (less our journal, which
/// described that input's own merge) plus `metadata`.
pub(super) fn new_writer(
    first: &ParquetMetaData,
    metadata: Vec<KeyValue>,
    file: super::Output,
) -> Result<SerializedFileWriter<super::Output>, MergeError> {
    let mut kv: Vec<KeyValue> = first
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| !kv.key.starts_with(crate::journal::KEY_PREFIX))
        .cloned()
        .collect();
    kv.extend(metadata);
    let props = WriterProperties::builder()
        .set_created_by(format!("compactor {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(kv))
        .build();
    let schema = first.file_metadata().schema_descr().root_schema_ptr();
    SerializedFileWriter::new(file, schema, Arc::new(props))
        .map_err(|e| MergeError::Write(e.to_string()))
}

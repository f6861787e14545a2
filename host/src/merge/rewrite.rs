//! Rewrite mode: decode every input's rows and encode them into one new file.
//!
//! Runs on a blocking thread. Inputs arrive one at a time through `next_input`, so memory holds
//! one input file, one decoded batch and the row group being encoded. Row groups are cut by
//! encoded size ([`MergeConfig::row_group_bytes`]), not by row count, so wide and narrow tables
//! both get reader-friendly row groups.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{RecordBatch, new_null_array};
use arrow_cast::cast;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::footer::{InputFile, parse_footer};
use super::schema::with_views;
use super::{MergeError, catch_panic};
use crate::config::MergeConfig;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeStats {
    pub rows: u64,
    pub bytes: u64,
    pub row_groups: usize,
}

impl MergeStats {
    /// The stats of the finished file at `dest`, of `rows` rows, whose footer is `written`.
    pub fn of_file(
        dest: &Path,
        rows: u64,
        written: &parquet::file::metadata::ParquetMetaData,
    ) -> Result<Self, MergeError> {
        Ok(MergeStats {
            rows,
            bytes: std::fs::metadata(dest)
                .map_err(|e| MergeError::Write(format!("{}: {e}", dest.display())))?
                .len(),
            row_groups: written.row_groups().len(),
        })
    }
}

/// Merges `inputs` (whose data `next_input` yields in the same order) into a new Parquet file
/// at `dest` with `schema`, adding `metadata` to its footer.
pub fn merge_to_file(
    inputs: &[InputFile],
    schema: SchemaRef,
    next_input: &mut super::NextInput<'_>,
    cfg: &MergeConfig,
    metadata: Vec<KeyValue>,
    dest: &Path,
    on_progress: &dyn Fn(u64),
) -> Result<MergeStats, MergeError> {
    let write_err = |e: &dyn std::fmt::Display| MergeError::Write(e.to_string());
    // Our own journal key from inputs that were earlier outputs must not be inherited.
    let mut schema_md = schema.metadata().clone();
    schema_md.retain(|k, _| !k.starts_with(crate::journal::KEY_PREFIX));
    let schema = Arc::new(schema.as_ref().clone().with_metadata(schema_md));
    // Batches carry strings as views (see `with_views`); the footer gets `schema` itself.
    let working = Arc::new(with_views(&schema));
    let mut writer = Writer::Pending {
        file: super::create_output(dest)?,
        schema: schema.clone(),
        working: working.clone(),
        cfg,
        dest,
    };

    // Decoding runs ahead of encoding on a thread of its own, so one merge keeps two cores
    // busy; at most two decoded batches wait between them.
    let mut total_rows = 0u64;
    std::thread::scope(|scope| -> Result<(), MergeError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Decoded, MergeError>>(2);
        let working = &working;
        scope.spawn(move || {
            for input in inputs {
                let key = input.meta.key.as_str();
                let decoded = super::next_data(next_input, key)
                    .and_then(|data| catch_panic(key, || decode(input, data, working, cfg, &tx)));
                let failed = decoded.is_err();
                if tx.send(decoded.map(Decoded::Done)).is_err() || failed {
                    return;
                }
            }
        });
        for input in inputs {
            let key = input.meta.key.as_str();
            let decoded = loop {
                match rx.recv() {
                    Ok(Ok(Decoded::Batch(batch))) => catch_panic(key, || {
                        writer
                            .open(Some(&batch))?
                            .write(&batch)
                            .map_err(|e| MergeError::Write(e.to_string()))
                    })?,
                    Ok(Ok(Decoded::Done(rows))) => break rows,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(write_err(&format!("{key}: the decoder stopped"))),
                }
            };
            if decoded != input.rows {
                return Err(MergeError::RowCountMismatch {
                    key: key.to_string(),
                    expected: input.rows,
                    decoded,
                });
            }
            total_rows += decoded;
            on_progress(input.meta.size);
        }
        Ok(())
    })?;
    // The inputs' footer key-value pairs (gathered into the schema's metadata when their
    // footers were read) go back into the footer as they were, next to our journal.
    for (key, value) in schema.metadata().iter() {
        if key != "ARROW:schema" {
            writer.append_key_value_metadata(KeyValue::new(key.clone(), value.clone()))?;
        }
    }
    for kv in metadata {
        writer.append_key_value_metadata(kv)?;
    }
    let written = writer.close()?;
    let rows: i64 = written.row_groups().iter().map(|rg| rg.num_rows()).sum();
    if rows as u64 != total_rows {
        return Err(MergeError::Write(format!(
            "wrote {rows} rows but read {total_rows}"
        )));
    }
    MergeStats::of_file(dest, total_rows, &written)
}

use super::Output;

/// The output's writer, made when the first batch arrives: its properties depend on the data
/// (see [`super::encoding`]: which columns skip the dictionary, and their encodings).
enum Writer<'a> {
    Pending {
        file: Output,
        /// The output's schema, for its footer.
        schema: SchemaRef,
        /// The batches' schema: `schema` with strings as views.
        working: SchemaRef,
        cfg: &'a MergeConfig,
        dest: &'a Path,
    },
    Open(Box<ArrowWriter<Output>>),
    Taken,
}

impl Writer<'_> {
    /// The writer, made from `sample` (the merge's first batch) if it is not made yet.
    fn open(
        &mut self,
        sample: Option<&RecordBatch>,
    ) -> Result<&mut ArrowWriter<Output>, MergeError> {
        if let Writer::Pending { .. } = self {
            let Writer::Pending {
                file,
                schema,
                working,
                cfg,
                dest,
            } = std::mem::replace(self, Writer::Taken)
            else {
                unreachable!("matched above")
            };
            let mut props = WriterProperties::builder()
                .set_compression(cfg.compression)
                // Row groups are cut by encoded size only.
                .set_max_row_group_row_count(None)
                .set_max_row_group_bytes(Some(cfg.row_group_bytes.max(1) as usize))
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_created_by(format!("compactor {}", env!("CARGO_PKG_VERSION")));
            let plain = sample.map(|sample| {
                super::encoding::plain_columns(sample, cfg.compression, cfg.adaptive_encodings)
            });
            for column in plain.unwrap_or_default() {
                props = props.set_column_dictionary_enabled(column.path.clone(), false);
                if let Some(encoding) = column.encoding {
                    props = props.set_column_encoding(column.path, encoding);
                }
            }
            let mut props = props.build();
            add_encoded_arrow_schema_to_metadata(&schema, &mut props);
            let writer = ArrowWriter::try_new_with_options(
                file,
                working,
                writer_options(props, cfg, dest).with_skip_arrow_metadata(true),
            )
            .map_err(|e| MergeError::Write(e.to_string()))?;
            *self = Writer::Open(Box::new(writer));
        }
        match self {
            Writer::Open(w) => Ok(w),
            _ => Err(MergeError::Write("the output writer failed earlier".into())),
        }
    }

    fn append_key_value_metadata(&mut self, kv: KeyValue) -> Result<(), MergeError> {
        self.open(None)?.append_key_value_metadata(kv);
        Ok(())
    }

    fn close(mut self) -> Result<parquet::file::metadata::ParquetMetaData, MergeError> {
        self.open(None)?;
        match self {
            Writer::Open(w) => w.close().map_err(|e| MergeError::Write(e.to_string())),
            _ => Err(MergeError::Write("the output writer failed earlier".into())),
        }
    }
}

/// With `[merge] spill_pages`, finished pages wait in a temporary file beside `dest`.
fn writer_options(props: WriterProperties, cfg: &MergeConfig, dest: &Path) -> ArrowWriterOptions {
    let options = ArrowWriterOptions::new().with_properties(props);
    match dest.parent() {
        Some(dir) if cfg.spill_pages => {
            options.with_page_store_factory(Arc::new(super::spill::SpillFactory {
                dir: dir.to_path_buf(),
            }))
        }
        _ => options,
    }
}

/// What the decoding thread hands the encoder: an input's batches, then its row count.
enum Decoded {
    Batch(RecordBatch),
    Done(u64),
}

/// Decodes one input into batches shaped to `schema`, sent on `tx`. Returns the rows decoded.
fn decode(
    input: &InputFile,
    data: Bytes,
    schema: &SchemaRef,
    cfg: &MergeConfig,
    tx: &std::sync::mpsc::SyncSender<Result<Decoded, MergeError>>,
) -> Result<u64, MergeError> {
    let key = input.meta.key.as_str();
    let corrupt = |e: &dyn std::fmt::Display| MergeError::Unreadable {
        key: key.to_string(),
        reason: format!("corrupt file: {e}"),
    };
    let options = ArrowReaderOptions::new().with_schema(Arc::new(with_views(&input.schema)));
    let footer = Arc::new(parse_footer(key, &data)?);
    let reader_md = ArrowReaderMetadata::try_new(footer, options).map_err(|e| corrupt(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(data, reader_md)
        .with_batch_size(cfg.batch_rows)
        .build()
        .map_err(|e| corrupt(&e))?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        rows += batch.num_rows() as u64;
        let batch = conform(key, batch, schema)?;
        if tx.send(Ok(Decoded::Batch(batch))).is_err() {
            return Err(MergeError::Abandoned); // the encoder stopped; nobody reads this
        }
    }
    Ok(rows)
}

/// Shapes a batch to the output schema: columns by name, widened where the schema says,
/// null-filled where the input lacks them. The schema was unified losslessly beforehand, so
/// every cast here is a widening.
fn conform(key: &str, batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, MergeError> {
    if batch.schema().fields() == schema.fields() {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| MergeError::Write(format!("{key}: {e}")));
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            Some(col) => cast(col, field.data_type())
                .map_err(|e| MergeError::Write(format!("{key}: column {}: {e}", field.name()))),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| MergeError::Write(format!("{key}: {e}")))
}

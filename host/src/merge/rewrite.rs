//! Rewrite mode: decode every input's rows and encode them into one new file.
//!
//! Runs on a blocking thread. Inputs arrive one at a time through `next_input`, so memory holds
//! one input file, one decoded batch and the row group being encoded. Row groups are cut by
//! encoded size ([`MergeConfig::row_group_bytes`]), not by row count, so wide and narrow tables
//! both get reader-friendly row groups, and the rows are shared evenly among them
//! ([`super::row_groups`]).

use std::path::Path;
use std::sync::Arc;

use arrow_array::{RecordBatch, new_null_array};
use arrow_cast::cast;
use arrow_schema::{ArrowError, SchemaRef};
use arrow_select::coalesce::BatchCoalescer;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::footer::{InputFile, dictionary_columns, parse_footer};
use super::schema::batch_schema;
use super::{Decoding, MergeError, catch_panic};
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
#[allow(clippy::too_many_arguments)]
pub fn merge_to_file(
    inputs: &[InputFile],
    schema: SchemaRef,
    next_input: &mut super::NextInput<'_>,
    cfg: &MergeConfig,
    metadata: Vec<KeyValue>,
    dest: &Path,
    on_progress: &dyn Fn(u64),
    decoding: Decoding,
) -> Result<MergeStats, MergeError> {
    let write_err = |e: &dyn std::fmt::Display| MergeError::Write(e.to_string());
    // Our own journal key from inputs that were earlier outputs must not be inherited.
    let mut schema_md = schema.metadata().clone();
    schema_md.retain(|k, _| !k.starts_with(crate::journal::KEY_PREFIX));
    let schema = Arc::new(schema.as_ref().clone().with_metadata(schema_md));
    // Batches carry strings as views or dictionaries (see `batch_schema`); the footer gets
    // `schema` itself.
    let dictionaries = dictionary_columns(inputs);
    let working = Arc::new(batch_schema(&schema, &dictionaries));
    let mut writer = Writer::Pending {
        file: super::create_output(dest)?,
        schema: schema.clone(),
        working: working.clone(),
        bloom: BloomFilters::of(inputs, cfg.row_group_bytes),
        cfg,
        dest,
    };

    let expected: u64 = inputs.iter().map(|i| i.rows).sum();
    let mut even = super::row_groups::EvenRowGroups::new(expected, cfg.row_group_bytes);
    let mut total_rows = 0u64;
    let output = dest.display().to_string();
    let mut encode = |decoded: Decoded| -> Result<(), MergeError> {
        if let Some(batch) = decoded.batch {
            catch_panic(&output, || {
                even.write(writer.open(Some(&batch))?, &batch)
                    .map_err(|e| MergeError::Write(e.to_string()))
            })?;
            total_rows += batch.num_rows() as u64;
        }
        on_progress(decoded.inputs_done);
        Ok(())
    };
    let schemas = BatchSchemas::new(&dictionaries);
    match decoding {
        Decoding::Inline => decode_all(inputs, next_input, &working, schemas, cfg, &mut encode)?,
        // One decoded batch waits between the threads. (Two waiting measured no faster, alone
        // or two merges at once, and held 7 MiB more on the small benchmark set.)
        Decoding::Ahead => std::thread::scope(|scope| -> Result<(), MergeError> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Decoded, MergeError>>(1);
            let working = &working;
            scope.spawn(move || {
                // An error here means the encoder stopped (and said why); nobody reads this.
                let mut send = |d: Decoded| tx.send(Ok(d)).map_err(|_| MergeError::Abandoned);
                if let Err(e) = decode_all(inputs, next_input, working, schemas, cfg, &mut send) {
                    let _ = tx.send(Err(e));
                }
            });
            // Until the decoder is done and drops its end.
            for decoded in rx {
                encode(decoded?)?;
            }
            Ok(())
        })?,
    }
    // Each input's rows were counted as it was decoded; this also catches a decoder that
    // stopped without saying why.
    if total_rows != expected {
        return Err(write_err(&format!(
            "decoded {total_rows} rows but the inputs hold {expected}"
        )));
    }
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
        /// The batches' schema: `schema` with strings as views or dictionaries.
        working: SchemaRef,
        bloom: BloomFilters,
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
                bloom,
                cfg,
                dest,
            } = std::mem::replace(self, Writer::Taken)
            else {
                unreachable!("matched above")
            };
            let mut props = WriterProperties::builder()
                .set_compression(cfg.compression)
                // Row groups are cut by encoded size only, evenly (`EvenRowGroups`).
                .set_max_row_group_row_count(None)
                .set_max_row_group_bytes(Some(super::row_groups::writer_byte_limit(
                    cfg.row_group_bytes,
                )))
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
            for (column, max_ndv) in bloom.columns {
                props = props
                    .set_column_bloom_filter_enabled(column.clone(), true)
                    .set_column_bloom_filter_fpp(column.clone(), BloomFilters::FPP)
                    .set_column_bloom_filter_max_ndv(column, max_ndv);
            }
            let mut props = props.build();
            add_encoded_arrow_schema_to_metadata(&schema, &mut props);
            let options = writer_options(props, cfg, dest, file.get_ref());
            let writer = ArrowWriter::try_new_with_options(
                file,
                working,
                options.with_skip_arrow_metadata(true),
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

/// The bloom filters an output gets: one for each column that had one in any input, so that
/// the point lookups a writer enabled them for (an id, a key) stay fast after compaction.
struct BloomFilters {
    /// Each column with what its filters are sized for before the writer folds them down to
    /// the distinct values they saw: the inputs' filters' bound (a dozen event types take 47
    /// bytes, not 4 MiB), within the rows a row group may hold and what a filter of
    /// [`BloomFilters::FPP`] holds in 16 MiB. (Too small a size only makes a filter filter
    /// less well.)
    columns: Vec<(ColumnPath, u64)>,
}

impl BloomFilters {
    /// The false positive rate of parquet-mr (Spark, Trino) and DuckDB by default. A file does
    /// not record the rate its filters were made for.
    const FPP: f64 = 0.01;

    fn of(inputs: &[InputFile], row_group_bytes: u64) -> BloomFilters {
        // A row group's rows: its share of the inputs' bytes, twice over, since the output
        // usually encodes smaller than the inputs did.
        let rows: u64 = inputs.iter().map(|i| i.rows).sum();
        let bytes: u64 = inputs.iter().map(|i| i.footer.compressed_bytes).sum();
        let share = (2.0 * row_group_bytes as f64 / bytes.max(1) as f64).min(1.0);
        let rows = (rows as f64 * share).ceil() as u64;
        let mut columns: Vec<(ColumnPath, u64)> = Vec::new();
        for (column, distinct) in inputs.iter().flat_map(|i| &i.footer.bloom_filtered) {
            super::footer::add_distinct_values(&mut columns, column, *distinct);
        }
        for (_, bound) in &mut columns {
            *bound = (*bound).min(rows).clamp(1, 13_000_000);
        }
        BloomFilters { columns }
    }
}

/// With `[merge] spill_pages`, finished pages wait in a temporary file beside `dest`.
/// The writer's options: `props`, and pages spilled beside `dest` (as `cfg` says), to be
/// copied from there into `output`, the file being written.
fn writer_options(
    props: WriterProperties,
    cfg: &MergeConfig,
    dest: &Path,
    output: &std::fs::File,
) -> ArrowWriterOptions {
    let options = ArrowWriterOptions::new().with_properties(props);
    match dest.parent() {
        Some(dir) if cfg.spill_pages => {
            // Without a second handle (out of descriptors), pages are read back and written.
            let spill = super::spill::SpillFactory::new(dir.to_path_buf(), output.try_clone().ok());
            options.with_page_store_factory(Arc::new(spill))
        }
        _ => options,
    }
}

/// What the decoding thread hands the encoder.
struct Decoded {
    /// Rows to write: a batch of one input, or the rows of several small ones together.
    batch: Option<RecordBatch>,
    /// Bytes of the inputs whose last rows are in this batch or came before, for progress.
    inputs_done: u64,
}

/// Decodes `inputs` (their data from `next_input`, in order) into batches of `schema` handed
/// to `sink`, checking each input's row count against its footer's.
///
/// The rows of small inputs (60 rows per file from a writer that flushes every second) are
/// gathered into batches of about `batch_rows`. A merge's first batch is the sample its
/// encodings are chosen from, and one file's rows are too few to judge; and the writer's cost
/// per batch is paid once per few thousand rows rather than once per file. A group of 10,000
/// files of 60 rows: 3.3 → 3.0 s, output 32.9 → 29.4 MiB. Batches of more rows than a
/// sample needs ([`super::encoding::MIN_SAMPLE`]) go as they are, without a copy: gathering
/// the benchmark's batches of 1,704 and 4,096 rows too held 10 MiB more, for nothing.
fn decode_all(
    inputs: &[InputFile],
    next_input: &mut super::NextInput<'_>,
    schema: &SchemaRef,
    mut schemas: BatchSchemas<'_>,
    cfg: &MergeConfig,
    sink: &mut dyn FnMut(Decoded) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let mut gathered = Gather::new(schema.clone(), cfg.batch_rows);
    let mut inputs_done = 0u64;
    let mut send = |ready: Vec<RecordBatch>, inputs_done: &mut u64| {
        for batch in ready {
            let inputs_done = std::mem::take(inputs_done);
            sink(Decoded {
                batch: Some(batch),
                inputs_done,
            })?;
        }
        Ok(())
    };
    for input in inputs {
        let key = input.meta.key.as_str();
        let data = super::next_data(next_input, key)?;
        let decoded = catch_panic(key, || {
            decode(input, &mut schemas, data, schema, cfg, &mut |batch| {
                let ready = gathered
                    .push(batch)
                    .map_err(|e| MergeError::Write(format!("{key}: {e}")))?;
                send(ready, &mut inputs_done)
            })
        })?;
        if decoded != input.rows {
            return Err(MergeError::RowCountMismatch {
                key: key.to_string(),
                expected: input.rows,
                decoded,
            });
        }
        inputs_done += input.meta.size;
    }
    let ready = gathered
        .finish()
        .map_err(|e| MergeError::Write(e.to_string()))?;
    send(ready, &mut inputs_done)?;
    sink(Decoded {
        batch: None,
        inputs_done,
    })
}

/// The schema an input is read with ([`batch_schema`]), made once for a run of inputs that
/// share a schema (as [`super::footer::read_inputs`] makes them share it).
struct BatchSchemas<'a> {
    /// The columns read as dictionaries, the same for every input of the merge.
    dictionaries: &'a [ColumnPath],
    last: Option<(SchemaRef, SchemaRef)>,
}

impl<'a> BatchSchemas<'a> {
    fn new(dictionaries: &'a [ColumnPath]) -> Self {
        BatchSchemas {
            dictionaries,
            last: None,
        }
    }

    fn of(&mut self, schema: &SchemaRef) -> SchemaRef {
        match &self.last {
            Some((of, read)) if Arc::ptr_eq(of, schema) => read.clone(),
            _ => {
                let read = Arc::new(batch_schema(schema, self.dictionaries));
                self.last = Some((schema.clone(), read.clone()));
                read
            }
        }
    }
}

/// Small batches gathered into full ones (see [`decode_all`]): up to `batch_rows` rows, and
/// within [`GATHER_BYTES`], so that files of a few rows of large values (documents, images)
/// are not gathered by the thousand.
struct Gather {
    coalescer: BatchCoalescer,
    /// Memory of the small batches taken since the gathered rows last went out.
    bytes: usize,
}

/// Gathered rows go out once their batches held this much, however few they are.
const GATHER_BYTES: usize = 16 << 20;

impl Gather {
    fn new(schema: SchemaRef, batch_rows: usize) -> Gather {
        Gather {
            coalescer: BatchCoalescer::new(schema, batch_rows.max(1))
                .with_biggest_coalesce_batch_size(Some(super::encoding::MIN_SAMPLE)),
            bytes: 0,
        }
    }

    /// Takes a batch; returns the batches ready to be written, in order.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, ArrowError> {
        if batch.num_rows() <= super::encoding::MIN_SAMPLE {
            self.bytes += batch.get_array_memory_size();
        }
        self.coalescer.push_batch(batch)?;
        if self.bytes >= GATHER_BYTES {
            self.coalescer.finish_buffered_batch()?;
        }
        Ok(self.ready())
    }

    /// The rows still gathered, as a last batch.
    fn finish(&mut self) -> Result<Vec<RecordBatch>, ArrowError> {
        self.coalescer.finish_buffered_batch()?;
        Ok(self.ready())
    }

    fn ready(&mut self) -> Vec<RecordBatch> {
        let ready: Vec<RecordBatch> =
            std::iter::from_fn(|| self.coalescer.next_completed_batch()).collect();
        if self.coalescer.get_buffered_rows() == 0 {
            self.bytes = 0;
        }
        ready
    }
}

/// Decodes one input into batches shaped to `schema`, handed to `emit`. Returns the rows
/// decoded.
fn decode(
    input: &InputFile,
    schemas: &mut BatchSchemas<'_>,
    data: Bytes,
    schema: &SchemaRef,
    cfg: &MergeConfig,
    emit: &mut dyn FnMut(RecordBatch) -> Result<(), MergeError>,
) -> Result<u64, MergeError> {
    let key = input.meta.key.as_str();
    let corrupt = |e: &dyn std::fmt::Display| MergeError::Unreadable {
        key: key.to_string(),
        reason: format!("corrupt file: {e}"),
    };
    let options = ArrowReaderOptions::new().with_schema(schemas.of(&input.schema));
    let footer = Arc::new(parse_footer(key, &data, Some(&input.footer.schema), false)?);
    let reader_md = ArrowReaderMetadata::try_new(footer, options).map_err(|e| corrupt(&e))?;
    let mut rows = 0u64;
    // With columns read as dictionaries, one row group at a time: a batch across two would hold
    // two column chunks' dictionaries, and the reader then makes one of them by hashing every
    // value (see `batch_schema`).
    let row_groups: Vec<Option<Vec<usize>>> = if schemas.dictionaries.is_empty() {
        vec![None]
    } else {
        (0..reader_md.metadata().num_row_groups())
            .map(|i| Some(vec![i]))
            .collect()
    };
    for row_groups in row_groups {
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), reader_md.clone())
                .with_batch_size(cfg.batch_rows);
        if let Some(row_groups) = row_groups {
            builder = builder.with_row_groups(row_groups);
        }
        let reader = builder.build().map_err(|e| corrupt(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(&e))?;
            rows += batch.num_rows() as u64;
            emit(conform(key, batch, schema)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringViewArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;

    fn rows(batches: &[RecordBatch]) -> Vec<usize> {
        batches.iter().map(|b| b.num_rows()).collect()
    }

    #[test]
    fn small_batches_are_gathered_and_large_ones_pass() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = |n: i64| {
            let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
            RecordBatch::try_new(schema.clone(), vec![ids]).unwrap()
        };
        let mut gather = Gather::new(schema.clone(), 8192);
        let mut out = Vec::new();
        for _ in 0..100 {
            out.extend(gather.push(batch(60)).unwrap());
        }
        assert!(out.is_empty(), "6,000 rows wait for more: {:?}", rows(&out));
        out.extend(gather.finish().unwrap());
        assert_eq!(rows(&out), [6000]);
        // A batch large enough to sample goes as it is.
        assert_eq!(rows(&gather.push(batch(4096)).unwrap()), [4096]);
    }

    #[test]
    fn few_rows_of_large_values_go_out_within_the_byte_bound() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "doc",
            DataType::Utf8View,
            false,
        )]));
        let doc = "x".repeat(1 << 20);
        let mut gather = Gather::new(schema.clone(), 8192);
        let mut out = Vec::new();
        // 40 files of two 1 MiB documents: gathered by count alone, all 80 rows (80 MiB)
        // would wait for the 8,192th.
        for _ in 0..40 {
            let docs: ArrayRef = Arc::new(StringViewArray::from_iter_values([&doc, &doc]));
            out.extend(
                gather
                    .push(RecordBatch::try_new(schema.clone(), vec![docs]).unwrap())
                    .unwrap(),
            );
        }
        out.extend(gather.finish().unwrap());
        assert_eq!(rows(&out).iter().sum::<usize>(), 80);
        assert!(out.len() >= 4, "{:?}", rows(&out));
        for batch in &out {
            assert!(
                batch.get_array_memory_size() <= GATHER_BYTES + (3 << 20),
                "{} bytes in {} rows",
                batch.get_array_memory_size(),
                batch.num_rows()
            );
        }
    }

    /// Five inputs of 3,000 rows (ids, a repeated category that is read as a dictionary, free
    /// text), in row groups of 1,000, in `dir`; with the last one torn when `torn`.
    fn write_inputs(dir: &Path, torn: bool) {
        use arrow_array::StringArray;
        for file in 0..5i64 {
            let ids = (file * 3000)..((file + 1) * 3000);
            let kinds = ids
                .clone()
                .map(|i| ["view", "click", "scroll"][(i % 3) as usize]);
            let notes = ids
                .clone()
                .map(|i| format!("note {} of file {file}", i * 7919 % 100_003));
            let batch = RecordBatch::try_from_iter([
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values(ids)) as ArrayRef,
                ),
                ("kind", Arc::new(StringArray::from_iter_values(kinds))),
                ("note", Arc::new(StringArray::from_iter_values(notes))),
            ])
            .unwrap();
            let props = WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .set_max_row_group_row_count(Some(1000))
                .build();
            let mut data = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut data, batch.schema(), Some(props)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            if torn && file == 4 {
                // 64 bytes go from its middle: the footer, at the end, still parses (as it
                // does before a merge), but the pages after the cut no longer do.
                data.drain(data.len() / 2..data.len() / 2 + 64);
            }
            std::fs::write(dir.join(format!("part-{file}.parquet")), data).unwrap();
        }
    }

    /// Merges the inputs in `dir` into `dest`, decoding as `decoding` says.
    async fn merge_dir_with(
        dir: &Path,
        dest: &Path,
        decoding: Decoding,
    ) -> Result<MergeStats, MergeError> {
        use crate::store::{LocalStore, Store};
        let store = LocalStore::try_new(dir).unwrap();
        let mut metas = store.list("").await.unwrap().objects;
        metas.sort_by(|a, b| a.key.cmp(&b.key));
        let inputs = super::super::footer::read_inputs(&store, &metas, u64::MAX, dir)
            .await
            .unwrap();
        let mut data = inputs.iter().map(|input| {
            Ok(Bytes::from(
                std::fs::read(dir.join(&input.meta.key)).unwrap(),
            ))
        });
        let mut next = || data.next();
        let cfg = MergeConfig::default();
        let schema = inputs[0].schema.clone();
        merge_to_file(
            &inputs,
            schema,
            &mut next,
            &cfg,
            Vec::new(),
            dest,
            &|_| {},
            decoding,
        )
    }

    #[tokio::test]
    async fn both_ways_of_decoding_write_the_same_file_and_fail_alike() {
        let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_inputs(dir.path(), false);
        let mut files = Vec::new();
        for decoding in [Decoding::Inline, Decoding::Ahead] {
            let dest = out.path().join(format!("{decoding:?}.parquet"));
            let stats = merge_dir_with(dir.path(), &dest, decoding).await.unwrap();
            assert_eq!(stats.rows, 15_000, "{decoding:?}");
            let bytes = std::fs::read(&dest).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone()))
                .unwrap()
                .build()
                .unwrap();
            let ids: Vec<i64> = reader
                .flat_map(|batch| {
                    let batch = batch.unwrap();
                    let ids = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap();
                    ids.values().to_vec()
                })
                .collect();
            assert_eq!(
                ids,
                (0..15_000).collect::<Vec<i64>>(),
                "{decoding:?}: rows in order"
            );
            files.push(bytes);
        }
        assert!(files[0] == files[1], "the same file byte for byte");

        // A torn input fails the merge with its name, whichever thread decodes it.
        let torn = tempfile::tempdir().unwrap();
        write_inputs(torn.path(), true);
        for decoding in [Decoding::Inline, Decoding::Ahead] {
            let dest = out.path().join("torn.parquet");
            let err = merge_dir_with(torn.path(), &dest, decoding)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("part-4.parquet"),
                "{decoding:?}: {err}"
            );
        }
    }
}

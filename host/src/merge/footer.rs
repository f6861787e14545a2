//! Reading and checking an input's footer before any of its data is merged.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::file::metadata::{
    ColumnChunkMetaData, FileMetaData, ParquetMetaData, ParquetMetaDataOptions,
    ParquetMetaDataReader, ParquetStatisticsPolicy,
};
use parquet::schema::types::{ColumnPath, SchemaDescPtr};

use super::{MergeError, catch_panic};
use crate::store::{ObjectMeta, Store, StoreError};

/// Most footers fit in this many bytes, read with the file's last bytes in one request.
const FOOTER_GUESS: u64 = 64 << 10;

/// Where a read is no request (a local disk), fewer last bytes are read first: reading again
/// for a longer footer costs less than copying 64 KiB of every file (the large benchmark set's
/// 800 footers of 10 KiB came with 41 MiB more).
const LOCAL_FOOTER_GUESS: u64 = 16 << 10;

/// An input file whose footer has been read and checked.
///
/// The parsed footer itself is not kept: it takes 16 KiB of memory for a one-row-group file of
/// 18 columns (54 KiB for four row groups), so a group of 10,000 small files held 220 MiB of
/// footers, outside the memory budget. What a merge needs before the data is kept instead
/// ([`FooterSummary`], schemas shared between inputs that have the same), and the footer is
/// parsed again from the data when the merge reads it ([`parse_footer`]).
#[derive(Debug, Clone)]
pub struct InputFile {
    pub meta: ObjectMeta,
    /// The Arrow schema to read it with (INT96 columns at a unit that holds them exactly).
    pub schema: SchemaRef,
    /// Rows counted from the row groups (not the file-level field, which some writers get wrong).
    pub rows: u64,
    pub footer: FooterSummary,
    /// The whole file, when it was read with its footer (see [`read_inputs`]).
    pub stashed: Option<Stashed>,
}

/// An input read whole with its footer, kept in a group's file in the work dir (unnamed: it
/// goes when the last input holding it does, even if the process is killed) until its merge
/// reads it.
#[derive(Debug, Clone)]
pub struct Stashed {
    file: Arc<std::fs::File>,
    offset: u64,
    len: usize,
}

impl Stashed {
    /// The input's bytes, as they were read (the version listed).
    pub fn read(&self) -> std::io::Result<Bytes> {
        let mut data = vec![0; self.len];
        self.file.read_exact_at(&mut data, self.offset)?;
        Ok(data.into())
    }
}

/// Where a group's small inputs are kept between their footer's read and their merge. Its
/// writes and reads (64 KiB at most, into and out of the page cache) are made in place, on
/// the task: quicker than a hand-off to the blocking pool and back.
struct Stash {
    file: Arc<std::fs::File>,
    len: u64,
    /// The work dir, named in errors.
    dir: PathBuf,
}

impl Stash {
    fn new(dir: &Path) -> Result<Stash, MergeError> {
        let file = std::fs::create_dir_all(dir)
            .and_then(|()| tempfile::tempfile_in(dir))
            .map_err(|e| stash_error(dir, e))?;
        Ok(Stash {
            file: Arc::new(file),
            len: 0,
            dir: dir.to_path_buf(),
        })
    }

    fn keep(&mut self, data: &Bytes) -> Result<Stashed, MergeError> {
        self.file
            .write_all_at(data, self.len)
            .map_err(|e| stash_error(&self.dir, e))?;
        let stashed = Stashed {
            file: self.file.clone(),
            offset: self.len,
            len: data.len(),
        };
        self.len += data.len() as u64;
        Ok(stashed)
    }
}

fn stash_error(dir: &Path, e: std::io::Error) -> MergeError {
    MergeError::Write(format!("work dir {}: {e}", dir.display()))
}

/// What a merge decides from an input's footer before reading its data.
#[derive(Debug, Clone)]
pub struct FooterSummary {
    /// The Parquet schema, given back to the parser when the footer is parsed again.
    pub schema: SchemaDescPtr,
    pub row_groups: usize,
    /// The largest row group's uncompressed size: what decoding it takes.
    pub largest_row_group_bytes: u64,
    /// All row groups' compressed size.
    pub compressed_bytes: u64,
    /// The codecs its column chunks use, each once.
    pub codecs: Vec<Compression>,
    /// Columns with a bloom filter in any row group, each once, with a bound on the distinct
    /// values those filters hold: a rewrite keeps them.
    pub bloom_filtered: Vec<(ColumnPath, u64)>,
    /// The string and binary columns (leaf indices in `schema`) that every row group stores as
    /// a small dictionary: a rewrite reads them as dictionaries ([`dictionary_columns`]).
    pub small_dictionaries: Vec<usize>,
}

impl FooterSummary {
    fn of(md: &ParquetMetaData) -> FooterSummary {
        let (mut codecs, mut bloom_filtered) = (Vec::new(), Vec::new());
        for column in md.row_groups().iter().flat_map(|rg| rg.columns()) {
            if !codecs.contains(&column.compression()) {
                codecs.push(column.compression());
            }
            if column.bloom_filter_offset().is_some() {
                add_distinct_values(
                    &mut bloom_filtered,
                    column.column_path(),
                    distinct_values_bound(column),
                );
            }
        }
        FooterSummary {
            schema: md.file_metadata().schema_descr_ptr(),
            row_groups: md.num_row_groups(),
            largest_row_group_bytes: md
                .row_groups()
                .iter()
                .map(|rg| rg.total_byte_size().max(0) as u64)
                .max()
                .unwrap_or(0),
            compressed_bytes: md
                .row_groups()
                .iter()
                .map(|rg| rg.compressed_size().max(0) as u64)
                .sum(),
            codecs,
            bloom_filtered,
            small_dictionaries: small_dictionaries(md),
        }
    }
}

/// The string and binary columns, outside lists and maps, stored as small dictionaries: every
/// data page of every column chunk holds indices into the chunk's dictionary (the writer never
/// fell back to plain values), and the dictionaries take at most three quarters of the
/// column's bytes, so that its values repeat (a category, a country, a URL). A column of
/// nearly unique values (ids, free text) is nearly all dictionary: 0.95 for the benchmark's
/// free text, 0.66–0.77 for its referrers (974 distinct in 4,096 rows), 0.03–0.1 for its
/// categories.
///
/// None in a file of row groups too small for a batch of their own: their rows are gathered
/// into full batches (`rewrite::Gather`), which merges their dictionaries by hashing, and
/// reading them one row group at a time costs a reader each (a file of 2,000 row groups of 10
/// rows took twice as long).
fn small_dictionaries(md: &ParquetMetaData) -> Vec<usize> {
    let rows = md.file_metadata().num_rows().max(0) as usize;
    if rows < super::encoding::MIN_SAMPLE * md.num_row_groups() {
        return Vec::new();
    }
    let descr = md.file_metadata().schema_descr();
    let small = |i: usize| {
        let (mut dictionary_bytes, mut bytes) = (0i64, 0i64);
        for chunk in md.row_groups().iter().map(|rg| rg.column(i)) {
            let only_indices = chunk.page_encoding_stats_mask().is_some_and(|mask| {
                mask.is_only(Encoding::RLE_DICTIONARY) || mask.is_only(Encoding::PLAIN_DICTIONARY)
            });
            let Some(dictionary_offset) = chunk.dictionary_page_offset() else {
                return false;
            };
            let dictionary = chunk.data_page_offset() - dictionary_offset;
            if !only_indices || dictionary <= 0 {
                return false;
            }
            dictionary_bytes += dictionary;
            bytes += chunk.compressed_size();
        }
        bytes > 0 && dictionary_bytes * 4 <= bytes * 3
    };
    (0..descr.num_columns())
        .filter(|&i| {
            let column = descr.column(i);
            column.physical_type() == PhysicalType::BYTE_ARRAY
                && column.max_rep_level() == 0
                && small(i)
        })
        .collect()
}

/// The columns a rewrite of `inputs` reads as Arrow dictionaries: those that every input stores
/// as small dictionaries. The writer then interns each input dictionary's values once, not each
/// row's (the vendored parquet crate's patch, `vendor/README.md`). A column read so from an
/// input that stores it otherwise would be made a dictionary by hashing every value, as the
/// writer would have done; so it takes every input.
pub fn dictionary_columns(inputs: &[InputFile]) -> Vec<ColumnPath> {
    let paths = |input: &InputFile| -> Vec<ColumnPath> {
        let schema = &input.footer.schema;
        let leaves = &input.footer.small_dictionaries;
        leaves
            .iter()
            .map(|&i| schema.column(i).path().clone())
            .collect()
    };
    let Some((first, rest)) = inputs.split_first() else {
        return Vec::new();
    };
    let mut columns = paths(first);
    for input in rest {
        if columns.is_empty() {
            break;
        }
        let theirs = paths(input);
        columns.retain(|c| theirs.contains(c));
    }
    columns
}

/// Adds `distinct` to `column`'s bound in `bounds`: distinct values of several chunks are at
/// most the sum of theirs.
pub fn add_distinct_values(
    bounds: &mut Vec<(ColumnPath, u64)>,
    column: &ColumnPath,
    distinct: u64,
) {
    match bounds.iter_mut().find(|(path, _)| path == column) {
        Some((_, bound)) => *bound = bound.saturating_add(distinct),
        None => bounds.push((column.clone(), distinct)),
    }
}

/// How many distinct values a column chunk's bloom filter was made for, at most: what its size
/// holds at 6 bits a value (a false positive rate of about 8%; at the usual 1–5% a writer spends
/// more), or its value count when the footer does not give the size. A writer that sized its
/// filter too small makes this too small, and the merged filter then only filters less well:
/// no filter ever misses a value it was given.
fn distinct_values_bound(column: &ColumnChunkMetaData) -> u64 {
    let values = column.num_values().max(0) as u64;
    match column.bloom_filter_length() {
        Some(bytes) => (bytes.max(0) as u64 * 8 / 6).min(values),
        None => values,
    }
}

/// The footer of an input whose whole data is in hand, parsed as [`read_inputs`] parsed it
/// (row count corrected). The data is the version whose footer was read and checked (same
/// ETag), so this is that footer, and its schema is the one read then: given `schema`, it is
/// not decoded again. Without `statistics`, the column chunks' statistics are skipped (a
/// rewrite reads the data, not them). For a file of one small row group, schema and statistics
/// are most of the footer.
pub fn parse_footer(
    key: &str,
    data: &Bytes,
    schema: Option<&SchemaDescPtr>,
    statistics: bool,
) -> Result<ParquetMetaData, MergeError> {
    let mut options = match statistics {
        true => ParquetMetaDataOptions::new(),
        false => without_statistics(),
    };
    if let Some(schema) = schema {
        options.set_schema(schema.clone());
    }
    let metadata = catch_panic(key, || {
        ParquetMetaDataReader::new()
            .with_metadata_options(Some(options))
            .parse_and_finish(data)
            .map_err(|e| unreadable(key, format!("corrupt footer: {e}")))
    })?;
    with_true_row_count(key, metadata)
}

/// Parsing options that skip the column chunks' statistics: nothing here but a concat's copy
/// of the chunks needs them.
fn without_statistics() -> ParquetMetaDataOptions {
    let mut options = ParquetMetaDataOptions::new();
    options.set_column_stats_policy(ParquetStatisticsPolicy::SkipAll);
    options.set_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
    options.set_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll);
    options
}

fn unreadable(key: &str, reason: impl Into<String>) -> MergeError {
    MergeError::Unreadable {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Reads and decodes the footer of an object, in one request when it is small: a bounded
/// range over its last bytes (its size is known from the listing, so no suffix range is
/// needed; some S3-compatible servers fail a suffix range longer than the object). The column
/// chunks' statistics are skipped: no caller uses them.
pub async fn read_metadata(
    store: &dyn Store,
    meta: &ObjectMeta,
) -> Result<ParquetMetaData, MergeError> {
    let (key, size) = (meta.key.as_str(), meta.size);
    let guess = if store.reads_are_requests() {
        FOOTER_GUESS
    } else {
        LOCAL_FOOTER_GUESS
    };
    let tail = store
        .get_range(key, size.saturating_sub(guess)..size)
        .await?;
    metadata_from_tail(store, meta, &tail).await
}

/// Decodes the footer of an object from its last bytes, reading more if the footer is longer.
async fn metadata_from_tail(
    store: &dyn Store,
    meta: &ObjectMeta,
    tail: &Bytes,
) -> Result<ParquetMetaData, MergeError> {
    let (key, size) = (meta.key.as_str(), meta.size);
    let footer_len = footer_length(key, tail, size)?;
    let metadata_bytes = if footer_len + 8 <= tail.len() as u64 {
        tail.slice(tail.len() - 8 - footer_len as usize..tail.len() - 8)
    } else {
        store
            .get_range(key, size - 8 - footer_len..size - 8)
            .await?
    };
    // Which data pages are dictionary indices is kept (as a mask of encodings): it decides
    // which columns a rewrite reads as dictionaries (`FooterSummary::small_dictionaries`).
    let options = without_statistics().with_encoding_stats_policy(ParquetStatisticsPolicy::KeepAll);
    catch_panic(key, || {
        ParquetMetaDataReader::decode_metadata_with_options(&metadata_bytes, Some(&options))
            .map_err(|e| unreadable(key, format!("corrupt footer: {e}")))
    })
}

/// Rows in a file, counted from its row groups.
pub fn row_group_rows(md: &ParquetMetaData) -> i64 {
    md.row_groups().iter().map(|rg| rg.num_rows()).sum()
}

/// Reads and checks the footers of `metas`, several at once on a store that gains from it
/// ([`Store::reads_at_once`]). In the order given; the first that fails (in that order) is
/// the error. Inputs with the same schema share one copy of it.
///
/// On a store where each read is a request ([`Store::reads_are_requests`]), a file no larger
/// than the bytes read to find its footer is read whole, only if it is still the version
/// listed, and kept in `work_dir` until its merge reads it: a partition of thousands of tiny
/// files costs one GET per file instead of two.
pub async fn read_inputs(
    store: &dyn Store,
    metas: &[ObjectMeta],
    max_row_group_bytes: u64,
    work_dir: &Path,
) -> Result<Vec<InputFile>, MergeError> {
    let small = |meta: &ObjectMeta| meta.size <= FOOTER_GUESS;
    let mut stash = if store.reads_are_requests() && metas.iter().any(small) {
        Some(Stash::new(work_dir)?)
    } else {
        None
    };
    let whole = stash.is_some();
    // The futures are made up front (they do nothing until polled): made inside the stream,
    // their borrows would keep callers' futures from being `Send`.
    let reads: Vec<_> = metas
        .iter()
        .map(|meta| read_input(store, meta, max_row_group_bytes, whole && small(meta)))
        .collect();
    let mut schemas = SharedSchemas::default();
    futures::stream::iter(reads)
        .buffered(store.reads_at_once().max(1))
        .map(|read| {
            let (mut input, data) = read?;
            if let (Some(stash), Some(data)) = (stash.as_mut(), data) {
                input.stashed = Some(stash.keep(&data)?);
            }
            Ok(schemas.share(input))
        })
        .try_collect()
        .await
}

/// The distinct schemas of a group's inputs seen so far, so that inputs with the same schema
/// point at one copy (a few KiB each) instead of one per file.
#[derive(Default)]
struct SharedSchemas {
    arrow: Vec<SchemaRef>,
    parquet: Vec<SchemaDescPtr>,
}

impl SharedSchemas {
    /// Schema drift may give every file its own schema; past this many, new ones are kept
    /// unshared rather than compared with ever more.
    const MOST: usize = 16;

    fn share(&mut self, mut input: InputFile) -> InputFile {
        fn shared<T: PartialEq + ?Sized>(seen: &mut Vec<Arc<T>>, this: &mut Arc<T>) {
            match seen.iter().find(|s| ***s == **this) {
                Some(same) => *this = same.clone(),
                None if seen.len() < SharedSchemas::MOST => seen.push(this.clone()),
                None => {}
            }
        }
        shared(&mut self.arrow, &mut input.schema);
        shared(&mut self.parquet, &mut input.footer.schema);
        input
    }
}

/// Reads the footer of `meta.key` and checks what can be checked without its data.
async fn read_input(
    store: &dyn Store,
    meta: &ObjectMeta,
    max_row_group_bytes: u64,
    whole: bool,
) -> Result<(InputFile, Option<Bytes>), MergeError> {
    let key = meta.key.as_str();
    let (metadata, data) = if whole {
        // Exactly the version that was listed, as the merge would read it.
        let data = store.get_unchanged(key, &meta.etag).await?;
        if data.len() as u64 != meta.size {
            return Err(StoreError::Changed { key: key.into() }.into());
        }
        (metadata_from_tail(store, meta, &data).await?, Some(data))
    } else {
        (read_metadata(store, meta).await?, None)
    };
    let metadata = with_true_row_count(key, metadata)?;
    let rows = metadata.file_metadata().num_rows() as u64;
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let bytes = rg.total_byte_size().max(0) as u64;
        if bytes > max_row_group_bytes {
            return Err(MergeError::TooLarge {
                key: key.to_string(),
                row_group: i,
                bytes,
                limit: max_row_group_bytes,
            });
        }
    }
    let fm = metadata.file_metadata();
    let mut schema = catch_panic(key, || {
        parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
            .map_err(|e| unreadable(key, format!("unsupported schema: {e}")))
    })?;
    if has_int96(&metadata) {
        let whole = match &data {
            Some(data) => data.clone(),
            None => store.get(key).await?,
        };
        let exact_in_micros = catch_panic(key, || int96_columns_exact_in_micros(key, &whole))?;
        schema = int96_as_micros(schema, &exact_in_micros);
    }
    let input = InputFile {
        meta: meta.clone(),
        schema: Arc::new(schema),
        rows,
        footer: FooterSummary::of(&metadata),
        stashed: None,
    };
    Ok((input, data))
}

/// Checks the magic bytes and returns the footer length.
fn footer_length(key: &str, tail: &Bytes, size: u64) -> Result<u64, MergeError> {
    if size < 12 {
        return Err(unreadable(
            key,
            format!("not a Parquet file: {size} bytes is too small to hold one"),
        ));
    }
    let end = &tail[tail.len() - 4..];
    if end == b"PARE" {
        return Err(unreadable(
            key,
            "encrypted Parquet (encrypted footer) is not supported; the file was left as it is",
        ));
    }
    if end != b"PAR1" {
        return Err(unreadable(
            key,
            "not a Parquet file: no PAR1 magic at its end (truncated or another format)",
        ));
    }
    let len_bytes: [u8; 4] = tail[tail.len() - 8..tail.len() - 4]
        .try_into()
        .map_err(|_| unreadable(key, "corrupt footer"))?;
    let len = u32::from_le_bytes(len_bytes) as u64;
    if len + 12 > size {
        return Err(unreadable(
            key,
            format!("corrupt footer: it claims {len} bytes in a {size}-byte file"),
        ));
    }
    Ok(len)
}

/// Replaces the file-level row count by the sum of the row groups'. Some writers leave the
/// file-level field at 0, and the Arrow reader then returns no rows at all.
fn with_true_row_count(key: &str, md: ParquetMetaData) -> Result<ParquetMetaData, MergeError> {
    let mut rows: i64 = 0;
    for rg in md.row_groups() {
        if rg.num_rows() < 0 {
            return Err(unreadable(
                key,
                "corrupt footer: a row group has a negative row count",
            ));
        }
        rows = rows
            .checked_add(rg.num_rows())
            .ok_or_else(|| unreadable(key, "corrupt footer: row counts overflow"))?;
    }
    let fm = md.file_metadata();
    if fm.num_rows() == rows {
        return Ok(md);
    }
    let file_metadata = FileMetaData::new(
        fm.version(),
        rows,
        fm.created_by().map(str::to_string),
        fm.key_value_metadata().cloned(),
        fm.schema_descr_ptr(),
        fm.column_orders().cloned(),
    );
    let row_groups = md.row_groups().to_vec();
    Ok(ParquetMetaData::new(file_metadata, row_groups))
}

fn has_int96(md: &ParquetMetaData) -> bool {
    md.file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .any(|c| c.physical_type() == PhysicalType::INT96)
}

/// For each top-level INT96 column, whether every value is a whole number of microseconds.
///
/// The Arrow reader maps INT96 to nanoseconds by default, which silently wraps instants outside
/// 1677..2262 (Spark writes such values). Read as microseconds, those fit; but sub-microsecond
/// digits would be cut. So a column is read as microseconds exactly when no value has them, and
/// otherwise as nanoseconds, and then only if every value fits there; else the file is refused.
fn int96_columns_exact_in_micros(key: &str, data: &Bytes) -> Result<Vec<String>, MergeError> {
    use parquet::column::reader::get_typed_column_reader;
    use parquet::data_type::Int96Type;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let fail = |e: parquet::errors::ParquetError| unreadable(key, format!("corrupt file: {e}"));
    let reader = SerializedFileReader::new(data.clone()).map_err(fail)?;
    let descr = reader.metadata().file_metadata().schema_descr_ptr();
    let mut exact = Vec::new();
    for (col, c) in descr.columns().iter().enumerate() {
        if c.physical_type() != PhysicalType::INT96 {
            continue;
        }
        let top_level = c.path().parts().len() == 1;
        let (mut whole_micros, mut fits_nanos) = (true, true);
        for rg in 0..reader.num_row_groups() {
            let rg_reader = reader.get_row_group(rg).map_err(fail)?;
            let mut column = get_typed_column_reader::<Int96Type>(
                rg_reader.get_column_reader(col).map_err(fail)?,
            );
            loop {
                let mut values = Vec::new();
                let mut defs = Vec::new();
                let mut reps = Vec::new();
                let (records, _, _) = column
                    .read_records(8192, Some(&mut defs), Some(&mut reps), &mut values)
                    .map_err(fail)?;
                for v in &values {
                    // The words as every reader (arrow-rs, pyarrow, Spark) reads them: signed.
                    let d = v.data();
                    let nanos = ((d[1] as i64) << 32).wrapping_add(d[0] as i64);
                    let days = d[2] as i32 as i64 - 2_440_588;
                    whole_micros &= nanos % 1000 == 0;
                    fits_nanos &= days
                        .checked_mul(86_400_000_000_000)
                        .and_then(|n| n.checked_add(nanos))
                        .is_some();
                }
                if records == 0 {
                    break;
                }
            }
        }
        if !whole_micros && !fits_nanos {
            return Err(unreadable(
                key,
                format!(
                    "INT96 column {} holds instants outside the nanosecond range with \
                     sub-microsecond digits: no Arrow timestamp holds them exactly, so it was refused",
                    c.path()
                ),
            ));
        }
        if whole_micros && top_level {
            exact.push(c.name().to_string());
        } else if !fits_nanos {
            return Err(unreadable(
                key,
                format!(
                    "nested INT96 column {} holds instants outside the nanosecond range",
                    c.path()
                ),
            ));
        }
    }
    Ok(exact)
}

/// The schema with the named top-level INT96 timestamp columns read as microseconds.
fn int96_as_micros(schema: Schema, columns: &[String]) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, tz) if columns.contains(f.name()) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::ZstdLevel;
    use parquet::file::properties::WriterProperties;

    /// Writes `rows` rows in row groups of `per_group`, with a `note` column when `noted`.
    fn write(dir: &std::path::Path, name: &str, rows: i64, per_group: usize, noted: bool) {
        let mut columns: Vec<(&str, ArrayRef)> =
            vec![("id", Arc::new(Int64Array::from_iter_values(0..rows)))];
        if noted {
            let notes = (0..rows).map(|i| format!("note {i}"));
            columns.push(("note", Arc::new(StringArray::from_iter_values(notes))));
        }
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
            .set_max_row_group_row_count(Some(per_group))
            .build();
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[tokio::test]
    async fn footers_shorter_and_longer_than_the_first_read_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "short.parquet", 1000, 300, true);
        write(dir.path(), "long.parquet", 40_000, 50, true);
        let store = LocalStore::try_new(dir.path()).unwrap();
        assert!(
            !store.reads_are_requests(),
            "a local store reads its short guess first"
        );
        for (name, row_groups) in [("short.parquet", 4), ("long.parquet", 800)] {
            let data = std::fs::read(dir.path().join(name)).unwrap();
            let size = data.len() as u64;
            let footer_len = footer_length(name, &Bytes::from(data), size).unwrap();
            let longer = footer_len + 8 > LOCAL_FOOTER_GUESS;
            assert_eq!(
                longer,
                name == "long.parquet",
                "{name}: footer of {footer_len}"
            );

            let meta = store.head(name).await.unwrap();
            let md = read_metadata(&store, &meta).await.unwrap();
            assert_eq!(md.num_row_groups(), row_groups, "{name}");
            assert_eq!(row_group_rows(&md), if longer { 40_000 } else { 1000 });
        }
    }

    #[tokio::test]
    async fn inputs_keep_a_summary_of_their_footer_and_share_equal_schemas() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.parquet", "b.parquet", "d.parquet"] {
            write(dir.path(), name, 1000, 300, true);
        }
        write(dir.path(), "c.parquet", 10, 300, false);
        let store = LocalStore::try_new(dir.path()).unwrap();
        let metas = store.list("").await.unwrap().objects;
        let inputs = read_inputs(&store, &metas, u64::MAX, dir.path())
            .await
            .unwrap();
        let [a, b, c, d] = &inputs[..] else {
            panic!("four inputs expected, got {}", inputs.len())
        };

        // Inputs of one schema point at one copy of it, Arrow's and Parquet's; another
        // schema has its own.
        for other in [b, d] {
            assert!(Arc::ptr_eq(&a.schema, &other.schema));
            assert!(Arc::ptr_eq(&a.footer.schema, &other.footer.schema));
        }
        assert!(!Arc::ptr_eq(&a.schema, &c.schema));
        assert_ne!(a.footer.schema, c.footer.schema);

        // The summary says what the footer, parsed again from the data, says: in full, and
        // with the schema handed back and the statistics skipped (as a rewrite parses it).
        let data = store.get(&a.meta.key).await.unwrap();
        let full = parse_footer(&a.meta.key, &data, None, true).unwrap();
        let footer = parse_footer(&a.meta.key, &data, Some(&a.footer.schema), false).unwrap();
        assert!(Arc::ptr_eq(
            &footer.file_metadata().schema_descr_ptr(),
            &a.footer.schema
        ));
        assert_eq!(*full.file_metadata().schema_descr(), *a.footer.schema);
        let statistics = |md: &ParquetMetaData| {
            md.row_groups()
                .iter()
                .flat_map(|rg| rg.columns())
                .filter(|c| c.statistics().is_some())
                .count()
        };
        assert_eq!(statistics(&full), 4 * 2, "id and note, in four row groups");
        assert_eq!(statistics(&footer), 0);
        for (rg, full_rg) in footer.row_groups().iter().zip(full.row_groups()) {
            assert_eq!(rg.num_rows(), full_rg.num_rows());
            let offsets = |rg: &parquet::file::metadata::RowGroupMetaData| {
                rg.columns()
                    .iter()
                    .map(|c| c.byte_range())
                    .collect::<Vec<_>>()
            };
            assert_eq!(offsets(rg), offsets(full_rg));
        }
        assert_eq!(a.rows, 1000);
        assert_eq!(row_group_rows(&footer), 1000);
        assert_eq!(a.footer.row_groups, 4);
        assert_eq!(footer.num_row_groups(), 4);
        let sizes = |f: fn(&parquet::file::metadata::RowGroupMetaData) -> i64| {
            footer.row_groups().iter().map(f).collect::<Vec<_>>()
        };
        let uncompressed = sizes(|rg| rg.total_byte_size());
        let compressed = sizes(|rg| rg.compressed_size());
        assert_eq!(
            a.footer.largest_row_group_bytes,
            *uncompressed.iter().max().unwrap() as u64
        );
        assert_eq!(
            a.footer.compressed_bytes,
            compressed.iter().sum::<i64>() as u64
        );
        // (A file records its codec, not the level it was written at.)
        assert!(
            matches!(a.footer.codecs[..], [Compression::ZSTD(_)]),
            "{:?}",
            a.footer.codecs
        );
        assert_eq!((c.rows, c.footer.row_groups), (10, 1));
    }

    /// A column's bloom filters are summed up into a bound on its distinct values, from the
    /// filters' sizes: what a merged filter is sized for before it is folded down.
    #[tokio::test]
    async fn bloom_filtered_columns_are_summed_up_from_their_filters_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let ids = Int64Array::from_iter_values((0..40_000).map(|i| i % 1_000));
        let kinds = StringArray::from_iter_values((0..40_000).map(|i| format!("kind {}", i % 12)));
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(ids) as ArrayRef),
            ("kind", Arc::new(kinds) as ArrayRef),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(10_000))
            .set_column_bloom_filter_enabled("id".into(), true)
            .set_column_bloom_filter_fpp("id".into(), 0.01)
            .build();
        let file = std::fs::File::create(dir.path().join("f.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let store = LocalStore::try_new(dir.path()).unwrap();
        let metas = store.list("").await.unwrap().objects;
        let inputs = read_inputs(&store, &metas, u64::MAX, dir.path())
            .await
            .unwrap();
        let [(column, bound)] = &inputs[0].footer.bloom_filtered[..] else {
            panic!("only id has filters: {:?}", inputs[0].footer.bloom_filtered)
        };
        assert_eq!(column.string(), "id");
        // Four row groups of 1,000 distinct ids: at least those, and (filters come in powers of
        // two) up to three times as many, far below the 40,000 rows.
        assert!((4_000..=12_000).contains(bound), "{bound}");
    }

    #[tokio::test]
    async fn columns_of_small_dictionaries_in_every_input_are_read_as_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        // `kind` repeats a dozen values, `note` never repeats, `item` (in a struct) repeats;
        // in `c.parquet` the writer kept no dictionary for `kind`.
        let write = |name: &str, kind_dictionary: bool, row_group_rows: usize| {
            let n = 20_000;
            let kinds = (0..n).map(|i| format!("kind {}", i % 12));
            let notes = (0..n).map(|i| format!("note {i} of a free text"));
            let items = StringArray::from_iter_values((0..n).map(|i| format!("item {}", i % 50)));
            let item = Arc::new(Field::new("item", DataType::Utf8, false));
            let detail = arrow_array::StructArray::from(vec![(item, Arc::new(items) as ArrayRef)]);
            let batch = RecordBatch::try_from_iter([
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
                ),
                ("kind", Arc::new(StringArray::from_iter_values(kinds))),
                ("note", Arc::new(StringArray::from_iter_values(notes))),
                ("detail", Arc::new(detail)),
            ])
            .unwrap();
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(Some(row_group_rows))
                .set_column_dictionary_enabled("kind".into(), kind_dictionary)
                .build();
            let file = std::fs::File::create(dir.path().join(name)).unwrap();
            let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
        };
        write("a.parquet", true, 5_000);
        write("b.parquet", true, 5_000);
        write("c.parquet", false, 5_000);
        // Row groups smaller than a batch: nothing is read as a dictionary.
        write("d.parquet", true, 1_000);
        let store = LocalStore::try_new(dir.path()).unwrap();
        let metas = store.list("").await.unwrap().objects;
        let inputs = read_inputs(&store, &metas, u64::MAX, dir.path())
            .await
            .unwrap();
        let names = |columns: Vec<ColumnPath>| -> Vec<String> {
            columns.iter().map(|c| c.string()).collect()
        };
        assert_eq!(
            names(dictionary_columns(&inputs[..2])),
            ["kind", "detail.item"]
        );
        // One input without the dictionary: `kind` is read as it is stored there.
        assert_eq!(names(dictionary_columns(&inputs[..3])), ["detail.item"]);
        assert!(dictionary_columns(&inputs[3..]).is_empty());
        assert!(dictionary_columns(&inputs).is_empty());
        assert!(dictionary_columns(&[]).is_empty());
    }

    #[test]
    fn a_footer_parsed_from_data_that_is_no_parquet_is_refused_with_the_key() {
        let data = Bytes::from_static(b"not parquet at all");
        let err = parse_footer("t/x.parquet", &data, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t/x.parquet: corrupt footer"), "{err}");
    }
}

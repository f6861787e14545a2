//! How each column of a merged file is encoded, decided from the merge's first batch.
//!
//! parquet's writer starts every column chunk with a dictionary and falls back to plain
//! encoding once the dictionary passes 1 MiB. For a column of nearly unique values (ids,
//! timestamps, coordinates, free text) that first stretch costs: the dictionary plus its
//! indices compress worse than the plain values would, and interning them costs time. So the
//! first batch of a merge is sampled, and a column whose sample is at least 99% distinct is
//! written without a dictionary. (Sampling 8,192 values, 99% distinct means a domain of about
//! 400,000 values or more, which no 1 MiB dictionary of 8-byte values holds anyway.)
//!
//! An integer column drawn from every value of a wide range (item, product or page ids from 1
//! to 200,000, say) is written without a dictionary too, though its values repeat: its
//! dictionary index would need as many bits as the value's distance from the minimum, which
//! delta or plain encoding with zstd stores about as small, and interning each value costs a
//! lookup in a table too large for the cache. Measured on the benchmark's `item_ids`: 0.6%
//! more bytes for that column, 9% less CPU for the whole merge. The sample judges the range
//! dense when it holds at least 90% of the distinct values that draws spread evenly over the
//! range would give; a skewed column (user ids, most events from a few users) or a sparse one
//! (prices) falls short of that and keeps its dictionary, and so does a range under 65,536
//! values, whose table stays in the cache. List elements are judged like top-level columns;
//! maps keep their dictionaries.
//!
//! A column written without a dictionary need not be written plain. With adaptive encodings
//! (`[merge] adaptive_encodings`, the default) the sample's first 2,048 values are also
//! written, alone and with the configured codec, in each encoding that suits its type:
//! DELTA_BINARY_PACKED for integers and timestamps, BYTE_STREAM_SPLIT for floats,
//! DELTA_LENGTH_BYTE_ARRAY and DELTA_BYTE_ARRAY for strings and binaries. The smallest wins if
//! it beats plain by at least 3%, so a column keeps the most widely read encoding unless another
//! clearly pays. Measured on the benchmark's event table: delta encoding shrinks the ascending
//! ids to almost nothing, the event times by a quarter and the random session ids by a tenth;
//! delta lengths shrink the free text by 4%; the coordinates (rounded decimals) stay plain,
//! where byte stream splitting would have made them two thirds larger.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_cast::cast;
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Fewest non-null values a sample needs before it decides anything.
pub(super) const MIN_SAMPLE: usize = 1024;
/// Share of distinct values above which a column is written without a dictionary.
const NEARLY_UNIQUE: f64 = 0.99;
/// Fewest values an integer range spans before it can be judged dense.
const WIDE_RANGE: f64 = 65_536.0;
/// Distinct values in the sample, over those an even spread over its range would give, above
/// which the range is dense.
const DENSE: f64 = 0.9;
/// An encoding other than plain must make the sample at most this share of plain's size.
const WORTH_IT: f64 = 0.97;
/// Values each encoding is tried on: enough to tell the encodings apart (a block of delta
/// encoding holds 128), few enough that the trials cost little beside a small merge (on the
/// whole first batch of 8,192 they were 4% of the instructions of merging the small benchmark
/// set, with the same choices).
const TRIAL_VALUES: usize = 2048;

/// A column to write without a dictionary, and the encoding to write it in (`None`: plain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainColumn {
    pub path: ColumnPath,
    pub encoding: Option<Encoding>,
}

/// The leaf columns of `sample` to write without a dictionary, each with its encoding; trials
/// of other encodings than plain run only when `adaptive`.
pub fn plain_columns(
    sample: &RecordBatch,
    compression: Compression,
    adaptive: bool,
) -> Vec<PlainColumn> {
    let mut leaves = Vec::new();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        visit(vec![field.name().clone()], column, &mut leaves);
    }
    leaves
        .into_iter()
        .filter(|(_, column)| {
            distinct_count(column).is_some_and(|(distinct, values)| {
                distinct as f64 >= NEARLY_UNIQUE * values as f64
                    || dense_wide_range(column, distinct, values)
            })
        })
        .map(|(path, column)| PlainColumn {
            path,
            encoding: adaptive
                .then(|| smallest_encoding(&column, compression))
                .flatten(),
        })
        .collect()
}

/// Collects the leaves a sample can judge: primitive and byte-array columns, inside structs
/// too.
fn visit(path: Vec<String>, column: &ArrayRef, out: &mut Vec<(ColumnPath, ArrayRef)>) {
    match column.data_type() {
        DataType::Struct(fields) => {
            if let Some(s) = column.as_any().downcast_ref::<StructArray>() {
                for (field, child) in fields.iter().zip(s.columns()) {
                    let mut child_path = path.clone();
                    child_path.push(field.name().clone());
                    visit(child_path, child, out);
                }
            }
        }
        // parquet names a list's leaf `<list>.list.<element>`, whatever the list's kind.
        DataType::List(element) | DataType::LargeList(element) => {
            let values = match column.as_list_opt::<i32>() {
                Some(list) => Some(list.values().clone()),
                None => column
                    .as_list_opt::<i64>()
                    .map(|list| list.values().clone()),
            };
            if let Some(values) = values {
                let mut child_path = path;
                child_path.extend(["list".to_string(), element.name().clone()]);
                visit(child_path, &values, out);
            }
        }
        DataType::FixedSizeList(..)
        | DataType::Map(..)
        | DataType::Dictionary(..)
        | DataType::Boolean
        | DataType::Null => {}
        dt if dt.is_nested() => {}
        _ => out.push((ColumnPath::new(path), column.clone())),
    }
}

/// Distinct non-null values and non-null values, when there are enough of them.
fn distinct_count(column: &ArrayRef) -> Option<(usize, usize)> {
    let values = column.len() - column.null_count();
    if values < MIN_SAMPLE {
        return None;
    }
    let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())]).ok()?;
    let rows = converter
        .convert_columns(std::slice::from_ref(column))
        .ok()?;
    // A fast hasher: this runs over every value of the first batch, for each column, per merge
    // (SipHash here was 3% of merging the small benchmark set).
    let distinct: foldhash::HashSet<&[u8]> = (0..column.len())
        .filter(|&i| column.is_valid(i))
        .map(|i| rows.row(i).data())
        .collect();
    Some((distinct.len(), values))
}

/// Whether an integer column's sample of `values` values, `distinct` of them distinct, looks
/// drawn from every value of a range of at least [`WIDE_RANGE`] values.
fn dense_wide_range(column: &ArrayRef, distinct: usize, values: usize) -> bool {
    if !column.data_type().is_integer() {
        return false;
    }
    // Values beyond i64 (large u64s) turn null here and leave the column as it is.
    let Ok(ints) = cast(column, &DataType::Int64) else {
        return false;
    };
    let Some(ints) = ints.as_primitive_opt::<Int64Type>() else {
        return false;
    };
    if ints.null_count() != column.null_count() {
        return false;
    }
    let Some((min, max)) = ints.iter().flatten().fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
    }) else {
        return false;
    };
    let range = max as f64 - min as f64 + 1.0;
    // Draws spread evenly over `range` values: the expected number of distinct ones.
    let spread = range * -(-(values as f64) / range).exp_m1();
    range >= WIDE_RANGE && distinct as f64 >= DENSE * spread
}

/// The encodings worth trying for a column of this type, besides plain. Every one of them is
/// read by the Parquet readers in use today (parquet-mr since 1.12, Trino, Spark, DuckDB,
/// pyarrow); `adaptive_encodings = false` is there for older ones.
fn candidates(data_type: &DataType) -> &'static [Encoding] {
    use DataType::*;
    match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Date32 | Date64
        | Time32(_) | Time64(_) | Timestamp(..) | Duration(_) => &[Encoding::DELTA_BINARY_PACKED],
        Float32 | Float64 => &[Encoding::BYTE_STREAM_SPLIT],
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => &[
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
            Encoding::DELTA_BYTE_ARRAY,
        ],
        _ => &[],
    }
}

/// The encoding that writes `column` clearly smaller than plain, if one does.
fn smallest_encoding(column: &ArrayRef, compression: Compression) -> Option<Encoding> {
    let candidates = candidates(column.data_type());
    if candidates.is_empty() {
        return None;
    }
    let sample = column.slice(0, column.len().min(TRIAL_VALUES));
    let plain = trial_size(&sample, Encoding::PLAIN, compression)? as f64;
    candidates
        .iter()
        .filter_map(|&e| Some((e, trial_size(&sample, e, compression)?)))
        .filter(|&(_, size)| (size as f64) <= plain * WORTH_IT)
        .min_by_key(|&(_, size)| size)
        .map(|(e, _)| e)
}

/// The compressed size of `column` written alone in `encoding`.
fn trial_size(column: &ArrayRef, encoding: Encoding, compression: Compression) -> Option<i64> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "c",
        column.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![column.clone()]).ok()?;
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(false)
        .set_encoding(encoding)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props)).ok()?;
    writer.write(&batch).ok()?;
    let written = writer.close().ok()?;
    Some(written.row_groups().first()?.column(0).compressed_size())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};

    #[test]
    fn nearly_unique_leaves_are_found_by_path() {
        let n = 8192;
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
        let kinds: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| ["click", "view", "buy"][i as usize % 3]),
        ));
        let lat: ArrayRef = Arc::new(Float64Array::from_iter_values(
            (0..n).map(|i| i as f64 * 0.001),
        ));
        let os: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| ["ios", "android"][i as usize % 2]),
        ));
        let context: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(arrow_schema::Field::new("lat", DataType::Float64, false)),
                lat,
            ),
            (
                Arc::new(arrow_schema::Field::new("os", DataType::Utf8, false)),
                os,
            ),
        ]));
        let few: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100));
        let batch =
            RecordBatch::try_from_iter([("id", ids), ("kind", kinds), ("context", context)])
                .unwrap();
        let found: Vec<String> = plain_columns(&batch, zstd(), false)
            .iter()
            .map(|c| {
                assert_eq!(c.encoding, None, "no trials without adaptive encodings");
                c.path.string()
            })
            .collect();
        assert_eq!(found, ["id", "context.lat"]);
        // Too small a sample decides nothing.
        let small = RecordBatch::try_from_iter([("id", few)]).unwrap();
        assert!(plain_columns(&small, zstd(), true).is_empty());
    }

    fn zstd() -> Compression {
        Compression::ZSTD(parquet::basic::ZstdLevel::try_new(3).unwrap())
    }

    /// A deterministic stream of pseudo-random numbers below `n`.
    fn noise(n: u64) -> impl Iterator<Item = u64> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
    }

    #[test]
    fn integers_dense_in_a_wide_range_skip_the_dictionary() {
        use arrow_array::{Int32Array, ListArray};
        let n = 8192;
        // Item ids drawn evenly from 1..200,000, two and a half per row as in the benchmark,
        // inside a list: 20,000 draws give about 19,000 distinct values.
        let items = Int32Array::from_iter_values(noise(200_000).take(20_480).map(|v| v as i32 + 1));
        let offsets =
            arrow::buffer::OffsetBuffer::from_lengths((0..n).map(|i| [2usize, 3, 2, 3][i % 4]));
        let element = Arc::new(Field::new("element", DataType::Int32, true));
        let item_ids: ArrayRef = Arc::new(ListArray::new(element, offsets, Arc::new(items), None));
        // Skewed: most rows from a few users of a range of millions.
        let users: ArrayRef = Arc::new(Int64Array::from_iter_values(
            noise(1 << 20)
                .take(n)
                .map(|v| ((1 << 20) / (v + 1)) as i64 * 4_999),
        ));
        // Dense, but in a range small enough for a dictionary to stay in the cache.
        let screens: ArrayRef = Arc::new(Int32Array::from_iter_values(
            noise(4_000).take(n).map(|v| v as i32),
        ));
        let batch = RecordBatch::try_from_iter([
            ("item_ids", item_ids),
            ("user_id", users),
            ("screen_w", screens),
        ])
        .unwrap();
        let chosen: Vec<(String, Option<Encoding>)> = plain_columns(&batch, zstd(), true)
            .into_iter()
            .map(|c| (c.path.string(), c.encoding))
            .collect();
        assert_eq!(
            chosen,
            [(
                "item_ids.list.element".to_string(),
                Some(Encoding::DELTA_BINARY_PACKED)
            )]
        );
    }

    #[test]
    fn trials_pick_the_encoding_that_pays_and_only_then() {
        let n = 8192;
        // Ascending ids and timestamps: delta encoding stores small differences.
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(1_000_000..1_000_000 + n));
        // Coordinates rounded to four decimals: plain compresses them best, as measured on the
        // benchmark data (byte stream split made them half as large again).
        let lat: ArrayRef = Arc::new(Float64Array::from_iter_values(
            noise(1_300_000)
                .take(n as usize)
                .map(|v| v as f64 / 1e4 - 60.0),
        ));
        // Free text as the benchmark's: two phrases from a pool and a number. Lengths kept
        // apart from the bytes let zstd find the repeated phrases more easily.
        let words = "the a of to in for on with user page item cart order price button menu \
                     search result error network timeout retry login session token image"
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>();
        let mut pick = noise(1 << 20);
        let mut next = move |n: usize| pick.next().unwrap() as usize % n;
        let phrases: Vec<String> = (0..512)
            .map(|_| {
                let len = 3 + next(9);
                (0..len)
                    .map(|_| words[next(words.len())])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|_| {
            let (a, b) = (&phrases[next(512)], &phrases[next(512)]);
            format!("{a} {b} {}", next(1_000_000))
        })));
        let batch =
            RecordBatch::try_from_iter([("id", ids), ("lat", lat), ("message", text)]).unwrap();
        let chosen: Vec<(String, Option<Encoding>)> = plain_columns(&batch, zstd(), true)
            .into_iter()
            .map(|c| (c.path.string(), c.encoding))
            .collect();
        assert_eq!(
            chosen[0],
            ("id".into(), Some(Encoding::DELTA_BINARY_PACKED))
        );
        assert_eq!(chosen[1], ("lat".into(), None));
        assert_eq!(chosen[2].0, "message");
        assert!(chosen[2].1.is_some(), "{chosen:?}");
    }
}

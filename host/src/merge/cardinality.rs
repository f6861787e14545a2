//! Which columns to write without a dictionary.
//!
//! parquet's writer starts every column chunk with a dictionary and falls back to plain
//! encoding once the dictionary passes 1 MiB. For a column of nearly unique values (ids,
//! timestamps, coordinates, free text) that first stretch costs: the dictionary plus its
//! indices compress worse than the plain values would, and interning them costs time. So the
//! first batch of a merge is sampled, and a column whose sample is at least 99% distinct is
//! written plain. (Sampling 8,192 values, 99% distinct means a domain of about 400,000 values
//! or more, which no 1 MiB dictionary of 8-byte values holds anyway.) Lists and maps keep
//! their dictionaries: their samples say too little.

use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_row::{RowConverter, SortField};
use arrow_schema::DataType;
use parquet::schema::types::ColumnPath;

/// Fewest non-null values a sample needs before it decides anything.
const MIN_SAMPLE: usize = 1024;
/// Share of distinct values above which a column is written plain.
const NEARLY_UNIQUE: f64 = 0.99;

/// The leaf columns of `sample` that look nearly unique.
pub fn nearly_unique_columns(sample: &RecordBatch) -> Vec<ColumnPath> {
    let mut out = Vec::new();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        visit(vec![field.name().clone()], column, &mut out);
    }
    out
}

fn visit(path: Vec<String>, column: &ArrayRef, out: &mut Vec<ColumnPath>) {
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
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Map(..)
        | DataType::Dictionary(..)
        | DataType::Boolean
        | DataType::Null => {}
        dt if dt.is_nested() => {}
        _ => {
            if distinct_share(column).is_some_and(|share| share >= NEARLY_UNIQUE) {
                out.push(ColumnPath::new(path));
            }
        }
    }
}

/// Distinct non-null values over non-null values, when there are enough of them.
fn distinct_share(column: &ArrayRef) -> Option<f64> {
    let values = column.len() - column.null_count();
    if values < MIN_SAMPLE {
        return None;
    }
    let converter = RowConverter::new(vec![SortField::new(column.data_type().clone())]).ok()?;
    let rows = converter
        .convert_columns(std::slice::from_ref(column))
        .ok()?;
    let distinct: std::collections::HashSet<&[u8]> = (0..column.len())
        .filter(|&i| column.is_valid(i))
        .map(|i| rows.row(i).data())
        .collect();
    Some(distinct.len() as f64 / values as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

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
        let found: Vec<String> = nearly_unique_columns(&batch)
            .iter()
            .map(|p| p.string())
            .collect();
        assert_eq!(found, ["id", "context.lat"]);
        // Too small a sample decides nothing.
        let small = RecordBatch::try_from_iter([("id", few)]).unwrap();
        assert!(nearly_unique_columns(&small).is_empty());
    }
}

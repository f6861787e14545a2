//! `compactor demo`: a table of small files to watch compactor work on, with no data of your
//! own. Four hourly partitions: the current hour (hot, left alone) and the three before it.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::layout::hour_prefix;
use crate::store::Store;

pub const FILES_PER_PARTITION: usize = 24;
pub const ROWS_PER_FILE: usize = 2_000;
const HOUR_MS: i64 = 3_600_000;

/// Seeds `table_prefix` unless it already holds something. Returns the number of files written.
pub async fn seed(store: &dyn Store, table_prefix: &str, now_ms: i64) -> anyhow::Result<usize> {
    let existing = store.list(table_prefix).await?;
    if !existing.objects.is_empty() || !existing.prefixes.is_empty() {
        return Ok(0);
    }
    let dir = tempfile::tempdir()?;
    let mut written = 0;
    let mut event_id: i64 = 0;
    for hours_ago in 0..4 {
        let hour_start = (now_ms.div_euclid(HOUR_MS) - hours_ago) * HOUR_MS;
        let (y, m, d) = compactor_plugin_sdk::civil_from_days(hour_start.div_euclid(24 * HOUR_MS));
        let hour = (hour_start.rem_euclid(24 * HOUR_MS) / HOUR_MS) as u32;
        let prefix = hour_prefix(table_prefix, &format!("{y:04}-{m:02}-{d:02}"), hour);
        for file in 0..FILES_PER_PARTITION {
            let batch = demo_batch(event_id, hour_start)?;
            event_id += ROWS_PER_FILE as i64;
            // A new file for each object: `put_file` may publish this very file.
            let path = dir
                .path()
                .join(format!("part-{hours_ago}-{file:05}.parquet"));
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            let mut writer =
                ArrowWriter::try_new(std::fs::File::create(&path)?, batch.schema(), Some(props))?;
            writer.write(&batch)?;
            writer.close()?;
            store
                .put_file(&format!("{prefix}part-{file:05}.parquet"), &path)
                .await?;
            written += 1;
        }
    }
    Ok(written)
}

fn demo_batch(first_id: i64, hour_start_ms: i64) -> anyhow::Result<RecordBatch> {
    const TYPES: [&str; 5] = ["page_view", "click", "search", "add_to_cart", "purchase"];
    let n = ROWS_PER_FILE as i64;
    let ids: Vec<i64> = (first_id..first_id + n).collect();
    // A cheap deterministic scramble, so columns are not trivially sorted.
    let mix = |i: i64| {
        (i.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            >> 17)
            .abs()
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Int64, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(
            TimestampMicrosecondArray::from(
                ids.iter()
                    .map(|&i| hour_start_ms * 1000 + mix(i) % (HOUR_MS * 1000))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|&i| format!("user-{}", mix(i) % 5000)),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|&i| TYPES[(mix(i) % 5) as usize]),
        )),
        Arc::new(Float64Array::from_iter(ids.iter().map(|&i| {
            (mix(i) % 7 == 0).then(|| (mix(i) % 10_000) as f64 / 100.0)
        }))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

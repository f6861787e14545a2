//! Row groups of even size.
//!
//! parquet's writer cuts a row group when its encoded size reaches `row_group_size`, so a
//! merge's last row group holds whatever is left: 2,880,000 rows came out as 1,304,192,
//! 1,302,208 and 273,600, and a merge in parts ended each part with a short one. Query engines
//! split their work by row group, so a short one is a task with little to do, and one more
//! footer entry and set of dictionaries for nothing.
//!
//! A merge knows its row count from the inputs' footers, and the row group being written
//! measures how many bytes a row takes. From the two it tells how many row groups the byte
//! limit will need, and cuts the rows evenly among them: 2,880,000 rows become three row
//! groups of 960,000. The estimate is made again for each batch, so it is at its best when a
//! cut is near. The byte limit still holds: if the estimate was short, the writer cuts there
//! itself, as before.

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::errors::Result;

/// Cuts the row groups of one merge evenly by row count, within the writer's byte limit.
#[derive(Debug)]
pub struct EvenRowGroups {
    /// Rows the merge will write.
    total_rows: u64,
    /// Rows given to the writer so far.
    written: u64,
    /// The byte size a row group is cut at.
    row_group_bytes: u64,
}

impl EvenRowGroups {
    pub fn new(total_rows: u64, row_group_bytes: u64) -> Self {
        EvenRowGroups {
            total_rows,
            written: 0,
            row_group_bytes: row_group_bytes.max(1),
        }
    }

    /// Writes `batch`, cutting the row group where an even share of the rows left ends.
    pub fn write<W: std::io::Write + Send>(
        &mut self,
        writer: &mut ArrowWriter<W>,
        batch: &RecordBatch,
    ) -> Result<()> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let buffered = writer.in_progress_rows() as u64;
            let room = self
                .rows_per_group(buffered, writer.in_progress_size() as u64)
                .map(|even| even.saturating_sub(buffered));
            if room == Some(0) {
                writer.flush()?;
                continue;
            }
            let take = room.map_or(rest.num_rows(), |room| {
                rest.num_rows()
                    .min(usize::try_from(room).unwrap_or(usize::MAX))
            });
            writer.write(&rest.slice(0, take))?;
            self.written += take as u64;
            rest = rest.slice(take, rest.num_rows() - take);
        }
        Ok(())
    }

    /// The rows the row group being written should end at, from its `buffered` rows taking
    /// `bytes`; `None` until it has any.
    fn rows_per_group(&self, buffered: u64, bytes: u64) -> Option<u64> {
        if buffered == 0 || bytes == 0 {
            return None;
        }
        // Rows for this row group and the ones after it.
        let left = self
            .total_rows
            .saturating_sub(self.written.saturating_sub(buffered));
        // No slack either way: measured on the benchmark partition with row group sizes from
        // 16 to 100 MiB, 10% more let the byte limit cut first (short row groups at the end
        // again), 3% less added a row group at the end.
        let fit = buffered as f64 * self.row_group_bytes as f64 / bytes as f64;
        let groups = (left as f64 / fit.max(1.0)).ceil().max(1.0);
        Some((left as f64 / groups).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_shared_evenly_among_the_row_groups_the_byte_limit_needs() {
        // 2,880,000 rows; 100,000 buffered take 5 MiB of a 64 MiB limit: 1.28 million rows
        // fit, so three row groups of 960,000.
        let mut even = EvenRowGroups::new(2_880_000, 64 << 20);
        even.written = 100_000;
        assert_eq!(even.rows_per_group(100_000, 5 << 20), Some(960_000));
        // After one row group of 960,000, the 1,920,000 left need two.
        even.written = 960_000 + 50_000;
        assert_eq!(even.rows_per_group(50_000, 2_500_000), Some(960_000));
    }

    #[test]
    fn rows_that_fit_in_one_row_group_stay_in_one() {
        let even = EvenRowGroups::new(1_000, 64 << 20);
        assert_eq!(even.rows_per_group(0, 0), None);
        let mut even = EvenRowGroups::new(1_000_000, 64 << 20);
        even.written = 10_000;
        // 10,000 rows in 640 KiB: 1,000,000 rows come to 62.5 MiB, under the limit.
        assert_eq!(even.rows_per_group(10_000, 640 << 10), Some(1_000_000));
    }

    #[test]
    fn rows_just_over_one_row_group_make_two_even_ones() {
        // 1,050,000 rows where 1,000,000 fit: two of 525,000, not 1,000,000 and 50,000.
        let mut even = EvenRowGroups::new(1_050_000, 64 << 20);
        even.written = 500_000;
        assert_eq!(even.rows_per_group(500_000, 32 << 20), Some(525_000));
    }
}

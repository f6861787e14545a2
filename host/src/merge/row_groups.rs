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
//! groups of 960,000. The bytes per row are measured again for each batch, and the fewest seen
//! in the merge count (see [`EvenRowGroups::fit`]).
//!
//! The writer's own byte limit is only a safety net, at twice the size ([`writer_byte_limit`]):
//! two cuts by different measures of the same size left a row group of 1,456 rows after one
//! of 482,890, each time the writer's fired a little before ours.

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::errors::Result;

/// The byte limit to give parquet's writer for row groups of `row_group_bytes`: a net for
/// rows much wider than those measured so far, which [`EvenRowGroups`] would not cut in time.
pub fn writer_byte_limit(row_group_bytes: u64) -> usize {
    usize::try_from(row_group_bytes.max(1).saturating_mul(2)).unwrap_or(usize::MAX)
}

/// Cuts the row groups of one merge evenly by row count.
#[derive(Debug)]
pub struct EvenRowGroups {
    /// Rows the merge will write.
    total_rows: u64,
    /// Rows given to the writer so far.
    written: u64,
    /// The byte size a row group is cut at.
    row_group_bytes: u64,
    /// The most rows a row group of `row_group_bytes` was seen to hold in this merge (0: not
    /// seen yet). The writer counts each page being filled at its size before compression,
    /// so its estimate of a row group's bytes swings high between one page and the next
    /// (by about 20% with row groups of 4 MiB, 3% at 64 MiB); the fewest bytes per row seen
    /// is the closest to what the row group will hold.
    fit: f64,
}

impl EvenRowGroups {
    pub fn new(total_rows: u64, row_group_bytes: u64) -> Self {
        EvenRowGroups {
            total_rows,
            written: 0,
            row_group_bytes: row_group_bytes.max(1),
            fit: 0.0,
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
            self.observe(buffered, writer.in_progress_size() as u64);
            let room = self
                .rows_per_group(buffered)
                .map(|even| even.saturating_sub(buffered));
            if room == Some(0) {
                writer.flush()?;
                continue;
            }
            let take = room.map_or(rest.num_rows(), |room| {
                rest.num_rows()
                    .min(usize::try_from(room).unwrap_or(usize::MAX))
            });
            self.written += take as u64;
            if take == rest.num_rows() {
                return writer.write(&rest);
            }
            writer.write(&rest.slice(0, take))?;
            rest = rest.slice(take, rest.num_rows() - take);
        }
        Ok(())
    }

    /// Takes in that the row group being written holds `buffered` rows in `bytes`.
    fn observe(&mut self, buffered: u64, bytes: u64) {
        if buffered > 0 && bytes > 0 {
            let fit = buffered as f64 * self.row_group_bytes as f64 / bytes as f64;
            self.fit = self.fit.max(fit);
        }
    }

    /// The rows the row group being written, with `buffered` rows so far, should end at;
    /// `None` until a row group's bytes per row were seen.
    fn rows_per_group(&self, buffered: u64) -> Option<u64> {
        if self.fit <= 0.0 {
            return None;
        }
        // Rows for this row group and the ones after it.
        let left = self
            .total_rows
            .saturating_sub(self.written.saturating_sub(buffered));
        let groups = (left as f64 / self.fit.max(1.0)).ceil().max(1.0);
        Some((left as f64 / groups).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows per row group `even` gives once `written` rows went in, the `buffered` of them
    /// in the row group being written taking `bytes`.
    fn after(even: &mut EvenRowGroups, written: u64, buffered: u64, bytes: u64) -> Option<u64> {
        even.written = written;
        even.observe(buffered, bytes);
        even.rows_per_group(buffered)
    }

    #[test]
    fn rows_are_shared_evenly_among_the_row_groups_the_byte_limit_needs() {
        // 2,880,000 rows; 100,000 buffered take 5 MiB of a 64 MiB limit: 1.28 million rows
        // fit, so three row groups of 960,000.
        let mut even = EvenRowGroups::new(2_880_000, 64 << 20);
        assert_eq!(even.rows_per_group(0), None, "nothing seen yet");
        assert_eq!(after(&mut even, 100_000, 100_000, 5 << 20), Some(960_000));
        // After one row group of 960,000, the 1,920,000 left need two.
        let written = 960_000 + 50_000;
        assert_eq!(after(&mut even, written, 50_000, 2_500_000), Some(960_000));
    }

    #[test]
    fn rows_that_fit_in_one_row_group_stay_in_one() {
        // 10,000 rows in 640 KiB: 1,000,000 rows come to 62.5 MiB, under the limit.
        let mut even = EvenRowGroups::new(1_000_000, 64 << 20);
        assert_eq!(after(&mut even, 10_000, 10_000, 640 << 10), Some(1_000_000));
    }

    #[test]
    fn rows_just_over_one_row_group_make_two_even_ones() {
        // 1,050,000 rows where 1,000,000 fit: two of 525,000, not 1,000,000 and 50,000.
        let mut even = EvenRowGroups::new(1_050_000, 64 << 20);
        assert_eq!(after(&mut even, 500_000, 500_000, 32 << 20), Some(525_000));
    }

    #[test]
    fn a_page_not_yet_compressed_does_not_add_a_row_group() {
        // 145,000 rows where 60,000 fit: three row groups. Later, with pages waiting to be
        // compressed, the same rows look 25% larger; the row groups stay at three.
        let mut even = EvenRowGroups::new(145_000, 4 << 20);
        assert_eq!(after(&mut even, 30_000, 30_000, 2 << 20), Some(48_334));
        assert_eq!(after(&mut even, 45_000, 45_000, 3_932_160), Some(48_334));
        // And the third row group takes all that is left.
        let written = 2 * 48_334 + 10_000;
        let last = after(&mut even, written, 10_000, 1_000_000);
        assert_eq!(last, Some(145_000 - 2 * 48_334));
    }
}

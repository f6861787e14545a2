//! The default compaction policy.
//!
//! * **Coldness.** A partition with hive time keys (`dt`/`date`/`ds` = `YYYY-MM-DD` or
//!   `YYYYMMDD`, optional `hour`/`hr` = `HH`; or `year`/`month`/`day`/`hour`) covers a known
//!   window of time, read in `timezone` (default UTC); it is cold once that window has ended
//!   plus `grace_period`. A partition without parseable time keys is cold once its newest file
//!   is older than `undated_cold_after`.
//! * **Grouping.** Files already at or above `target_size` are left alone. The rest, taken in key
//!   order, are cut into `max(1, total / target)` consecutive groups of nearly equal size, so every
//!   output lands between the target and twice the target whenever the data allows. A partition
//!   with fewer than `min_files` small files is skipped, as is a last group below the target with
//!   fewer than `min_files` files.
//!
//! Everything here is plain Rust, tested natively; `export_policy!` makes it the plugin.

mod settings;

use compactor_plugin_sdk::{
    Decision, FileInfo, Group, Partition, Policy, has_hour_key, partition_window_end_ms,
    partition_window_end_ms_in, split_even,
};
pub use settings::Settings;

/// The default policy with a table's settings.
pub struct DefaultPolicy(pub Settings);

impl Policy for DefaultPolicy {
    const NAME: &'static str = "default";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &[(String, String)]) -> Result<Self, String> {
        Settings::from_pairs(settings).map(DefaultPolicy)
    }

    fn is_cold(&self, p: &Partition, now_ms: i64) -> bool {
        may_be_cold(&self.0, &p.keys, now_ms)
    }

    fn plan(&self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Decision {
        plan(&self.0, &p.keys, files, now_ms)
    }
}

compactor_plugin_sdk::export_policy!(DefaultPolicy);

/// Whether a prefix may hold cold data, asked before it is listed.
///
/// Only an hourly window that is still open is certainly hot: a `dt=` level without `hour`
/// may hold finished hours below it, so its own files are judged by [`plan`].
pub fn may_be_cold(settings: &Settings, keys: &[(String, String)], now_ms: i64) -> bool {
    !has_hour_key(keys) || is_cold(settings, keys, now_ms)
}

/// Whether the partition's time window has ended (plus the grace period). Undated partitions
/// count as cold here; `plan` then judges them by their files' ages.
pub fn is_cold(settings: &Settings, keys: &[(String, String)], now_ms: i64) -> bool {
    match partition_window_end_ms_in(keys, &settings.timezone) {
        Some(end) => now_ms >= end.saturating_add(settings.grace_period_ms),
        None => true,
    }
}

/// Decide which files of a partition to merge.
pub fn plan(
    settings: &Settings,
    keys: &[(String, String)],
    files: &[FileInfo],
    now_ms: i64,
) -> Decision {
    if !is_cold(settings, keys, now_ms) {
        return Decision::Skip("hot: the partition's time window has not ended".into());
    }
    if partition_window_end_ms(keys).is_none()
        && let Some(newest) = files.iter().map(|f| f.last_modified_ms).max()
    {
        let age_ms = now_ms.saturating_sub(newest);
        if age_ms < 0 {
            // A writer's clock (or the store's) ahead of ours: the file is as new as can be.
            return Decision::Skip(format!(
                "hot: newest file is dated {}s ahead of this host's clock",
                age_ms.unsigned_abs().div_ceil(1000)
            ));
        }
        if age_ms < settings.undated_cold_after_ms {
            return Decision::Skip(format!(
                "hot: newest file is {}s old, cold after {}s (undated_cold_after)",
                age_ms / 1000,
                settings.undated_cold_after_ms / 1000
            ));
        }
    }

    let target = settings.target_size;
    // Key order makes the answer independent of listing order and keeps neighbours together.
    let mut small: Vec<u32> = (0..files.len() as u32)
        .filter(|&i| files[i as usize].size < target)
        .collect();
    small.sort_by(|&a, &b| files[a as usize].key.cmp(&files[b as usize].key));

    if small.len() < settings.min_files {
        return Decision::Skip(format!(
            "too few files: {} below the target size, min_files is {}",
            small.len(),
            settings.min_files
        ));
    }

    let sizes: Vec<u64> = small.iter().map(|&i| files[i as usize].size).collect();
    let mut groups = Vec::new();
    for range in split_even(&sizes, target) {
        let total: u64 = sizes[range.clone()].iter().sum();
        if total < target && range.len() < settings.min_files {
            continue;
        }
        groups.push(Group {
            compression: settings.compression.clone(),
            ..Group::new(small[range].to_vec(), target)
        });
    }
    if groups.is_empty() {
        return Decision::Skip("no group reaches the target size or min_files".into());
    }
    Decision::Compact(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const HOUR_MS: i64 = 3_600_000;

    fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn files(sizes_mib: &[u64]) -> Vec<FileInfo> {
        sizes_mib
            .iter()
            .enumerate()
            .map(|(i, &s)| FileInfo {
                key: format!("t/part-{i:05}.parquet"),
                size: s * MIB,
                last_modified_ms: 0,
                rows: None,
            })
            .collect()
    }

    fn hour_start_ms(date: &str, hour: i64) -> i64 {
        partition_window_end_ms(&keys(&[("dt", date), ("hour", "00")])).unwrap() - HOUR_MS
            + hour * HOUR_MS
    }

    #[test]
    fn current_hour_is_hot_and_the_previous_one_cold() {
        let s = Settings::default();
        let now = hour_start_ms("2026-11-20", 3) + 10 * 60_000; // 03:10
        assert!(!is_cold(
            &s,
            &keys(&[("dt", "2026-11-20"), ("hour", "03")]),
            now
        ));
        assert!(is_cold(
            &s,
            &keys(&[("dt", "2026-11-20"), ("hour", "02")]),
            now
        ));
        assert!(!is_cold(
            &s,
            &keys(&[("dt", "2026-11-20"), ("hour", "04")]),
            now
        ));
    }

    #[test]
    fn grace_period_delays_coldness() {
        let s = Settings::from_pairs(&[("grace_period".into(), "15m".into())]).unwrap();
        let p = keys(&[("dt", "2026-11-20"), ("hour", "02")]);
        let end = hour_start_ms("2026-11-20", 3);
        assert!(!is_cold(&s, &p, end + 14 * 60_000));
        assert!(is_cold(&s, &p, end + 15 * 60_000));
    }

    #[test]
    fn keys_in_local_time_are_cold_when_the_local_hour_ends() {
        let s = Settings::from_pairs(&[("timezone".into(), "America/New_York".into())]).unwrap();
        // 05:10 UTC is 00:10 in New York (UTC-5 in November).
        let now = hour_start_ms("2026-11-20", 5) + 10 * 60_000;
        let local_midnight = keys(&[("dt", "2026-11-20"), ("hour", "00")]);
        let local_eleven = keys(&[("dt", "2026-11-19"), ("hour", "23")]);
        assert!(
            !is_cold(&s, &local_midnight, now),
            "New York's current hour"
        );
        assert!(!may_be_cold(&s, &local_midnight, now));
        assert!(is_cold(&s, &local_eleven, now), "ended at 05:00 UTC");
        // Read as UTC, the hour being written would count as long over.
        assert!(is_cold(&Settings::default(), &local_midnight, now));
    }

    #[test]
    fn daily_partition_is_cold_after_midnight() {
        let s = Settings::default();
        let p = keys(&[("date", "2026-11-20")]);
        let fs = files(&[1, 1]);
        // The day level may hold finished hours below it, so it is always listed...
        assert!(may_be_cold(&s, &p, hour_start_ms("2026-11-20", 23)));
        // ...but its own files wait for the day to end.
        assert!(
            matches!(plan(&s, &p, &fs, hour_start_ms("2026-11-20", 23)), Decision::Skip(r) if r.starts_with("hot"))
        );
        assert!(matches!(
            plan(&s, &p, &fs, hour_start_ms("2026-11-21", 0)),
            Decision::Compact(_)
        ));
    }

    #[test]
    fn only_open_hours_are_skipped_before_listing() {
        let s = Settings::default();
        let now = hour_start_ms("2026-11-20", 3) + 1;
        assert!(!may_be_cold(
            &s,
            &keys(&[("dt", "2026-11-20"), ("hour", "03")]),
            now
        ));
        assert!(may_be_cold(
            &s,
            &keys(&[("dt", "2026-11-20"), ("hour", "02")]),
            now
        ));
        assert!(may_be_cold(&s, &keys(&[("dt", "2026-11-20")]), now));
    }

    #[test]
    fn year_month_day_hour_layout_is_understood() {
        let s = Settings::default();
        let p = keys(&[
            ("year", "2026"),
            ("month", "11"),
            ("day", "20"),
            ("hour", "2"),
        ]);
        assert!(!is_cold(&s, &p, hour_start_ms("2026-11-20", 2) + 1));
        assert!(is_cold(&s, &p, hour_start_ms("2026-11-20", 3)));
    }

    #[test]
    fn undated_partition_waits_for_its_newest_file_to_age() {
        let s = Settings::default();
        let p = keys(&[("region", "eu")]);
        let mut fs = files(&[1, 1, 1]);
        fs[1].last_modified_ms = 10 * HOUR_MS;
        assert!(is_cold(&s, &p, 0));
        assert!(
            matches!(plan(&s, &p, &fs, 10 * HOUR_MS + 59 * 60_000), Decision::Skip(r) if r.starts_with("hot"))
        );
        assert!(matches!(
            plan(&s, &p, &fs, 11 * HOUR_MS),
            Decision::Compact(_)
        ));
        // A file dated ahead of the host's clock is hot, and said so without a negative age.
        let skip = plan(&s, &p, &fs, 10 * HOUR_MS - 2_500);
        assert!(
            matches!(&skip, Decision::Skip(r) if r == "hot: newest file is dated 3s ahead of this host's clock"),
            "{skip:?}"
        );
    }

    #[test]
    fn hive_and_airflow_day_keys_are_dated() {
        let s = Settings::default();
        let today = keys(&[("ds", "20261120")]);
        let hour = keys(&[("ds", "20261120"), ("hr", "03")]);
        let end_of_day = hour_start_ms("2026-11-21", 0);
        // Read as dated: hot until its day ends, however old its files.
        assert!(!is_cold(&s, &today, end_of_day - 1));
        assert!(
            matches!(plan(&s, &today, &files(&[1, 1]), end_of_day - 1), Decision::Skip(r) if r.starts_with("hot: the partition's time window"))
        );
        assert!(matches!(
            plan(&s, &today, &files(&[1, 1]), end_of_day),
            Decision::Compact(_)
        ));
        // An open `hr` hour is skipped before listing, as an open `hour` is.
        assert!(!may_be_cold(&s, &hour, hour_start_ms("2026-11-20", 3) + 1));
        assert!(may_be_cold(&s, &hour, hour_start_ms("2026-11-20", 4)));
        assert!(
            may_be_cold(&s, &today, end_of_day - 1),
            "a day level may hold finished hours"
        );
    }

    #[test]
    fn unparseable_time_keys_count_as_undated() {
        assert_eq!(partition_window_end_ms(&keys(&[("dt", "yesterday")])), None);
        assert_eq!(
            partition_window_end_ms(&keys(&[("dt", "2026-13-01")])),
            None
        );
        assert_eq!(
            partition_window_end_ms(&keys(&[("dt", "2026-11-20"), ("hour", "24")])),
            None
        );
    }

    /// File sizes in MiB, target MiB, min_files, and the expected groups as sizes.
    type GroupingCase = (&'static [u64], u64, usize, &'static [&'static [u64]]);

    #[test]
    fn grouping_table() {
        let cases: &[GroupingCase] = &[
            // Everything fits one window: one output, even above the target.
            (&[50, 50, 50, 50], 128, 2, &[&[50, 50, 50, 50]]),
            // Below the target but enough files: merged as a remainder.
            (&[1, 1, 1], 128, 2, &[&[1, 1, 1]]),
            // Two windows' worth: two nearly equal groups.
            // Two windows by total, but the lone last file has nothing to merge with.
            (&[100, 100, 100], 128, 2, &[&[100, 100]]),
            (&[60; 5], 128, 2, &[&[60, 60, 60], &[60, 60]]),
            // Large files are left alone; the small ones still merge.
            (&[200, 1, 1], 128, 2, &[&[1, 1]]),
            (&[128, 1], 128, 2, &[]),
            // min_files.
            (&[1, 1], 128, 3, &[]),
            (&[1, 1, 1], 128, 3, &[&[1, 1, 1]]),
        ];
        let p = keys(&[("dt", "2000-01-01")]);
        for (sizes, target, min_files, want) in cases {
            let s = Settings {
                target_size: target * MIB,
                min_files: *min_files,
                ..Settings::default()
            };
            let fs = files(sizes);
            let got: Vec<Vec<u64>> = match plan(&s, &p, &fs, i64::MAX / 2) {
                Decision::Skip(_) => vec![],
                Decision::Compact(groups) => groups
                    .iter()
                    .map(|g| {
                        assert_eq!(g.target_size, target * MIB);
                        g.files.iter().map(|&i| fs[i as usize].size / MIB).collect()
                    })
                    .collect(),
            };
            let want: Vec<Vec<u64>> = want.iter().map(|g| g.to_vec()).collect();
            assert_eq!(
                got, want,
                "sizes {sizes:?} target {target} min_files {min_files}"
            );
        }
    }

    /// The suite of `compactor plugin check`, natively.
    #[test]
    fn passes_the_plugin_check_scenarios() {
        use compactor_plugin_sdk::testing;
        let results = testing::check::<DefaultPolicy>(&[], testing::check_now_ms()).unwrap();
        let detail = |name| &results.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(detail("hot hour"), "hot (not listed)");
        assert!(detail("many tiny files").starts_with("compact 1 group(s): 5000 files"));
    }

    #[test]
    fn answer_does_not_depend_on_listing_order() {
        let s = Settings::default();
        let p = keys(&[("dt", "2000-01-01")]);
        let fs = files(&[40, 30, 90, 10, 70, 5, 60]);
        let mut reversed = fs.clone();
        reversed.reverse();
        let as_keys = |fs: &[FileInfo], d: Decision| -> Vec<Vec<String>> {
            match d {
                Decision::Skip(_) => vec![],
                Decision::Compact(g) => g
                    .into_iter()
                    .map(|g| {
                        g.files
                            .iter()
                            .map(|&i| fs[i as usize].key.clone())
                            .collect()
                    })
                    .collect(),
            }
        };
        assert_eq!(
            as_keys(&fs, plan(&s, &p, &fs, i64::MAX / 2)),
            as_keys(&reversed, plan(&s, &p, &reversed, i64::MAX / 2))
        );
    }
}

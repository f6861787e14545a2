//! An example policy: daily roll-up.
//!
//! For tables partitioned by day (`dt=YYYY-MM-DD/`, `date=`, or `year=/month=/day=`) whose
//! writers land files all day long, hourly or more often:
//!
//! * While the day runs (and for `grace_period` after midnight, for late files), its files are
//!   left alone until more than `intraday_max_files` of them are below the target; then they
//!   are merged, so readers never see more than that many small files in a day.
//! * Once the day is over, everything below the target is rolled up into outputs of about
//!   `target_size`, compressed with `rollup_compression` (zstd(9) by default: the day is cold
//!   now, and read far more often than written). Outputs at the target are left alone, so a
//!   day is rolled up once.
//!
//! Settings: `target_size` (128MiB), `intraday_max_files` (48), `grace_period` (1h),
//! `rollup_compression` (zstd(9)).

use compactor_plugin_sdk::{
    Decision, FileInfo, Group, Partition, Policy, has_hour_key, parse_codec, parse_count,
    parse_duration_ms, parse_size, partition_window_end_ms, split_even,
};

#[derive(Debug, Clone)]
pub struct DailyRollup {
    pub target_size: u64,
    pub intraday_max_files: usize,
    pub grace_period_ms: i64,
    pub rollup_compression: String,
}

impl Policy for DailyRollup {
    const NAME: &'static str = "daily-rollup";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &[(String, String)]) -> Result<Self, String> {
        let mut p = DailyRollup {
            target_size: 128 << 20,
            intraday_max_files: 48,
            grace_period_ms: 3_600_000,
            rollup_compression: "zstd(9)".into(),
        };
        for (key, value) in settings {
            let bad = |why: String| format!("setting {key} = {value:?}: {why}");
            match key.as_str() {
                "target_size" => p.target_size = parse_size(value).map_err(bad)?,
                "intraday_max_files" => {
                    p.intraday_max_files = parse_count(value, 1).map_err(bad)? as usize
                }
                "grace_period" => p.grace_period_ms = parse_duration_ms(value).map_err(bad)?,
                "rollup_compression" => {
                    parse_codec(value).map_err(bad)?;
                    p.rollup_compression = value.trim().to_string();
                }
                _ => {
                    return Err(format!(
                        "unknown setting {key:?}; known: target_size, intraday_max_files, \
                         grace_period, rollup_compression"
                    ));
                }
            }
        }
        Ok(p)
    }

    /// Hour levels are never this policy's business: not even listed.
    fn is_cold(&self, p: &Partition, _now_ms: i64) -> bool {
        !has_hour_key(&p.keys)
    }

    fn plan(&self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Decision {
        if has_hour_key(&p.keys) {
            return Decision::Skip(
                "daily-rollup is for daily partitions; this one has an hour key".into(),
            );
        }
        let Some(day_end) = partition_window_end_ms(&p.keys) else {
            return Decision::Skip("no day key (dt, date, or year/month/day)".into());
        };
        let mut small: Vec<u32> = (0..files.len() as u32)
            .filter(|&i| files[i as usize].size < self.target_size)
            .collect();
        small.sort_by(|&a, &b| files[a as usize].key.cmp(&files[b as usize].key));

        let day_over = now_ms >= day_end.saturating_add(self.grace_period_ms);
        if !day_over && small.len() <= self.intraday_max_files {
            return Decision::Skip(format!(
                "day still open: {} small files, merging above intraday_max_files ({})",
                small.len(),
                self.intraday_max_files
            ));
        }
        if small.len() < 2 {
            return Decision::Skip("rolled up: at most one file below the target".into());
        }
        let compression = day_over.then(|| self.rollup_compression.clone());
        let sizes: Vec<u64> = small.iter().map(|&i| files[i as usize].size).collect();
        let groups: Vec<Group> = split_even(&sizes, self.target_size)
            .into_iter()
            .filter(|run| run.len() >= 2)
            .map(|run| Group {
                compression: compression.clone(),
                ..Group::new(small[run].to_vec(), self.target_size)
            })
            .collect();
        Decision::Compact(groups)
    }
}

compactor_plugin_sdk::export_policy!(DailyRollup);

#[cfg(test)]
mod tests {
    use super::*;
    use compactor_plugin_sdk::testing::{self, at, files};

    const MIB: u64 = 1 << 20;

    fn policy(settings: &[(&str, &str)]) -> DailyRollup {
        let pairs: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DailyRollup::configure(&pairs).unwrap()
    }

    fn day() -> Partition {
        Partition::of("events", "events/dt=2026-11-20/")
    }

    fn groups(d: Decision) -> Vec<(usize, Option<String>)> {
        match d {
            Decision::Skip(reason) => panic!("skipped: {reason}"),
            Decision::Compact(g) => g
                .into_iter()
                .map(|g| (g.files.len(), g.compression))
                .collect(),
        }
    }

    #[test]
    fn an_open_day_waits_until_it_has_too_many_small_files() {
        let p = policy(&[("intraday_max_files", "24")]);
        let noon = at(2026, 11, 20, 12, 0);
        let d = p.plan(&day(), &files("events/dt=2026-11-20/", 24, MIB, noon), noon);
        assert!(matches!(d, Decision::Skip(r) if r.starts_with("day still open: 24")));
        // One more: merged now, with the host's compression.
        let d = p.plan(&day(), &files("events/dt=2026-11-20/", 25, MIB, noon), noon);
        assert_eq!(groups(d), [(25, None)]);
    }

    #[test]
    fn after_midnight_and_the_grace_period_the_day_is_rolled_up_once() {
        let p = policy(&[("target_size", "64MiB")]);
        let fs = files("events/dt=2026-11-20/", 48, 4 * MIB, 0);
        let late = at(2026, 11, 21, 0, 30);
        assert!(
            matches!(p.plan(&day(), &fs, late), Decision::Skip(_)),
            "in the grace period"
        );
        let next_day = at(2026, 11, 21, 1, 0);
        // 192 MiB at 64 MiB: three outputs of 16 files, compressed harder.
        assert_eq!(
            groups(p.plan(&day(), &fs, next_day)),
            vec![(16, Some("zstd(9)".to_string())); 3]
        );
        // The rolled-up day: three files at the target, nothing left to do.
        let done = files("events/dt=2026-11-20/", 3, 64 * MIB, next_day);
        assert!(
            matches!(p.plan(&day(), &done, next_day), Decision::Skip(r) if r.starts_with("rolled up"))
        );
    }

    #[test]
    fn hourly_partitions_are_not_its_business() {
        let p = policy(&[]);
        let hour = Partition::of("events", "events/dt=2026-11-20/hour=03/");
        assert!(!p.is_cold(&hour, 0));
        assert!(p.is_cold(&day(), 0));
    }

    #[test]
    fn passes_the_plugin_check_scenarios() {
        testing::check::<DailyRollup>(&[], testing::check_now_ms()).unwrap();
    }

    #[test]
    fn settings_are_checked() {
        let bad = |k: &str, v: &str| DailyRollup::configure(&[(k.into(), v.into())]).is_err();
        assert!(bad("rollup_compression", "zip"));
        assert!(bad("intraday_max_files", "0"));
        assert!(bad("nope", "1"));
    }
}

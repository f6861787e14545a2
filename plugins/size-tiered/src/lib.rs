//! An example policy: size-tiered merging, as log-structured stores do it.
//!
//! Files are sorted into size tiers: tier 0 holds files from `target_size / tier_ratio` up to
//! the target, tier 1 the files `tier_ratio` times smaller, and so on. Files at or above the
//! target are never touched. A tier with at least `min_files` files is merged, in key order,
//! into groups aiming at its ceiling (the next tier up), so small files meet files of their own
//! size and a large file is not rewritten each time a few small ones arrive: every row is
//! rewritten about log_ratio(target / size) times in all, instead of once per run.
//!
//! Coldness as in the default policy: a partition's hive time window (`dt`, `hour`, ...) must
//! have ended; a partition without time keys is always eligible.
//!
//! Settings: `target_size` (default 128MiB), `tier_ratio` (default 8), `min_files` (default 4).

use compactor_plugin_sdk::{
    Decision, FileInfo, Group, Partition, Policy, has_hour_key, parse_count, parse_size,
    partition_window_end_ms, split_even,
};

/// The policy with a table's settings.
pub struct SizeTiered(pub Settings);

impl Policy for SizeTiered {
    const NAME: &'static str = "size-tiered";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &[(String, String)]) -> Result<Self, String> {
        Settings::from_pairs(settings).map(SizeTiered)
    }

    fn is_cold(&self, p: &Partition, now_ms: i64) -> bool {
        may_be_cold(&p.keys, now_ms)
    }

    fn plan(&self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Decision {
        plan(&self.0, &p.keys, files, now_ms)
    }
}

compactor_plugin_sdk::export_policy!(SizeTiered);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub target_size: u64,
    pub tier_ratio: u64,
    pub min_files: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            target_size: 128 << 20,
            tier_ratio: 8,
            min_files: 4,
        }
    }
}

impl Settings {
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Settings, String> {
        let mut s = Settings::default();
        for (key, value) in pairs {
            let bad = |why: String| format!("setting {key} = {value:?}: {why}");
            let whole = |min: u64| parse_count(value, min).map_err(bad);
            match key.as_str() {
                "target_size" => s.target_size = parse_size(value).map_err(bad)?,
                "tier_ratio" => s.tier_ratio = whole(2)?,
                "min_files" => s.min_files = whole(2)? as usize,
                _ => {
                    return Err(format!(
                        "unknown setting {key:?}; known: target_size, tier_ratio, min_files"
                    ));
                }
            }
        }
        if s.target_size < 1024 {
            return Err("setting target_size must be at least 1KiB".into());
        }
        Ok(s)
    }

    /// The tier of a file of `size` bytes (`None` at or above the target).
    pub fn tier(&self, size: u64) -> Option<u32> {
        let mut ceiling = self.target_size;
        let mut tier = 0;
        if size >= ceiling {
            return None;
        }
        while ceiling / self.tier_ratio > size && ceiling / self.tier_ratio > 0 {
            ceiling /= self.tier_ratio;
            tier += 1;
        }
        Some(tier)
    }

    /// The largest size of tier `tier`: what its merges aim at.
    pub fn ceiling(&self, tier: u32) -> u64 {
        (0..tier).fold(self.target_size, |c, _| c / self.tier_ratio)
    }
}

/// Whether the partition's time window has ended (a partition without time keys: yes).
pub fn is_cold(keys: &[(String, String)], now_ms: i64) -> bool {
    partition_window_end_ms(keys).is_none_or(|end| now_ms >= end)
}

/// Asked before a prefix is listed: only an open hour is certainly hot. A `dt=` level may hold
/// finished hours below it, so it is listed, and `plan` judges its own files.
pub fn may_be_cold(keys: &[(String, String)], now_ms: i64) -> bool {
    !has_hour_key(keys) || is_cold(keys, now_ms)
}

pub fn plan(s: &Settings, keys: &[(String, String)], files: &[FileInfo], now_ms: i64) -> Decision {
    if !is_cold(keys, now_ms) {
        return Decision::Skip("hot: the partition's time window has not ended".into());
    }
    // Tier -> file indices, each tier in key order (the answer must not depend on input order).
    let mut tiers: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for (i, f) in files.iter().enumerate() {
        if let Some(t) = s.tier(f.size) {
            tiers.entry(t).or_default().push(i as u32);
        }
    }
    let mut groups = Vec::new();
    for (tier, mut members) in tiers {
        if members.len() < s.min_files {
            continue;
        }
        members.sort_by(|&a, &b| files[a as usize].key.cmp(&files[b as usize].key));
        let target = s.ceiling(tier);
        let sizes: Vec<u64> = members.iter().map(|&i| files[i as usize].size).collect();
        for run in split_even(&sizes, target) {
            if run.len() >= 2 {
                groups.push(Group::new(members[run].to_vec(), target));
            }
        }
    }
    if groups.is_empty() {
        Decision::Skip(format!(
            "too few files: no size tier holds min_files ({}) files",
            s.min_files
        ))
    } else {
        Decision::Compact(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn files(sizes: &[u64]) -> Vec<FileInfo> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| FileInfo {
                key: format!("t/p/part-{i:03}.parquet"),
                size,
                last_modified_ms: 0,
                rows: None,
            })
            .collect()
    }

    #[test]
    fn tiers_by_size() {
        let s = Settings::default(); // 128 MiB, ratio 8: tiers 16..128, 2..16, 0.25..2 MiB ...
        assert_eq!(s.tier(200 * MIB), None);
        assert_eq!(s.tier(20 * MIB), Some(0));
        assert_eq!(s.tier(3 * MIB), Some(1));
        assert_eq!(s.tier(MIB), Some(2));
        assert_eq!(s.ceiling(2), 2 * MIB);
    }

    #[test]
    fn small_files_merge_among_themselves_and_big_ones_are_left() {
        let s = Settings::default();
        // 8 files of 1 MiB (tier 2), 2 of 10 MiB (tier 1, too few), 1 of 200 MiB (left).
        let mut sizes = vec![MIB; 8];
        sizes.extend([10 * MIB, 10 * MIB, 200 * MIB]);
        let d = plan(&s, &[], &files(&sizes), 0);
        let Decision::Compact(groups) = d else {
            panic!("{d:?}")
        };
        // Tier 2's ceiling is 2 MiB: the eight 1 MiB files make groups of about 2-4 MiB.
        let merged: Vec<u32> = groups.iter().flat_map(|g| g.files.clone()).collect();
        assert!(merged.iter().all(|&i| i < 8), "{groups:?}");
        assert_eq!(merged.len(), 8);
        assert!(groups.iter().all(|g| g.target_size == 2 * MIB));
    }

    #[test]
    fn too_few_files_in_every_tier_is_a_skip() {
        let s = Settings::default();
        let d = plan(&s, &[], &files(&[MIB, MIB, 10 * MIB]), 0);
        assert!(matches!(d, Decision::Skip(r) if r.starts_with("too few")));
    }

    #[test]
    fn a_day_level_is_listed_even_while_the_day_runs() {
        let day = vec![("dt".to_string(), "1970-01-01".to_string())];
        assert!(may_be_cold(&day, 60_000));
        let hour = vec![day[0].clone(), ("hour".to_string(), "00".to_string())];
        assert!(!may_be_cold(&hour, 60_000));
        assert!(may_be_cold(&hour, 3_600_000));
    }

    #[test]
    fn the_open_hour_is_hot() {
        let keys = vec![
            ("dt".to_string(), "1970-01-01".to_string()),
            ("hour".to_string(), "00".to_string()),
        ];
        let d = plan(&Settings::default(), &keys, &files(&[MIB; 8]), 60_000);
        assert!(matches!(d, Decision::Skip(r) if r.starts_with("hot")));
    }

    /// The suite of `compactor plugin check` (valid answers, order independence), natively.
    #[test]
    fn passes_the_plugin_check_scenarios() {
        use compactor_plugin_sdk::testing;
        let results = testing::check::<SizeTiered>(&[], testing::check_now_ms()).unwrap();
        assert_eq!(results.len(), testing::scenarios().len());
    }

    #[test]
    fn settings_are_checked() {
        let pairs = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(Settings::from_pairs(&pairs("tier_ratio", "1")).is_err());
        assert!(Settings::from_pairs(&pairs("min_files", "x")).is_err());
        assert!(Settings::from_pairs(&pairs("nope", "1")).is_err());
        assert_eq!(
            Settings::from_pairs(&pairs("target_size", "64MiB"))
                .unwrap()
                .target_size,
            64 * MIB
        );
    }
}

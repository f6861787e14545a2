//! The kit for writing compaction policies, also shared with the host:
//!
//! * [`Policy`] and the contract's types ([`Partition`], [`FileInfo`], [`Decision`], [`Group`]);
//!   [`export_policy!`] turns an implementation into a plugin component (wasm32-wasip2).
//! * Helpers: human-friendly sizes and durations, hive time keys, cutting a run of files into
//!   evenly sized groups.
//! * [`testing`]: the host's `plugin check` scenarios, run natively on a policy in unit tests.
//!
//! Plain Rust; the wasm glue (wit-bindgen) is compiled for wasm32 only.

// The generated wasm glue names this crate by its path, from inside it too.
#[cfg(target_arch = "wasm32")]
extern crate self as compactor_plugin_sdk;

mod codec;
mod policy;
pub mod testing;
mod time_keys;
mod units;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use codec::{Codec, parse_codec};
pub use jiff::tz::TimeZone;
pub use policy::{
    Decision, FileInfo, Group, Level, MAX_TARGET_SIZE, MIN_TARGET_SIZE, Partition, Policy, log,
    validate,
};
pub use time_keys::{
    DAY_KEYS, HOUR_KEYS, civil_from_days, days_from_civil, has_hour_key, parse_timezone,
    partition_window_end_ms, partition_window_end_ms_in,
};
pub use units::{parse_count, parse_duration_ms, parse_size};

/// What [`export_policy!`] expands to needs; not part of the API.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    pub use crate::wasm::{Slot, bindings};
    pub use wit_bindgen;
}

/// Cuts `sizes` (in order) into `max(1, total / target)` consecutive runs of nearly equal total.
///
/// With `k = total / target` runs, each run's share is `total / k`, which lies in
/// `[target, 2 * target)`; a run ends at the first file that carries the cumulative sum past its
/// share's boundary, so runs differ from their share by less than one file.
pub fn split_even(sizes: &[u64], target: u64) -> Vec<std::ops::Range<usize>> {
    if sizes.is_empty() {
        return Vec::new();
    }
    let total: u128 = sizes.iter().map(|&s| s as u128).sum();
    let runs = (total / target.max(1) as u128).max(1);
    let mut out = Vec::new();
    let (mut start, mut cumulative, mut next) = (0usize, 0u128, 1u128);
    for (i, &size) in sizes.iter().enumerate() {
        cumulative += size as u128;
        // Boundary of run `next`: next * total / runs.
        if next < runs && cumulative * runs >= next * total {
            out.push(start..i + 1);
            start = i + 1;
            next += 1;
        }
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_land_in_the_window_when_data_allows() {
        const MIB: u64 = 1 << 20;
        let sizes: Vec<u64> = (0..1000).map(|i| (i % 7 + 1) * MIB / 2).collect();
        let target = 128 * MIB;
        let runs = split_even(&sizes, target);
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), sizes.len());
        for range in runs {
            let total: u64 = sizes[range].iter().sum();
            assert!(total >= target - 4 * MIB && total < 2 * target, "{total}");
        }
    }

    #[test]
    fn small_totals_give_one_run() {
        assert_eq!(split_even(&[1, 2, 3], 100), vec![0..3]);
        assert_eq!(split_even(&[], 100), Vec::<std::ops::Range<usize>>::new());
    }
}

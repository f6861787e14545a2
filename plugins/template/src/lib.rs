//! A compaction policy, started from the compactor plugin template.
//!
//! What it does as it stands: a partition is cold once its hive time window (`dt`, `hour`, ...)
//! has ended, or, without time keys, always; its files below `target_size` are merged, in key
//! order, into outputs of about `target_size`. Change `plan` (and `is_cold`) to your policy,
//! keep the tests passing, then build:
//!
//! ```text
//! cargo test                                        # native: logic and the plugin check suite
//! cargo build --release --target wasm32-wasip2      # the plugin: target/wasm32-wasip2/release/*.wasm
//! compactor plugin check target/wasm32-wasip2/release/<name>.wasm
//! ```

use compactor_plugin_sdk::{
    Decision, FileInfo, Group, Partition, Policy, has_hour_key, parse_size,
    partition_window_end_ms, split_even,
};

/// The policy with a table's settings (`[tables.settings]` in compactor's config).
pub struct TemplatePolicy {
    target_size: u64,
}

impl Policy for TemplatePolicy {
    const NAME: &'static str = "template";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn configure(settings: &[(String, String)]) -> Result<Self, String> {
        let mut policy = TemplatePolicy {
            target_size: 128 << 20,
        };
        for (key, value) in settings {
            match key.as_str() {
                "target_size" => {
                    policy.target_size = parse_size(value)
                        .map_err(|e| format!("setting target_size = {value:?}: {e}"))?
                }
                _ => return Err(format!("unknown setting {key:?}; known: target_size")),
            }
        }
        Ok(policy)
    }

    /// Asked before a prefix is listed: only an hour still being written is skipped unlisted.
    fn is_cold(&self, p: &Partition, now_ms: i64) -> bool {
        !has_hour_key(&p.keys) || window_ended(p, now_ms)
    }

    fn plan(&self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Decision {
        if !window_ended(p, now_ms) {
            return Decision::Skip("hot: the partition's time window has not ended".into());
        }
        // Key order: the answer must not depend on the order the files are listed in.
        let mut small: Vec<u32> = (0..files.len() as u32)
            .filter(|&i| files[i as usize].size < self.target_size)
            .collect();
        small.sort_by(|&a, &b| files[a as usize].key.cmp(&files[b as usize].key));
        if small.len() < 2 {
            return Decision::Skip(format!("too few files: {} below the target", small.len()));
        }
        let sizes: Vec<u64> = small.iter().map(|&i| files[i as usize].size).collect();
        let groups = split_even(&sizes, self.target_size)
            .into_iter()
            .filter(|run| run.len() >= 2)
            .map(|run| Group::new(small[run].to_vec(), self.target_size))
            .collect();
        Decision::Compact(groups)
    }
}

fn window_ended(p: &Partition, now_ms: i64) -> bool {
    partition_window_end_ms(&p.keys).is_none_or(|end| now_ms >= end)
}

compactor_plugin_sdk::export_policy!(TemplatePolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use compactor_plugin_sdk::testing::{self, at, files, hour_partition};

    fn policy(settings: &[(&str, &str)]) -> TemplatePolicy {
        let pairs: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TemplatePolicy::configure(&pairs).unwrap()
    }

    #[test]
    fn passes_the_plugin_check_scenarios() {
        testing::check::<TemplatePolicy>(&[], testing::check_now_ms()).unwrap();
    }

    #[test]
    fn the_open_hour_is_left_and_a_finished_one_merged() {
        let p = policy(&[("target_size", "1MiB")]);
        let now = at(2026, 11, 20, 5, 10);
        let open = hour_partition("events", now);
        assert!(!p.is_cold(&open, now));
        let done = hour_partition("events", now - 3_600_000);
        let fs = files(&done.prefix, 8, 256 << 10, now);
        let Decision::Compact(groups) = p.plan(&done, &fs, now) else {
            panic!("expected a merge")
        };
        // 2 MiB of small files, 1 MiB target: two outputs of four files each.
        assert_eq!(
            groups.iter().map(|g| g.files.len()).collect::<Vec<_>>(),
            [4, 4]
        );
    }

    #[test]
    fn settings_are_checked() {
        let bad = |k: &str, v: &str| TemplatePolicy::configure(&[(k.into(), v.into())]).is_err();
        assert!(bad("target_size", "big"));
        assert!(bad("target", "1MiB"));
    }
}

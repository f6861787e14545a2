//! `compactor plugin check`: built-in scenarios any policy should get through with a valid
//! answer, within its limits, the same whatever the order of the files.

use std::time::Instant;

use super::{Decision, PolicyPlugin};
use crate::layout::{Partition, partition_keys};
use crate::store::ObjectMeta;

/// The outcome of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    pub scenario: &'static str,
    pub passed: bool,
    /// What the plugin decided, or why the scenario failed.
    pub detail: String,
    pub millis: u128,
    /// The most fuel (about one unit per wasm instruction) one call of the scenario used.
    pub fuel: u64,
    /// The largest linear memory one call of the scenario grew to.
    pub memory_bytes: usize,
}

const HOUR_MS: i64 = 3_600_000;

fn partition(prefix: &str) -> Partition {
    Partition {
        table: "check".into(),
        prefix: prefix.into(),
        keys: partition_keys("check/", prefix),
    }
}

fn files(prefix: &str, count: usize, size: u64, modified_ms: i64) -> Vec<ObjectMeta> {
    (0..count)
        .map(|i| ObjectMeta {
            key: format!("{prefix}part-{i:05}.parquet"),
            size,
            last_modified_ms: modified_ms,
            etag: format!("e{i}"),
        })
        .collect()
}

fn summarize(d: &Decision, files: &[ObjectMeta]) -> String {
    match d {
        Decision::Skip(reason) => format!("skip: {reason}"),
        Decision::Compact(groups) => {
            let sizes: Vec<String> = groups
                .iter()
                .map(|g| {
                    let bytes: u64 = g.files.iter().map(|&i| files[i as usize].size).sum();
                    format!("{} files/{} KiB", g.files.len(), bytes >> 10)
                })
                .collect();
            format!("compact {} group(s): {}", groups.len(), sizes.join(", "))
        }
    }
}

/// Runs every scenario at `now_ms` (an hour boundary plus a little, so "the current hour" is
/// well defined).
pub fn run(plugin: &PolicyPlugin, now_ms: i64) -> Vec<ScenarioResult> {
    let (y, m, d) = compactor_plugin_sdk::civil_from_days(now_ms.div_euclid(24 * HOUR_MS));
    let date = format!("{y:04}-{m:02}-{d:02}");
    let hour = now_ms.rem_euclid(24 * HOUR_MS) / HOUR_MS;
    let hot = format!("check/dt={date}/hour={hour:02}/");
    // Two hours ago: cold for any hourly policy with less than an hour of grace.
    let cold_ms = now_ms - 2 * HOUR_MS;
    let (cy, cm, cd) = compactor_plugin_sdk::civil_from_days(cold_ms.div_euclid(24 * HOUR_MS));
    let cold = format!(
        "check/dt={cy:04}-{cm:02}-{cd:02}/hour={:02}/",
        cold_ms.rem_euclid(24 * HOUR_MS) / HOUR_MS
    );
    let old = now_ms - 3 * HOUR_MS;

    let mut results = Vec::new();
    let mut scenario = |name: &'static str, f: &mut dyn FnMut() -> Result<String, String>| {
        let start = Instant::now();
        super::wasm::take_usage();
        let outcome = f();
        let usage = super::wasm::take_usage();
        results.push(ScenarioResult {
            scenario: name,
            passed: outcome.is_ok(),
            detail: outcome.unwrap_or_else(|e| e),
            millis: start.elapsed().as_millis(),
            fuel: usage.fuel,
            memory_bytes: usage.memory_bytes,
        });
    };
    let decide = |prefix: &str, files: &[ObjectMeta]| -> Result<String, String> {
        let p = partition(prefix);
        if !plugin.is_cold(&p, now_ms).map_err(|e| e.to_string())? {
            return Ok("hot (not listed)".into());
        }
        let d = plugin.plan(&p, files, now_ms).map_err(|e| e.to_string())?;
        Ok(summarize(&d, files))
    };

    scenario("hot hour", &mut || {
        let detail = decide(&hot, &files(&hot, 20, 1 << 20, now_ms - 60_000))?;
        if detail.starts_with("compact") {
            Ok(format!(
                "{detail} (note: it compacts the hour being written)"
            ))
        } else {
            Ok(detail)
        }
    });
    scenario("many tiny files", &mut || {
        decide(&cold, &files(&cold, 5000, 10 << 10, old))
    });
    scenario("one huge file", &mut || {
        decide(&cold, &files(&cold, 1, 10 << 30, old))
    });
    scenario("empty partition", &mut || decide(&cold, &[]));
    scenario("shuffled input", &mut || {
        let forward = files(&cold, 300, 700 << 10, old);
        let mut shuffled = forward.clone();
        shuffled.reverse();
        shuffled.rotate_left(77);
        let p = partition(&cold);
        let keys = |fs: &[ObjectMeta]| -> Result<Vec<Vec<String>>, String> {
            Ok(
                match plugin.plan(&p, fs, now_ms).map_err(|e| e.to_string())? {
                    Decision::Skip(_) => vec![],
                    Decision::Compact(groups) => {
                        let mut g: Vec<Vec<String>> = groups
                            .iter()
                            .map(|g| {
                                let mut k: Vec<String> = g
                                    .files
                                    .iter()
                                    .map(|&i| fs[i as usize].key.clone())
                                    .collect();
                                k.sort();
                                k
                            })
                            .collect();
                        g.sort();
                        g
                    }
                },
            )
        };
        if keys(&forward)? == keys(&shuffled)? {
            Ok("same groups for shuffled input".into())
        } else {
            Err("different groups when the same files come in another order".into())
        }
    });
    results
}

/// A fixed "now" for reproducible checks: 2026-11-20 05:10 UTC.
pub fn default_now_ms() -> i64 {
    compactor_plugin_sdk::days_from_civil(2026, 11, 20) * 24 * HOUR_MS + 5 * HOUR_MS + 10 * 60_000
}

//! `compactor plugin check`: the scenario suite of the plugin SDK (`testing::scenarios`), run on
//! a loaded plugin with each scenario's time, fuel and memory. Plugin authors run the same
//! suite natively in their unit tests.

use std::time::Instant;

use compactor_plugin_sdk::testing::{self, Subject};
use compactor_plugin_sdk::{Decision, FileInfo};

use super::PolicyPlugin;
use crate::layout::Partition;
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

/// A loaded plugin as the suite's subject: the host's own calls, validation included.
struct Loaded<'a>(&'a PolicyPlugin);

fn partition(p: &compactor_plugin_sdk::Partition) -> Partition {
    Partition {
        table: p.table.clone(),
        prefix: p.prefix.clone(),
        keys: p.keys.clone(),
    }
}

impl Subject for Loaded<'_> {
    fn is_cold(
        &mut self,
        p: &compactor_plugin_sdk::Partition,
        now_ms: i64,
    ) -> Result<bool, String> {
        self.0
            .is_cold(&partition(p), now_ms)
            .map_err(|e| e.to_string())
    }

    fn plan(
        &mut self,
        p: &compactor_plugin_sdk::Partition,
        files: &[FileInfo],
        now_ms: i64,
    ) -> Result<Decision, String> {
        let metas: Vec<ObjectMeta> = files
            .iter()
            .enumerate()
            .map(|(i, f)| ObjectMeta {
                key: f.key.clone(),
                size: f.size,
                last_modified_ms: f.last_modified_ms,
                etag: format!("e{i}"),
                archived: false,
            })
            .collect();
        self.0
            .plan(&partition(p), &metas, now_ms)
            .map_err(|e| e.to_string())
    }
}

/// Runs every scenario at `now_ms` (an hour boundary plus a little, so "the current hour" is
/// well defined).
pub fn run(plugin: &PolicyPlugin, now_ms: i64) -> Vec<ScenarioResult> {
    let mut subject = Loaded(plugin);
    testing::scenarios()
        .into_iter()
        .map(|scenario| {
            let start = Instant::now();
            super::wasm::take_usage();
            let outcome = (scenario.run)(&mut subject, now_ms);
            let usage = super::wasm::take_usage();
            ScenarioResult {
                scenario: scenario.name,
                passed: outcome.is_ok(),
                detail: outcome.unwrap_or_else(|e| e),
                millis: start.elapsed().as_millis(),
                fuel: usage.fuel,
                memory_bytes: usage.memory_bytes,
            }
        })
        .collect()
}

/// A fixed "now" for reproducible checks: 2026-11-20 05:10 UTC.
pub fn default_now_ms() -> i64 {
    testing::check_now_ms()
}

//! Adapts the policy to the WIT contract (`wit/since_v0.1.0`). Compiled for wasm32 only.

// The generated glue exports functions through raw symbols, which needs unsafe code.
#![allow(unsafe_code)]

use std::sync::Mutex;

use crate::{Decision, FileInfo, Settings};

mod wit_bindings {
    wit_bindgen::generate!({ path: "../../wit/since_v0.1.0", world: "plugin" });
}

use wit_bindings::compaction::policy::types::{self as wit, DataFile, Partition, PluginInfo};
use wit_bindings::exports::compaction::policy::policy::Guest;

/// Set by `configure`, which the host calls first on every fresh instance.
static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

fn settings() -> Settings {
    SETTINGS
        .lock()
        .map(|s| s.clone().unwrap_or_default())
        .unwrap_or_default()
}

struct SizeTiered;

impl Guest for SizeTiered {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "size-tiered".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn configure(pairs: Vec<(String, String)>) -> Result<(), String> {
        let parsed = Settings::from_pairs(&pairs)?;
        if let Ok(mut slot) = SETTINGS.lock() {
            *slot = Some(parsed);
        }
        Ok(())
    }

    fn is_cold(p: Partition, now_ms: i64) -> bool {
        crate::may_be_cold(&p.keys, now_ms)
    }

    fn plan(p: Partition, files: Vec<DataFile>, now_ms: i64) -> wit::Decision {
        let files: Vec<FileInfo> = files
            .into_iter()
            .map(|f| FileInfo {
                key: f.key,
                size: f.size,
            })
            .collect();
        match crate::plan(&settings(), &p.keys, &files, now_ms) {
            Decision::Skip(reason) => wit::Decision::Skip(reason),
            Decision::Compact(groups) => wit::Decision::Compact(
                groups
                    .into_iter()
                    .map(|(files, target_size)| wit::Group { files, target_size })
                    .collect(),
            ),
        }
    }
}

wit_bindings::export!(SizeTiered with_types_in wit_bindings);

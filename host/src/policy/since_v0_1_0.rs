//! Bindings for plugins built against `compaction:policy@0.1.0` (`wit/since_v0.1.0`), and the
//! conversions between its types and the host's.

use wasmtime::component::{HasSelf, Linker};

use super::wasm::HostState;
use super::{Decision, Group};
use crate::layout::Partition;
use crate::store::ObjectMeta;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "plugin",
    });
}

use generated::compaction::policy::{host, types};
pub use generated::{Plugin, PluginPre};

/// The WIT package version these bindings speak.
pub const WIT_VERSION: &str = "0.1.0";

pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        // Bound what one call can log, so a chatty plugin cannot flood the host's log.
        self.log_lines += 1;
        if self.log_lines > 100 {
            return;
        }
        let message: String = message.chars().take(2000).collect();
        let plugin = self.plugin_name.as_str();
        match level {
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

pub fn partition(p: &Partition) -> types::Partition {
    types::Partition {
        table: p.table.clone(),
        prefix: p.prefix.clone(),
        keys: p.keys.clone(),
    }
}

pub fn data_files(files: &[ObjectMeta]) -> Vec<types::DataFile> {
    files
        .iter()
        .map(|f| types::DataFile {
            key: f.key.clone(),
            size: f.size,
            last_modified_ms: f.last_modified_ms,
            rows: None,
        })
        .collect()
}

pub fn decision(d: types::Decision) -> Decision {
    match d {
        types::Decision::Skip(reason) => Decision::Skip(reason),
        types::Decision::Compact(groups) => Decision::Compact(
            groups
                .into_iter()
                .map(|g| Group {
                    files: g.files,
                    target_size: g.target_size,
                })
                .collect(),
        ),
    }
}

pub fn info(i: types::PluginInfo) -> (String, String) {
    (i.name, i.version)
}

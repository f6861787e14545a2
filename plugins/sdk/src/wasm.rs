//! The WIT glue behind [`export_policy!`](crate::export_policy) (wasm32 only): bindings for
//! `compaction:policy@0.2.0` and the conversions between them and the SDK's types.

// The generated glue exports functions through raw symbols, which needs unsafe code.
#![allow(unsafe_code)]

use std::cell::RefCell;

use crate::policy::{Decision, FileInfo, Level, Partition, Policy};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/since_v0.2.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_wit",
        default_bindings_module: "compactor_plugin_sdk::__private::bindings",
        runtime_path: "compactor_plugin_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::compaction::policy::{host, types as wit};

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

/// The configured policy of this instance (one per call, single-threaded).
pub struct Slot<P>(RefCell<Option<P>>);

impl<P: Policy> Slot<P> {
    pub const fn new() -> Slot<P> {
        Slot(RefCell::new(None))
    }

    pub fn info() -> wit::PluginInfo {
        wit::PluginInfo {
            name: P::NAME.into(),
            version: P::VERSION.into(),
        }
    }

    pub fn configure(&self, settings: Vec<(String, String)>) -> Result<(), String> {
        *self.0.borrow_mut() = Some(P::configure(&settings)?);
        Ok(())
    }

    /// Runs `f` on the configured policy. The host always configures first; should it not,
    /// the policy's defaults (empty settings) apply.
    fn with<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        if self.0.borrow().is_none()
            && let Ok(p) = P::configure(&[])
        {
            *self.0.borrow_mut() = Some(p);
        }
        match self.0.borrow().as_ref() {
            Some(p) => f(p),
            None => panic!("{}: refused its default settings", P::NAME),
        }
    }

    pub fn is_cold(&self, p: wit::Partition, now_ms: i64) -> bool {
        self.with(|policy| policy.is_cold(&partition(p), now_ms))
    }

    pub fn plan(&self, p: wit::Partition, files: Vec<wit::DataFile>, now_ms: i64) -> wit::Decision {
        let files: Vec<FileInfo> = files
            .into_iter()
            .map(|f| FileInfo {
                key: f.key,
                size: f.size,
                last_modified_ms: f.last_modified_ms,
                rows: f.rows,
            })
            .collect();
        match self.with(|policy| policy.plan(&partition(p), &files, now_ms)) {
            Decision::Skip(reason) => wit::Decision::Skip(reason),
            Decision::Compact(groups) => wit::Decision::Compact(
                groups
                    .into_iter()
                    .map(|g| wit::Group {
                        files: g.files,
                        target_size: g.target_size,
                        compression: g.compression,
                    })
                    .collect(),
            ),
        }
    }
}

impl<P: Policy> Default for Slot<P> {
    fn default() -> Self {
        Slot::new()
    }
}

fn partition(p: wit::Partition) -> Partition {
    Partition {
        table: p.table,
        prefix: p.prefix,
        keys: p.keys,
    }
}

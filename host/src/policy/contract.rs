//! The contract versions this host speaks.
//!
//! Each `compaction:policy@X` WIT package gets its own generated bindings and the same few
//! functions over them (`info`, `configure`, `is_cold`, `plan`) in the host's own types, so the
//! rest of the host never sees which version a plugin was built against. A new version is one
//! more `contract_version!` line; older ones stay, so plugins built against them keep loading.

macro_rules! contract_version {
    ($module:ident, $wit:literal, $version:literal, compression: |$g:ident| $compression:expr) => {
        pub mod $module {
            use wasmtime::Store;
            use wasmtime::component::{HasSelf, Linker};

            use crate::layout::Partition;
            use crate::policy::wasm::HostState;
            use crate::policy::{Decision, Group};
            use crate::store::ObjectMeta;

            mod generated {
                wasmtime::component::bindgen!({ path: $wit, world: "plugin" });
            }

            use generated::compaction::policy::{host, types};
            pub use generated::{Plugin, PluginPre};

            /// The WIT package version these bindings speak.
            pub const WIT_VERSION: &str = $version;

            pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
                Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
            }

            impl types::Host for HostState {}

            impl host::Host for HostState {
                fn log(&mut self, level: host::Level, message: String) {
                    let level = match level {
                        host::Level::Debug => tracing::Level::DEBUG,
                        host::Level::Info => tracing::Level::INFO,
                        host::Level::Warn => tracing::Level::WARN,
                        host::Level::Error => tracing::Level::ERROR,
                    };
                    self.plugin_log(level, message);
                }
            }

            pub fn info(
                store: &mut Store<HostState>,
                plugin: &Plugin,
            ) -> wasmtime::Result<(String, String)> {
                let info = plugin.compaction_policy_policy().call_info(store)?;
                Ok((info.name, info.version))
            }

            pub fn configure(
                store: &mut Store<HostState>,
                plugin: &Plugin,
                settings: &[(String, String)],
            ) -> wasmtime::Result<Result<(), String>> {
                plugin
                    .compaction_policy_policy()
                    .call_configure(store, settings)
            }

            pub fn is_cold(
                store: &mut Store<HostState>,
                plugin: &Plugin,
                partition: &Partition,
                now_ms: i64,
            ) -> wasmtime::Result<bool> {
                plugin.compaction_policy_policy().call_is_cold(
                    store,
                    &to_partition(partition),
                    now_ms,
                )
            }

            pub fn plan(
                store: &mut Store<HostState>,
                plugin: &Plugin,
                partition: &Partition,
                files: &[ObjectMeta],
                now_ms: i64,
            ) -> wasmtime::Result<Decision> {
                let files: Vec<types::DataFile> = files
                    .iter()
                    .map(|f| types::DataFile {
                        key: f.key.clone(),
                        size: f.size,
                        last_modified_ms: f.last_modified_ms,
                        rows: None,
                    })
                    .collect();
                let decision = plugin.compaction_policy_policy().call_plan(
                    store,
                    &to_partition(partition),
                    &files,
                    now_ms,
                )?;
                Ok(match decision {
                    types::Decision::Skip(reason) => Decision::Skip(reason),
                    types::Decision::Compact(groups) => Decision::Compact(
                        groups
                            .into_iter()
                            .map(|$g| Group {
                                compression: $compression,
                                files: $g.files,
                                target_size: $g.target_size,
                            })
                            .collect(),
                    ),
                })
            }

            fn to_partition(p: &Partition) -> types::Partition {
                types::Partition {
                    table: p.table.clone(),
                    prefix: p.prefix.clone(),
                    keys: p.keys.clone(),
                }
            }
        }
    };
}

contract_version!(v0_1_0, "../wit/since_v0.1.0", "0.1.0", compression: |g| None);
contract_version!(v0_2_0, "../wit/since_v0.2.0", "0.2.0", compression: |g| g.compression);

/// Every version this host loads, oldest first.
pub const SUPPORTED: &[&str] = &[v0_1_0::WIT_VERSION, v0_2_0::WIT_VERSION];

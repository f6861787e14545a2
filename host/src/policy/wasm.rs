//! The wasm runtime for policy plugins (wasmtime).
//!
//! * One [`PluginEngine`] per process; each plugin is compiled once and pre-instantiated.
//! * Every call gets a fresh `Store` and instance, so nothing leaks between partitions.
//! * Limits per call: fuel (an endless loop stops after [`Limits::fuel`] instructions) and a
//!   memory cap (growing past [`Limits::memory_bytes`] traps at once).
//! * WASI grants nothing: no preopened directories, no environment, no sockets, no stdio.

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::contract::{self, v0_1_0, v0_2_0};
use super::{Decision, PolicyError, validate};
use crate::layout::Partition;
use crate::store::ObjectMeta;

/// Skip reasons longer than this are cut.
const MAX_REASON_BYTES: usize = 500;

/// Resource limits for one plugin call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wasm instructions (roughly) a call may run.
    pub fuel: u64,
    /// Linear memory a call may grow to.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 2_000_000_000,
            memory_bytes: 64 << 20,
        }
    }
}

/// What plugin calls used at most since [`take_usage`] was last called on this thread: the
/// figures `plugin check` reports per scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Fuel (about one per wasm instruction) of the hungriest call.
    pub fuel: u64,
    /// Largest linear memory a call grew to, in bytes.
    pub memory_bytes: usize,
}

thread_local! {
    static USAGE: std::cell::Cell<Usage> = const { std::cell::Cell::new(Usage { fuel: 0, memory_bytes: 0 }) };
}

/// Returns the usage recorded on this thread since the last call, and starts afresh.
pub fn take_usage() -> Usage {
    USAGE.with(|u| u.take())
}

fn record_usage(call: Usage) {
    USAGE.with(|u| {
        let seen = u.get();
        u.set(Usage {
            fuel: seen.fuel.max(call.fuel),
            memory_bytes: seen.memory_bytes.max(call.memory_bytes),
        })
    });
}

/// The store's limits, remembering how large memory grew.
struct MeteredLimits {
    inner: StoreLimits,
    peak_memory: usize,
}

impl wasmtime::ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }
    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// What the host keeps per call.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MeteredLimits,
    pub(super) plugin_name: String,
    pub(super) log_lines: u32,
}

impl HostState {
    /// A line the plugin logs, tagged with its name. One call can log at most 100 lines of at
    /// most 2000 characters, so a chatty plugin cannot flood the host's log.
    pub(super) fn plugin_log(&mut self, level: tracing::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > 100 {
            return;
        }
        let message: String = message.chars().take(2000).collect();
        let plugin = self.plugin_name.as_str();
        match level {
            tracing::Level::ERROR => tracing::error!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            _ => tracing::debug!(plugin, "{message}"),
        }
    }
}

/// A plugin compiled and linked, ready to instantiate, in the contract version it was built for.
enum Pre {
    V0_1(v0_1_0::PluginPre<HostState>),
    V0_2(v0_2_0::PluginPre<HostState>),
}

/// One instance of a plugin; the same four calls whatever its contract version.
enum Instance {
    V0_1(v0_1_0::Plugin),
    V0_2(v0_2_0::Plugin),
}

impl Pre {
    fn new(
        linker: &Linker<HostState>,
        component: &Component,
        version: &str,
    ) -> wasmtime::Result<Pre> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match version {
            v0_1_0::WIT_VERSION => Pre::V0_1(v0_1_0::PluginPre::new(pre)?),
            v0_2_0::WIT_VERSION => Pre::V0_2(v0_2_0::PluginPre::new(pre)?),
            other => wasmtime::bail!("no bindings for compaction:policy@{other}"),
        })
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }
}

impl Instance {
    fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<(String, String)> {
        match self {
            Instance::V0_1(p) => v0_1_0::info(store, p),
            Instance::V0_2(p) => v0_2_0::info(store, p),
        }
    }

    fn configure(
        &self,
        store: &mut Store<HostState>,
        settings: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Instance::V0_1(p) => v0_1_0::configure(store, p, settings),
            Instance::V0_2(p) => v0_2_0::configure(store, p, settings),
        }
    }

    fn is_cold(
        &self,
        store: &mut Store<HostState>,
        partition: &Partition,
        now_ms: i64,
    ) -> wasmtime::Result<bool> {
        match self {
            Instance::V0_1(p) => v0_1_0::is_cold(store, p, partition, now_ms),
            Instance::V0_2(p) => v0_2_0::is_cold(store, p, partition, now_ms),
        }
    }

    fn plan(
        &self,
        store: &mut Store<HostState>,
        partition: &Partition,
        files: &[ObjectMeta],
        now_ms: i64,
    ) -> wasmtime::Result<Decision> {
        match self {
            Instance::V0_1(p) => v0_1_0::plan(store, p, partition, files, now_ms),
            Instance::V0_2(p) => v0_2_0::plan(store, p, partition, files, now_ms),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The compiler and linker shared by every plugin of the process.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    /// Compiled components by content hash: tables sharing a plugin compile it once.
    compiled: std::sync::Mutex<std::collections::HashMap<[u8; 32], Component>>,
}

impl PluginEngine {
    pub fn try_new() -> Result<PluginEngine, PolicyError> {
        let fail = |e: wasmtime::Error| PolicyError::Load {
            origin: "engine".into(),
            reason: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        if let Some(dir) = compile_cache_dir() {
            // Compiled plugins are kept on disk by content hash, so a large plugin (one with an
            // interpreter inside is 18 MB and takes seconds) is compiled once, not every start.
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(&dir);
            match wasmtime::Cache::new(cache) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => tracing::warn!(
                    dir = %dir.display(),
                    "plugin compile cache off: {e:#}"
                ),
            }
        }
        let engine = Engine::new(&config).map_err(fail)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(fail)?;
        v0_1_0::add_to_linker(&mut linker).map_err(fail)?;
        v0_2_0::add_to_linker(&mut linker).map_err(fail)?;
        Ok(PluginEngine {
            engine,
            linker,
            compiled: Default::default(),
        })
    }

    /// Compiles `bytes` (whose SHA-256 is `hash`), or returns the component compiled earlier
    /// from the same bytes.
    fn compile(&self, bytes: &[u8], hash: [u8; 32]) -> wasmtime::Result<Component> {
        if let Some(c) = self
            .compiled
            .lock()
            .ok()
            .and_then(|m| m.get(&hash).cloned())
        {
            return Ok(c);
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Ok(mut m) = self.compiled.lock() {
            m.insert(hash, component.clone());
        }
        Ok(component)
    }
}

/// A loaded plugin with one table's settings bound to it.
///
/// Its methods block (compilation, fuel-bounded calls) and must run on a blocking thread
/// (`spawn_blocking`), never on an async runtime thread: WASI's synchronous bindings drive a
/// runtime of their own underneath and panic inside another one.
pub struct PolicyPlugin {
    /// Where it came from: `embedded default` or a file path.
    pub origin: String,
    pub name: String,
    pub version: String,
    pub wit_version: &'static str,
    /// SHA-256 of the component's bytes, hex: which build is running.
    pub sha256: String,
    settings: Vec<(String, String)>,
    engine: Engine,
    pre: Pre,
    limits: Limits,
}

impl std::fmt::Debug for PolicyPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.name, self.version, self.origin)
    }
}

/// What is wrong with a file that is not a component at all, told from its first 8 bytes
/// (the parser's own words for these cases name neither the file's kind nor the fix).
fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    const BUILD: &str = "build a plugin with `cargo build --release --target wasm32-wasip2`";
    if !bytes.starts_with(MAGIC) {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        let head = if head.is_empty() {
            "is empty".to_string()
        } else {
            format!("starts with {}", head.join(" "))
        };
        return Some(format!(
            "not a WebAssembly file: it {head}, where WebAssembly starts with 00 61 73 6d; {BUILD}"
        ));
    }
    (bytes.get(4..8) == Some(CORE_MODULE)).then(|| {
        format!(
            "a core WebAssembly module, not a component: {BUILD} (not wasm32-unknown-unknown \
             or wasm32-wasip1), or wrap it with `wasm-tools component new`"
        )
    })
}

impl PolicyPlugin {
    /// Compiles `bytes`, checks the contract version, asks for `info` and applies `settings`
    /// through `configure`: a plugin that refuses its settings is refused here, at start-up.
    pub fn load(
        engine: &PluginEngine,
        bytes: &[u8],
        origin: &str,
        settings: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<PolicyPlugin, PolicyError> {
        let fail = |reason: String| PolicyError::Load {
            origin: origin.to_string(),
            reason,
        };
        if let Some(problem) = not_a_component(bytes) {
            return Err(fail(problem));
        }
        let hash = sha256(bytes);
        let component = engine
            .compile(bytes, hash)
            .map_err(|e| fail(format!("not a valid WebAssembly component: {e:#}")))?;
        let exported = exported_policy_version(&engine.engine, &component);
        let wit_version = supported_version(exported.as_deref()).map_err(fail)?;
        let pre = Pre::new(&engine.linker, &component, wit_version)
            .map_err(|e| fail(format!("{e:#}")))?;
        let mut plugin = PolicyPlugin {
            origin: origin.to_string(),
            name: origin.to_string(),
            version: "?".into(),
            wit_version,
            sha256: hex(&hash),
            settings,
            engine: engine.engine.clone(),
            pre,
            limits,
        };
        let (name, version) = plugin.call("info", false, |store, p| p.info(store))?;
        plugin.name = name;
        plugin.version = version;
        // `call` configures before every other function and reports a refusal.
        plugin.call("configure", true, |_, _| Ok(()))?;
        Ok(plugin)
    }

    /// The plugin's settings, as handed to `configure`.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    /// Whether `partition` may hold cold data (asked before listing it).
    pub fn is_cold(&self, partition: &Partition, now_ms: i64) -> Result<bool, PolicyError> {
        self.call("is-cold", true, |store, plugin| {
            plugin.is_cold(store, partition, now_ms)
        })
    }

    /// The plugin's decision for `files`, validated.
    pub fn plan(
        &self,
        partition: &Partition,
        files: &[ObjectMeta],
        now_ms: i64,
    ) -> Result<Decision, PolicyError> {
        let decision = self.call("plan", true, |store, plugin| {
            plugin.plan(store, partition, files, now_ms)
        })?;
        // A skip reason ends up in logs and summaries: keep a gigantic one readable.
        let decision = match decision {
            Decision::Skip(reason) if reason.len() > MAX_REASON_BYTES => {
                let mut cut = MAX_REASON_BYTES;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                Decision::Skip(format!(
                    "{}... ({} bytes, cut)",
                    &reason[..cut],
                    reason.len()
                ))
            }
            other => other,
        };
        validate(&decision, files.len()).map_err(|reason| PolicyError::InvalidAnswer {
            plugin: self.name.clone(),
            version: self.version.clone(),
            reason,
        })?;
        Ok(decision)
    }

    /// Runs `f` on a fresh instance within the limits, after `configure` when `configured`;
    /// the call's latency and outcome go to the metrics.
    fn call<R>(
        &self,
        function: &'static str,
        configured: bool,
        f: impl FnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let started = std::time::Instant::now();
        let result = self.call_unmetered(function, configured, f);
        crate::metrics::global().record_plugin_call(
            &self.name,
            function,
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    fn call_unmetered<R>(
        &self,
        function: &'static str,
        configured: bool,
        f: impl FnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let fail = |reason: String| PolicyError::Call {
            plugin: self.name.clone(),
            version: self.version.clone(),
            function,
            reason,
        };
        // The default builder grants nothing: no dirs, env, args, sockets, stdin or stdout.
        // Only stderr is kept, bounded, so a panic message can be shown to the plugin's author.
        let stderr = MemoryOutputPipe::new(4096);
        let state = HostState {
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            limits: MeteredLimits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .instances(64)
                    .tables(64)
                    .memories(16)
                    .trap_on_grow_failure(true)
                    .build(),
                peak_memory: 0,
            },
            plugin_name: self.name.clone(),
            log_lines: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| fail(format!("{e:#}")))?;
        let plugin = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| fail(self.describe_trap(e)))?;
        if configured {
            plugin
                .configure(&mut store, &self.settings)
                .map_err(|e| fail(self.describe_trap(e)))?
                .map_err(|refusal| PolicyError::Call {
                    plugin: self.name.clone(),
                    version: self.version.clone(),
                    function: "configure",
                    reason: format!("refused the settings: {refusal}"),
                })?;
        }
        let result = f(&mut store, &plugin);
        record_usage(Usage {
            fuel: self.limits.fuel - store.get_fuel().unwrap_or(0),
            memory_bytes: store.data().limits.peak_memory,
        });
        result.map_err(|e| {
            let said = String::from_utf8_lossy(&stderr.contents()).into_owned();
            match last_words(&said) {
                Some(words) => fail(format!("{}: {words}", self.describe_trap(e))),
                None => fail(self.describe_trap(e)),
            }
        })
    }

    fn describe_trap(&self, e: wasmtime::Error) -> String {
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => format!(
                "stopped after {} instructions (fuel limit): it may loop forever",
                self.limits.fuel
            ),
            Some(Trap::UnreachableCodeReached) => "trapped (the plugin panicked or aborted)".into(),
            Some(Trap::StackOverflow) => {
                "trapped: call stack exhausted (recursion too deep)".into()
            }
            Some(Trap::MemoryOutOfBounds) => {
                "trapped: out-of-bounds memory access (a bug, or its stack overflowed)".into()
            }
            Some(trap) if e.to_string().contains("memory") || *trap == Trap::AllocationTooLarge => {
                format!(
                    "stopped at the memory limit of {} MiB",
                    self.limits.memory_bytes >> 20
                )
            }
            Some(trap) => format!("trapped: {trap}"),
            None if format!("{e:#}").contains("forcing trap when growing memory") => {
                format!(
                    "stopped at the memory limit of {} MiB",
                    self.limits.memory_bytes >> 20
                )
            }
            None => format!("{e:#}"),
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A plugin file's identity, as [`PolicyPlugin::sha256`] holds it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha256(bytes))
}

/// What a failing plugin last wrote to stderr, e.g. Rust's panic message, without the
/// `note: run with RUST_BACKTRACE=1` trailer.
fn last_words(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:"))
        .collect();
    let from = lines
        .iter()
        .rposition(|l| l.contains("panicked at"))
        .unwrap_or(lines.len().saturating_sub(1));
    let words = lines.get(from..)?.join(" ");
    (!words.is_empty()).then(|| words.chars().take(500).collect())
}

/// Where compiled plugins are cached: `COMPACTOR_PLUGIN_CACHE` (`off` disables it), else
/// `$XDG_CACHE_HOME/compactor/plugins`, else `~/.cache/compactor/plugins`. It holds native
/// code that will be run, so it must be writable by compactor's user only.
fn compile_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    match std::env::var_os("COMPACTOR_PLUGIN_CACHE") {
        Some(v) if v == "off" || v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|base| base.join("compactor/plugins")),
    }
}

/// The supported contract version matching a plugin's export, or why it cannot be loaded.
fn supported_version(exported: Option<&str>) -> Result<&'static str, String> {
    let supported = contract::SUPPORTED.join(", ");
    let newest = contract::SUPPORTED.last().copied().unwrap_or_default();
    let Some(exported) = exported else {
        return Err(format!(
            "exports no compaction:policy/policy interface: build it against wit/since_v{newest} \
             (this compactor loads {supported})"
        ));
    };
    if let Some(&v) = contract::SUPPORTED.iter().find(|&&v| v == exported) {
        return Ok(v);
    }
    let number = |v: &str| -> Vec<u64> { v.split('.').filter_map(|n| n.parse().ok()).collect() };
    if number(exported) > number(newest) {
        Err(format!(
            "built for compaction:policy@{exported}, newer than this compactor knows \
             ({supported}): upgrade compactor, or rebuild the plugin against wit/since_v{newest}"
        ))
    } else {
        Err(format!(
            "built for compaction:policy@{exported}, which this compactor does not load \
             ({supported}): rebuild the plugin against wit/since_v{newest}"
        ))
    }
}

/// The version in the component's `compaction:policy/policy@X` export, if any.
fn exported_policy_version(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .exports(engine)
        .find_map(|(name, _)| {
            name.strip_prefix("compaction:policy/policy@")
                .map(str::to_string)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_are_matched_or_refused_with_what_to_do() {
        assert_eq!(supported_version(Some("0.1.0")), Ok("0.1.0"));
        assert_eq!(supported_version(Some("0.2.0")), Ok("0.2.0"));
        let newer = supported_version(Some("0.10.0")).unwrap_err();
        assert!(
            newer.contains("newer than this compactor knows (0.1.0, 0.2.0): upgrade compactor"),
            "{newer}"
        );
        let older = supported_version(Some("0.0.9")).unwrap_err();
        assert!(
            older.contains("rebuild the plugin against wit/since_v0.2.0"),
            "{older}"
        );
        let none = supported_version(None).unwrap_err();
        assert!(
            none.contains("exports no compaction:policy/policy"),
            "{none}"
        );
    }
}

//! Wiring: a validated config becomes an open store and loaded plugins; the commands run on it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Config, PluginSource, StoreConfig};
use crate::plan::{CompactionPlan, TableSpec};
use crate::policy::wasm::Limits;
use crate::policy::{DEFAULT_PLUGIN, PluginEngine, PolicyError, PolicyPlugin};
use crate::shutdown::Stop;
use crate::store::{LocalStore, S3Store, Store};
use crate::summary::RunSummary;

/// A problem with how compactor was asked to run (config, plugin): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A loaded config: the open store and each table's plugin. Cheap to clone (the daemon swaps a
/// table's plugin by building a new `App`).
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub tables: Vec<TableSpec>,
    /// Compiles plugins; shared so a reloaded plugin file reuses the compiled ones.
    pub engine: Arc<PluginEngine>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Refuses a `path` that is not an existing directory, naming it as `what`: a mistyped path is a
/// usage error, not an empty directory made for it and a run with nothing to do.
pub fn existing_directory(path: &std::path::Path, what: &str) -> Result<(), UsageError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(UsageError(format!(
            "{what} {} is a file, not a directory",
            path.display()
        ))),
        Err(e) => Err(UsageError(format!("{what} {}: {e}", path.display()))),
    }
}

/// Opens the configured store. A local warehouse must exist already (`compactor demo` makes
/// one); S3 is reached lazily, so an unreachable endpoint shows in the first listing.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, UsageError> {
    match config {
        StoreConfig::Local { root } => {
            existing_directory(root, "the warehouse ([store] url)").map_err(|UsageError(e)| {
                UsageError(format!(
                    "{e}. Create it, correct the url, or seed a demo table with `compactor demo`"
                ))
            })?;
            LocalStore::try_new(root)
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| UsageError(format!("cannot open the warehouse directory: {e}")))
        }
        StoreConfig::S3(location) => Ok(Arc::new(S3Store::connect(location.clone(), None).await)),
    }
}

/// Loads a plugin: `default` (the embedded one) or a path to a .wasm file.
pub fn load_plugin(
    engine: &PluginEngine,
    source: &PluginSource,
    settings: Vec<(String, String)>,
) -> Result<PolicyPlugin, PolicyError> {
    match source {
        PluginSource::Embedded => PolicyPlugin::load(
            engine,
            DEFAULT_PLUGIN,
            "embedded default",
            settings,
            Limits::default(),
        ),
        PluginSource::File(path) => {
            let origin = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| PolicyError::Load {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
            PolicyPlugin::load(engine, &bytes, &origin, settings, Limits::default())
        }
    }
}

/// Refuses a plugin whose digest is not the one the table pins (`plugin_sha256`).
pub fn check_pin(table: &crate::config::TableConfig, sha256: &str) -> Result<(), String> {
    match &table.plugin_sha256 {
        Some(pin) if pin != sha256 => Err(format!(
            "table {:?}: the plugin file's sha256 is {sha256}, but plugin_sha256 pins {pin}; \
             refused (update the pin to deploy a new plugin)",
            table.name
        )),
        _ => Ok(()),
    }
}

impl App {
    /// Loads the plugins (blocking: call from a blocking thread) for a store opened with
    /// [`open_store`].
    pub fn open(config: Config, store: Arc<dyn Store>) -> Result<App, UsageError> {
        let engine = PluginEngine::try_new().map_err(|e| UsageError(e.to_string()))?;
        App::open_with(config, store, Arc::new(engine))
    }

    /// As [`App::open`], with an engine that may already hold compiled plugins.
    pub fn open_with(
        config: Config,
        store: Arc<dyn Store>,
        engine: Arc<PluginEngine>,
    ) -> Result<App, UsageError> {
        let mut tables = Vec::new();
        for t in &config.tables {
            let plugin = load_plugin(&engine, &t.plugin, t.settings.clone()).map_err(|e| {
                UsageError(format!(
                    "{}: table {:?}: {e}",
                    config.path.display(),
                    t.name
                ))
            })?;
            if let Err(e) = check_pin(t, &plugin.sha256) {
                return Err(UsageError(format!("{}: {e}", config.path.display())));
            }
            tracing::debug!(table = %t.name, plugin = ?plugin, "plugin loaded");
            crate::metrics::global().set_plugin(
                &t.name,
                &plugin.name,
                &plugin.version,
                &plugin.sha256,
            );
            tables.push(TableSpec {
                name: t.name.clone(),
                prefix: t.prefix.clone(),
                walk_from: vec![t.prefix.clone()],
                data_files: t.data_files.clone(),
                plugin: Arc::new(plugin),
            });
        }
        Ok(App {
            config,
            store,
            tables,
            engine,
        })
    }

    /// Narrows runs to `prefixes` (`--prefix`): directories in the store, each inside a
    /// configured table or enclosing one. Tables none of them concerns are left out.
    pub fn narrow_to(&mut self, prefixes: &[String]) -> Result<(), UsageError> {
        if prefixes.is_empty() {
            return Ok(());
        }
        let mut dirs = Vec::new();
        for given in prefixes {
            let dir = crate::config::normalize_prefix(given)
                .map_err(|e| UsageError(format!("--prefix {given:?}: {e}")))?;
            let concerns = |t: &TableSpec| t.prefix.starts_with(&dir) || dir.starts_with(&t.prefix);
            if !self.tables.iter().any(concerns) {
                let tables: Vec<&str> = self.tables.iter().map(|t| t.prefix.as_str()).collect();
                return Err(UsageError(format!(
                    "--prefix {given:?} lies in no table of {} (their prefixes: {})",
                    self.config.path.display(),
                    tables.join(", ")
                )));
            }
            dirs.push(dir);
        }
        self.tables = std::mem::take(&mut self.tables)
            .into_iter()
            .filter_map(|t| t.narrowed_to(&dirs))
            .collect();
        Ok(())
    }

    pub async fn plan(&self, now_ms: i64) -> CompactionPlan {
        crate::plan::plan(self.store.as_ref(), &self.tables, now_ms).await
    }

    /// Plans and executes one run, and adds it to the process's metrics.
    pub async fn run_once(&self, now_ms: i64, stop: &Stop) -> RunSummary {
        let start = std::time::Instant::now();
        let before = self.store.request_counts().unwrap_or_default();
        let plan = self.plan(now_ms).await;
        crate::metrics::global().record_plan(&plan);
        let mut summary =
            crate::compact::execute(self.store.clone(), &plan, &self.config.merge, stop).await;
        summary.elapsed = start.elapsed();
        summary.requests = self
            .store
            .request_counts()
            .map(|after| after.since(&before));
        crate::metrics::global().record_run(&summary);
        summary
    }
}

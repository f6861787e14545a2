//! `compactor daemon`: compaction on a schedule, for months, beside a streaming sink.
//!
//! * Runs never overlap: one task runs them one after another. A run asked for while another
//!   is going (`POST /run`, SIGHUP, [`Daemon::run_now`]) starts when it ends; a run that
//!   outlasts the interval delays the next one, which is counted
//!   (`compactor_runs_delayed_total`).
//! * Before each run, a changed plugin file (by content hash) is compiled and put through the
//!   `plugin check` scenarios; only a plugin that passes replaces the running one. A refused
//!   one is logged, counted (`compactor_plugin_reload_failures_total`) and not tried again
//!   until the file changes once more.
//! * SIGHUP reloads the config under the same rule (a bad config keeps the old one), then runs.
//! * Shutdown follows [`crate::shutdown`]: no new partitions, then the merges in flight get the
//!   grace period, then are abandoned cleanly.
//!
//! [`Daemon`] is also the library API for embedding compactor in another Rust service:
//! `Daemon::new`, `start`, `run_now`, `reload`, `shutdown`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::app::{App, UsageError, now_ms, open_store};
use crate::config::{Config, PluginSource};
use crate::policy::wasm::{Limits, sha256_hex};
use crate::policy::{PluginEngine, PolicyPlugin, check};
use crate::shutdown::{Phase, Stop};
use crate::summary::RunSummary;

/// How the daemon was asked to run, beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Skip the run at start even if `[daemon] run_at_start` asks for it.
    pub no_initial_run: bool,
    /// A fixed "now" for the policy's decisions (tests, replays); the schedule keeps real time.
    pub now_override: Option<i64>,
}

/// A running compactor service. Cloning shares it.
#[derive(Clone)]
pub struct Daemon {
    shared: Arc<Shared>,
}

struct Shared {
    config_path: PathBuf,
    options: DaemonOptions,
    app: RwLock<Arc<App>>,
    trigger: Notify,
    reload_requested: std::sync::atomic::AtomicBool,
    stop: Stop,
    /// Per table, the hash of a plugin file that was refused: not tried again until it changes.
    refused: Mutex<HashMap<String, String>>,
    /// The loop's task once started.
    task: Mutex<Option<JoinHandle<()>>>,
    /// The latest store probe for `/readyz`: when, and its answer.
    probe: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

/// When the run after one that started at `started_ms` is due: `interval_ms` later, or with
/// `align = Some(offset)` at the next whole multiple of the interval (UTC) plus the offset.
pub fn next_due_ms(started_ms: i64, interval_ms: i64, align: Option<i64>) -> i64 {
    match align {
        None => started_ms + interval_ms,
        Some(offset) => ((started_ms - offset).div_euclid(interval_ms) + 1) * interval_ms + offset,
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The gate a plugin passes before it may replace a running one: every `plugin check`
/// scenario. Blocking.
fn check_scenarios(plugin: &PolicyPlugin) -> Result<(), String> {
    let failed: Vec<String> = check::run(plugin, check::default_now_ms())
        .into_iter()
        .filter(|r| !r.passed)
        .map(|r| format!("scenario {:?}: {}", r.scenario, r.detail))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "plugin {} {} failed `plugin check`: {}",
            plugin.name,
            plugin.version,
            failed.join("; ")
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: {e}"))?
}

/// Opens the store and loads (and checks) every table's plugin of `config`.
async fn open_checked(config: Config, engine: Arc<PluginEngine>) -> Result<App, String> {
    let store = open_store(&config.store).await.map_err(|e| e.to_string())?;
    blocking(move || {
        let app = App::open_with(config, store, engine).map_err(|e| e.to_string())?;
        for t in &app.tables {
            check_scenarios(&t.plugin).map_err(|e| format!("table {:?}: {e}", t.name))?;
        }
        Ok(app)
    })
    .await
}

impl Daemon {
    /// Reads the config, opens the store and loads the plugins. A problem here is a
    /// [`UsageError`] (exit code 2): nothing has run yet.
    pub async fn new(config_path: &Path, options: DaemonOptions) -> anyhow::Result<Daemon> {
        let config = Config::load(config_path)?;
        let engine = Arc::new(PluginEngine::try_new().map_err(|e| UsageError(e.to_string()))?);
        let app = open_checked(config, engine).await.map_err(UsageError)?;
        Ok(Daemon {
            shared: Arc::new(Shared {
                config_path: config_path.to_path_buf(),
                options,
                app: RwLock::new(Arc::new(app)),
                trigger: Notify::new(),
                reload_requested: false.into(),
                stop: Stop::new(),
                refused: Mutex::default(),
                task: Mutex::default(),
                probe: tokio::sync::Mutex::default(),
            }),
        })
    }

    /// The config and plugins runs use now.
    pub fn app(&self) -> Arc<App> {
        self.shared
            .app
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The daemon's shutdown signal (for wiring signals, or a host service's own shutdown).
    pub fn stop(&self) -> &Stop {
        &self.shared.stop
    }

    /// Starts the schedule (the first run right away when configured). Idempotent.
    pub fn start(&self) {
        let mut task = self.shared.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_none() {
            let daemon = self.clone();
            *task = Some(tokio::spawn(async move { daemon.run_loop().await }));
        }
    }

    /// Asks for a run now; if one is going, another follows it (requests coalesce).
    pub fn run_now(&self) {
        self.shared.trigger.notify_one();
    }

    /// Asks for the config file to be read again before the next run, and for that run now.
    pub fn reload(&self) {
        self.shared
            .reload_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.run_now();
    }

    /// Stops gracefully: nothing new starts, merges in flight get the configured grace period,
    /// then are abandoned cleanly. Returns when the schedule has ended.
    pub async fn shutdown(&self) {
        let grace = self.app().config.daemon.shutdown_grace;
        self.shared.stop.drain_then_abandon(grace);
        self.wait().await;
    }

    /// Waits until the schedule ends (after a shutdown).
    pub async fn wait(&self) {
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!("the schedule ended with an internal error: {e}");
        }
    }

    /// Whether the store answers (a listing of the first table's prefix), as `/readyz` reports
    /// it. Probed at most every 10 seconds.
    pub async fn probe_store(&self) -> Result<(), String> {
        let mut probe = self.shared.probe.lock().await;
        if let Some((at, answer)) = probe.as_ref()
            && at.elapsed() < Duration::from_secs(10)
        {
            return answer.clone();
        }
        let app = self.app();
        let prefix = app
            .tables
            .first()
            .map(|t| t.prefix.clone())
            .unwrap_or_default();
        let answer =
            match tokio::time::timeout(Duration::from_secs(5), app.store.list(&prefix)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("{}: no answer within 5s", app.store.describe())),
            };
        *probe = Some((std::time::Instant::now(), answer.clone()));
        answer
    }

    async fn run_loop(&self) {
        let stop = self.shared.stop.clone();
        let daemon_cfg = self.app().config.daemon.clone();
        let start = now_ms();
        let mut due = if daemon_cfg.run_at_start && !self.shared.options.no_initial_run {
            start
        } else {
            next_due_ms(
                start,
                millis(daemon_cfg.interval),
                daemon_cfg.align.map(millis),
            )
        };
        loop {
            let wait = Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64);
            tokio::select! {
                biased;
                () = stop.reached(Phase::Draining) => break,
                () = self.shared.trigger.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            if stop.is_draining() {
                break;
            }
            if self
                .shared
                .reload_requested
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                self.reload_config().await;
            }
            self.refresh_plugins().await;

            let started = now_ms();
            let scheduled = started >= due;
            let app = self.app();
            let decision_now = self.shared.options.now_override.unwrap_or(started);
            let summary = app.run_once(decision_now, &stop).await;
            log_run(&summary);
            let ended = now_ms();
            if scheduled {
                let d = &app.config.daemon;
                let next = next_due_ms(started, millis(d.interval), d.align.map(millis));
                due = if next <= ended {
                    crate::metrics::global().runs_delayed.inc();
                    tracing::warn!(
                        "the run took {}s, longer than the interval ({}s): the next one starts now",
                        (ended - started) / 1000,
                        d.interval.as_secs()
                    );
                    ended
                } else {
                    next
                };
            }
        }
        tracing::info!("schedule stopped");
    }

    /// Reads the config again; a config that does not load, or whose plugins fail their
    /// checks, is refused and the running one kept.
    async fn reload_config(&self) {
        let old = self.app();
        let loaded = match Config::load(&self.shared.config_path) {
            Ok(config) => open_checked(config, old.engine.clone()).await,
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(app) => {
                if app.config.daemon.metrics_addr != old.config.daemon.metrics_addr {
                    tracing::warn!(
                        "[daemon] metrics_addr changed: it takes effect at the next restart"
                    );
                }
                tracing::info!(config = %self.shared.config_path.display(), "config reloaded");
                self.shared
                    .refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                *self.shared.app.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(app);
            }
            Err(e) => {
                crate::metrics::global().config_reload_failures.inc();
                tracing::error!(
                    config = %self.shared.config_path.display(),
                    "config reload refused; the running config stays: {e}"
                );
            }
        }
    }

    /// Swaps in every plugin file that changed and passes its checks.
    async fn refresh_plugins(&self) {
        let app = self.app();
        let mut tables = app.tables.clone();
        let mut swapped = false;
        for (table, spec) in app.config.tables.iter().zip(tables.iter_mut()) {
            let PluginSource::File(path) = &table.plugin else {
                continue;
            };
            let bytes = match tokio::fs::read(path).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(table = %table.name, plugin = %path.display(),
                        "cannot read the plugin file ({e}); {} {} keeps running",
                        spec.plugin.name, spec.plugin.version);
                    continue;
                }
            };
            let sha = sha256_hex(&bytes);
            let known_bad = self
                .shared
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&table.name)
                == Some(&sha);
            if sha == spec.plugin.sha256 || known_bad {
                continue;
            }
            let engine = app.engine.clone();
            let origin = path.display().to_string();
            let settings = table.settings.clone();
            let loaded = match crate::app::check_pin(table, &sha) {
                Err(e) => Err(e),
                Ok(()) => {
                    blocking(move || {
                        let plugin = PolicyPlugin::load(
                            &engine,
                            &bytes,
                            &origin,
                            settings,
                            Limits::default(),
                        )
                        .map_err(|e| e.to_string())?;
                        check_scenarios(&plugin)?;
                        Ok(plugin)
                    })
                    .await
                }
            };
            match loaded {
                Ok(plugin) => {
                    tracing::info!(table = %table.name, plugin = %path.display(),
                        "plugin file changed: {} {} replaces {} {}",
                        plugin.name, plugin.version, spec.plugin.name, spec.plugin.version);
                    crate::metrics::global().set_plugin(
                        &table.name,
                        &plugin.name,
                        &plugin.version,
                        &plugin.sha256,
                    );
                    spec.plugin = Arc::new(plugin);
                    swapped = true;
                }
                Err(e) => {
                    crate::metrics::global()
                        .plugin_reload_failures
                        .get_or_create(&crate::metrics::Table {
                            table: table.name.clone(),
                        })
                        .inc();
                    tracing::error!(table = %table.name, plugin = %path.display(),
                        "changed plugin refused; {} {} keeps running: {e}",
                        spec.plugin.name, spec.plugin.version);
                    self.shared
                        .refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(table.name.clone(), sha);
                }
            }
        }
        if swapped {
            let mut next = (*app).clone();
            next.tables = tables;
            *self.shared.app.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        }
    }
}

fn log_run(summary: &RunSummary) {
    tracing::info!(
        outcome = summary.outcome(),
        partitions_compacted = summary.partitions_compacted,
        partitions_failed = summary.partitions_failed,
        files_in = summary.files_in,
        files_out = summary.files_out,
        bytes_in = summary.bytes_in,
        bytes_out = summary.bytes_out,
        seconds = summary.elapsed.as_secs_f64(),
        "run finished"
    );
    for line in &summary.failures {
        tracing::error!("failed: {line}");
    }
}

/// Wires the process's signals to `daemon`: SIGTERM/SIGINT shut it down gracefully (a second
/// one exits at once), SIGHUP reloads the config and runs.
pub fn on_signals(daemon: &Daemon) -> anyhow::Result<()> {
    let grace = daemon.app().config.daemon.shutdown_grace;
    crate::shutdown::on_signals(daemon.stop(), grace);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let daemon = daemon.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config, then running");
            daemon.reload();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data files under `prefix`, at any depth.
    async fn count_files(store: &dyn crate::store::Store, prefix: &str) -> usize {
        let mut stack = vec![prefix.to_string()];
        let mut n = 0;
        while let Some(p) = stack.pop() {
            let listing = store.list(&p).await.unwrap();
            n += listing.objects.len();
            stack.extend(listing.prefixes);
        }
        n
    }

    /// The facade as a service embedding compactor would use it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_start_run_now_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[store]\nurl = \"file://./w\"\n[merge]\nwork_dir = \"work\"\n\
             [daemon]\nrun_at_start = false\nmetrics_addr = \"127.0.0.1:0\"\n\
             [[tables]]\nname = \"events\"\nprefix = \"events/\"\n",
        )
        .unwrap();
        let store = crate::store::LocalStore::try_new(dir.path().join("w")).unwrap();
        // 96 small files: the current hour (hot) and the three before it, 24 each.
        assert_eq!(
            crate::demo::seed(&store, "events/", now_ms())
                .await
                .unwrap(),
            96
        );

        let daemon = Daemon::new(&config, DaemonOptions::default())
            .await
            .unwrap();
        daemon.start();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count_files(&store, "events/").await, 96, "no run at start");
        daemon.run_now();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // 72 cold files become 3 (4 more if the hour turned meanwhile).
        while count_files(&store, "events/").await > 24 + 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the run did not happen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::timeout(Duration::from_secs(30), daemon.shutdown())
            .await
            .expect("shutdown returns");
        daemon.run_now();
        assert!(daemon.stop().is_draining());
    }

    const H: i64 = 3_600_000;

    #[test]
    fn schedule() {
        // Not aligned: an interval after the start.
        assert_eq!(next_due_ms(10 * H + 123, H, None), 11 * H + 123);
        // Aligned with a 5-minute offset: the next hh:05.
        let five = 5 * 60_000;
        assert_eq!(next_due_ms(10 * H + 60_000, H, Some(five)), 10 * H + five);
        assert_eq!(next_due_ms(10 * H + five, H, Some(five)), 11 * H + five);
        assert_eq!(
            next_due_ms(10 * H + 50 * 60_000, H, Some(five)),
            11 * H + five
        );
        // Aligned on 15 minutes, no offset.
        let q = 15 * 60_000;
        assert_eq!(next_due_ms(10 * H + 1, q, Some(0)), 10 * H + q);
    }
}

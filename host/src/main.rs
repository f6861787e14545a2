//! The `compactor` binary: parse the command line, set up logging, dispatch, exit with a code
//! scripts can use (0 ok, 1 a partition failed, 2 bad usage or config).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use compactor::app::{App, UsageError, load_plugin, now_ms, open_store};
use compactor::cli::{Cli, Command, LogFormat, PluginCommand};
use compactor::config::{Config, ConfigError, PluginSource, StoreConfig};
use compactor::daemon::{Daemon, DaemonOptions};
use compactor::policy::wasm::Limits;
use compactor::policy::{PluginEngine, check};
use compactor::shutdown::Stop;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    compactor::malloc::tune();
    let cli = Cli::parse();
    init_logging(&cli);
    // Corrupt input can make the Parquet decoder panic; the merge catches that and refuses the
    // file with a message naming it, so those panics are only logged at debug level. Any other
    // panic is a bug and is said out loud.
    std::panic::set_hook(Box::new(|info| {
        if compactor::merge::catching_panics() {
            tracing::debug!("caught panic: {info}");
        } else {
            eprintln!("error: internal error (please report it): {info}");
        }
    }));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // A merge abandoned at shutdown may still be finishing on a blocking thread: don't wait.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<ConfigError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // Our crate at the chosen level; dependencies (wasmtime, cranelift) only warn.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,compactor={default}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Writes to stdout. A reader that went away (`compactor plan | head`) ends the program
/// quietly, as it would for any Unix tool, instead of a panic.
fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Runs `f` on a blocking thread. Plugin loading and calls must never run on an async runtime
/// thread: WASI's synchronous bindings drive their own runtime underneath.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

async fn open_app(config: Config) -> anyhow::Result<App> {
    let store = open_store(&config.store).await?;
    blocking(move || Ok(App::open(config, store)?)).await
}

/// `plan --plugin FILE [--table NAME]`: the app with that plugin in place of the configured one.
fn with_plugin(mut app: App, file: &str, only: Option<&str>) -> anyhow::Result<App> {
    if let Some(name) = only
        && !app.tables.iter().any(|t| t.name == name)
    {
        return Err(UsageError(format!("--table {name:?}: no such table in the config")).into());
    }
    let source = if file == "default" {
        PluginSource::Embedded
    } else {
        PluginSource::File(file.into())
    };
    for (spec, table) in app.tables.iter_mut().zip(&app.config.tables) {
        if only.is_none_or(|name| name == table.name) {
            let plugin = load_plugin(&app.engine, &source, table.settings.clone())
                .map_err(|e| UsageError(format!("table {:?}: {e}", table.name)))?;
            spec.plugin = std::sync::Arc::new(plugin);
        }
    }
    Ok(app)
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let now = cli.now.unwrap_or_else(now_ms);
    match cli.command {
        Command::Once(args) => {
            let mut app = open_app(Config::load(&cli.config)?).await?;
            app.narrow_to(&args.scope.prefixes)?;
            let stop = Stop::new();
            compactor::shutdown::on_signals(&stop, app.config.daemon.shutdown_grace);
            let summary = app.run_once(now, &stop).await;
            out!("{summary}");
            if let Some(path) = &args.metrics_file {
                compactor::metrics::write_file(path)
                    .with_context(|| format!("writing metrics to {}", path.display()))?;
            }
            Ok(summary.exit_code() as u8)
        }
        Command::Daemon(args) => {
            let options = DaemonOptions {
                no_initial_run: args.no_initial_run,
                now_override: cli.now,
            };
            let daemon = Daemon::new(&cli.config, options).await?;
            let addr = daemon.app().config.daemon.metrics_addr;
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                UsageError(format!(
                    "cannot listen on {addr} ([daemon] metrics_addr in {}): {e}",
                    cli.config.display()
                ))
            })?;
            tracing::info!(
                "compactor daemon: /metrics, /healthz, /readyz and POST /run on http://{}",
                listener.local_addr().unwrap_or(addr)
            );
            tokio::spawn(compactor::http::serve(listener, daemon.clone()));
            compactor::daemon::on_signals(&daemon)?;
            daemon.start();
            daemon.wait().await;
            tracing::info!("stopped cleanly");
            Ok(0)
        }
        Command::Plan(args) => {
            let mut app = open_app(Config::load(&cli.config)?).await?;
            if let Some(file) = args.plugin {
                app = blocking(move || with_plugin(app, &file, args.table.as_deref())).await?;
            }
            app.narrow_to(&args.scope.prefixes)?;
            let plan = app.plan(now).await;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                out!("{plan}");
            }
            let failed = plan
                .tables
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| matches!(p.action, compactor::plan::Action::Failed { .. }));
            Ok(u8::from(failed))
        }
        Command::Merge(args) => {
            let defaults = compactor::config::MergeConfig::default();
            let cfg = compactor::config::MergeConfig {
                compression: compactor::config::parse_compression(&args.compression).map_err(
                    |e| UsageError(format!("--compression {:?}: {e}", args.compression)),
                )?,
                row_group_bytes: args.row_group_size.max(1024),
                mode: args.mode,
                adaptive_encodings: !args.classic_encodings,
                parallelism: match args.parallelism {
                    0 => defaults.parallelism,
                    n => n,
                },
                ..defaults
            };
            let data_files = compactor::layout::DataFiles::ending_in(&args.file_suffix);
            // Nothing is uploaded or deleted here, so a signal stops merges at once.
            let stop = Stop::new();
            compactor::shutdown::on_signals(&stop, std::time::Duration::ZERO);
            let summary = compactor::merge_dir::merge_dir(
                &args.input,
                &args.output,
                args.target_bytes,
                &data_files,
                &cfg,
                &stop,
            )
            .await?;
            out!("{summary}");
            Ok(if summary.interrupted {
                130
            } else {
                u8::from(!summary.failed.is_empty())
            })
        }
        Command::Plugin(PluginCommand::Check(args)) => {
            let source = if args.file == "default" {
                PluginSource::Embedded
            } else {
                PluginSource::File(args.file.clone().into())
            };
            let now = cli.now.unwrap_or_else(check::default_now_ms);
            let (plugin, results) = blocking(move || {
                let engine = PluginEngine::try_new()?;
                let plugin = load_plugin(&engine, &source, args.settings)
                    .map_err(|e| UsageError(e.to_string()))?;
                let results = check::run(&plugin, now);
                Ok((plugin, results))
            })
            .await?;
            if args.json {
                let out = serde_json::json!({
                    "name": plugin.name, "version": plugin.version,
                    "wit_version": plugin.wit_version, "scenarios": results,
                });
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                outln!(
                    "plugin {} {} (compaction:policy@{}) from {}",
                    plugin.name,
                    plugin.version,
                    plugin.wit_version,
                    plugin.origin
                );
                outln!(
                    "  limits per call: {} fuel (about one per instruction), {} MiB of memory",
                    Limits::default().fuel,
                    Limits::default().memory_bytes >> 20
                );
                for r in &results {
                    let mark = if r.passed { "pass" } else { "FAIL" };
                    outln!(
                        "  {mark}  {:<16} {:>5} ms {:>7.1}M fuel {:>5.1} MiB  {}",
                        r.scenario,
                        r.millis,
                        r.fuel as f64 / 1e6,
                        r.memory_bytes as f64 / 1048576.0,
                        r.detail
                    );
                }
            }
            Ok(u8::from(results.iter().any(|r| !r.passed)))
        }
        Command::Plugin(PluginCommand::New(args)) => {
            let dir = args.dir.unwrap_or_else(|| args.name.clone().into());
            let sdk = args
                .sdk
                .or_else(compactor::policy::new::find_sdk)
                .ok_or_else(|| {
                    UsageError(
                        "cannot find compactor's plugin SDK: pass --sdk DIR (plugins/sdk in a \
                         clone of compactor)"
                            .into(),
                    )
                })?;
            let made =
                compactor::policy::new::create(&args.name, &dir, &sdk).map_err(UsageError)?;
            let d = made.dir.display();
            outln!(
                "created {d} (policy {:?}, SDK {})",
                args.name,
                sdk.display()
            );
            outln!("next:");
            outln!(
                "  cd {d} && cargo test                    # logic and the plugin check suite, natively"
            );
            outln!("  cargo build --release --target wasm32-wasip2");
            outln!("  compactor plugin check {}", made.wasm.display());
            Ok(0)
        }
        Command::Demo => {
            let config = Config::load(&cli.config)?;
            if let StoreConfig::Local { root } = &config.store {
                std::fs::create_dir_all(root)
                    .with_context(|| format!("creating the warehouse {}", root.display()))?;
            }
            let store = open_store(&config.store).await?;
            let table = config.tables.first().context("the config has no table")?;
            let at = format!(
                "{}{}",
                store.describe().trim_end_matches('/'),
                format_args!("/{}", table.prefix)
            );
            let seeded = compactor::demo::seed(store.as_ref(), &table.prefix, now).await?;
            if seeded > 0 {
                outln!(
                    "seeded {seeded} small files under {at} (the current hour and the three before it)"
                );
            } else {
                outln!("{at} is not empty: compacting what is there");
            }
            let app = blocking(move || Ok(App::open(config, store)?)).await?;
            let summary = app.run_once(now, &Stop::new()).await;
            out!("{summary}");
            if let StoreConfig::Local { root } = &app.config.store {
                outln!(
                    "Run it again: nothing left to do. Look inside: find {}",
                    root.display()
                );
            }
            Ok(summary.exit_code() as u8)
        }
    }
}

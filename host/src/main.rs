//! The `compactor` binary: parse the command line, set up logging, dispatch, exit with a code
//! scripts can use (0 ok, 1 a partition failed, 2 bad usage or config).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use compactor::app::{App, UsageError, load_plugin, now_ms, open_store};
use compactor::cli::{Cli, Command, LogFormat, PluginCommand};
use compactor::config::{Config, ConfigError, PluginSource, StoreConfig};
use compactor::policy::{PluginEngine, check};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    // Corrupt input can make the Parquet decoder panic; the merge catches that and refuses the
    // file with a message naming it. The default hook would also dump a backtrace on the user.
    std::panic::set_hook(Box::new(|info| {
        tracing::debug!("caught panic: {info}");
    }));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
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

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let now = cli.now.unwrap_or_else(now_ms);
    match cli.command {
        Command::Once => {
            let app = App::open(Config::load(&cli.config)?)?;
            let summary = app.run_once(now).await;
            print!("{summary}");
            Ok(summary.exit_code() as u8)
        }
        Command::Plan(args) => {
            let app = App::open(Config::load(&cli.config)?)?;
            let plan = app.plan(now).await;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{plan}");
            }
            let failed = plan
                .tables
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| matches!(p.action, compactor::plan::Action::Failed { .. }));
            Ok(u8::from(failed))
        }
        Command::Plugin(PluginCommand::Check(args)) => {
            let engine = PluginEngine::try_new()?;
            let source = if args.file == "default" {
                PluginSource::Embedded
            } else {
                PluginSource::File(args.file.clone().into())
            };
            let plugin = load_plugin(&engine, &source, args.settings)
                .map_err(|e| UsageError(e.to_string()))?;
            let results = check::run(&plugin, cli.now.unwrap_or_else(check::default_now_ms));
            if args.json {
                let out = serde_json::json!({
                    "name": plugin.name, "version": plugin.version,
                    "wit_version": plugin.wit_version, "scenarios": results,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "plugin {} {} (compaction:policy@{}) from {}",
                    plugin.name, plugin.version, plugin.wit_version, plugin.origin
                );
                for r in &results {
                    let mark = if r.passed { "pass" } else { "FAIL" };
                    println!(
                        "  {mark}  {:<16} {:>5} ms  {}",
                        r.scenario, r.millis, r.detail
                    );
                }
            }
            Ok(u8::from(results.iter().any(|r| !r.passed)))
        }
        Command::Demo => {
            let config = Config::load(&cli.config)?;
            let StoreConfig::Local { root } = config.store.clone();
            let store = open_store(&config.store)?;
            let table = config.tables.first().context("the config has no table")?;
            let seeded = compactor::demo::seed(store.as_ref(), &table.prefix, now).await?;
            if seeded > 0 {
                println!(
                    "seeded {seeded} small files under {} (the current hour and the three before it)",
                    root.join(&table.prefix).display()
                );
            } else {
                println!(
                    "{} is not empty: compacting what is there",
                    root.join(&table.prefix).display()
                );
            }
            let app = App::open(config)?;
            let summary = app.run_once(now).await;
            print!("{summary}");
            println!(
                "Run it again: nothing left to do. Look inside: find {}",
                root.display()
            );
            Ok(summary.exit_code() as u8)
        }
    }
}

//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 all went well; 1 a partition or group failed (the others were still done);
2 bad usage, config or plugin (nothing was done); 130 a second SIGTERM/SIGINT cut a graceful
stop short (still safe: the next run finishes what was cut), or for `merge` the first one
stopped it (outputs not finished are not written).

Quick start: `compactor demo` seeds ./warehouse with small files and compacts them.
Docs: README.md (config reference, writing a plugin).";

/// Merges small Parquet files in hive-partitioned storage into large ones. Which partitions
/// are cold and how files are grouped is decided by a WebAssembly policy plugin.
#[derive(Debug, Parser)]
#[command(name = "compactor", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The config file (relative paths inside it resolve against its directory).
    #[arg(
        short,
        long,
        global = true,
        env = "COMPACTOR_CONFIG",
        default_value = "config.toml"
    )]
    pub config: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log detail (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Pretend the current time is this (RFC 3339, e.g. 2026-11-20T05:10:00Z): for tests and
    /// replaying a decision.
    #[arg(long, global = true, hide = true, value_parser = parse_instant_ms)]
    pub now: Option<i64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compact every cold partition once, print a summary, exit (for cron, CI, by hand).
    /// SIGTERM/SIGINT stop it gracefully ([daemon] shutdown_grace), a second one at once.
    Once(OnceArgs),
    /// Run on a schedule ([daemon] interval, default 1h) until SIGTERM/SIGINT. Serves
    /// /metrics, /healthz, /readyz and POST /run on [daemon] metrics_addr (127.0.0.1:9464).
    /// SIGHUP reloads the config and runs; a changed plugin file is checked, then swapped in.
    Daemon(DaemonArgs),
    /// Dry run: show what `once` would do. Reads listings and footers, writes nothing.
    Plan(PlanArgs),
    /// Merge the Parquet files of every directory under IN_DIR into files of about the target
    /// size, written under the same relative paths in OUT_DIR: the engine of `once`, with no
    /// policy, journal or deletes (inputs are only read). Reads no config file: its flags set
    /// what a config's `[merge]` section would, and the other settings keep their defaults.
    Merge(MergeArgs),
    /// Work with policy plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Seed the configured local warehouse with a demo table of small files (only if the table
    /// is empty), then run `once` on it.
    Demo,
}

#[derive(Debug, Args)]
pub struct OnceArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Also write the run's metrics to FILE in the Prometheus text format (atomically, for
    /// node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// Narrowing a run to part of the configured tables.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only partitions at or below PREFIX, a directory inside a configured table
    /// (events/dt=2026-11-20/) or enclosing tables (events/ is that whole table). Repeatable.
    /// The policy still decides: a hot partition stays untouched.
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Outputs aim at this size and land between it and twice it when the data allows
    /// (bytes, or with a unit: 128MiB, 1GB).
    #[arg(long, default_value = "128MiB", value_parser = parse_size_arg)]
    pub target_bytes: u64,
    /// zstd, zstd(LEVEL), snappy, lz4, gzip or none.
    #[arg(long, default_value = "zstd(3)")]
    pub compression: String,
    /// Row groups are cut at this encoded size.
    #[arg(long, default_value = "64MiB", value_parser = parse_size_arg)]
    pub row_group_size: u64,
    /// rewrite: decode and re-encode every row (target-sized row groups, one codec). concat:
    /// copy column chunks as they are when a file set shares one schema (disk speed; the
    /// inputs' row groups and codecs stay). auto: concat only when that loses nothing.
    #[arg(long, value_enum, default_value_t = crate::merge::MergeMode::Rewrite)]
    pub mode: crate::merge::MergeMode,
    /// Merges at once (0: one per core). With fewer output files than that, each merge's
    /// inputs are cut into parts merged at once on the spare cores, then stitched into one file.
    #[arg(long, default_value_t = 0)]
    pub parallelism: usize,
    /// Write only plain and dictionary encodings, for readers that know no others. By default
    /// a column written without a dictionary may use a delta or byte-stream-split encoding
    /// where a trial on the first rows shows it smaller.
    #[arg(long)]
    pub classic_encodings: bool,
    /// Which files are data: names ending in this (any case); "" takes every file whose name
    /// does not start with `_` or `.` (Hive's 000000_0, Trino, Flink).
    #[arg(long, default_value = ".parquet", value_name = "SUFFIX")]
    pub file_suffix: String,
    /// The directory tree to read (its files are only read).
    pub input: PathBuf,
    /// Where the merged files go: created if missing, outside INPUT, and holding no data files
    /// yet where merged files would go (an earlier merge's are not mixed with, nor replaced).
    pub output: PathBuf,
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    compactor_plugin_sdk::parse_size(text)
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Do not run at start; wait for the schedule (overrides [daemon] run_at_start).
    #[arg(long)]
    pub no_initial_run: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Print the plan as JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Plan with this plugin (a .wasm component, or `default`) instead of the configured one,
    /// with each table's settings: what a new policy would do to the real bucket, before it is
    /// deployed.
    #[arg(long, value_name = "FILE")]
    pub plugin: Option<String>,
    /// With --plugin: only this table uses it.
    #[arg(long, value_name = "NAME", requires = "plugin")]
    pub table: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin, print its name, version and contract version, and run it through the
    /// built-in scenarios (hot hour, many tiny files, one huge file, empty partition, shuffled
    /// input). Exit 0 when every scenario passes.
    Check(CheckArgs),
    /// Start a new policy: a Rust crate copied from the plugin template, with the SDK wired,
    /// a working example policy and native tests. Prints the commands that test, build and
    /// check it.
    New(NewArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and dashes, e.g. quiet-hours.
    pub name: String,
    /// Where to create the crate (default: ./NAME). Must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// compactor's plugins/sdk directory (default: found from the current directory or the
    /// binary's location in a compactor checkout).
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin: a .wasm component, or `default` for the built-in one.
    pub file: String,
    /// A setting handed to the plugin's configure (repeatable), e.g. --setting target_size=64MiB.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (UTC) into milliseconds since the epoch.
pub fn parse_instant_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("expected a UTC time like 2026-11-20T05:10:00Z, got {text:?}");
    let t = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || h.len() != 3 {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let (y, mo, da) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm, ss) = (num(h[0])?, num(h[1])?, num(h[2])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let days = compactor_plugin_sdk::days_from_civil(y, mo as u32, da as u32);
    Ok(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_instant_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_instant_ms("1970-01-02T01:00:01Z"), Ok(90_001_000));
        assert!(parse_instant_ms("2026-11-20 05:10").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Scripts branch on the exit code: `--help` lists every one the process can end with.
    #[test]
    fn help_lists_every_exit_code() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for code in [
            "0 all went well",
            "1 a partition",
            "2 bad usage",
            "130 a second",
        ] {
            assert!(help.contains(code), "{code}: {help}");
        }
    }
}

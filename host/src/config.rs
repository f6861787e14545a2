//! `config.toml`: read in two steps. [`RawConfig`] mirrors the file (unknown keys refused);
//! [`Config::try_from_raw`] checks every value once and hands the rest of the program types
//! it can trust (sizes in bytes, absolute paths, a parsed compression).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use compactor_plugin_sdk::parse_size;
use parquet::basic::{Compression, ZstdLevel};
use serde::Deserialize;

/// A config problem: the message names the file and the key. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub store: RawStore,
    #[serde(default)]
    pub merge: RawMerge,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub leases: RawLeases,
    #[serde(default)]
    pub tables: Vec<RawTable>,
}

/// Several compactor processes on one bucket: each partition is leased to one at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLeases {
    #[serde(default)]
    pub enabled: bool,
    /// How long a lease lasts without renewal (a live holder renews every third of it).
    #[serde(default = "default_lease_ttl")]
    pub ttl: String,
}

impl Default for RawLeases {
    fn default() -> Self {
        RawLeases {
            enabled: false,
            ttl: default_lease_ttl(),
        }
    }
}

fn default_lease_ttl() -> String {
    "10m".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Time between the starts of two runs, e.g. `"1h"`, `"15m"`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Run at whole multiples of `interval` on the UTC clock (plus `offset`) instead of
    /// `interval` after the previous start.
    #[serde(default)]
    pub align: bool,
    /// With `align`: how long after each boundary to run, e.g. `"5m"` for 00:05, 01:05, ...
    #[serde(default)]
    pub offset: Option<String>,
    /// Run once as soon as the daemon starts.
    #[serde(default = "default_true")]
    pub run_at_start: bool,
    /// Where `/metrics`, `/healthz`, `/readyz` and `POST /run` are served.
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: String,
    /// On SIGTERM/SIGINT, how long merges in flight may take to finish before they are
    /// abandoned (`once` too).
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            interval: default_interval(),
            align: false,
            offset: None,
            run_at_start: true,
            metrics_addr: default_metrics_addr(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_interval() -> String {
    "1h".into()
}
fn default_true() -> bool {
    true
}
fn default_metrics_addr() -> String {
    "127.0.0.1:9464".into()
}
fn default_shutdown_grace() -> String {
    // Kubernetes sends SIGKILL 30 s after SIGTERM unless told otherwise.
    "25s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `file://DIR` (relative to the config file's directory), `file:///DIR`, or
    /// `s3://BUCKET/optional/prefix`.
    pub url: String,
    /// S3 only: the region (default: from the environment or profile).
    #[serde(default)]
    pub region: Option<String>,
    /// S3 only: an S3-compatible endpoint, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 only: path-style addressing, which most S3-compatible stores need.
    #[serde(default)]
    pub path_style: bool,
    /// S3 only: attempts per request, the first included, for throttling (503 SlowDown),
    /// server errors and dropped connections (default 6).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// S3 only: the first retry's backoff ceiling; it doubles each retry up to 20 s, with
    /// full jitter (default "1s").
    #[serde(default)]
    pub retry_backoff: Option<String>,
    /// S3 only: a request that receives nothing for this long is cut off and retried
    /// (default "60s").
    #[serde(default)]
    pub timeout: Option<String>,
    /// S3 only: reads in flight at once (footers, listings, and inputs downloaded ahead of a
    /// merge within 16 MiB) (default 32). Lower it for a small S3-compatible server.
    #[serde(default)]
    pub concurrent_reads: Option<usize>,
    /// S3 only: server-side encryption of every object written, `AES256`, `aws:kms` or
    /// `aws:kms:dsse` (default: the bucket's default encryption).
    #[serde(default)]
    pub server_side_encryption: Option<String>,
    /// S3 only, with `aws:kms`: the KMS key (id, alias or ARN; default: the account's `aws/s3`).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// S3 only: the storage class of merged files (default: the bucket's, `STANDARD`).
    #[serde(default)]
    pub storage_class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMerge {
    /// `zstd`, `zstd(LEVEL)`, `snappy`, `lz4`, `gzip` or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Row groups are cut when their encoded size reaches this.
    #[serde(default = "default_row_group_size")]
    pub row_group_size: String,
    /// `rewrite` (default), `concat` or `auto`: how merged files are written.
    #[serde(default)]
    pub mode: Option<String>,
    /// Keep the finished pages of the row group being written in a temporary file instead of
    /// memory (default true).
    #[serde(default = "default_true")]
    pub spill_pages: bool,
    /// Columns written without a dictionary may use a delta or byte-stream-split encoding
    /// where a trial on the first rows shows it smaller (default true). Set false for readers
    /// that know only plain and dictionary encodings.
    #[serde(default = "default_true")]
    pub adaptive_encodings: bool,
    /// Inputs whose row groups decompress to more than this are refused, so one hostile file
    /// cannot exhaust memory.
    #[serde(default = "default_max_row_group_bytes")]
    pub max_row_group_bytes: String,
    /// Rows per decoded batch.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Where merged files are written before upload. Default: the system temp directory.
    #[serde(default)]
    pub work_dir: Option<String>,
    /// Merges at once; 0 means one per CPU core. A run with fewer merges than that cuts them
    /// into parts merged at once ([`crate::merge::stitch`]).
    #[serde(default)]
    pub parallelism: usize,
    /// Unfinished uploads of ours older than this were left by a killed run and are removed.
    #[serde(default = "default_stale_upload_after")]
    pub stale_upload_after: String,
    /// Memory the merges in flight may use together (estimated per merge from its inputs);
    /// merges beyond it wait for others to finish.
    #[serde(default = "default_memory_budget")]
    pub memory_budget: String,
}

fn default_memory_budget() -> String {
    "2GiB".into()
}

fn default_stale_upload_after() -> String {
    "1h".into()
}

impl Default for RawMerge {
    fn default() -> Self {
        RawMerge {
            compression: default_compression(),
            row_group_size: default_row_group_size(),
            mode: None,
            spill_pages: true,
            adaptive_encodings: true,
            max_row_group_bytes: default_max_row_group_bytes(),
            batch_rows: default_batch_rows(),
            work_dir: None,
            parallelism: 0,
            stale_upload_after: default_stale_upload_after(),
            memory_budget: default_memory_budget(),
        }
    }
}

fn default_compression() -> String {
    "zstd(3)".into()
}
fn default_row_group_size() -> String {
    "64MiB".into()
}
fn default_max_row_group_bytes() -> String {
    "1GiB".into()
}
fn default_batch_rows() -> usize {
    8192
}
fn default_plugin() -> String {
    "default".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub name: String,
    /// Key prefix of the table in the store, e.g. `events/`.
    pub prefix: String,
    /// `"default"` for the embedded plugin, or a path to a `.wasm` component (relative to the
    /// config file's directory).
    #[serde(default = "default_plugin")]
    pub plugin: String,
    /// Optional: the plugin file's SHA-256 (hex). A file with another digest is refused, at
    /// start and when the daemon sees it change.
    #[serde(default)]
    pub plugin_sha256: Option<String>,
    /// Which files are data: names ending in this (any case); `""` takes every visible file.
    #[serde(default)]
    pub file_suffix: Option<String>,
    /// Handed to the plugin's `configure` as strings.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub store: StoreConfig,
    pub merge: MergeConfig,
    pub daemon: DaemonConfig,
    pub tables: Vec<TableConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub interval: Duration,
    /// `Some(offset)`: runs at whole multiples of `interval` (UTC) plus the offset.
    pub align: Option<Duration>,
    pub run_at_start: bool,
    pub metrics_addr: std::net::SocketAddr,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Local { root: PathBuf },
    S3(crate::store::S3Location),
}

#[derive(Debug, Clone)]
pub struct MergeConfig {
    pub compression: Compression,
    /// Rewrite rows, or concatenate column chunks where that applies.
    pub mode: crate::merge::MergeMode,
    /// Finished pages wait in a temporary file, not in memory, until their row group is written.
    pub spill_pages: bool,
    /// Delta and byte-stream-split encodings where a trial shows them smaller.
    pub adaptive_encodings: bool,
    pub row_group_bytes: u64,
    pub max_row_group_bytes: u64,
    pub batch_rows: usize,
    pub work_dir: PathBuf,
    /// Partitions merged at once (at least 1).
    pub parallelism: usize,
    /// Age after which an unfinished upload of ours counts as abandoned, in milliseconds.
    pub stale_upload_after_ms: i64,
    /// Memory the merges in flight may use together.
    pub memory_budget_bytes: u64,
    /// Per-partition leases (`[leases] enabled`), for several processes on one bucket.
    pub leases: Option<crate::lease::LeaseSettings>,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            compression: Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
            mode: Default::default(),
            spill_pages: true,
            adaptive_encodings: true,
            row_group_bytes: 64 << 20,
            max_row_group_bytes: 1 << 30,
            batch_rows: default_batch_rows(),
            work_dir: std::env::temp_dir(),
            parallelism: cpu_count(),
            stale_upload_after_ms: 3_600_000,
            memory_budget_bytes: 2 << 30,
            leases: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    pub name: String,
    /// Ends in `/`.
    pub prefix: String,
    pub plugin: PluginSource,
    /// The pinned SHA-256 of a plugin file (lowercase hex), if any.
    pub plugin_sha256: Option<String>,
    /// Which of a partition's files are data (`file_suffix`).
    pub data_files: crate::layout::DataFiles,
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// The default policy built into the binary.
    Embedded,
    /// A `.wasm` component on disk (absolute path).
    File(PathBuf),
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read the config file: {e} (pass --config FILE)"),
        })?;
        Config::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its directory).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Config::try_from_raw(path, raw)
    }

    pub fn try_from_raw(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            path: path.display().to_string(),
            message,
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Absolute where possible, so messages and logs show where things really are.
        let base = parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_path_buf());
        let base = base.as_path();
        let store = parse_store(&raw.store, base).map_err(fail)?;

        let size = |key: &str, value: &str| {
            parse_size(value).map_err(|e| fail(format!("[merge] {key} = {value:?}: {e}")))
        };
        let row_group_bytes = size("row_group_size", &raw.merge.row_group_size)?;
        let max_row_group_bytes = size("max_row_group_bytes", &raw.merge.max_row_group_bytes)?;
        let memory_budget_bytes = size("memory_budget", &raw.merge.memory_budget)?;
        if memory_budget_bytes < 1 << 20 {
            return Err(fail("[merge] memory_budget must be at least 1MiB".into()));
        }
        if row_group_bytes < 1024 {
            return Err(fail("[merge] row_group_size must be at least 1KiB".into()));
        }
        if raw.merge.batch_rows == 0 || raw.merge.batch_rows > 1 << 20 {
            return Err(fail(
                "[merge] batch_rows must be between 1 and 1048576".into(),
            ));
        }
        let merge = MergeConfig {
            compression: parse_compression(&raw.merge.compression).map_err(|e| {
                fail(format!(
                    "[merge] compression = {:?}: {e}",
                    raw.merge.compression
                ))
            })?,
            mode: match raw.merge.mode.as_deref() {
                None => Default::default(),
                Some(text) => <crate::merge::MergeMode as clap::ValueEnum>::from_str(text, true)
                    .map_err(|_| {
                        fail(format!(
                            "[merge] mode = {text:?}: expected rewrite, concat or auto"
                        ))
                    })?,
            },
            spill_pages: raw.merge.spill_pages,
            adaptive_encodings: raw.merge.adaptive_encodings,
            row_group_bytes,
            max_row_group_bytes,
            batch_rows: raw.merge.batch_rows,
            work_dir: match &raw.merge.work_dir {
                Some(dir) => base.join(dir),
                None => default_work_dir(),
            },
            parallelism: match raw.merge.parallelism {
                0 => cpu_count(),
                n => n,
            },
            memory_budget_bytes,
            leases: parse_leases(&raw.leases).map_err(fail)?,
            stale_upload_after_ms: compactor_plugin_sdk::parse_duration_ms(
                &raw.merge.stale_upload_after,
            )
            .map_err(|e| {
                fail(format!(
                    "[merge] stale_upload_after = {:?}: {e}",
                    raw.merge.stale_upload_after
                ))
            })?,
        };

        let daemon = parse_daemon(&raw.daemon).map_err(fail)?;

        if raw.tables.is_empty() {
            return Err(fail(
                "no [[tables]] configured: add at least one table".into(),
            ));
        }
        let mut tables: Vec<TableConfig> = Vec::new();
        for t in raw.tables {
            let at = format!("[[tables]] {:?}", t.name);
            if t.name.trim().is_empty() {
                return Err(fail("[[tables]] name must not be empty".into()));
            }
            if tables.iter().any(|other| other.name == t.name) {
                return Err(fail(format!("{at}: the table name is used twice")));
            }
            let prefix =
                normalize_prefix(&t.prefix).map_err(|e| fail(format!("{at}: prefix: {e}")))?;
            if let Some(other) = tables
                .iter()
                .find(|o| o.prefix.starts_with(&prefix) || prefix.starts_with(&o.prefix))
            {
                return Err(fail(format!(
                    "{at}: prefix {prefix:?} overlaps table {:?} ({:?}); a file must belong to one table",
                    other.name, other.prefix
                )));
            }
            let plugin = match t.plugin.as_str() {
                "default" => PluginSource::Embedded,
                file => {
                    let p = base.join(file);
                    if !p.is_file() {
                        return Err(fail(format!(
                            "{at}: plugin {file:?}: no such file ({}); use \"default\" or a path to a .wasm component",
                            p.display()
                        )));
                    }
                    PluginSource::File(p.canonicalize().unwrap_or(p))
                }
            };
            let settings = t
                .settings
                .into_iter()
                .map(|(k, v)| {
                    let value = match v {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        other => {
                            return Err(fail(format!(
                                "{at}: setting {k}: expected a string or number, got {}",
                                other.type_str()
                            )));
                        }
                    };
                    Ok((k, value))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let plugin_sha256 = match (&t.plugin_sha256, &plugin) {
                (None, _) => None,
                (Some(_), PluginSource::Embedded) => {
                    return Err(fail(format!(
                        "{at}: plugin_sha256 pins a plugin file; the built-in default needs none"
                    )));
                }
                (Some(hex), PluginSource::File(_)) => {
                    let hex = hex.trim().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(fail(format!(
                            "{at}: plugin_sha256 = {hex:?}: expected 64 hex digits \
                             (sha256sum of the .wasm file)"
                        )));
                    }
                    Some(hex)
                }
            };
            let suffix = t
                .file_suffix
                .as_deref()
                .unwrap_or(crate::layout::DataFiles::DEFAULT_SUFFIX);
            if suffix.contains('/') {
                return Err(fail(format!(
                    "{at}: file_suffix = {suffix:?}: the end of a file's name, without `/` \
                     (\".parquet\", or \"\" for every file)"
                )));
            }
            tables.push(TableConfig {
                name: t.name,
                prefix,
                plugin,
                plugin_sha256,
                data_files: crate::layout::DataFiles::ending_in(suffix),
                settings,
            });
        }
        Ok(Config {
            path: path.to_path_buf(),
            store,
            merge,
            daemon,
            tables,
        })
    }
}

fn parse_leases(raw: &RawLeases) -> Result<Option<crate::lease::LeaseSettings>, String> {
    let ttl_ms = compactor_plugin_sdk::parse_duration_ms(&raw.ttl)
        .map_err(|e| format!("[leases] ttl = {:?}: {e}", raw.ttl))?;
    if ttl_ms < 1000 {
        return Err(format!("[leases] ttl = {:?}: at least 1s", raw.ttl));
    }
    Ok(raw
        .enabled
        .then(|| crate::lease::LeaseSettings::new(Duration::from_millis(ttl_ms as u64))))
}

fn parse_daemon(raw: &RawDaemon) -> Result<DaemonConfig, String> {
    let duration = |key: &str, text: &str| {
        compactor_plugin_sdk::parse_duration_ms(text)
            .map(|ms| Duration::from_millis(ms.max(0) as u64))
            .map_err(|e| format!("[daemon] {key} = {text:?}: {e}"))
    };
    let interval = duration("interval", &raw.interval)?;
    if interval < Duration::from_secs(1) {
        return Err(format!(
            "[daemon] interval = {:?}: at least 1s",
            raw.interval
        ));
    }
    let align = match (&raw.offset, raw.align) {
        (None, align) => align.then_some(Duration::ZERO),
        (Some(text), true) => {
            let offset = duration("offset", text)?;
            if offset >= interval {
                return Err(format!(
                    "[daemon] offset = {text:?}: must be shorter than the interval ({:?})",
                    raw.interval
                ));
            }
            Some(offset)
        }
        (Some(_), false) => {
            return Err("[daemon] offset applies only with align = true".into());
        }
    };
    let metrics_addr = raw.metrics_addr.parse().map_err(|_| {
        format!(
            "[daemon] metrics_addr = {:?}: expected IP:PORT, e.g. \"127.0.0.1:9464\" \
             (or \"0.0.0.0:9464\" to be scraped from other hosts)",
            raw.metrics_addr
        )
    })?;
    Ok(DaemonConfig {
        interval,
        align,
        run_at_start: raw.run_at_start,
        metrics_addr,
        shutdown_grace: duration("shutdown_grace", &raw.shutdown_grace)?,
    })
}

const VAR_TMP: &str = "/var/tmp";

/// The default work dir, where merged files (and their spilled pages) wait: `$TMPDIR` when it
/// is set, else `/var/tmp`, which is on disk (FHS) where `/tmp` is often in memory (tmpfs, the
/// default on Fedora, Arch and Debian 13): a merged file is up to twice the target size per
/// merge in flight, memory that `memory_budget` does not count. On the same filesystem as a
/// local warehouse (as `/var/tmp` often is), merged files are linked into place, not copied.
/// Not inside the warehouse itself: on a network filesystem its pages would cross the network
/// twice, spilled and then written.
fn default_work_dir() -> PathBuf {
    disk_temp_dir(
        std::env::var_os("TMPDIR").is_some(),
        Path::new(VAR_TMP).is_dir(),
    )
}

/// [`default_work_dir`]'s choice, given what the machine has.
fn disk_temp_dir(tmpdir_set: bool, var_tmp_exists: bool) -> PathBuf {
    if tmpdir_set || !var_tmp_exists {
        std::env::temp_dir()
    } else {
        PathBuf::from(VAR_TMP)
    }
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How objects are written to S3: encryption and storage class, checked against what S3 takes.
fn parse_writes(raw: &RawStore) -> Result<crate::store::s3::WriteOptions, String> {
    const ENCRYPTIONS: [&str; 3] = ["AES256", "aws:kms", "aws:kms:dsse"];
    // The commit reads each merged file back, and queries read it at once: an archive class
    // (GLACIER, DEEP_ARCHIVE) would make it unreadable until restored.
    const CLASSES: [&str; 6] = [
        "STANDARD",
        "INTELLIGENT_TIERING",
        "STANDARD_IA",
        "ONEZONE_IA",
        "GLACIER_IR",
        "REDUCED_REDUNDANCY",
    ];
    if let Some(sse) = &raw.server_side_encryption
        && !ENCRYPTIONS.contains(&sse.as_str())
    {
        return Err(format!(
            "[store] server_side_encryption = {sse:?}: expected one of {}",
            ENCRYPTIONS.join(", ")
        ));
    }
    if raw.kms_key_id.is_some()
        && !raw
            .server_side_encryption
            .as_deref()
            .is_some_and(|sse| sse.starts_with("aws:kms"))
    {
        return Err(
            "[store] kms_key_id needs server_side_encryption = \"aws:kms\" (or \"aws:kms:dsse\")"
                .into(),
        );
    }
    if let Some(class) = &raw.storage_class
        && !CLASSES.contains(&class.as_str())
    {
        return Err(format!(
            "[store] storage_class = {class:?}: expected one of {} (archive classes are refused: \
             a merged file is read back at once, by compactor and by queries)",
            CLASSES.join(", ")
        ));
    }
    Ok(crate::store::s3::WriteOptions {
        server_side_encryption: raw.server_side_encryption.clone(),
        kms_key_id: raw.kms_key_id.clone(),
        storage_class: raw.storage_class.clone(),
    })
}

fn parse_store(raw: &RawStore, base: &Path) -> Result<StoreConfig, String> {
    let url = raw.url.as_str();
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("[store] url = {url:?} names no bucket"));
        }
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => normalize_prefix(p).map_err(|e| format!("[store] url = {url:?}: {e}"))?,
        };
        if let Some(endpoint) = &raw.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "[store] endpoint = {endpoint:?}: expected http://HOST:PORT or https://HOST"
            ));
        }
        let max_attempts = raw.max_attempts.unwrap_or(6);
        if max_attempts == 0 {
            return Err("[store] max_attempts = 0: at least 1 (the first attempt)".into());
        }
        let retry_backoff_ms = match &raw.retry_backoff {
            None => 1000,
            Some(text) => compactor_plugin_sdk::parse_duration_ms(text)
                .map(|ms| ms.max(0) as u64)
                .map_err(|e| format!("[store] retry_backoff = {text:?}: {e}"))?,
        };
        let timeout_ms = match &raw.timeout {
            None => 60_000,
            Some(text) => match compactor_plugin_sdk::parse_duration_ms(text) {
                Ok(ms) if ms >= 100 => ms as u64,
                Ok(_) => return Err(format!("[store] timeout = {text:?}: at least 100ms")),
                Err(e) => return Err(format!("[store] timeout = {text:?}: {e}")),
            },
        };
        let concurrent_reads = match raw.concurrent_reads {
            None => crate::store::s3::READS_AT_ONCE,
            Some(n @ 1..=256) => n,
            Some(n) => {
                return Err(format!("[store] concurrent_reads = {n}: from 1 to 256"));
            }
        };
        return Ok(StoreConfig::S3(crate::store::S3Location {
            bucket: bucket.to_string(),
            prefix,
            region: raw.region.clone(),
            endpoint: raw.endpoint.clone(),
            path_style: raw.path_style,
            max_attempts,
            retry_backoff_ms,
            timeout_ms,
            concurrent_reads,
            writes: parse_writes(raw)?,
        }));
    }
    if raw.region.is_some()
        || raw.endpoint.is_some()
        || raw.path_style
        || raw.max_attempts.is_some()
        || raw.retry_backoff.is_some()
        || raw.timeout.is_some()
        || raw.concurrent_reads.is_some()
        || raw.server_side_encryption.is_some()
        || raw.kms_key_id.is_some()
        || raw.storage_class.is_some()
    {
        return Err(
            "[store] region, endpoint, path_style, max_attempts, retry_backoff, timeout, \
             concurrent_reads, server_side_encryption, kms_key_id and storage_class apply to \
             s3:// stores only"
                .into(),
        );
    }
    if let Some(rest) = url.strip_prefix("file://") {
        if rest.is_empty() {
            return Err("[store] url = \"file://\" names no directory".into());
        }
        return Ok(StoreConfig::Local {
            root: base.join(rest.strip_prefix("./").unwrap_or(rest)),
        });
    }
    Err(format!(
        "[store] url = {url:?}: expected file://DIR (relative to the config file), \
         file:///ABSOLUTE/DIR or s3://BUCKET/PREFIX"
    ))
}

/// `events` or `/events/` as the key prefix `events/`.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        return Err("must name a directory such as \"events/\"".into());
    }
    crate::store::validate_key(p).map_err(|e| e.to_string())?;
    Ok(format!("{p}/"))
}

/// `zstd`, `zstd(5)`, `snappy`, `lz4`, `gzip`, `none`: the SDK's names (plugins choose a
/// group's compression with the same words), as parquet's codecs.
pub fn parse_compression(text: &str) -> Result<Compression, String> {
    use compactor_plugin_sdk::Codec;
    Ok(match compactor_plugin_sdk::parse_codec(text)? {
        Codec::Zstd(level) => {
            Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| format!("zstd level: {e}"))?)
        }
        Codec::Snappy => Compression::SNAPPY,
        Codec::Lz4 => Compression::LZ4_RAW,
        Codec::Gzip => Compression::GZIP(Default::default()),
        Codec::Uncompressed => Compression::UNCOMPRESSED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/compactor/config.toml"), text)
    }

    const MINIMAL: &str = r#"
[store]
url = "file://./warehouse"
[[tables]]
name = "events"
prefix = "events"
[tables.settings]
target_size = "128MiB"
min_files = 2
"#;

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Local {
                root: PathBuf::from("/etc/compactor/warehouse")
            }
        );
        assert_eq!(c.tables[0].prefix, "events/");
        assert_eq!(c.tables[0].plugin, PluginSource::Embedded);
        assert_eq!(c.tables[0].data_files, crate::layout::DataFiles::default());
        assert_eq!(
            c.tables[0].settings,
            vec![
                ("min_files".into(), "2".into()),
                ("target_size".into(), "128MiB".into())
            ]
        );
        assert_eq!(c.merge.row_group_bytes, 64 << 20);
        assert!(c.merge.adaptive_encodings);
        assert_eq!(
            c.daemon,
            DaemonConfig {
                interval: Duration::from_secs(3600),
                align: None,
                run_at_start: true,
                metrics_addr: "127.0.0.1:9464".parse().unwrap(),
                shutdown_grace: Duration::from_secs(25),
            }
        );
    }

    /// Merged files wait on disk, in `$TMPDIR` or `/var/tmp`, whatever the store; a setting
    /// wins.
    #[test]
    fn work_dir_defaults_to_a_temporary_directory_on_disk() {
        let on_disk = default_work_dir();
        assert_eq!(parse(MINIMAL).unwrap().merge.work_dir, on_disk);
        let s3 = MINIMAL.replace("url = \"file://./warehouse\"", "url = \"s3://lake\"");
        assert_eq!(parse(&s3).unwrap().merge.work_dir, on_disk);
        // `$TMPDIR` when set, else /var/tmp (on disk where /tmp may be in memory).
        assert_eq!(disk_temp_dir(true, true), std::env::temp_dir());
        assert_eq!(disk_temp_dir(false, true), PathBuf::from("/var/tmp"));
        assert_eq!(disk_temp_dir(false, false), std::env::temp_dir());
        let set = format!("{MINIMAL}[merge]\nwork_dir = \"/var/tmp/c\"\n");
        assert_eq!(
            parse(&set).unwrap().merge.work_dir,
            PathBuf::from("/var/tmp/c")
        );
    }

    #[test]
    fn classic_encodings_can_be_asked_for() {
        let c = parse(&format!("{MINIMAL}[merge]\nadaptive_encodings = false\n")).unwrap();
        assert!(!c.merge.adaptive_encodings);
    }

    #[test]
    fn daemon_settings() {
        let c = parse(&format!(
            "{MINIMAL}[daemon]\ninterval = \"15m\"\nalign = true\noffset = \"5m\"\n\
             metrics_addr = \"0.0.0.0:9000\"\nrun_at_start = false\n"
        ))
        .unwrap();
        assert_eq!(c.daemon.interval, Duration::from_secs(900));
        assert_eq!(c.daemon.align, Some(Duration::from_secs(300)));
        assert!(!c.daemon.run_at_start);
        assert_eq!(c.daemon.metrics_addr.port(), 9000);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (MINIMAL.replace("prefix", "prefx"), "prefx"),
            (MINIMAL.replace("file://./warehouse", "ftp://x"), "ftp://x"),
            (
                MINIMAL.replace("file://./warehouse", "s3://"),
                "names no bucket",
            ),
            (
                MINIMAL.replace(
                    "url = \"file://./warehouse\"",
                    "url = \"file://w\"\nregion = \"eu-west-1\"",
                ),
                "s3:// stores only",
            ),
            (
                MINIMAL.replace(
                    "url = \"file://./warehouse\"",
                    "url = \"s3://b\"\nendpoint = \"localhost:9000\"",
                ),
                "endpoint",
            ),
            (
                MINIMAL.replace(
                    "url = \"file://./warehouse\"",
                    "url = \"s3://b\"\nconcurrent_reads = 0",
                ),
                "concurrent_reads = 0: from 1 to 256",
            ),
            (
                format!("{MINIMAL}[merge]\nrow_group_size = \"big\"\n"),
                "row_group_size",
            ),
            (
                format!("{MINIMAL}[merge]\ncompression = \"zip\"\n"),
                "compression",
            ),
            (
                format!("{MINIMAL}[merge]\nmode = \"copy\"\n"),
                "mode = \"copy\": expected rewrite, concat or auto",
            ),
            (
                MINIMAL.replace(
                    "name = \"events\"",
                    "name = \"events\"\nplugin = \"nope.wasm\"",
                ),
                "nope.wasm",
            ),
            (
                format!("{MINIMAL}[[tables]]\nname = \"events\"\nprefix = \"other\"\n"),
                "used twice",
            ),
            (
                format!("{MINIMAL}[[tables]]\nname = \"e2\"\nprefix = \"events/sub\"\n"),
                "overlaps",
            ),
            (
                MINIMAL.replace("prefix = \"events\"", "prefix = \"../up\""),
                "prefix",
            ),
            (
                format!("{MINIMAL}[daemon]\ninterval = \"soon\"\n"),
                "[daemon] interval",
            ),
            (
                format!("{MINIMAL}[daemon]\nmetrics_addr = \"localhost\"\n"),
                "metrics_addr",
            ),
            (
                format!("{MINIMAL}[daemon]\ninterval = \"1h\"\nalign = true\noffset = \"2h\"\n"),
                "shorter than the interval",
            ),
            (
                format!("{MINIMAL}[daemon]\noffset = \"5m\"\n"),
                "only with align",
            ),
            (
                format!("{MINIMAL}[daemon]\nintervall = \"1h\"\n"),
                "intervall",
            ),
            (
                format!("{MINIMAL}[leases]\nenabled = true\nttl = \"10ms\"\n"),
                "[leases] ttl",
            ),
            (
                MINIMAL.replace(
                    "name = \"events\"",
                    "name = \"events\"\nplugin_sha256 = \"ab\"",
                ),
                "built-in default needs none",
            ),
            (
                MINIMAL.replace(
                    "name = \"events\"",
                    "name = \"events\"\nfile_suffix = \"x/.parquet\"",
                ),
                "file_suffix = \"x/.parquet\": the end of a file's name",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err}");
            assert!(err.starts_with("/etc/compactor/config.toml"), "{err}");
        }
    }

    #[test]
    fn s3_urls() {
        let c = parse(&MINIMAL.replace(
            "url = \"file://./warehouse\"",
            "url = \"s3://lake/raw/zone/\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true",
        ))
        .unwrap();
        assert_eq!(
            c.store,
            StoreConfig::S3(crate::store::S3Location {
                bucket: "lake".into(),
                prefix: "raw/zone/".into(),
                region: None,
                endpoint: Some("http://127.0.0.1:9000".into()),
                path_style: true,
                max_attempts: 6,
                retry_backoff_ms: 1000,
                timeout_ms: 60_000,
                concurrent_reads: 32,
                writes: Default::default(),
            })
        );
        let c = parse(&MINIMAL.replace(
            "url = \"file://./warehouse\"",
            "url = \"s3://lake\"\nconcurrent_reads = 4",
        ))
        .unwrap();
        let StoreConfig::S3(location) = c.store else {
            panic!("an s3 store")
        };
        assert_eq!(location.concurrent_reads, 4);

        let c = parse(&MINIMAL.replace(
            "url = \"file://./warehouse\"",
            "url = \"s3://lake\"\nserver_side_encryption = \"aws:kms\"\n\
             kms_key_id = \"alias/lake\"\nstorage_class = \"INTELLIGENT_TIERING\"",
        ))
        .unwrap();
        let StoreConfig::S3(location) = c.store else {
            panic!("an s3 store")
        };
        assert_eq!(
            location.writes,
            crate::store::s3::WriteOptions {
                server_side_encryption: Some("aws:kms".into()),
                kms_key_id: Some("alias/lake".into()),
                storage_class: Some("INTELLIGENT_TIERING".into()),
            }
        );
        for (store, needle) in [
            (
                "url = \"s3://lake\"\nserver_side_encryption = \"kms\"",
                "expected one of AES256, aws:kms, aws:kms:dsse",
            ),
            (
                "url = \"s3://lake\"\nserver_side_encryption = \"AES256\"\nkms_key_id = \"k\"",
                "kms_key_id needs server_side_encryption = \"aws:kms\"",
            ),
            (
                "url = \"s3://lake\"\nstorage_class = \"GLACIER\"",
                "archive classes are refused",
            ),
            (
                "url = \"file://./w\"\nstorage_class = \"STANDARD\"",
                "apply to s3:// stores only",
            ),
        ] {
            let text = MINIMAL.replace("url = \"file://./warehouse\"", store);
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Issue 6: the config parser, fuzzed with text that looks like our TOML. It never
        /// panics, and every refusal names the file.
        #[test]
        fn any_text_is_parsed_or_refused_with_the_file_named(
            text in "(\\[\\[?(store|merge|daemon|leases|tables|tables\\.settings)\\]\\]?\n|\
                      (url|prefix|name|plugin|interval|ttl|enabled|compression|row_group_size|\
                      memory_budget|batch_rows|parallelism|metrics_addr|offset|align|endpoint|\
                      timeout|max_attempts|concurrent_reads) = (\"[a-z0-9:/._()-]{0,20}\"|-?[0-9]{1,20}|true)\n){0,20}",
        ) {
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.to_string().starts_with("/etc/compactor/config.toml"));
            }
        }

        /// Every mutation of one byte of a valid config is parsed or refused, never a panic.
        #[test]
        fn one_changed_byte_never_panics(at in 0usize..MINIMAL.len(), byte in 0u8..128) {
            let mut bytes = MINIMAL.as_bytes().to_vec();
            bytes[at] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                let _ = parse(&text);
            }
        }
    }

    #[test]
    fn compression_names() {
        assert!(matches!(
            parse_compression("zstd(9)"),
            Ok(Compression::ZSTD(_))
        ));
        assert_eq!(parse_compression("snappy"), Ok(Compression::SNAPPY));
        assert!(parse_compression("zstd(99)").is_err());
        assert!(parse_compression("snappy(2)").is_err());
    }
}

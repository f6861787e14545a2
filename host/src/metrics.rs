//! Prometheus metrics (prometheus-client), one registry per process.
//!
//! Every name starts with `compactor_` and carries its unit (`_total`, `_seconds`, `_bytes`).
//! The run loop feeds them from each [`RunSummary`]; the plugin runtime records its calls. The
//! daemon serves them at `/metrics`; `compactor once --metrics-file` writes them for the
//! node_exporter textfile collector.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::summary::RunSummary;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `success`, `failure` (a partition failed) or `abandoned` (cut short by shutdown).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// `hot`, `too_few_files`, `policy`, `schema` or `error`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCall {
    pub plugin: String,
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLoaded {
    pub table: String,
    pub plugin: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Table {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeftAlone {
    pub table: String,
    /// `not_data` (not named by the table's `file_suffix`) or `archived`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestKind {
    /// `list`, `head`, `get`, `put`, `delete`.
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub runs: Family<Outcome, Counter>,
    pub runs_delayed: Counter,
    pub files_compacted: Counter,
    pub files_written: Counter,
    pub read_bytes: Counter,
    pub written_bytes: Counter,
    pub rows_compacted: Counter,
    pub partitions_compacted: Counter,
    pub partitions_skipped: Family<Reason, Counter>,
    pub recoveries: Counter,
    pub run_duration: Histogram,
    pub partition_duration: Histogram,
    pub plugin_call_duration: HistogramFamily<PluginCall>,
    pub plugin_errors: Family<PluginCall, Counter>,
    pub plugin_loaded: Family<PluginLoaded, Gauge>,
    plugin_current: std::sync::Mutex<std::collections::HashMap<String, PluginLoaded>>,
    pub plugin_reload_failures: Family<Table, Counter>,
    pub config_reload_failures: Counter,
    pub last_success: Gauge<f64, AtomicU64>,
    pub store_requests: Family<RequestKind, Counter>,
    pub files_left_alone: Family<LeftAlone, Gauge>,
}

fn run_buckets() -> Histogram {
    // 1 s .. ~4.5 h
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 15,
    ))
}

fn partition_buckets() -> Histogram {
    // 10 ms .. ~5.5 min
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 16,
    ))
}

fn plugin_buckets() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 16,
    ))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("compactor");
        let m = Metrics {
            runs: Family::default(),
            runs_delayed: Counter::default(),
            files_compacted: Counter::default(),
            files_written: Counter::default(),
            read_bytes: Counter::default(),
            written_bytes: Counter::default(),
            rows_compacted: Counter::default(),
            partitions_compacted: Counter::default(),
            partitions_skipped: Family::default(),
            recoveries: Counter::default(),
            run_duration: run_buckets(),
            partition_duration: partition_buckets(),
            plugin_call_duration: Family::new_with_constructor(plugin_buckets),
            plugin_errors: Family::default(),
            plugin_loaded: Family::default(),
            plugin_current: Default::default(),
            plugin_reload_failures: Family::default(),
            config_reload_failures: Counter::default(),
            last_success: Gauge::default(),
            store_requests: Family::default(),
            files_left_alone: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("runs", "Compaction runs, by outcome", m.runs.clone());
        r.register(
            "runs_delayed",
            "Runs that started late because the previous one outlasted the interval",
            m.runs_delayed.clone(),
        );
        r.register(
            "files_left_alone",
            "Files the last run's walk left alone: not_data (not named by the table's \
             file_suffix), archived (in an archive storage class, unreadable until restored)",
            m.files_left_alone.clone(),
        );
        r.register(
            "files_compacted",
            "Small files merged away (inputs)",
            m.files_compacted.clone(),
        );
        r.register(
            "files_written",
            "Merged files written (outputs)",
            m.files_written.clone(),
        );
        r.register_with_unit(
            "read",
            "Bytes of input files merged",
            Unit::Bytes,
            m.read_bytes.clone(),
        );
        r.register_with_unit(
            "written",
            "Bytes of merged files written",
            Unit::Bytes,
            m.written_bytes.clone(),
        );
        r.register(
            "rows_compacted",
            "Rows rewritten into merged files",
            m.rows_compacted.clone(),
        );
        r.register(
            "partitions_compacted",
            "Partitions where at least one merge was committed",
            m.partitions_compacted.clone(),
        );
        r.register(
            "partitions_skipped",
            "Partitions left alone, by reason (hot, too_few_files, policy, schema, error)",
            m.partitions_skipped.clone(),
        );
        r.register(
            "recoveries",
            "Unfinished commits of earlier runs completed or undone",
            m.recoveries.clone(),
        );
        r.register_with_unit(
            "run_duration",
            "Duration of a compaction run",
            Unit::Seconds,
            m.run_duration.clone(),
        );
        r.register_with_unit(
            "partition_duration",
            "Duration of one partition's work in a run",
            Unit::Seconds,
            m.partition_duration.clone(),
        );
        r.register_with_unit(
            "plugin_call_duration",
            "Latency of plugin calls (fresh instance included), by plugin and function",
            Unit::Seconds,
            m.plugin_call_duration.clone(),
        );
        r.register(
            "plugin_errors",
            "Plugin calls that trapped, ran out of fuel or memory, or answered nonsense",
            m.plugin_errors.clone(),
        );
        r.register(
            "plugin",
            "The plugin each table runs (1 for the current one)",
            m.plugin_loaded.clone(),
        );
        r.register(
            "plugin_reload_failures",
            "Changed plugin files that were refused (the previous plugin kept running)",
            m.plugin_reload_failures.clone(),
        );
        r.register(
            "config_reload_failures",
            "Config reloads (SIGHUP) refused; the previous config kept running",
            m.config_reload_failures.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time at which the last run without failures ended",
            m.last_success.clone(),
        );
        r.register(
            "store_requests",
            "Requests sent to the object store, by kind (S3)",
            m.store_requests.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Adds one run's outcome and totals.
    pub fn record_run(&self, summary: &RunSummary) {
        let outcome = summary.outcome();
        self.runs
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
        self.files_compacted.inc_by(summary.files_in);
        self.files_written.inc_by(summary.files_out);
        self.read_bytes.inc_by(summary.bytes_in);
        self.written_bytes.inc_by(summary.bytes_out);
        self.rows_compacted.inc_by(summary.rows);
        self.partitions_compacted
            .inc_by(summary.partitions_compacted);
        for (reason, n) in &summary.partitions_skipped {
            self.skipped(reason).inc_by(*n);
        }
        self.skipped("error").inc_by(summary.partitions_failed);
        self.recoveries.inc_by(summary.recoveries);
        self.run_duration.observe(summary.elapsed.as_secs_f64());
        if outcome == "success" {
            self.last_success.set(crate::app::now_ms() as f64 / 1000.0);
        }
        if let Some(r) = &summary.requests {
            for (kind, n) in [
                ("list", r.list),
                ("head", r.head),
                ("get", r.get),
                ("put", r.put),
                ("delete", r.delete),
            ] {
                self.store_requests
                    .get_or_create(&RequestKind { kind: kind.into() })
                    .inc_by(n);
            }
        }
    }

    /// What the walk of each table planned by one run left alone.
    pub fn record_plan(&self, plan: &crate::plan::CompactionPlan) {
        for t in &plan.tables {
            for (reason, files) in [("not_data", &t.not_data), ("archived", &t.archived)] {
                let labels = LeftAlone {
                    table: t.table.clone(),
                    reason: reason.into(),
                };
                self.files_left_alone
                    .get_or_create(&labels)
                    .set(files.count as i64);
            }
        }
    }

    fn skipped(&self, reason: &str) -> impl std::ops::Deref<Target = Counter> + '_ {
        self.partitions_skipped.get_or_create(&Reason {
            reason: reason.into(),
        })
    }

    pub fn record_plugin_call(&self, plugin: &str, function: &str, took: Duration, ok: bool) {
        let labels = PluginCall {
            plugin: plugin.into(),
            function: function.into(),
        };
        self.plugin_call_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.plugin_errors.get_or_create(&labels).inc();
        }
    }

    /// Says which plugin `table` runs now, replacing what was said before.
    pub fn set_plugin(&self, table: &str, plugin: &str, version: &str, sha256: &str) {
        let current = PluginLoaded {
            table: table.into(),
            plugin: plugin.into(),
            version: version.into(),
            sha256: sha256.into(),
        };
        // Drop the table's previous plugin line: one current plugin per table.
        let mut current_by_table = self
            .plugin_current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = current_by_table.insert(table.to_string(), current.clone()) {
            self.plugin_loaded.remove(&previous);
        }
        self.plugin_loaded.get_or_create(&current).set(1);
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Writes the metrics to `path` atomically (a temp file renamed into place) in the Prometheus
/// text format, as node_exporter's textfile collector wants.
pub fn write_file(path: &std::path::Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let text = prometheus_text(&global().encode());
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// OpenMetrics text to the Prometheus 0.0.4 text format that node_exporter's textfile collector
/// parses: OpenMetrics names a counter family without its `_total` suffix, has `# UNIT` lines
/// and ends with `# EOF`; 0.0.4 wants the family named as its samples are, and none of those.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_shows_up_under_prefixed_names_with_units() {
        let m = Metrics::new();
        let mut s = RunSummary {
            files_in: 7,
            files_out: 1,
            bytes_in: 700,
            bytes_out: 650,
            partitions_compacted: 1,
            partitions_failed: 1,
            elapsed: Duration::from_millis(1500),
            ..RunSummary::default()
        };
        s.partitions_skipped.insert("hot".into(), 2);
        s.failures
            .push("events/dt=2026-11-20/hour=03/: a reason".into());
        m.record_run(&s);
        m.record_plugin_call("default", "plan", Duration::from_millis(3), false);
        m.set_plugin("events", "default", "0.1.0", "aa");
        m.set_plugin("events", "default", "0.2.0", "bb");
        let text = m.encode();
        for line in [
            "compactor_runs_total{outcome=\"failure\"} 1",
            "compactor_files_compacted_total 7",
            "compactor_read_bytes_total 700",
            "compactor_written_bytes_total 650",
            "compactor_partitions_skipped_total{reason=\"hot\"} 2",
            "compactor_partitions_skipped_total{reason=\"error\"} 1",
            "compactor_run_duration_seconds_count 1",
            "compactor_plugin_errors_total{plugin=\"default\",function=\"plan\"} 1",
            "compactor_plugin{table=\"events\",plugin=\"default\",version=\"0.2.0\",sha256=\"bb\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("version=\"0.1.0\""), "one plugin per table");
        let prom = prometheus_text(&text);
        assert!(
            prom.contains("# TYPE compactor_runs_total counter\n"),
            "{prom}"
        );
        assert!(prom.contains("# HELP compactor_runs_total "), "{prom}");
        assert!(prom.contains("# TYPE compactor_run_duration_seconds histogram"));
        assert!(
            !prom.contains("# EOF") && !prom.contains("# UNIT"),
            "{prom}"
        );
        assert!(
            !text.contains("last_success_timestamp_seconds 1"),
            "no success yet"
        );
    }
}

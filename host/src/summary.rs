//! What a run did, for people (printed), scripts (JSON) and the exit code.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Totals and per-partition outcomes of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub partitions_compacted: u64,
    /// Skipped partitions by reason class: `hot`, `too_few_files`, `policy`, `schema`,
    /// `shutdown` (see [`crate::compact::skip_class`]).
    pub partitions_skipped: BTreeMap<String, u64>,
    pub partitions_failed: u64,
    pub groups_merged: u64,
    pub files_in: u64,
    pub bytes_in: u64,
    pub files_out: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Unfinished commits of earlier runs that this run completed or undid.
    pub recoveries: u64,
    /// One line per skipped or failed partition or group: `prefix: why`.
    pub skipped: Vec<String>,
    pub failures: Vec<String>,
    #[serde(serialize_with = "as_secs")]
    pub elapsed: Duration,
    /// Requests sent to the store during the run, where the backend counts them (S3).
    pub requests: Option<crate::store::RequestCounts>,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RunSummary {
    pub fn skip(&mut self, class: &str, line: String) {
        *self
            .partitions_skipped
            .entry(class.to_string())
            .or_default() += 1;
        self.skipped.push(line);
    }

    pub fn fail(&mut self, line: String) {
        self.partitions_failed += 1;
        self.failures.push(line);
    }

    /// Adds another part of the run (one partition's outcome) to this one.
    pub fn absorb(&mut self, other: RunSummary) {
        self.partitions_compacted += other.partitions_compacted;
        for (class, n) in other.partitions_skipped {
            *self.partitions_skipped.entry(class).or_default() += n;
        }
        self.partitions_failed += other.partitions_failed;
        self.groups_merged += other.groups_merged;
        self.files_in += other.files_in;
        self.bytes_in += other.bytes_in;
        self.files_out += other.files_out;
        self.bytes_out += other.bytes_out;
        self.rows += other.rows;
        self.recoveries += other.recoveries;
        self.skipped.extend(other.skipped);
        self.failures.extend(other.failures);
        // Partitions finish in any order; keep the report stable.
        self.skipped.sort();
        self.failures.sort();
    }

    /// 0 when everything went well, 1 when any partition or group failed.
    pub fn exit_code(&self) -> i32 {
        if self.failures.is_empty() { 0 } else { 1 }
    }

    /// `failure` when a partition or group failed, `abandoned` when a shutdown cut the run
    /// short, `success` otherwise (the label of `compactor_runs_total`).
    pub fn outcome(&self) -> &'static str {
        if !self.failures.is_empty() {
            "failure"
        } else if self
            .partitions_skipped
            .contains_key(crate::compact::SHUTDOWN)
        {
            "abandoned"
        } else {
            "success"
        }
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skipped: u64 = self.partitions_skipped.values().sum();
        let classes: Vec<String> = self
            .partitions_skipped
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        writeln!(
            f,
            "partitions: {} compacted, {} skipped{}, {} failed",
            self.partitions_compacted,
            skipped,
            if classes.is_empty() {
                String::new()
            } else {
                format!(" ({})", classes.join(", "))
            },
            self.partitions_failed
        )?;
        writeln!(
            f,
            "files:      {} -> {} ({} -> {}), {} rows",
            self.files_in,
            self.files_out,
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out),
            self.rows
        )?;
        if self.recoveries > 0 {
            writeln!(
                f,
                "recovered:  {} unfinished commit(s) of an earlier run",
                self.recoveries
            )?;
        }
        if let Some(r) = &self.requests {
            write!(f, "requests:   {r}")?;
            if self.partitions_compacted > 0 {
                write!(
                    f,
                    " ({:.1} per compacted partition)",
                    r.total() as f64 / self.partitions_compacted as f64
                )?;
            }
            writeln!(f)?;
        }
        writeln!(f, "time:       {:.2}s", self.elapsed.as_secs_f64())?;
        for line in &self.skipped {
            writeln!(f, "  skipped  {line}")?;
        }
        for line in &self.failures {
            writeln!(f, "  FAILED   {line}")?;
        }
        Ok(())
    }
}

//! Testing a policy natively, without wasm.
//!
//! [`check`] runs the scenario suite of `compactor plugin check` on a policy in a plain
//! `cargo test`, with every answer validated as the host would; the helpers build partitions,
//! files and times for a policy's own tests.

use crate::policy::{Decision, FileInfo, Partition, Policy, validate};
use crate::time_keys::{civil_from_days, days_from_civil};

const HOUR_MS: i64 = 3_600_000;

/// Milliseconds since the epoch of a UTC date and time.
pub fn at(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> i64 {
    days_from_civil(year, month, day) * 24 * HOUR_MS
        + i64::from(hour) * HOUR_MS
        + i64::from(minute) * 60_000
}

/// `count` files of `size` bytes under `prefix`, modified at `modified_ms`.
pub fn files(prefix: &str, count: usize, size: u64, modified_ms: i64) -> Vec<FileInfo> {
    (0..count)
        .map(|i| FileInfo {
            key: format!("{prefix}part-{i:05}.parquet"),
            size,
            last_modified_ms: modified_ms,
            rows: None,
        })
        .collect()
}

/// The hourly partition `table/dt=YYYY-MM-DD/hour=HH/` holding `ms`.
pub fn hour_partition(table: &str, ms: i64) -> Partition {
    let (y, m, d) = civil_from_days(ms.div_euclid(24 * HOUR_MS));
    let hour = ms.rem_euclid(24 * HOUR_MS) / HOUR_MS;
    Partition::of(
        table,
        &format!("{table}/dt={y:04}-{m:02}-{d:02}/hour={hour:02}/"),
    )
}

/// The "now" `plugin check` uses unless told otherwise: 2026-11-20 05:10 UTC.
pub fn check_now_ms() -> i64 {
    at(2026, 11, 20, 5, 10)
}

/// Something that answers like a policy: a plugin in the host, or a [`Policy`] natively.
pub trait Subject {
    fn is_cold(&mut self, p: &Partition, now_ms: i64) -> Result<bool, String>;
    /// The answer, already validated.
    fn plan(&mut self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Result<Decision, String>;
}

/// A [`Policy`] as a [`Subject`]: answers are validated as the host validates them.
pub struct Native<P>(pub P);

impl<P: Policy> Subject for Native<P> {
    fn is_cold(&mut self, p: &Partition, now_ms: i64) -> Result<bool, String> {
        Ok(self.0.is_cold(p, now_ms))
    }

    fn plan(&mut self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Result<Decision, String> {
        let decision = self.0.plan(p, files, now_ms);
        validate(&decision, files.len()).map_err(|e| format!("invalid answer: {e}"))?;
        Ok(decision)
    }
}

/// One scenario of the suite: its name and what it does with a subject at a given now.
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(&mut dyn Subject, i64) -> Result<String, String>,
}

/// The suite, in order. Each scenario passes when the policy answers validly (and, for
/// "shuffled input", the same for the same files in another order); the text says what it
/// decided.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "hot hour",
            run: hot_hour,
        },
        Scenario {
            name: "many tiny files",
            run: |s, now| cold_hour_of(s, now, 5000, 10 << 10),
        },
        Scenario {
            name: "one huge file",
            run: |s, now| cold_hour_of(s, now, 1, 10 << 30),
        },
        Scenario {
            name: "empty partition",
            run: |s, now| decide(s, &hour_partition("check", now - 2 * HOUR_MS), &[], now),
        },
        Scenario {
            name: "shuffled input",
            run: shuffled_input,
        },
    ]
}

/// Runs the suite natively on `P` configured with `settings`; returns each scenario's name and
/// detail, or the failures.
pub fn check<P: Policy>(
    settings: &[(&str, &str)],
    now_ms: i64,
) -> Result<Vec<(&'static str, String)>, String> {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut subject = Native(P::configure(&settings)?);
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for scenario in scenarios() {
        match (scenario.run)(&mut subject, now_ms) {
            Ok(detail) => passed.push((scenario.name, detail)),
            Err(e) => failed.push(format!("{}: {e}", scenario.name)),
        }
    }
    if failed.is_empty() {
        Ok(passed)
    } else {
        Err(failed.join("; "))
    }
}

/// A one-line account of a decision.
pub fn summarize(d: &Decision, files: &[FileInfo]) -> String {
    match d {
        Decision::Skip(reason) => format!("skip: {reason}"),
        Decision::Compact(groups) => {
            const SHOWN: usize = 4;
            let mut sizes: Vec<String> = groups
                .iter()
                .take(SHOWN)
                .map(|g| {
                    let bytes: u64 = g.files.iter().map(|&i| files[i as usize].size).sum();
                    let codec = g
                        .compression
                        .as_ref()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default();
                    format!("{} files/{} KiB{codec}", g.files.len(), bytes >> 10)
                })
                .collect();
            if groups.len() > SHOWN {
                sizes.push(format!("and {} more", groups.len() - SHOWN));
            }
            format!("compact {} group(s): {}", groups.len(), sizes.join(", "))
        }
    }
}

fn decide(
    s: &mut dyn Subject,
    p: &Partition,
    files: &[FileInfo],
    now: i64,
) -> Result<String, String> {
    if !s.is_cold(p, now)? {
        return Ok("hot (not listed)".into());
    }
    Ok(summarize(&s.plan(p, files, now)?, files))
}

/// A cold hour (two hours ago) holding `count` files of `size` bytes written an hour before.
fn cold_hour_of(s: &mut dyn Subject, now: i64, count: usize, size: u64) -> Result<String, String> {
    let p = hour_partition("check", now - 2 * HOUR_MS);
    decide(
        s,
        &p,
        &files(&p.prefix, count, size, now - 3 * HOUR_MS),
        now,
    )
}

fn hot_hour(s: &mut dyn Subject, now: i64) -> Result<String, String> {
    let p = hour_partition("check", now);
    let detail = decide(s, &p, &files(&p.prefix, 20, 1 << 20, now - 60_000), now)?;
    if detail.starts_with("compact") {
        Ok(format!(
            "{detail} (note: it compacts the hour being written)"
        ))
    } else {
        Ok(detail)
    }
}

fn shuffled_input(s: &mut dyn Subject, now: i64) -> Result<String, String> {
    let p = hour_partition("check", now - 2 * HOUR_MS);
    let forward = files(&p.prefix, 300, 700 << 10, now - 3 * HOUR_MS);
    let mut shuffled = forward.clone();
    shuffled.reverse();
    shuffled.rotate_left(77);
    let mut groups_of = |fs: &[FileInfo]| -> Result<Vec<Vec<String>>, String> {
        let mut out: Vec<Vec<String>> = match s.plan(&p, fs, now)? {
            Decision::Skip(_) => vec![],
            Decision::Compact(groups) => groups
                .iter()
                .map(|g| {
                    let mut keys: Vec<String> = g
                        .files
                        .iter()
                        .map(|&i| fs[i as usize].key.clone())
                        .collect();
                    keys.sort();
                    keys
                })
                .collect(),
        };
        out.sort();
        Ok(out)
    };
    if groups_of(&forward)? == groups_of(&shuffled)? {
        Ok("same groups for shuffled input".into())
    } else {
        Err("different groups when the same files come in another order".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Group;

    /// Merges everything, in listing order: fails "shuffled input".
    struct OrderDependent;
    impl Policy for OrderDependent {
        const NAME: &'static str = "order-dependent";
        const VERSION: &'static str = "0";
        fn configure(_: &[(String, String)]) -> Result<Self, String> {
            Ok(OrderDependent)
        }
        fn plan(&self, _: &Partition, files: &[FileInfo], _: i64) -> Decision {
            let half = files.len() as u32 / 2;
            Decision::Compact(vec![Group::new((0..half).collect(), 1 << 27)])
        }
    }

    /// Names a file that does not exist: fails validation.
    struct OutOfRange;
    impl Policy for OutOfRange {
        const NAME: &'static str = "out-of-range";
        const VERSION: &'static str = "0";
        fn configure(_: &[(String, String)]) -> Result<Self, String> {
            Ok(OutOfRange)
        }
        fn plan(&self, _: &Partition, files: &[FileInfo], _: i64) -> Decision {
            Decision::Compact(vec![Group::new(vec![files.len() as u32], 1 << 27)])
        }
    }

    #[test]
    fn the_suite_catches_order_dependence_and_invalid_answers() {
        let e = check::<OrderDependent>(&[], check_now_ms()).unwrap_err();
        assert!(e.contains("shuffled input: different groups"), "{e}");
        let e = check::<OutOfRange>(&[], check_now_ms()).unwrap_err();
        assert!(
            e.contains("invalid answer: group 0 names file index"),
            "{e}"
        );
    }

    #[test]
    fn helpers() {
        let p = hour_partition("t", at(2026, 11, 20, 5, 10));
        assert_eq!(p.prefix, "t/dt=2026-11-20/hour=05/");
        assert_eq!(p.key("hour"), Some("05"));
        assert_eq!(p.key("minute"), None);
        assert_eq!(at(1970, 1, 2, 0, 1), 86_400_000 + 60_000);
    }
}

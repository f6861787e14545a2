//! A randomized soak (issue 6): round after round, new files arrive in random partitions and
//! compactor is hit by a random fault (SIGKILL at a step of the commit protocol or at a random
//! instant, SIGTERM mid-merge, a corrupt file among the good ones), sometimes twice before it
//! may run in peace. After each peaceful run every row ever written is there exactly once.
//!
//! Seeded and reproducible: `COMPACTOR_SOAK_SEED` (default 20261125) picks the faults,
//! `COMPACTOR_SOAK_SECONDS` (default 40) bounds the time. The figures are printed at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use compactor::crash::CrashPoint;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::crash::{backdate, file_count};
use crate::util::*;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small Parquet file holding the rows `ids` (plus a text column).
fn write_ids(path: &Path, ids: std::ops::Range<i64>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let notes: Vec<String> = ids.clone().map(|i| format!("row {i}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(notes)),
        ],
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn read_ids(path: &Path) -> Vec<i64> {
    let file = std::fs::File::open(path).unwrap();
    ids_of(
        ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap(),
    )
}

const PARTITIONS: u32 = 4;

/// Every row id in the table's data files, sorted (duplicates kept).
fn all_ids(w: &Warehouse) -> Vec<i64> {
    let mut ids = Vec::new();
    for hour in 0..PARTITIONS {
        for key in w.files(&cold(hour)) {
            if key.ends_with(".parquet") && !key.contains("corrupt") {
                ids.extend(read_ids(&w.path(&key)));
            }
        }
    }
    ids.sort();
    ids
}

#[derive(Default, Debug)]
struct Figures {
    rounds: u32,
    faults: u32,
    kills_at_steps: u32,
    kills_at_random: u32,
    graceful_stops: u32,
    corrupt_files: u32,
    files_written: u32,
    rows_checked: u64,
}

#[test]
fn soak_random_faults_and_arrivals_lose_no_row() {
    let seed: u64 = env_or("COMPACTOR_SOAK_SEED", 20261125);
    let budget = Duration::from_secs(env_or("COMPACTOR_SOAK_SECONDS", 40));
    let mut rng = Rng(seed | 1);
    let w = Warehouse::new("");
    let src = w.base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut next_id = 0i64;
    let mut fig = Figures::default();
    let started = Instant::now();

    while started.elapsed() < budget {
        fig.rounds += 1;
        // New files arrive.
        for _ in 0..1 + rng.below(4) {
            let rows = 1 + rng.below(50) as i64;
            let file = src.join(format!("f{next_id}.parquet"));
            write_ids(&file, next_id..next_id + rows);
            let hour = rng.below(PARTITIONS as u64) as u32;
            w.put(&format!("{}part-{next_id}.parquet", cold(hour)), &file);
            next_id += rows;
            fig.files_written += 1;
        }
        // One or two faults before a run in peace.
        for _ in 0..1 + rng.below(2) {
            fig.faults += 1;
            match rng.below(4) {
                0 => {
                    let (name, _) = CrashPoint::ALL[rng.below(4) as usize];
                    let run = w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", name)]);
                    // Nothing to merge means nothing to crash at: a clean exit is fine then.
                    assert!(run.code() == 0 || run.0.status.code().is_none(), "{name}");
                    fig.kills_at_steps += 1;
                }
                1 | 2 => {
                    let signal = if rng.below(2) == 0 { "-KILL" } else { "-TERM" };
                    let delay = Duration::from_millis(rng.below(1500));
                    let mut child = Command::new(env!("CARGO_BIN_EXE_compactor"))
                        .arg("--config")
                        .arg(&w.config)
                        .args(["--now", NOW, "-q", "once"])
                        .env("COMPACTOR_TEST_SLOW_FETCH_MS", "40")
                        .env_remove("COMPACTOR_CRASH_AT")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    std::thread::sleep(delay);
                    let _ = Command::new("kill")
                        .args([signal, &child.id().to_string()])
                        .status();
                    let status = child.wait().unwrap();
                    assert!(
                        status.code().is_none_or(|c| c == 0 || c == 130),
                        "{signal} after {delay:?}: {status:?}"
                    );
                    if signal == "-KILL" {
                        fig.kills_at_random += 1;
                    } else {
                        fig.graceful_stops += 1;
                    }
                }
                _ => {
                    // A corrupt file among good ones: refused by name, never deleted.
                    let hour = rng.below(PARTITIONS as u64) as u32;
                    let key = format!("{}corrupt-{}.parquet", cold(hour), fig.rounds);
                    let bad = src.join("corrupt.parquet");
                    std::fs::write(&bad, b"PAR1 this is not a parquet file PAR1").unwrap();
                    w.put(&key, &bad);
                    let mut run = w.run(&["-q", "once"]);
                    if run.code() == 0 && run.stdout().contains("recovered:") {
                        // An earlier kill left a commit unfinished there: the files it touches
                        // wait for this run's recovery, and the corrupt file alone is too few
                        // to merge. The next run reads it.
                        run = w.run(&["-q", "once"]);
                    }
                    assert!(run.code() == 1, "{}", run.stdout());
                    assert!(run.stdout().contains(&key), "{}", run.stdout());
                    assert_eq!(
                        std::fs::read(w.path(&key)).unwrap(),
                        std::fs::read(&bad).unwrap()
                    );
                    std::fs::remove_file(w.path(&key)).unwrap();
                    fig.corrupt_files += 1;
                }
            }
        }
        let peace = w.run(&["-q", "once"]);
        peace.expect_code(0);
        let ids = all_ids(&w);
        let expected: Vec<i64> = (0..next_id).collect();
        assert_eq!(
            ids.len(),
            expected.len(),
            "seed {seed}, round {}: rows lost or duplicated",
            fig.rounds
        );
        assert_eq!(ids, expected, "seed {seed}, round {}", fig.rounds);
        fig.rows_checked += ids.len() as u64;
    }

    // Nothing stray once a killed run's leftovers are old enough to be told apart.
    let tmp = w.root.join(".compactor-tmp");
    let work = w.base.join("work");
    backdate(&tmp);
    backdate(&work);
    w.run(&["-q", "once"]).expect_code(0);
    assert_eq!(file_count(&tmp), 0);
    assert_eq!(file_count(&work), 0);
    // The independent reader agrees on the final state: every row once.
    let files: Vec<std::path::PathBuf> = (0..PARTITIONS)
        .flat_map(|hour| w.files(&cold(hour)))
        .map(|k| w.path(&k))
        .collect();
    let script = "import sys, json, pyarrow.parquet as pq\n\
        ids = [i for f in sys.argv[1:] for i in pq.read_table(f).column('id').to_pylist()]\n\
        print(json.dumps({'rows': len(ids), 'distinct': len(set(ids)), 'min': min(ids), 'max': max(ids)}))";
    let report: serde_json::Value = python_json(script, &files);
    assert_eq!(report["rows"], next_id, "{report}");
    assert_eq!(report["distinct"], next_id, "{report}");
    assert_eq!(report["min"], 0, "{report}");
    assert_eq!(report["max"], next_id - 1, "{report}");
    eprintln!(
        "soak (seed {seed}): {fig:?}; rows lost: 0, rows duplicated: 0, final rows: {next_id}"
    );
}

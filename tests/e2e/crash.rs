//! Kill it anywhere (issue 6): the process is SIGKILLed at every step of the commit protocol
//! (`COMPACTOR_CRASH_AT`), then run again. Every row must be there exactly once, no input may
//! be left beside its merged file, and nothing stray may remain once the leftovers are old
//! enough to be told apart from a live run's. The same on S3 lives in `s3.rs`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use compactor::crash::CrashPoint;

use crate::util::*;

/// Makes every file in `dir` look two hours old, as a killed run's leftovers are by the time
/// anyone may remove them (a live run's temporary files are younger than `stale_upload_after`).
pub fn backdate(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(7200);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.path())
            .unwrap();
        file.set_modified(old).unwrap();
    }
}

pub fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |e| e.flatten().count())
}

/// Partitions and how many copies of the small file each starts with.
pub const LAYOUT: [(u32, usize); 2] = [(1, 4), (2, 3)];

#[test]
fn a_kill_at_every_step_of_the_commit_loses_no_row_and_leaves_nothing() {
    let small = corpus("alltypes_plain.parquet");
    for (point, _) in CrashPoint::ALL {
        let w = Warehouse::new("");
        for (hour, n) in LAYOUT {
            for i in 0..n {
                w.put(&format!("{}part-{i}.parquet", cold(hour)), &small);
            }
        }
        if point == "mid-recovery" {
            // Leave a commit to recover first.
            w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")])
                .expect_killed();
        }
        w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", point)])
            .expect_killed();

        w.run(&["once"]).expect_code(0);
        for (hour, n) in LAYOUT {
            let outputs = w.outputs(&cold(hour));
            assert_eq!(outputs.len(), 1, "{point}: {:?}", w.files(&cold(hour)));
            assert_eq!(w.files(&cold(hour)), outputs, "{point}: inputs left");
            let report = assert_same_rows(&w.path(&outputs[0]), &vec![small.clone(); n]);
            assert_eq!(report["rows"], 8 * n as u64, "{point}");
        }

        let tmp = w.root.join(".compactor-tmp");
        let work = w.base.join("work");
        backdate(&tmp);
        backdate(&work);
        let again = w.run(&["once"]);
        again.expect_code(0);
        assert!(
            again.stdout().contains("0 compacted"),
            "{point}: {}",
            again.stdout()
        );
        assert_eq!(
            file_count(&tmp),
            0,
            "{point}: temporary files left in the store"
        );
        assert_eq!(
            file_count(&work),
            0,
            "{point}: merged files left in work_dir"
        );
    }
}

/// Files change under a running merge (issue 6): a file replaced before it is read makes its
/// group wait for the next run (its new rows are never merged while it stays); a file replaced
/// after it was read, and a file that arrives meanwhile, are never deleted; a listed file that
/// vanishes before it is read fails its group, whose other files stay. After the next run
/// every version's rows are there exactly once.
#[test]
fn files_replaced_or_added_during_a_merge_are_never_lost() {
    let small = corpus("alltypes_plain.parquet"); // 8 rows
    let other = corpus("alltypes_plain.snappy.parquet"); // 2 rows, same columns
    let w = Warehouse::new("");
    for hour in [1, 2, 3] {
        for i in 0..3 {
            w.put(&format!("{}part-{i}.parquet", cold(hour)), &small);
        }
    }
    // Each input takes 1.5 s to arrive: the merges run for about 5 s, all three at once (with
    // fewer slots than partitions, which partitions start first would be a race).
    w.add_merge_settings("parallelism = 3");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_compactor"))
        .arg("--config")
        .arg(&w.config)
        .args(["--now", NOW, "once"])
        .env("COMPACTOR_TEST_SLOW_FETCH_MS", "1500")
        .env_remove("COMPACTOR_CRASH_AT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let work = w.base.join("work");
    let started = std::time::Instant::now();
    while file_count(&work) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no merge started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    // hour 1: part-2 replaced before it is read; hour 2: a new file arrives.
    w.put(&format!("{}part-2.parquet", cold(1)), &other);
    w.put(&format!("{}part-new.parquet", cold(2)), &other);
    // hour 3 (its part-2 not read yet): part-2 vanishes.
    std::fs::remove_file(w.path(&format!("{}part-2.parquet", cold(3)))).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    // hour 2: part-0 replaced after it was read, before the inputs are deleted.
    w.put(&format!("{}part-0.parquet", cold(2)), &other);
    let out = child.wait_with_output().unwrap();
    let run = Run(out);
    run.expect_code(1);
    assert!(
        run.stdout()
            .contains("part-2.parquet: changed since it was listed"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().lines().any(|l| l.contains("FAILED")
            && l.contains(&format!("{}part-2.parquet", cold(3)))
            && l.contains("no such object")),
        "{}",
        run.stdout()
    );
    assert_eq!(
        w.files(&cold(3)).len(),
        2,
        "the vanished file's group stays"
    );
    assert!(
        w.outputs(&cold(1)).is_empty(),
        "hour 1 waits for the next run"
    );
    assert_eq!(w.files(&cold(1)).len(), 3);
    let kept: Vec<String> = w
        .files(&cold(2))
        .into_iter()
        .filter(|k| !k.contains("compacted-"))
        .collect();
    assert_eq!(
        kept,
        [
            format!("{}part-0.parquet", cold(2)),
            format!("{}part-new.parquet", cold(2))
        ],
        "the replaced and the new file are not deleted"
    );
    assert_eq!(w.outputs(&cold(2)).len(), 1);

    let second = w.run(&["once"]);
    second.expect_code(0);
    let rows = |hour| -> i64 {
        w.files(&cold(hour))
            .iter()
            .map(|k| rows_in(&w.path(k)))
            .sum()
    };
    for hour in [1, 2, 3] {
        assert_eq!(w.files(&cold(hour)), w.outputs(&cold(hour)));
    }
    assert_eq!(rows(3), 8 + 8, "the two that stayed");
    assert_eq!(rows(1), 8 + 8 + 2, "old part-0, part-1 and the new part-2");
    assert_eq!(
        rows(2),
        3 * 8 + 2 + 2,
        "the old three, the new part-0 and part-new"
    );
}

/// Three files in `cold(1)` merged by a run killed in the middle of its deletes: the warehouse,
/// the merged file's key and the keys left (the merged file and two inputs).
fn killed_mid_delete() -> (Warehouse, String, Vec<String>) {
    let small = corpus("alltypes_plain.parquet");
    let w = Warehouse::new("");
    for i in 0..3 {
        w.put(&format!("{}part-{i}.parquet", cold(1)), &small);
    }
    w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", "mid-delete")])
        .expect_killed();
    let output = w.outputs(&cold(1)).pop().expect("the merged file");
    let left = w.files(&cold(1));
    assert_eq!(left.len(), 3, "the output and two inputs: {left:?}");
    (w, output, left)
}

/// A merged file damaged after some of its inputs were deleted holds the only copy of their
/// rows: nothing may be deleted, and the run says which file is the problem.
#[test]
fn a_damaged_merged_file_whose_inputs_are_partly_gone_is_left_alone() {
    let (w, output, left) = killed_mid_delete();
    // Damage the merged file (a truncated copy of a Parquet file fails verification).
    let bytes = std::fs::read(w.path(&output)).unwrap();
    std::fs::write(w.path(&output), &bytes[..bytes.len() / 2]).unwrap();

    let run = w.run(&["once"]);
    run.expect_code(1);
    assert!(
        run.stdout()
            .contains(&format!("FAILED   {}: {output}", cold(1))),
        "{}",
        run.stdout()
    );
    assert_eq!(w.files(&cold(1)), left, "nothing deleted");
}

/// A merged file whose record of its inputs cannot be read (damaged, or written by a newer
/// compactor) may have an unfinished commit: merged again as an ordinary file, with its
/// leftover inputs beside it, their rows would be in the new file twice, for good. The
/// partition fails instead, naming the file, and nothing is written or deleted.
#[test]
fn a_merged_file_whose_record_cannot_be_read_fails_its_partition() {
    for (record, expected) in [
        (
            r#"{"version":3,"rows":24,"inputs_zstd":"KLUv/QBYAQAA"}"#,
            "of version 3, which this compactor cannot read",
        ),
        ("{\"version\":1,\"rows\":24,\"inputs\":[{\"key\"", "damaged"),
    ] {
        let (w, output, left) = killed_mid_delete();
        replace_record(&w.path(&output), record);
        let rewritten = std::fs::read(w.path(&output)).unwrap();

        let run = w.run(&["once"]);
        run.expect_code(1);
        let line = format!("FAILED   {}: {output}: cannot tell whether", cold(1));
        assert!(
            run.stdout().contains(&line) && run.stdout().contains(expected),
            "{}",
            run.stdout()
        );
        assert_eq!(
            w.files(&cold(1)),
            left,
            "{record}: nothing written or deleted"
        );
        assert_eq!(std::fs::read(w.path(&output)).unwrap(), rewritten);
    }
}

/// Rewrites a Parquet file with the same rows and `record` as its `compactor.inputs`.
fn replace_record(path: &Path, record: &str) {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "compactor.inputs".into(),
            record.to_string(),
        )]))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
}

/// A merge of a thousand files records its inputs compressed (version 2 of the record: in plain
/// JSON it would be about 110 KB, fetched by every reader of the file), and a run killed in the
/// middle of its deletes is still finished by the next one, which reads that record.
#[test]
fn a_large_record_is_compressed_and_still_recovers_a_killed_commit() {
    let small = corpus("alltypes_plain.parquet");
    let w = Warehouse::new("");
    let n = 1000;
    for i in 0..n {
        w.put(&format!("{}part-{i:05}.parquet", cold(1)), &small);
    }
    w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", "mid-delete")])
        .expect_killed();
    let output = w.outputs(&cold(1)).pop().expect("the merged file");
    let left = w.files(&cold(1)).len();
    assert!(1 < left && left < n + 1, "the deletes began: {left} files");

    let md = footer(&w.path(&output));
    let record = md
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == "compactor.inputs"))
        .and_then(|kv| kv.value.clone())
        .expect("a record of the inputs");
    let value: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(value["version"], 2, "{record:.200}");
    assert_eq!(value["rows"], 8 * n as u64);
    assert!(record.len() < 40_000, "{} bytes", record.len());

    w.run(&["once"]).expect_code(0);
    assert_eq!(
        w.files(&cold(1)),
        vec![output.clone()],
        "every input deleted"
    );
    assert_eq!(rows_in(&w.path(&output)), 8 * n as i64);
}

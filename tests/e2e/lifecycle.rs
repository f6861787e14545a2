//! A table's life: hot hours untouched, cold ones compacted once, a second run with nothing to
//! do, min_files, a dry run that writes nothing, and recovery after a crash mid-commit.

use std::path::PathBuf;

use crate::util::*;

fn small() -> PathBuf {
    corpus("alltypes_plain.parquet")
}

fn snapshot(w: &Warehouse, prefix: &str) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    w.files(prefix)
        .into_iter()
        .map(|k| {
            let p = w.path(&k);
            let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
            (k, std::fs::read(&p).unwrap(), mtime)
        })
        .collect()
}

#[test]
fn hot_hour_untouched_cold_hours_once_min_files_respected() {
    let w = Warehouse::new("min_files = 3");
    for i in 0..4 {
        w.put(&format!("{HOT}part-{i}.parquet"), &small());
        w.put(&format!("{}part-{i}.parquet", cold(3)), &small());
    }
    for i in 0..2 {
        w.put(&format!("{}part-{i}.parquet", cold(2)), &small());
    }
    let hot_before = snapshot(&w, HOT);
    let two_before = snapshot(&w, &cold(2));

    let first = w.run(&["once"]);
    first.expect_code(0);
    assert!(first.stdout().contains("1 compacted"), "{}", first.stdout());
    assert_eq!(
        snapshot(&w, HOT),
        hot_before,
        "the hot hour must not be touched"
    );
    assert_eq!(snapshot(&w, &cold(2)), two_before, "2 files < min_files 3");
    let outputs = w.outputs(&cold(3));
    assert_eq!(w.files(&cold(3)), outputs);
    assert_same_rows(&w.path(&outputs[0]), &vec![small(); 4]);

    let after_first = snapshot(&w, "events/dt=2026-11-20/hour=03/");
    let second = w.run(&["once"]);
    second.expect_code(0);
    assert!(
        second.stdout().contains("0 compacted"),
        "{}",
        second.stdout()
    );
    assert_eq!(snapshot(&w, &cold(3)), after_first, "second run is a no-op");
    assert_eq!(snapshot(&w, HOT), hot_before);
}

/// A merged file gets the mode of any file compactor creates (0666 less its umask), not the
/// private 0600 of the temporary file it was written as: at 0600 a query engine running as
/// another user could no longer read the partition.
#[test]
fn merged_files_are_readable_as_the_umask_allows() {
    let w = Warehouse::new("");
    for i in 0..2 {
        w.put(&format!("{}part-{i}.parquet", cold(3)), &small());
    }
    for (umask, expected) in [(0o022, "644"), (0o027, "640")] {
        let prefix = cold(3);
        let mut once = compactor_command(&w.config, &["once"], &[]);
        let run = Run(with_umask(&mut once, umask).output().unwrap());
        run.expect_code(0);
        let outputs = w.outputs(&prefix);
        assert_eq!(outputs.len(), 1, "{}", run.stderr());
        assert_eq!(mode_of(&w.path(&outputs[0])), expected, "umask {umask:03o}");
        // Compacted again from the merged file and one more small one.
        w.put(&format!("{prefix}part-{umask}.parquet"), &small());
    }
}

/// Hive's and Airflow's `ds=YYYYMMDD/hr=HH` layout is dated like `dt=YYYY-MM-DD/hour=HH`: a
/// closed hour or day is compacted at once, the open hour stays. (Read as undated, every
/// partition here would be hot: the files' modification times are the real clock's, days
/// after the tests' `--now`.)
#[test]
fn hive_ds_and_hr_keys_are_read_as_time_windows() {
    let w = Warehouse::new("");
    let closed_hour = "events/ds=20261120/hr=04/";
    let open_hour = "events/ds=20261120/hr=05/";
    let closed_day = "events/ds=20261119/";
    for prefix in [closed_hour, open_hour, closed_day] {
        for i in 0..2 {
            w.put(&format!("{prefix}part-{i}.parquet"), &small());
        }
    }
    let open_before = snapshot(&w, open_hour);
    w.run(&["once"]).expect_code(0);
    for prefix in [closed_hour, closed_day] {
        let outputs = w.outputs(prefix);
        assert_eq!(w.files(prefix), outputs, "{prefix} compacted");
        assert_same_rows(&w.path(&outputs[0]), &vec![small(); 2]);
    }
    assert_eq!(snapshot(&w, open_hour), open_before, "the open hour is hot");
}

#[test]
fn plan_is_a_dry_run_and_speaks_json() {
    let w = Warehouse::new("");
    for i in 0..3 {
        w.put(&format!("{}part-{i}.parquet", cold(1)), &small());
        w.put(&format!("{HOT}part-{i}.parquet",), &small());
    }
    let before = snapshot(&w, "events/dt=2026-11-20/hour=01/");
    let text = w.run(&["plan"]);
    text.expect_code(0);
    assert!(
        text.stdout().contains("compact 1 group(s)"),
        "{}",
        text.stdout()
    );
    assert!(
        text.stdout().contains(&format!("{HOT}: hot")),
        "{}",
        text.stdout()
    );
    let json = w.run(&["plan", "--json"]);
    json.expect_code(0);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    let partitions = plan["tables"][0]["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 1);
    assert_eq!(partitions[0]["action"]["action"], "compact");
    assert_eq!(
        partitions[0]["action"]["groups"][0]["inputs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(plan["tables"][0]["hot"][0], HOT);
    assert_eq!(snapshot(&w, &cold(1)), before, "plan writes nothing");
    assert!(
        !w.base.join("work").exists()
            || std::fs::read_dir(w.base.join("work"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// A table whose prefix holds nothing (its writers use another) is said so, in the plan and in
/// a run's log, rather than passing as a run with nothing to do; the other data is untouched.
#[test]
fn a_table_prefix_with_nothing_under_it_is_said_so() {
    let w = Warehouse::new("");
    for i in 0..3 {
        w.put(
            &format!("evnts/dt=2026-11-20/hour=01/part-{i}.parquet"),
            &small(),
        );
    }
    let plan = w.run(&["plan"]);
    plan.expect_code(0);
    assert!(
        plan.stdout().contains("no file found under events/"),
        "{}",
        plan.stdout()
    );
    let run = w.run(&["once"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("WARN") && run.stderr().contains("no file found under events/"),
        "{}",
        run.stderr()
    );
    assert_eq!(w.files("evnts/dt=2026-11-20/hour=01/").len(), 3);

    // With data under the prefix, no such note.
    for i in 0..3 {
        w.put(&format!("{}part-{i}.parquet", cold(1)), &small());
    }
    let plan = w.run(&["plan"]);
    assert!(
        !plan.stdout().contains("no file found"),
        "{}",
        plan.stdout()
    );
}

/// Killed after the merged file is written, before the inputs are deleted: the next run rolls
/// forward, so every row ends up exactly once.
#[test]
fn crash_between_upload_and_delete_is_finished_by_the_next_run() {
    let w = Warehouse::new("");
    let prefix = cold(4);
    let inputs = [
        corpus("alltypes_plain.parquet"),
        corpus("alltypes_dictionary.parquet"),
        corpus("alltypes_plain.snappy.parquet"),
    ];
    for (i, src) in inputs.iter().enumerate() {
        w.put(&format!("{prefix}part-{i}.parquet"), src);
    }
    let crashed = w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")]);
    crashed.expect_killed();
    let outputs = w.outputs(&prefix);
    assert_eq!(outputs.len(), 1, "the merged file was written");
    assert_eq!(
        w.files(&prefix).len(),
        4,
        "and the inputs are all still there"
    );

    let plan = w.run(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
    let recovery = &plan["tables"][0]["partitions"][0]["recoveries"][0];
    assert_eq!(recovery["action"], "roll_forward", "{plan}");
    assert_eq!(recovery["delete"].as_array().unwrap().len(), 3);

    let next = w.run(&["once"]);
    next.expect_code(0);
    assert!(next.stdout().contains("recovered:  1"), "{}", next.stdout());
    assert_eq!(
        w.files(&prefix),
        outputs,
        "inputs deleted, the merged file kept"
    );
    assert_same_rows(&w.path(&outputs[0]), &inputs);

    // And nothing more to do.
    let again = w.run(&["once"]);
    again.expect_code(0);
    assert_eq!(w.files(&prefix), outputs);
}

/// A merged file that does not verify (here: truncated by hand) is rolled back, its inputs kept.
#[test]
fn a_bad_merged_file_is_rolled_back_and_inputs_kept() {
    let w = Warehouse::new("");
    let prefix = cold(4);
    for i in 0..2 {
        w.put(&format!("{prefix}part-{i}.parquet"), &small());
    }
    w.run_with_env(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")])
        .expect_killed();
    let output = w.outputs(&prefix).remove(0);
    // Damage it: its recorded row count no longer matches its row groups (patched in place,
    // same length, so the file stays readable).
    let damaged = {
        let bytes = std::fs::read(w.path(&output)).unwrap();
        let md = footer(&w.path(&output));
        let kv = md.file_metadata().key_value_metadata().unwrap();
        let journal = kv
            .iter()
            .find(|kv| kv.key == "compactor.inputs")
            .unwrap()
            .value
            .clone()
            .unwrap();
        let mut j: serde_json::Value = serde_json::from_str(&journal).unwrap();
        j["rows"] = serde_json::json!(j["rows"].as_u64().unwrap() + 1);
        (bytes, journal, j.to_string())
    };
    let (bytes, old, new) = damaged;
    assert_eq!(
        old.len(),
        new.len(),
        "same length keeps the footer offsets valid"
    );
    let text = bytes
        .windows(old.len())
        .position(|win| win == old.as_bytes())
        .unwrap();
    let mut patched = bytes.clone();
    patched[text..text + old.len()].copy_from_slice(new.as_bytes());
    std::fs::write(w.path(&output), patched).unwrap();

    let plan = w.run(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout()).unwrap();
    let recovery = &plan["tables"][0]["partitions"][0]["recoveries"][0];
    assert_eq!(recovery["action"], "roll_back", "{plan}");
    assert!(
        recovery["reason"].as_str().unwrap().contains("rows"),
        "{recovery}"
    );

    let next = w.run(&["once"]);
    next.expect_code(0);
    assert!(next.stdout().contains("recovered:  1"), "{}", next.stdout());
    // The inputs survived the rollback and were merged again, correctly, under the same
    // (input-derived) key.
    assert_eq!(w.files(&prefix), vec![output.clone()]);
    assert_same_rows(&w.path(&output), &vec![small(); 2]);
}

#[test]
fn demo_seeds_compacts_and_then_has_nothing_to_do() {
    let w = Warehouse::new("");
    let first = w.run(&["demo"]);
    first.expect_code(0);
    assert!(
        first.stdout().contains("seeded 96 small files"),
        "{}",
        first.stdout()
    );
    assert!(first.stdout().contains("3 compacted"), "{}", first.stdout());
    let second = w.run(&["demo"]);
    second.expect_code(0);
    assert!(
        second.stdout().contains("0 compacted"),
        "{}",
        second.stdout()
    );
    let hot = w.files("events/dt=2026-11-20/hour=05/");
    assert_eq!(hot.len(), 24, "the demo's current hour stays as it was");
    let merged = w.outputs("events/dt=2026-11-20/hour=04/");
    assert_eq!(rows_in(&w.path(&merged[0])), 48_000);
}

/// Writers' key-value metadata survives the merge; our own journal key is replaced, not copied.
#[test]
fn key_value_metadata_is_preserved() {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let w = Warehouse::new("");
    let prefix = cold(1);
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    for i in 0..2i64 {
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "origin".into(),
                "writer-7".to_string(),
            )]))
            .build();
        let path = w.base.join(format!("in-{i}.parquet"));
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema.clone(),
            Some(props),
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![i, i + 10]))],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        w.put(&format!("{prefix}part-{i}.parquet"), &path);
    }
    w.run(&["once"]).expect_code(0);
    let out = w.path(&w.outputs(&prefix)[0]);
    let kv = footer(&out)
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    let value = |key: &str| {
        kv.iter()
            .filter(|kv| kv.key == key)
            .map(|kv| kv.value.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(value("origin"), ["writer-7"]);
    assert_eq!(value("compactor.inputs").len(), 1);
    assert_same_rows(
        &out,
        &[w.base.join("in-0.parquet"), w.base.join("in-1.parquet")],
    );
}

/// Adds `lines` to the warehouse's `[merge]` section.
/// Three copies of the small file in each of the first `partitions` cold hours.
fn put_three_small_files_in_each(w: &Warehouse, partitions: u32) {
    for hour in 0..partitions {
        for i in 0..3 {
            w.put(&format!("{}part-{i}.parquet", cold(hour)), &small());
        }
    }
}

#[test]
fn a_memory_budget_smaller_than_one_merge_still_finishes_every_partition() {
    let w = Warehouse::new("");
    w.add_merge_settings("parallelism = 3\nmemory_budget = \"1MiB\"");
    put_three_small_files_in_each(&w, 3);
    let run = w.run(&["once"]);
    run.expect_code(0);
    assert!(run.stdout().contains("3 compacted"), "{}", run.stdout());
    for hour in 0..3 {
        let outputs = w.outputs(&cold(hour));
        assert_eq!(w.files(&cold(hour)), outputs);
        assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);
    }
}

/// A merge slot (`parallelism`) is held for the merge alone: while one partition's merged file
/// uploads, the next partition merges. Each upload takes 2 s here, so with one slot held
/// through the upload the second partition would finish 2 s after the first.
#[test]
fn the_next_merge_runs_while_a_merged_file_uploads() {
    let w = Warehouse::new("");
    w.add_merge_settings("parallelism = 1");
    put_three_small_files_in_each(&w, 2);
    let run = w.run_with_env(&["once"], &[("COMPACTOR_TEST_SLOW_UPLOAD_MS", "2000")]);
    run.expect_code(0);
    let log = format!("{}{}", run.stdout(), run.stderr());
    // `2026-11-20T05:10:02.123456Z  INFO partition{...}: merged ...`: seconds into the day.
    let merged_at: Vec<f64> = log
        .lines()
        .filter(|l| l.contains(": merged "))
        .map(|l| {
            let time = &l[l.find('T').unwrap() + 1..l.find('Z').unwrap()];
            let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
            parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
        })
        .collect();
    assert_eq!(merged_at.len(), 2, "{log}");
    let apart = (merged_at[1] - merged_at[0]).abs();
    assert!(
        apart < 1.5,
        "the second merge waited for the first upload: {apart:.2}s apart\n{log}"
    );
    for hour in 0..2 {
        let outputs = w.outputs(&cold(hour));
        assert_eq!(w.files(&cold(hour)), outputs);
        assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);
    }
}

/// `plan` and `once` both fail with `refusal` on the line of `prefix`, and not one file changes.
fn assert_refused_and_untouched(w: &Warehouse, prefix: &str, refusal: &str) {
    assert_refused_and_untouched_with(w, &[], prefix, refusal);
}

/// The same, with more arguments for both commands.
fn assert_refused_and_untouched_with(w: &Warehouse, args: &[&str], prefix: &str, refusal: &str) {
    let before = tree(&w.root);
    let plan = w.run(&[&["plan"], args].concat());
    plan.expect_code(1);
    let line = format!("  {prefix}: 0 files, 0 B: FAILED ({refusal}");
    assert!(plan.stdout().contains(&line), "{line}\n{}", plan.stdout());
    let run = w.run(&[&["once"], args].concat());
    run.expect_code(1);
    let said = format!("{}{}", run.stdout(), run.stderr());
    assert!(said.contains(refusal), "{refusal}\n{said}");
    assert_eq!(tree(&w.root), before, "{refusal}: nothing may change");
}

/// A table configured by a prefix inside a Delta Lake or Iceberg table (Iceberg's `data/`, one
/// partition of a Delta table) is refused too: its enclosing prefixes are checked for markers.
#[test]
fn a_prefix_inside_a_table_kept_by_a_table_format_is_refused() {
    let cases = [
        (
            "lake/events/data/",
            "lake/events/metadata/00003-1f0e.metadata.json",
            "Iceberg",
        ),
        (
            "events/dt=2026-11-20/",
            "events/_delta_log/00000000000000000007.json",
            "Delta Lake",
        ),
    ];
    for (prefix, marker_key, format) in cases {
        let w = Warehouse::with_tables(&format!(
            "[[tables]]\nname = \"inside\"\nprefix = \"{prefix}\"\n"
        ));
        for i in 0..3 {
            w.put(&format!("{prefix}hour=03/part-{i}.parquet"), &small());
        }
        std::fs::create_dir_all(w.path(marker_key).parent().unwrap()).unwrap();
        std::fs::write(w.path(marker_key), b"{}").unwrap();
        let marker_dir = format!("{}/", marker_key.rsplit_once('/').unwrap().0);
        let refusal = format!("{marker_dir} shows a table kept by {format} that holds {prefix}");
        assert_refused_and_untouched(&w, prefix, &refusal);
    }

    let prefix = "lake/events/data/";
    let w = Warehouse::with_tables(&format!(
        "[[tables]]\nname = \"inside\"\nprefix = \"{prefix}\"\n"
    ));
    let partition = format!("{prefix}dt=2026-11-20/hour=03/");
    for i in 0..3 {
        w.put(&format!("{partition}part-{i}.parquet"), &small());
    }
    std::fs::create_dir_all(w.path("lake/events/metadata")).unwrap();
    std::fs::write(w.path("lake/events/metadata/owners.json"), b"{}").unwrap();
    w.run(&["once"]).expect_code(0);
    let outputs = w.outputs(&partition);
    assert_eq!(w.files(&partition), outputs, "plain Parquet is compacted");
    assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);
}

/// A Delta Lake, Hudi or Iceberg table lists its data files in its own log: merging them behind
/// it would break the table. Found at the table's root or below it, such a table is refused,
/// the run fails naming the marker, and not one file changes. A `metadata/` directory without
/// Iceberg's metadata files is only a directory.
#[test]
fn tables_kept_by_a_table_format_are_refused_and_left_as_they_are() {
    let cases = [
        (
            "events/",
            "_delta_log/00000000000000000000.json",
            "Delta Lake",
        ),
        ("events/", ".hoodie/hoodie.properties", "Hudi"),
        ("events/", "metadata/v2.metadata.json", "Iceberg"),
        (
            "events/dt=2026-11-20/",
            "_delta_log/00000000000000000003.json",
            "Delta Lake",
        ),
    ];
    for (table_root, marker, format) in cases {
        let w = Warehouse::new("");
        for i in 0..3 {
            w.put(&format!("{}part-{i}.parquet", cold(3)), &small());
        }
        let marker_key = format!("{table_root}{marker}");
        std::fs::create_dir_all(w.path(&marker_key).parent().unwrap()).unwrap();
        std::fs::write(w.path(&marker_key), b"{}").unwrap();
        let marker_dir = format!("{}/", marker_key.rsplit_once('/').unwrap().0);
        let refusal = format!("{marker_dir} shows a table kept by {format}");
        assert_refused_and_untouched(&w, table_root, &refusal);
    }

    let w = Warehouse::new("");
    for i in 0..3 {
        w.put(&format!("{}part-{i}.parquet", cold(3)), &small());
    }
    std::fs::create_dir_all(w.path("events/metadata")).unwrap();
    std::fs::write(w.path("events/metadata/owners.json"), b"{}").unwrap();
    w.run(&["once"]).expect_code(0);
    let outputs = w.outputs(&cold(3));
    assert_eq!(w.files(&cold(3)), outputs, "a plain table is compacted");
    assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);
}

/// Hive names its Parquet files `000000_0`, Impala `*.parq`: by default they are not data (only
/// `*.parquet` is), and `plan` says so with a hint. With the table's `file_suffix` they are
/// compacted; the merged file, named `.parquet` whatever the suffix, is data to the next run.
#[test]
fn data_files_are_chosen_by_the_tables_file_suffix() {
    let hive = |settings: &str| {
        Warehouse::with_tables(&format!(
            "[[tables]]\nname = \"events\"\nprefix = \"events/\"\n{settings}\n"
        ))
    };
    let w = hive("");
    for i in 0..3 {
        w.put(&format!("{}00000{i}_0", cold(3)), &small());
    }
    let before = tree(&w.root);
    let plan = w.run(&["plan"]);
    plan.expect_code(0);
    let hint = format!(
        "  3 other files left alone, not named *.parquet (first: {}000000_0); if they are \
         Parquet named otherwise",
        cold(3)
    );
    assert!(plan.stdout().contains(&hint), "{}", plan.stdout());
    let metrics = w.path("../metrics.prom");
    w.run(&["once", "--metrics-file", metrics.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(tree(&w.root), before, "not data by default: left alone");
    let metrics = std::fs::read_to_string(metrics).unwrap();
    for line in [
        "compactor_files_left_alone{table=\"events\",reason=\"not_data\"} 3",
        "compactor_files_left_alone{table=\"events\",reason=\"archived\"} 0",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }

    let w = hive("file_suffix = \"\"");
    for i in 0..3 {
        w.put(&format!("{}00000{i}_0", cold(3)), &small());
    }
    std::fs::write(w.path(&format!("{}_SUCCESS", cold(3))), b"").unwrap();
    w.run(&["once"]).expect_code(0);
    let outputs = w.outputs(&cold(3));
    assert_eq!(
        w.files(&cold(3)),
        [format!("{}_SUCCESS", cold(3)), outputs[0].clone()],
        "every visible file merged; _SUCCESS is hidden, not data"
    );
    assert!(outputs[0].ends_with(".parquet"), "{outputs:?}");
    assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);

    let w = hive("file_suffix = \".parq\"");
    for i in 0..3 {
        w.put(&format!("{}f{i}_data.0.parq", cold(3)), &small());
    }
    w.put(&format!("{}part-0.parquet", cold(3)), &small());
    w.run(&["once"]).expect_code(0);
    let first = w.outputs(&cold(3));
    assert_eq!(first.len(), 1);
    assert_same_rows(&w.path(&first[0]), &vec![small(); 3]);
    // The next files are merged with the merged file, which must count as data.
    for i in 3..5 {
        w.put(&format!("{}f{i}_data.0.parq", cold(3)), &small());
    }
    w.run(&["once"]).expect_code(0);
    let second = w.outputs(&cold(3));
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    assert_same_rows(&w.path(&second[0]), &vec![small(); 5]);
    let mut left = w.files(&cold(3));
    left.retain(|k| !second.contains(k));
    assert_eq!(
        left,
        [format!("{}part-0.parquet", cold(3))],
        "not data: left alone"
    );
}

/// `--prefix` narrows `plan` and `once` to part of a table: only partitions at or below it are
/// listed and compacted, the policy still calls the current hour hot, and a prefix in no
/// table is a usage error (exit 2) that touches nothing.
#[test]
fn prefix_narrows_a_run_to_part_of_a_table() {
    let w = Warehouse::new("");
    let hot = "events/dt=2026-11-20/hour=05/";
    for partition in [cold(1), cold(2), cold(3), hot.to_string()] {
        for i in 0..3 {
            w.put(&format!("{partition}part-{i}.parquet"), &small());
        }
    }
    let before = tree(&w.root);

    let plan = w.run(&[
        "plan",
        "--prefix",
        &cold(1),
        "--prefix",
        "events/dt=2026-11-20/hour=03",
    ]);
    plan.expect_code(0);
    let planned: Vec<&str> = plan
        .stdout()
        .lines()
        .filter(|l| l.contains(": compact "))
        .map(|l| l.trim().split(':').next().unwrap())
        .map(|p| {
            if p == cold(1) {
                "1"
            } else if p == cold(3) {
                "3"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(planned, ["1", "3"], "{}", plan.stdout());

    let nowhere = w.run(&["once", "--prefix", "elsewhere/"]);
    nowhere.expect_code(2);
    assert!(
        nowhere
            .stderr()
            .contains("--prefix \"elsewhere/\" lies in no table of"),
        "{}",
        nowhere.stderr()
    );
    assert_eq!(
        tree(&w.root),
        before,
        "plan and a usage error change nothing"
    );

    w.run(&["once", "--prefix", &cold(2), "--prefix", hot])
        .expect_code(0);
    let outputs = w.outputs(&cold(2));
    assert_eq!(
        w.files(&cold(2)),
        outputs,
        "the named partition is compacted"
    );
    assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);
    for untouched in [cold(1), cold(3), hot.to_string()] {
        assert_eq!(w.files(&untouched).len(), 3, "{untouched}");
        assert!(w.outputs(&untouched).is_empty(), "{untouched}");
    }

    w.run(&["once", "--prefix", "events"]).expect_code(0);
    for compacted in [cold(1), cold(3)] {
        assert_eq!(
            w.outputs(&compacted).len(),
            1,
            "{compacted}: the whole table"
        );
    }
    assert_eq!(w.files(hot).len(), 3, "the hot hour stays hot");

    // Narrowed below a table kept by a table format, the walk still finds it above.
    let marker = "events/dt=2026-11-20/_delta_log/00000000000000000000.json";
    std::fs::create_dir_all(w.path(marker).parent().unwrap()).unwrap();
    std::fs::write(w.path(marker), b"{}").unwrap();
    let refusal = format!(
        "events/dt=2026-11-20/_delta_log/ shows a table kept by Delta Lake that holds {}",
        cold(1)
    );
    assert_refused_and_untouched_with(&w, &["--prefix", &cold(1)], &cold(1), &refusal);
}

/// The usual hourly run: one partition has gone cold (here beside a much smaller one), and its
/// merge gets both slots, the second once the small merge has ended. It runs in two parts
/// stitched into one file, which is then committed like any other: one output with every row
/// in order and its page indexes, the inputs deleted, nothing left in the work dir.
#[test]
fn a_lone_cold_partition_is_merged_in_parts_and_committed() {
    let w = Warehouse::new("");
    w.add_merge_settings(SETTINGS_FOR_PARTS);
    let inputs = put_inputs_for_parts(&w.base.join("originals"), |key, src| w.put(key, src));
    let small_inputs = write_numbered_inputs(&w.base.join("small"), 2, 500);
    for input in &small_inputs {
        let name = input.file_name().unwrap().to_str().unwrap();
        w.put(&format!("{}{name}", cold(4)), input);
    }
    let run = w.run_with_env(&["once"], &[("RUST_LOG", "compactor=debug")]);
    run.expect_code(0);
    assert_merged_in_parts(&run);
    assert_eq!(run.stderr().matches("merging in parts").count(), 1);
    let small_outputs = w.outputs(&cold(4));
    assert_eq!(w.files(&cold(4)), small_outputs);
    assert_eq!(
        assert_same_rows(&w.path(&small_outputs[0]), &small_inputs)["rows"],
        1_000
    );
    let outputs = w.outputs(&cold(3));
    assert_eq!(w.files(&cold(3)), outputs, "the inputs are deleted");
    assert_eq!(outputs.len(), 1);
    let merged = w.path(&outputs[0]);
    assert_eq!(assert_same_rows(&merged, &inputs)["rows"], 120_000);
    assert_page_indexes_lead_to_rows(&merged);
    let work = w.base.join("work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the work dir: {left:?}");
}

/// A writer in New York files rows by its local hour. With `timezone` set, at 05:10 UTC
/// (00:10 in New York) the local hour 00 is being written and left alone, and hour 23 of the
/// day before, which ended at 05:00 UTC, is compacted. (Read as UTC, hour 00 would have counted
/// as over since 01:00.) A zone that does not exist stops the run with a message naming it.
#[test]
fn keys_in_a_writer_s_time_zone_are_hot_until_its_hour_ends() {
    let w = Warehouse::new("timezone = \"America/New_York\"");
    let open_hour = "events/dt=2026-11-20/hour=00/";
    let ended_hour = "events/dt=2026-11-19/hour=23/";
    for i in 0..3 {
        w.put(&format!("{open_hour}part-{i}.parquet"), &small());
        w.put(&format!("{ended_hour}part-{i}.parquet"), &small());
    }
    let open_before = snapshot(&w, open_hour);
    let run = w.run(&["once"]);
    run.expect_code(0);
    assert!(run.stdout().contains("1 compacted"), "{}", run.stdout());
    assert_eq!(snapshot(&w, open_hour), open_before, "New York's open hour");
    let outputs = w.outputs(ended_hour);
    assert_eq!(w.files(ended_hour), outputs);
    assert_same_rows(&w.path(&outputs[0]), &vec![small(); 3]);

    let bad = Warehouse::new("timezone = \"America/Gotham\"");
    let run = bad.run(&["once"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("America/Gotham") && run.stderr().contains("timezone"),
        "{}",
        run.stderr()
    );
}

//! The schema-drift set (../shared/testdata/drift), as its README says it must behave.

use std::path::PathBuf;

use crate::util::*;

fn drift(name: &str) -> PathBuf {
    testdata().join("drift").join(name)
}

const COMPATIBLE: [&str; 6] = [
    "part-00-base.parquet",
    "part-01-base.parquet",
    "part-02-add-column.parquet",
    "part-03-widen-int.parquet",
    "part-04-nullable.parquet",
    "part-05-reordered.parquet",
];

#[test]
fn compatible_drift_unifies_by_name_and_widens_losslessly() {
    let w = Warehouse::new("");
    let prefix = cold(1);
    for name in COMPATIBLE {
        w.put(&format!("{prefix}{name}"), &drift(name));
    }
    w.run(&["once"]).expect_code(0);
    let outputs = w.outputs(&prefix);
    assert_eq!(w.files(&prefix), outputs, "all six merged into one file");
    let inputs: Vec<PathBuf> = COMPATIBLE.iter().map(|n| drift(n)).collect();
    let report = assert_same_rows(&w.path(&outputs[0]), &inputs);
    assert_eq!(report["rows"], 570);
    let schema: Vec<&str> = report["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        schema,
        [
            "id: int64 not null",
            "event_time: timestamp[us, tz=UTC] not null",
            "user_id: string",
            "amount: double",
            "quantity: int64",
            "country: string",
        ]
    );
}

#[test]
fn conflicting_type_is_kept_apart_and_said_so() {
    let w = Warehouse::new("");
    let prefix = cold(2);
    for name in COMPATIBLE
        .iter()
        .chain(["part-06-conflict-type.parquet"].iter())
    {
        w.put(&format!("{prefix}{name}"), &drift(name));
    }
    let run = w.run(&["once"]);
    run.expect_code(0);
    let outputs = w.outputs(&prefix);
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        w.files(&prefix),
        vec![
            outputs[0].clone(),
            format!("{prefix}part-06-conflict-type.parquet")
        ],
        "00..05 merged, 06 left alone"
    );
    let inputs: Vec<PathBuf> = COMPATIBLE.iter().map(|n| drift(n)).collect();
    assert_eq!(assert_same_rows(&w.path(&outputs[0]), &inputs)["rows"], 570);
    let out = run.stdout();
    let note = out
        .lines()
        .find(|l| l.contains("part-06-conflict-type.parquet") && l.contains("kept apart"))
        .unwrap_or_else(|| panic!("no note about part-06:\n{out}"));
    assert!(
        note.contains("\"quantity\"") && note.contains("Int64") && note.contains("Utf8"),
        "{note}"
    );
}

//! The shared Parquet corpus: every readable file merges with copies of itself without losing
//! a row or changing a value; every rejected file is refused by name and left in place; the
//! manifest's merge groups behave as it says.

use std::path::PathBuf;

use crate::util::*;

/// The corpus files the manifest marks `ok`, outside heavy/.
fn readable_files() -> Vec<String> {
    let m = manifest();
    let mut names: Vec<String> = m["files"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, f)| f["expect"] == "ok" && !name.starts_with("heavy/"))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    assert!(names.len() >= 25, "corpus looks incomplete: {names:?}");
    names
}

fn partition_for(i: usize) -> String {
    // One cold partition per file: hours 0..=4 of many days.
    format!("events/dt=2026-10-{:02}/hour=0{}/", 1 + i / 5, i % 5)
}

/// Three copies of every readable corpus file, each file in a partition of its own
/// ([`partition_for`] its index); returns the files' names in that order.
fn put_three_copies_of_each_readable_file(w: &Warehouse) -> Vec<String> {
    let names = readable_files();
    for (i, name) in names.iter().enumerate() {
        for copy in 0..3 {
            w.put(
                &format!("{}part-{copy}.parquet", partition_for(i)),
                &corpus(name),
            );
        }
    }
    names
}

#[test]
fn every_readable_file_merges_with_copies_of_itself() {
    let w = Warehouse::new("target_size = \"128MiB\"");
    let names = put_three_copies_of_each_readable_file(&w);
    w.run(&["once"]).expect_code(0);
    let m = manifest();
    for (i, name) in names.iter().enumerate() {
        let prefix = partition_for(i);
        let files = w.files(&prefix);
        let outputs = w.outputs(&prefix);
        assert_eq!(
            outputs.len(),
            1,
            "{name}: expected one merged file, found {files:?}"
        );
        assert_eq!(files, outputs, "{name}: inputs left behind");
        let out = w.path(&outputs[0]);
        let rows = m["files"][name.as_str()]["rows"].as_i64().unwrap();
        assert_eq!(rows_in(&out), 3 * rows, "{name}: row groups of the output");
        let report = if name == "int96_from_spark.parquet" {
            // pyarrow reads this input's year-290000 value differently from arrow-rs and from
            // the manifest's reference values; those values are checked exactly in
            // int96_instants_outside_the_nanosecond_range_survive_exactly. Here pyarrow only
            // reads and validates our output.
            pyarrow_check(&out, &[])
        } else {
            assert_same_rows(&out, &vec![corpus(name); 3])
        };
        assert_eq!(report["rows"].as_i64().unwrap(), 3 * rows, "{name}");
    }
}

/// Issue 7, concat mode: every readable corpus file, concatenated with copies of itself
/// (column chunks copied, nothing decoded), reads back value for value; the output holds the
/// inputs' row groups, which shows nothing was re-encoded.
#[test]
fn every_readable_file_concatenates_with_copies_of_itself() {
    let w = Warehouse::with_tables(
        "mode = \"concat\"\n[[tables]]\nname = \"events\"\nprefix = \"events/\"\n",
    );
    let names = put_three_copies_of_each_readable_file(&w);
    w.run(&["once"]).expect_code(0);
    let row_groups = |path: &std::path::Path| footer(path).num_row_groups();
    for (i, name) in names.iter().enumerate() {
        let prefix = partition_for(i);
        let outputs = w.outputs(&prefix);
        assert_eq!(
            w.files(&prefix),
            outputs,
            "{name}: one merged file, no inputs left"
        );
        let out = w.path(&outputs[0]);
        assert_eq!(
            row_groups(&out),
            3 * row_groups(&corpus(name)),
            "{name}: concatenated"
        );
        if name != "int96_from_spark.parquet" {
            // (pyarrow reads that file's year-290000 value its own way; see below.)
            assert_same_rows(&out, &vec![corpus(name); 3]);
        }
    }
}

/// Finished pages are spilled to a temporary file by default; held in memory they make the
/// same rows (both writer paths stay correct).
#[test]
fn pages_held_in_memory_or_spilled_give_the_same_rows() {
    let name = "nested_lists.snappy.parquet";
    for spill in ["true", "false"] {
        let w = Warehouse::with_tables(&format!(
            "spill_pages = {spill}\n[[tables]]\nname = \"events\"\nprefix = \"events/\"\n"
        ));
        for copy in 0..3 {
            w.put(&format!("{}part-{copy}.parquet", cold(1)), &corpus(name));
        }
        w.run(&["once"]).expect_code(0);
        let outputs = w.outputs(&cold(1));
        assert_eq!(w.files(&cold(1)), outputs, "spill_pages = {spill}");
        assert_same_rows(&w.path(&outputs[0]), &vec![corpus(name); 3]);
        assert!(
            std::fs::read_dir(w.base.join("work")).map_or(true, |mut d| d.next().is_none()),
            "no temporary file left"
        );
    }
}

/// arrow-rs reads INT96 as nanoseconds and silently wraps instants outside 1677..2262; the
/// merged file must hold the exact instants Spark wrote.
#[test]
fn int96_instants_outside_the_nanosecond_range_survive_exactly() {
    let w = Warehouse::new("");
    let prefix = cold(1);
    w.put(
        &format!("{prefix}a.parquet"),
        &corpus("int96_from_spark.parquet"),
    );
    w.put(
        &format!("{prefix}b.parquet"),
        &corpus("int96_from_spark.parquet"),
    );
    w.run(&["once"]).expect_code(0);
    let out = w.path(&w.outputs(&prefix)[0]);

    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column(0);
        assert_eq!(
            col.data_type(),
            &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
        );
        let col = col
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        values.extend(col.iter());
    }
    let expected = [
        Some(1_704_141_296_123_456),
        Some(1_704_070_800_000_000),
        Some(253_402_225_200_000_000),
        Some(1_735_599_600_000_000),
        None,
        Some(9_089_380_393_200_000_000),
    ];
    assert_eq!(values, [expected, expected].concat());
}

/// The Arrow reader returns 0 rows for this file (its footer says 0, its row group 6): the
/// merged file must hold all 6 of each copy.
#[test]
fn repeated_no_annotation_keeps_all_rows() {
    let w = Warehouse::new("");
    let prefix = cold(2);
    for copy in 0..2 {
        w.put(
            &format!("{prefix}part-{copy}.parquet"),
            &corpus("repeated_no_annotation.parquet"),
        );
    }
    w.run(&["once"]).expect_code(0);
    let out = w.path(&w.outputs(&prefix)[0]);
    assert_eq!(rows_in(&out), 12);
    assert_same_rows(&out, &vec![corpus("repeated_no_annotation.parquet"); 2]);
}

#[test]
fn rejected_files_are_refused_by_name_and_left_in_place() {
    let w = Warehouse::new("");
    let m = manifest();
    let mut bad: Vec<String> = m["files"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, f)| f["expect"] == "reject")
        .map(|(name, _)| name.clone())
        .collect();
    bad.sort();
    assert!(bad.len() >= 15, "{bad:?}");
    // Two copies per partition, so schemas agree and the corrupt data is really decoded.
    for (i, name) in bad.iter().enumerate() {
        let prefix = partition_for(i);
        w.put(&format!("{prefix}part-0-bad.parquet"), &corpus(name));
        w.put(&format!("{prefix}part-1-bad.parquet"), &corpus(name));
    }
    let run = w.run(&["once"]);
    // 1, not 101: a decoder panic on the fuzzer file must not abort the process.
    run.expect_code(1);
    let stdout = run.stdout();
    for (i, name) in bad.iter().enumerate() {
        let prefix = partition_for(i);
        assert_eq!(
            w.files(&prefix),
            vec![
                format!("{prefix}part-0-bad.parquet"),
                format!("{prefix}part-1-bad.parquet")
            ],
            "{name}: inputs must stay and no output appear"
        );
        let bad_key = format!("{prefix}part-0-bad.parquet");
        let line = stdout
            .lines()
            .find(|l| l.contains("FAILED") && l.contains(&bad_key))
            .unwrap_or_else(|| panic!("{name}: no failure line naming {bad_key} in:\n{stdout}"));
        assert!(line.contains("left in place"), "{line}");
        if name.contains("encrypt") {
            assert!(line.contains("encrypted"), "{line}");
        }
    }
    assert_eq!(
        std::fs::read(w.path(&format!("{}part-1-bad.parquet", partition_for(0)))).unwrap(),
        std::fs::read(corpus(&bad[0])).unwrap(),
        "a refused file is left byte for byte"
    );
}

/// The manifest's merge groups, each in its own partition.
#[test]
fn merge_groups_behave_as_the_manifest_says() {
    let w = Warehouse::new("");
    let m = manifest();
    let groups = m["merge_groups"].as_array().unwrap();
    for (i, g) in groups.iter().enumerate() {
        let prefix = partition_for(i);
        for (j, f) in g["files"].as_array().unwrap().iter().enumerate() {
            w.put(
                &format!("{prefix}part-{j}.parquet"),
                &corpus(f.as_str().unwrap()),
            );
        }
    }
    let run = w.run(&["once"]);
    run.expect_code(0);
    for (i, g) in groups.iter().enumerate() {
        let prefix = partition_for(i);
        let name = g["name"].as_str().unwrap();
        let inputs: Vec<PathBuf> = g["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| corpus(f.as_str().unwrap()))
            .collect();
        match g["expect"].as_str().unwrap() {
            // refuse-or-widen: we widen decimal(4,2)/(10,2)/(25,2) to decimal(25,2) losslessly.
            "merge" | "merge-with-same-file-twice" | "refuse-or-widen" => {
                let outputs = w.outputs(&prefix);
                assert_eq!(w.files(&prefix), outputs, "{name}: inputs left behind");
                let report = assert_same_rows(&w.path(&outputs[0]), &inputs);
                assert_eq!(report["rows"], g["rows"], "{name}");
                if name.starts_with("G4") {
                    assert!(
                        report["schema"][0]
                            .as_str()
                            .unwrap()
                            .contains("decimal128(25, 2)"),
                        "{report}"
                    );
                }
            }
            "refuse" => {
                assert!(w.outputs(&prefix).is_empty(), "{name}");
                assert_eq!(
                    w.files(&prefix).len(),
                    inputs.len(),
                    "{name}: inputs must stay"
                );
                let out = run.stdout();
                assert!(
                    out.lines()
                        .any(|l| l.contains(&prefix) && l.contains("kept apart")),
                    "{name}: no message saying the files were kept apart:\n{out}"
                );
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

/// Opt-in (`cargo test -- --ignored`): a 2-row file whose strings expand to over 2 GiB is
/// refused by the row-group memory guard before it is decoded, with no input touched.
#[test]
#[ignore = "heavy: reads a file that expands to over 2 GiB"]
fn heavy_file_is_refused_within_bounded_memory() {
    let w = Warehouse::new("");
    let prefix = cold(1);
    for copy in 0..2 {
        w.put(
            &format!("{prefix}part-{copy}.parquet"),
            &corpus("heavy/large_string_map.brotli.parquet"),
        );
    }
    let run = w.run(&["once"]);
    run.expect_code(1);
    assert!(
        run.stdout().contains("max_row_group_bytes"),
        "{}",
        run.stdout()
    );
    assert_eq!(w.files(&prefix).len(), 2);
}

/// Issue 6: data pages that fail to decompress, behind a valid footer. The file is refused by
/// name when its rows are decoded, its group's files stay, and the neighbour is compacted.
#[test]
fn pages_that_fail_to_decompress_are_refused_and_nothing_is_deleted() {
    let good = corpus("alltypes_plain.snappy.parquet");
    let bytes = std::fs::read(&good).unwrap();
    // Garble the middle of the data (after the leading magic, well before the footer).
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - footer_len as usize;
    let mut garbled = bytes.clone();
    for b in &mut garbled[4 + (data_end - 4) / 4..4 + 3 * (data_end - 4) / 4] {
        *b ^= 0x5a;
    }
    let w = Warehouse::new("");
    let bad_dir = w.base.join("src");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = bad_dir.join("garbled.parquet");
    std::fs::write(&bad, &garbled).unwrap();
    w.put(&format!("{}part-0.parquet", cold(1)), &good);
    w.put(&format!("{}part-1.parquet", cold(1)), &bad);
    w.put(&format!("{}part-0.parquet", cold(2)), &good);
    w.put(&format!("{}part-1.parquet", cold(2)), &good);

    let run = w.run(&["once"]);
    run.expect_code(1);
    let out = run.stdout();
    let failed = out
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        failed.contains(&format!("{}part-1.parquet", cold(1))),
        "{failed}"
    );
    assert_eq!(w.files(&cold(1)).len(), 2, "nothing deleted");
    assert_eq!(
        std::fs::read(w.path(&format!("{}part-1.parquet", cold(1)))).unwrap(),
        garbled
    );
    assert_eq!(w.outputs(&cold(2)).len(), 1, "the neighbour is compacted");
}

/// Whether each column of `file` has a bloom filter in each row group, as pyarrow reads the
/// footer.
fn bloom_filter_columns_per_pyarrow(file: &std::path::Path) -> Vec<Vec<bool>> {
    python_json(
        "import json, sys, pyarrow.parquet as pq\n\
         md = pq.ParquetFile(sys.argv[1]).metadata\n\
         print(json.dumps([[md.row_group(g).column(c).bloom_filter_offset is not None\n\
                            for c in range(md.num_columns)] for g in range(md.num_row_groups)]))",
        [file.as_os_str()],
    )
}

/// For each of `values`, how many row groups of `file` DuckDB's reading of `column`'s bloom
/// filters rules out.
fn row_groups_excluded_per_duckdb(
    file: &std::path::Path,
    column: &str,
    values: &[String],
) -> Vec<u64> {
    let values = serde_json::to_string(values).unwrap();
    python_json(
        "import duckdb, json, sys\n\
         file, column, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n\
         con = duckdb.connect()\n\
         print(json.dumps([sum(r[0] for r in con.execute(\n\
             'select bloom_filter_excludes from parquet_bloom_probe(?, ?, ?)',\n\
             [file, column, v]).fetchall()) for v in values]))",
        [file.as_os_str(), column.as_ref(), values.as_ref()],
    )
}

/// A writer that made bloom filters (for point lookups on an id, say) expects them after
/// compaction too. A rewrite gives the output a filter for each column that had one in an
/// input, holding every value (a filter has no false negatives), and no filter where the
/// inputs had none. Read back by pyarrow (which columns) and DuckDB (what they hold).
#[test]
fn a_rewrite_keeps_the_inputs_bloom_filters() {
    let w = Warehouse::new("");
    w.add_merge_settings("mode = \"rewrite\"");
    let with_filters = corpus("data_index_bloom_encoding_stats.parquet");
    let without = corpus("alltypes_plain.parquet");
    for copy in 0..3 {
        w.put(&format!("{}part-{copy}.parquet", cold(2)), &with_filters);
        w.put(&format!("{}part-{copy}.parquet", cold(3)), &without);
    }
    w.run(&["once"]).expect_code(0);

    let out = w.path(&w.outputs(&cold(2))[0]);
    assert_same_rows(&out, &vec![with_filters.clone(); 3]);
    assert_eq!(
        bloom_filter_columns_per_pyarrow(&with_filters),
        vec![vec![true]]
    );
    assert_eq!(bloom_filter_columns_per_pyarrow(&out), vec![vec![true]]);
    let present: Vec<String> = [
        "Hello",
        "This is",
        "a",
        "test",
        "How",
        "are you",
        "doing ",
        "today",
        "the quick",
        "brown fox",
        "jumps",
        "over",
        "the lazy",
        "dog",
    ]
    .map(String::from)
    .to_vec();
    let excluded = row_groups_excluded_per_duckdb(&out, "String", &present);
    assert_eq!(
        excluded,
        vec![0; present.len()],
        "no value it holds may be ruled out"
    );
    let absent: Vec<String> = (0..200).map(|i| format!("absent {i}")).collect();
    let excluded: u64 = row_groups_excluded_per_duckdb(&out, "String", &absent)
        .iter()
        .sum();
    assert!(
        excluded >= 180,
        "only {excluded} of 200 absent values ruled out"
    );

    let plain = w.path(&w.outputs(&cold(3))[0]);
    assert_same_rows(&plain, &vec![without.clone(); 3]);
    let none = bloom_filter_columns_per_pyarrow(&plain);
    assert!(none.iter().flatten().all(|has| !has), "{none:?}");
}

//! `compactor merge IN_DIR OUT_DIR` (issue 7): the merge engine on a plain directory tree, as
//! the benchmark harness calls it. Inputs are only read; outputs hold every row, in order.

use std::path::{Path, PathBuf};
use std::process::Command;

use parquet::basic::Encoding;

use crate::util::*;

/// `compactor merge ARGS... INPUT OUTPUT`.
fn merge(args: &[&str], input: &Path, output: &Path) -> Run {
    Run(merge_command(args, input, output).output().unwrap())
}

fn merge_command(args: &[&str], input: &Path, output: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compactor"));
    cmd.arg("merge").args(args).arg(input).arg(output);
    cmd
}

/// `copies` copies of the corpus's `alltypes_plain.parquet` in each of `dirs` (relative, "" for
/// `input` itself), named as merged files are (`part-00000.parquet`, ...); returns the file.
fn copies_of_small(input: &Path, dirs: &[&str], copies: usize) -> PathBuf {
    let small = corpus("alltypes_plain.parquet");
    for dir in dirs {
        std::fs::create_dir_all(input.join(dir)).unwrap();
        for i in 0..copies {
            std::fs::copy(&small, input.join(dir).join(format!("part-{i:05}.parquet"))).unwrap();
        }
    }
    small
}

/// Outputs are ordinary files (0666 less the umask), not private temporary ones.
#[test]
fn merged_files_are_readable_as_the_umask_allows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    copies_of_small(&input, &[""], 2);
    for (umask, expected) in [(0o022, "644"), (0o077, "600")] {
        let output = dir.path().join(format!("out-{umask:o}"));
        let mut cmd = merge_command(&[], &input, &output);
        Run(with_umask(&mut cmd, umask).output().unwrap()).expect_code(0);
        let merged = output.join("part-00000.parquet");
        assert_eq!(mode_of(&merged), expected, "umask {umask:03o}");
    }
}

/// Mistaken paths are usage errors (exit 2) and write nothing: an output that would put merged
/// files among the inputs (where `part-00000.parquet` replaced an input of that name, and the
/// next merge read its rows again) or beside an earlier merge's files, an input that is missing
/// (it is not created) or a file.
#[test]
fn mistaken_paths_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    copies_of_small(&input, &["a"], 3);
    let before = tree(&input);
    for output in [
        input.clone(),
        input.join("out"),
        input.join("a/../new"),
        dir.path().join("missing/../in/x"),
    ] {
        let run = merge(&[], &input, &output);
        run.expect_code(2);
        assert!(
            run.stderr().contains("inside IN_DIR"),
            "{}: {}",
            output.display(),
            run.stderr()
        );
        assert_eq!(
            tree(&input),
            before,
            "{}: nothing written",
            output.display()
        );
    }

    let missing = dir.path().join("typo");
    let run = merge(&[], &missing, &dir.path().join("out"));
    run.expect_code(2);
    assert!(run.stderr().contains("IN_DIR"), "{}", run.stderr());
    assert!(!missing.exists(), "a missing input is not created");
    assert!(!dir.path().join("out").exists());

    let file = input.join("a/part-00000.parquet");
    let run = merge(&[], &file, &dir.path().join("out"));
    run.expect_code(2);
    assert!(run.stderr().contains("is a file"), "{}", run.stderr());

    // An earlier merge's outputs: three with a small target, then one would leave two stale.
    let output = dir.path().join("out");
    merge(&["--target-bytes", "1"], &input, &output).expect_code(0);
    let earlier = tree(&output);
    assert_eq!(earlier.len(), 3);
    let run = merge(&[], &input, &output);
    run.expect_code(2);
    assert!(
        run.stderr().contains("already holds data files"),
        "{}",
        run.stderr()
    );
    assert_eq!(tree(&output), earlier, "nothing written");

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = merge(&[], &empty, &dir.path().join("out"));
    run.expect_code(0);
    assert!(
        run.stderr().contains("no data files under"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().contains("merged 0 files"), "{}", run.stdout());
}

/// A directory with a corrupt input gets no output and is listed with the file and the reason
/// (exit 1); the other directories are merged all the same.
#[test]
fn a_corrupt_input_fails_its_directory_alone_and_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    let small = copies_of_small(&input, &["good", "bad"], 3);
    std::fs::write(input.join("bad/part-9.parquet"), b"id,name\n1,a\n").unwrap();
    let run = merge(&[], &input, &output);
    run.expect_code(1);
    let out = run.stdout();
    assert!(out.contains("merged 3 files"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("failed") && l.contains("bad/part-9.parquet: not a Parquet file")),
        "{out}"
    );
    assert_same_rows(&output.join("good/part-00000.parquet"), &vec![small; 3]);
    assert!(!output.join("bad").exists(), "{:?}", tree(&output));
}

/// SIGTERM (or Ctrl-C) stops a merge at once, exit 130: the merged file being written was
/// hidden from readers while it was written, and is gone; the inputs are as they were.
#[test]
fn a_signal_stops_a_merge_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    copies_of_small(&input, &["a"], 4);
    let before = tree(&input);
    // Each input takes a second to arrive: the merge is in flight for four.
    let child = merge_command(&[], &input, &output)
        .env("COMPACTOR_TEST_SLOW_FETCH_MS", "1000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let being_written = loop {
        let names: Vec<String> = std::fs::read_dir(output.join("a"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(name) = names.into_iter().next() {
            break name;
        }
        assert!(started.elapsed().as_secs() < 30, "no merged file in flight");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        being_written.starts_with('.'),
        "hidden while written: {being_written}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = Run(child.wait_with_output().unwrap());
    run.expect_code(130);
    assert!(run.stdout().contains("interrupted"), "{}", run.stdout());
    assert!(
        started.elapsed().as_secs() < 3,
        "stopped at once, not after the merge"
    );
    assert_eq!(tree(&output), Vec::new(), "nothing left in OUT_DIR");
    assert_eq!(tree(&input), before);
}

/// Writes `batch` as a Parquet file at `path`, with parquet's default properties.
fn write_parquet(path: &Path, batch: &arrow::array::RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

#[test]
fn merge_writes_one_file_per_directory_and_leaves_the_input_alone() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    let small = copies_of_small(
        &input,
        &["dt=2026-11-20/hour=01", "dt=2026-11-20/hour=02"],
        4,
    );
    let before = tree(&input);
    let run = merge(&["--target-bytes", "134217728"], &input, &output);
    run.expect_code(0);
    assert!(run.stdout().contains("merged 8 files"), "{}", run.stdout());
    assert!(
        run.stdout().contains("in 2 directories into 2 files"),
        "{}",
        run.stdout()
    );
    assert_eq!(tree(&input), before, "inputs are only read");
    for part in ["dt=2026-11-20/hour=01", "dt=2026-11-20/hour=02"] {
        let merged = output.join(part).join("part-00000.parquet");
        assert_same_rows(&merged, &vec![small.clone(); 4]);
    }
    let leftovers: Vec<_> = tree(&output)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("part-00000.parquet"))
        .map(|(p, _)| p)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A small target: several outputs per directory, every row still there once.
    let split = dir.path().join("split");
    merge(
        &["--target-bytes", "3KiB", "--compression", "snappy"],
        &input,
        &split,
    )
    .expect_code(0);
    let files: Vec<PathBuf> = tree(&split.join("dt=2026-11-20/hour=01"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(files.len() > 1, "{files:?}");
    let rows: i64 = files.iter().map(|f| rows_in(f)).sum();
    assert_eq!(rows, 4 * rows_in(&small));
}

/// Files named without `.parquet` (Hive's `000000_0`) are merged with `--file-suffix ""`;
/// by default they are not data, and a directory of only those gives no output.
#[test]
fn file_suffix_chooses_the_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/dt=2026-11-20");
    std::fs::create_dir_all(&input).unwrap();
    let small = corpus("alltypes_plain.parquet");
    for i in 0..3 {
        std::fs::copy(&small, input.join(format!("00000{i}_0"))).unwrap();
    }
    std::fs::write(input.join("_SUCCESS"), b"").unwrap();
    let input = dir.path().join("in");

    let default = dir.path().join("default");
    merge(&[], &input, &default).expect_code(0);
    assert!(
        tree(&default).is_empty(),
        "no .parquet file, nothing merged"
    );

    let every = dir.path().join("every");
    let run = merge(&["--file-suffix", ""], &input, &every);
    run.expect_code(0);
    assert!(run.stdout().contains("merged 3 files"), "{}", run.stdout());
    assert_same_rows(
        &every.join("dt=2026-11-20/part-00000.parquet"),
        &vec![small; 3],
    );
}

/// Issue 7, output size: a column whose values are nearly all distinct is written without a
/// dictionary (which would only cost bytes and time before the writer gave up on it); a
/// column of few values keeps its dictionary. The ascending ids are delta-encoded, which a
/// trial on the first batch shows far smaller, unless `--classic-encodings` asks for plain
/// and dictionary encodings only. A list of item ids drawn from every value of a wide range
/// repeats its values but skips the dictionary as well (its index would be no narrower than
/// the ids). pyarrow reads every row back either way.
#[test]
fn nearly_unique_columns_are_written_without_a_dictionary() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, StringArray};
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::{DataType, Field};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/dt=2026-11-20");
    std::fs::create_dir_all(&input).unwrap();
    let mut inputs = Vec::new();
    for f in 0..3i64 {
        let n = 10_000;
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| f * n + i)));
        let kinds: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| ["click", "view", "buy"][i as usize % 3]),
        ));
        // Two or three item ids per row, evenly from 1..200,000 (a xorshift stream).
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ f as u64;
        let items = Int32Array::from_iter_values((0..n * 5 / 2).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 200_000) as i32 + 1
        }));
        let offsets = OffsetBuffer::from_lengths((0..n).map(|i| [2usize, 3][i as usize % 2]));
        let element = Arc::new(Field::new("element", DataType::Int32, true));
        let item_ids: ArrayRef = Arc::new(ListArray::new(element, offsets, Arc::new(items), None));
        let batch =
            RecordBatch::try_from_iter([("id", ids), ("kind", kinds), ("item_ids", item_ids)])
                .unwrap();
        let path = input.join(format!("part-{f}.parquet"));
        write_parquet(&path, &batch);
        inputs.push(path);
    }
    for (flags, id_encoding) in [
        (&[][..], Encoding::DELTA_BINARY_PACKED),
        (&["--classic-encodings"][..], Encoding::PLAIN),
    ] {
        let output = dir.path().join(format!("out{}", flags.len()));
        merge(flags, &dir.path().join("in"), &output).expect_code(0);
        let merged = output.join("dt=2026-11-20/part-00000.parquet");
        assert_same_rows(&merged, &inputs);
        let md = footer(&merged);
        let rg = md.row_group(0);
        let dictionary = |i: usize| rg.column(i).dictionary_page_offset().is_some();
        assert!(
            !dictionary(0),
            "id: nearly unique, written without a dictionary"
        );
        assert!(dictionary(1), "kind: three values, dictionary-encoded");
        assert!(
            !dictionary(2),
            "item_ids: dense in a wide range, written without a dictionary"
        );
        let id_encodings = rg.column(0).encodings().collect::<Vec<_>>();
        assert!(
            id_encodings.contains(&id_encoding),
            "{flags:?}: {id_encodings:?}"
        );
    }
}

/// A streaming writer's files hold a few rows each. Their rows are gathered into full batches
/// before they are written, so the output's encodings are chosen from a real sample (a merge's
/// first batch): unique ids go without a dictionary, in delta encoding, and a column cycling
/// through 50 cities keeps its dictionary although each 20-row file holds 20 different ones.
/// (From one file's 20 rows, too few to judge, every column kept the dictionary.)
#[test]
fn rows_of_tiny_files_are_gathered_before_encodings_are_chosen() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/dt=2026-11-20");
    std::fs::create_dir_all(&input).unwrap();
    let rows = 20i64;
    let mut inputs = Vec::new();
    for f in 0..200i64 {
        let ids = f * rows..(f + 1) * rows;
        let id: ArrayRef = Arc::new(Int64Array::from_iter_values(ids.clone()));
        let city: ArrayRef = Arc::new(StringArray::from_iter_values(
            ids.map(|i| format!("city-{}", i % 50)),
        ));
        let batch = RecordBatch::try_from_iter([("id", id), ("city", city)]).unwrap();
        let path = input.join(format!("part-{f:05}.parquet"));
        write_parquet(&path, &batch);
        inputs.push(path);
    }
    let output = dir.path().join("out");
    merge(&[], &dir.path().join("in"), &output).expect_code(0);
    let merged = output.join("dt=2026-11-20/part-00000.parquet");
    assert_eq!(assert_same_rows(&merged, &inputs)["rows"], 4000);
    let md = footer(&merged);
    let rg = md.row_group(0);
    assert!(
        rg.column(0).dictionary_page_offset().is_none(),
        "id: unique, written without a dictionary"
    );
    let id_encodings = rg.column(0).encodings().collect::<Vec<_>>();
    assert!(
        id_encodings.contains(&Encoding::DELTA_BINARY_PACKED),
        "{id_encodings:?}"
    );
    assert!(
        rg.column(1).dictionary_page_offset().is_some(),
        "city: 50 values over 4,000 rows, dictionary-encoded"
    );
}

/// Row groups are cut by encoded size, but evenly: the rows are shared among the row groups
/// the size needs, rather than each filled to the size and the last left with the rest (a
/// short row group is a query engine's task with little to do). Whole or in parts: cutting by
/// size alone gave 15 row groups of 19,825 rows and one of 2,626 here, and in parts two of
/// about 11,200.
#[test]
fn row_groups_share_the_rows_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_numbered_inputs(&dir.path().join("in/dt=2026-11-20"), 6, 50_000);
    for slots in ["1", "2"] {
        let output = dir.path().join(format!("out-{slots}"));
        let args = ["--row-group-size", "256KiB", "--parallelism", slots];
        let mut cmd = merge_command(&args, &dir.path().join("in"), &output);
        Run(cmd.output().unwrap()).expect_code(0);
        let merged = output.join("dt=2026-11-20/part-00000.parquet");
        assert_same_rows(&merged, &inputs);
        let rows = assert_page_indexes_lead_to_rows(&merged);
        let (fewest, most) = (rows.iter().min().unwrap(), rows.iter().max().unwrap());
        assert!(fewest * 100 >= most * 99, "{slots} slots: {rows:?}");
        assert!(
            rows.len() <= 16,
            "no more row groups than the size needs: {rows:?}"
        );
    }
}

/// A merge alone on two cores runs in two parts at once (a merge decodes on one thread and
/// encodes on another, and the encoder's share leaves the second core half idle), each part
/// into a file of its own, and the parts' row groups are then stitched into one file: the
/// output holds every row in the inputs' order (pyarrow), and its row groups keep their page
/// indexes and bloom filters, with offsets that lead to the right rows. With one slot, or two
/// directories alike for two slots, a merge stays whole; beside a much smaller one, it is cut.
#[test]
fn a_lone_merge_runs_in_parts_stitched_into_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_numbered_inputs(&dir.path().join("in/dt=2026-11-20"), 6, 20_000);
    let small_row_groups = ["--row-group-size", "64KiB", "--parallelism"];
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let run_with = |slots: &str, input: &Path, output: &Path| {
        let args = [&small_row_groups[..], &[slots]].concat();
        let mut cmd = merge_command(&args, input, output);
        cmd.env("RUST_LOG", "compactor=debug").env("TMPDIR", &work);
        let run = Run(cmd.output().unwrap());
        run.expect_code(0);
        run
    };

    let output = dir.path().join("out");
    let run = run_with("2", &dir.path().join("in"), &output);
    assert!(
        run.stderr().contains("merging in parts parts=2 files=6"),
        "{}",
        run.stderr()
    );
    let merged = output.join("dt=2026-11-20/part-00000.parquet");
    assert_eq!(tree(&output).len(), 1, "one output file");
    assert_eq!(assert_same_rows(&merged, &inputs)["rows"], 120_000);
    let parts = assert_page_indexes_lead_to_rows(&merged);
    assert!(parts.len() > 2, "{parts:?}");

    assert!(tree(&work).is_empty(), "no part left in the work dir");

    let whole = dir.path().join("whole");
    let run = run_with("1", &dir.path().join("in"), &whole);
    assert!(
        !run.stderr().contains("merging in parts"),
        "{}",
        run.stderr()
    );
    let merged_whole = whole.join("dt=2026-11-20/part-00000.parquet");
    assert_same_rows(&merged_whole, &inputs);
    assert_page_indexes_lead_to_rows(&merged_whole);

    // Two directories alike for two slots: each merge has a slot, none to spare.
    let two = dir.path().join("two");
    for hour in ["01", "02"] {
        write_numbered_inputs(&two.join(format!("hour={hour}")), 6, 20_000);
    }
    let run = run_with("2", &two, &dir.path().join("two-out"));
    assert!(
        !run.stderr().contains("merging in parts"),
        "{}",
        run.stderr()
    );

    // A large directory beside a small one: the large merge is cut in two, its second part
    // taking the slot the small merge leaves, and both outputs hold their inputs' rows.
    let mixed = dir.path().join("mixed");
    let large = write_numbered_inputs(&mixed.join("hour=01"), 6, 20_000);
    let small = write_numbered_inputs(&mixed.join("hour=02"), 2, 500);
    let mixed_out = dir.path().join("mixed-out");
    let run = run_with("2", &mixed, &mixed_out);
    assert!(
        run.stderr().contains("merging in parts parts=2 files=6"),
        "{}",
        run.stderr()
    );
    assert_eq!(run.stderr().matches("merging in parts").count(), 1);
    assert_eq!(
        assert_same_rows(&mixed_out.join("hour=01/part-00000.parquet"), &large)["rows"],
        120_000
    );
    assert_eq!(
        assert_same_rows(&mixed_out.join("hour=02/part-00000.parquet"), &small)["rows"],
        1_000
    );
}

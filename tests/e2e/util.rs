//! A temporary warehouse, a runner for the real binary, and the independent reader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The tests' "now": 2026-11-20 05:10 UTC, so `hour=05` of that day is the hot hour.
pub const NOW: &str = "2026-11-20T05:10:00Z";
pub const HOT: &str = "events/dt=2026-11-20/hour=05/";

pub fn cold(hour: u32) -> String {
    assert!(hour < 5);
    format!("events/dt=2026-11-20/hour={hour:02}/")
}

/// The shared Parquet corpus and drift set.
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("COMPACTOR_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"));
    assert!(
        dir.join("parquet/manifest.json").is_file(),
        "test data not found at {} (run scripts/test, or set COMPACTOR_TESTDATA)",
        dir.display()
    );
    dir
}

pub fn corpus(name: &str) -> PathBuf {
    testdata().join("parquet").join(name)
}

pub fn manifest() -> Value {
    let text = std::fs::read_to_string(testdata().join("parquet/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn hostile_plugin() -> &'static str {
    env!("COMPACTOR_HOSTILE_PLUGIN_WASM")
}

pub struct Warehouse {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
    pub config: PathBuf,
}

impl Warehouse {
    /// A warehouse with one table `events` on the default plugin and these settings lines.
    pub fn new(settings: &str) -> Warehouse {
        Warehouse::with_tables(&format!(
            "[[tables]]\nname = \"events\"\nprefix = \"events/\"\n[tables.settings]\n{settings}\n"
        ))
    }

    /// A warehouse with the given `[[tables]]` TOML.
    pub fn with_tables(tables: &str) -> Warehouse {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("warehouse");
        std::fs::create_dir_all(&root).unwrap();
        let config = base.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"file://./warehouse\"\n[merge]\nwork_dir = \"work\"\n{tables}"
            ),
        )
        .unwrap();
        Warehouse {
            _dir: dir,
            base,
            root,
            config,
        }
    }

    /// Adds `lines` (e.g. `parallelism = 3`) to the config's `[merge]` section.
    pub fn add_merge_settings(&self, lines: &str) {
        let config = std::fs::read_to_string(&self.config).unwrap().replace(
            "work_dir = \"work\"",
            &format!("work_dir = \"work\"\n{lines}"),
        );
        std::fs::write(&self.config, config).unwrap();
    }

    /// Copies `src` into the warehouse as `key`.
    pub fn put(&self, key: &str, src: &Path) {
        let dest = self.root.join(key);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src, &dest).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Keys of the data files under `prefix`, sorted (hidden and temp files excluded).
    pub fn files(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let dir = self.root.join(prefix);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name().into_string().unwrap();
            if e.path().is_file() && !name.starts_with('.') {
                out.push(format!("{prefix}{name}"));
            }
        }
        out.sort();
        out
    }

    /// The merged outputs under `prefix`.
    pub fn outputs(&self, prefix: &str) -> Vec<String> {
        self.files(prefix)
            .into_iter()
            .filter(|k| k.rsplit('/').next().unwrap().starts_with("compacted-"))
            .collect()
    }

    /// Runs `compactor --config <ours> --now NOW <args>`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[])
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        run_compactor(&self.config, args, env)
    }
}

/// Runs `compactor --config CONFIG --now NOW <args>` with `env` added.
pub fn run_compactor(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    Run(compactor_command(config, args, env)
        .output()
        .expect("run compactor"))
}

/// The command `compactor --config CONFIG --now NOW <args>` with `env` added.
pub fn compactor_command(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compactor"));
    cmd.arg("--config")
        .arg(config)
        .args(["--now", NOW])
        .args(args);
    cmd.env_remove("RUST_LOG").env_remove("COMPACTOR_CRASH_AT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Makes `cmd` start with the file mode creation mask `mask` (as a service's `UMask=` does).
#[allow(unsafe_code)]
pub fn with_umask(cmd: &mut Command, mask: libc::mode_t) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask(2) is async-signal-safe, and only sets the child's mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        })
    }
}

/// The permission bits of the file at `path`, in octal (`644`).
pub fn mode_of(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    format!(
        "{:o}",
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    )
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the process was killed by SIGKILL (a `COMPACTOR_CRASH_AT` test hook).
    pub fn expect_killed(&self) -> &Run {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            self.0.status.signal(),
            Some(9),
            "expected SIGKILL; stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The decoded footer of a Parquet file.
pub fn footer(path: &Path) -> parquet::file::metadata::ParquetMetaData {
    use parquet::file::reader::FileReader;
    let file = std::fs::File::open(path).unwrap();
    parquet::file::serialized_reader::SerializedFileReader::new(file)
        .unwrap()
        .metadata()
        .clone()
}

/// Rows in a Parquet file, counted from its footer's row groups.
pub fn rows_in(path: &Path) -> i64 {
    footer(path)
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows())
        .sum()
}

pub fn python() -> PathBuf {
    let py = std::env::var_os("COMPACTOR_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python")
        });
    assert!(
        py.exists(),
        "no Python with pyarrow at {} (run scripts/test, which creates it)",
        py.display()
    );
    py
}

/// Runs a Python `script` (of the test venv: pyarrow, DuckDB) with `args` and parses what it
/// prints as JSON.
pub fn python_json<T: serde::de::DeserializeOwned>(
    script: &str,
    args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
) -> T {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asks pyarrow whether `output` holds exactly the rows of `inputs`, in order.
pub fn pyarrow_check(output: &Path, inputs: &[PathBuf]) -> Value {
    pyarrow_check_with_env(output.as_os_str(), inputs, &[])
}

/// As [`pyarrow_check`], for any output pyarrow can open (`s3://bucket/key` with `env`).
pub fn pyarrow_check_with_env(
    output: &std::ffi::OsStr,
    inputs: &[PathBuf],
    env: &[(&str, String)],
) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/check_output.py");
    let out = Command::new(python())
        .arg(script)
        .arg(output)
        .args(inputs)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyarrow check of {} failed:\n{}",
        output.to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts pyarrow reads `output` as exactly `inputs` concatenated, with their types when they
/// share one schema; returns its report.
pub fn assert_same_rows(output: &Path, inputs: &[PathBuf]) -> Value {
    let report = pyarrow_check(output, inputs);
    assert_eq!(report["equal"], true, "{}: {report}", output.display());
    assert_eq!(report["rows"], report["expected_rows"], "{report}");
    assert_ne!(report["types_kept"], false, "types changed: {report}");
    report
}

/// Every file under `dir`, at any depth, with its bytes, sorted by path: to assert that a run
/// changed nothing, or to see what it wrote.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Writes `files` Parquet files of `rows` rows each into `dir` (`part-NNNNN.parquet`): `id`
/// counting up from 0 across the files (with a bloom filter), a `kind` of three values, an
/// `amount`, and a `note` that is null in every seventh row. Returns their paths, in order.
pub fn write_numbered_inputs(dir: &Path, files: i64, rows: i64) -> Vec<PathBuf> {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;

    std::fs::create_dir_all(dir).unwrap();
    let props = WriterProperties::builder()
        .set_column_bloom_filter_enabled(ColumnPath::from("id"), true)
        .build();
    (0..files)
        .map(|f| {
            let ids = f * rows..(f + 1) * rows;
            let id: ArrayRef = Arc::new(Int64Array::from_iter_values(ids.clone()));
            let kind: ArrayRef = Arc::new(StringArray::from_iter_values(
                ids.clone()
                    .map(|i| ["click", "view", "buy"][i as usize % 3]),
            ));
            let amount: ArrayRef = Arc::new(Float64Array::from_iter_values(
                ids.clone().map(|i| (i % 1000) as f64 / 4.0),
            ));
            let note: ArrayRef =
                Arc::new(StringArray::from_iter(ids.map(|i| {
                    (i % 7 != 0).then(|| format!("note {}", i * 7919 % 10_007))
                })));
            let batch = RecordBatch::try_from_iter([
                ("id", id),
                ("kind", kind),
                ("amount", amount),
                ("note", note),
            ])
            .unwrap();
            let path = dir.join(format!("part-{f:05}.parquet"));
            let file = std::fs::File::create(&path).unwrap();
            let mut w =
                parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props.clone()))
                    .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            path
        })
        .collect()
}

/// Checks a merged file of [`write_numbered_inputs`]'s rows through its page indexes: every
/// column chunk has a column index, an offset index and (`id`) a bloom filter, and reading the
/// last rows of each row group through the offset index alone (the pages before them skipped)
/// gives the ids at those rows. Returns the row groups' row counts.
pub fn assert_page_indexes_lead_to_rows(path: &Path) -> Vec<usize> {
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };

    let md = footer(path);
    let mut selectors = Vec::new();
    let mut expected = Vec::new();
    let mut counts = Vec::new();
    let mut start = 0i64;
    for (i, rg) in md.row_groups().iter().enumerate() {
        for column in rg.columns() {
            let name = column.column_path().string();
            assert!(
                column.column_index_offset().is_some(),
                "rg {i} {name}: column index"
            );
            assert!(
                column.offset_index_offset().is_some(),
                "rg {i} {name}: offset index"
            );
            if name == "id" {
                assert!(
                    column.bloom_filter_offset().is_some(),
                    "rg {i}: bloom filter"
                );
            }
        }
        let n = rg.num_rows();
        let last = n.min(3);
        selectors.push(RowSelector::skip((n - last) as usize));
        selectors.push(RowSelector::select(last as usize));
        expected.extend(start + n - last..start + n);
        counts.push(n as usize);
        start += n;
    }
    let file = std::fs::File::open(path).unwrap();
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    // Every column is read, so every column's offset index is followed.
    let reader = builder
        .with_row_selection(RowSelection::from(selectors))
        .build()
        .unwrap();
    assert_eq!(
        ids_of(reader),
        expected,
        "ids read through the offset index"
    );
    counts
}

/// The `id` column (64-bit integers) of every batch `reader` yields, in order.
pub fn ids_of(reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader) -> Vec<i64> {
    use arrow::array::Int64Array;
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        ids.extend(col.values().iter());
    }
    ids
}

/// Puts 6 files of [`write_numbered_inputs`] (20,000 rows each, about 300 KB: a lone merge in
/// two parts when row groups are 64 KiB) into the cold partition of hour 3 with `put(key,
/// file)`, and returns the local files, in order.
pub fn put_inputs_for_parts(dir: &Path, put: impl Fn(&str, &Path)) -> Vec<PathBuf> {
    let inputs = write_numbered_inputs(dir, 6, 20_000);
    for input in &inputs {
        let name = input.file_name().unwrap().to_str().unwrap();
        put(&format!("{}{name}", cold(3)), input);
    }
    inputs
}

/// The `[merge]` settings under which [`put_inputs_for_parts`]'s files are merged in two parts.
pub const SETTINGS_FOR_PARTS: &str = "parallelism = 2\nrow_group_size = \"64KiB\"\n";

/// Asserts that `run` (logging at debug) merged a group of 6 files in two parts.
pub fn assert_merged_in_parts(run: &Run) {
    assert!(
        run.stderr().contains("merging in parts parts=2 files=6"),
        "{}",
        run.stderr()
    );
}

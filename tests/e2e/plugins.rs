//! Plugins: the hostile one is contained whatever it does, the rest of the run goes on;
//! `plugin check`; config and plugin mistakes exit 2 with a message naming the culprit.

use std::time::Instant;

use crate::util::*;

/// Modes of plugins/hostile and what the failure line must say.
const CONTAINED: &[(&str, &str)] = &[
    ("loop", "fuel limit"),
    ("loop-cold", "fuel limit"),
    ("memory", "memory limit"),
    ("trap", "trapped"),
    ("out-of-range", "invalid answer: group 0 names file index"),
    (
        "duplicate",
        "invalid answer: file index 0 appears more than once",
    ),
    ("empty-group", "invalid answer: group 0 has no files"),
    ("huge-target", "invalid answer: group 0 has target size"),
    ("recursion", "plan: trapped"),
    (
        "gigantic-groups",
        "invalid answer: group 0 names file index 2, but only 2 files were given",
    ),
];

#[test]
fn hostile_plugins_are_contained_and_the_run_goes_on() {
    let mut tables = String::from("[[tables]]\nname = \"events\"\nprefix = \"events/\"\n");
    for (mode, _) in CONTAINED.iter().chain(&[("escape", "")]) {
        tables += &format!(
            "[[tables]]\nname = \"{mode}\"\nprefix = \"t-{mode}/\"\nplugin = \"{}\"\n[tables.settings]\nmode = \"{mode}\"\n",
            hostile_plugin()
        );
    }
    let w = Warehouse::with_tables(&tables);
    let partition = |table: &str| format!("{table}/dt=2026-11-20/hour=01/");
    for table in ["events".to_string()].into_iter().chain(
        CONTAINED
            .iter()
            .chain(&[("escape", "")])
            .map(|(m, _)| format!("t-{m}")),
    ) {
        for i in 0..2 {
            w.put(
                &format!("{}part-{i}.parquet", partition(&table)),
                &corpus("alltypes_plain.parquet"),
            );
        }
    }
    let start = Instant::now();
    let run = w.run(&["once"]);
    let elapsed = start.elapsed();
    run.expect_code(1);
    let out = run.stdout();

    // The well-behaved table was compacted despite its neighbours.
    assert_eq!(w.outputs(&partition("events")).len(), 1, "{out}");
    for (mode, needle) in CONTAINED {
        let prefix = partition(&format!("t-{mode}"));
        let line = out
            .lines()
            .find(|l| l.contains("FAILED") && l.contains(&format!("t-{mode}/")))
            .unwrap_or_else(|| panic!("{mode}: no failure line:\n{out}"));
        assert!(line.contains("plugin hostile 0.0.1"), "{mode}: {line}");
        assert!(line.contains(needle), "{mode}: {needle:?} not in {line}");
        if *mode != "loop-cold" {
            assert_eq!(w.files(&prefix).len(), 2, "{mode}: inputs untouched");
        }
        assert!(w.outputs(&prefix).is_empty(), "{mode}");
    }
    // The sandbox: no file, no environment, no network.
    let escape = out
        .lines()
        .find(|l| l.contains("t-escape/") && l.contains("escape:"))
        .unwrap_or_else(|| panic!("no escape report:\n{out}"));
    assert!(escape.contains("file=Err"), "{escape}");
    assert!(escape.contains("env=[]"), "{escape}");
    assert!(escape.contains("net=Err"), "{escape}");
    // Loops and bombs are stopped, not waited on.
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
}

#[test]
fn a_plugin_refusing_its_settings_stops_the_run_before_anything_happens() {
    let w = Warehouse::with_tables(&format!(
        "[[tables]]\nname = \"t\"\nprefix = \"t/\"\nplugin = \"{}\"\n[tables.settings]\nmode = \"configure-error\"\n",
        hostile_plugin()
    ));
    let run = w.run(&["once"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("refused the settings"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("table \"t\""), "{}", run.stderr());
}

#[test]
fn default_plugin_rejects_unknown_settings_with_exit_2() {
    let w = Warehouse::new("target = \"1MiB\"");
    let run = w.run(&["once"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("unknown setting \"target\""),
        "{}",
        run.stderr()
    );
}

#[test]
fn config_mistakes_name_the_key_and_exit_2() {
    let w = Warehouse::with_tables("[[tables]]\nname = \"events\"\nprefx = \"events/\"\n");
    let run = w.run(&["once"]);
    run.expect_code(2);
    assert!(run.stderr().contains("prefx"), "{}", run.stderr());

    let w = Warehouse::with_tables(
        "[[tables]]\nname = \"events\"\nprefix = \"events/\"\nplugin = \"missing.wasm\"\n",
    );
    let run = w.run(&["plan"]);
    run.expect_code(2);
    assert!(run.stderr().contains("missing.wasm"), "{}", run.stderr());

    let w = Warehouse::new("");
    let run = w.run(&["--config", "/nonexistent/config.toml", "once"]);
    run.expect_code(2);

    // A mistyped local warehouse is refused, not made empty for a run with nothing to do;
    // `demo` alone makes it, to seed it.
    let w = Warehouse::new("");
    std::fs::remove_dir(&w.root).unwrap();
    for command in ["once", "plan"] {
        let run = w.run(&[command]);
        run.expect_code(2);
        assert!(
            run.stderr().contains("warehouse") && run.stderr().contains("No such file"),
            "{command}: {}",
            run.stderr()
        );
        assert!(!w.root.exists(), "{command} made the warehouse");
    }
    let run = w.run(&["demo"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("seeded 96 small files"),
        "{}",
        run.stdout()
    );
}

#[test]
fn plugin_check_reports_each_scenario() {
    let w = Warehouse::new("");
    let run = w.run(&["plugin", "check", "default"]);
    run.expect_code(0);
    let out = run.stdout();
    assert!(out.contains("plugin default"), "{out}");
    assert!(out.contains("compaction:policy@0.2.0"), "{out}");
    for scenario in [
        "hot hour",
        "many tiny files",
        "one huge file",
        "empty partition",
        "shuffled input",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(scenario))
            .unwrap_or_else(|| panic!("{scenario}: {out}"));
        assert!(line.contains("pass"), "{line}");
    }
    assert!(
        out.lines()
            .any(|l| l.contains("hot hour") && l.contains("hot (not listed)")),
        "{out}"
    );

    let json = w.run(&[
        "plugin",
        "check",
        hostile_plugin(),
        "--setting",
        "mode=loop",
        "--json",
    ]);
    json.expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(report["name"], "hostile");
    let failed: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["passed"] == false)
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"many tiny files"), "{report}");

    // Regression: a panicking plugin writes to its stderr; that must not take the host down.
    let trap = w.run(&[
        "plugin",
        "check",
        hostile_plugin(),
        "--setting",
        "mode=trap",
    ]);
    trap.expect_code(1);
    assert!(
        trap.stdout()
            .contains("trapped (the plugin panicked or aborted)"),
        "{}",
        trap.stdout()
    );
    assert!(
        trap.stdout().contains("hostile plugin panics on purpose"),
        "the plugin's own words: {}",
        trap.stdout()
    );
    assert!(
        !trap.stderr().contains("internal error"),
        "{}",
        trap.stderr()
    );

    // Files that are no component at all: said what they are and how to build one.
    let cases: &[(&[u8], &str)] = &[
        (
            b"definitely not wasm",
            "not a WebAssembly file: it starts with 64 65 66 69",
        ),
        (b"", "not a WebAssembly file: it is empty"),
        (
            b"\0asm\x01\0\0\0",
            "a core WebAssembly module, not a component",
        ),
        (
            b"\0asm\x0d\0\x01\0\x01\x02",
            "not a valid WebAssembly component",
        ),
    ];
    for (i, (bytes, said)) in cases.iter().enumerate() {
        let file = w.base.join(format!("not-{i}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        let run = w.run(&["plugin", "check", file.to_str().unwrap()]);
        run.expect_code(2);
        assert!(run.stderr().contains(said), "{said}: {}", run.stderr());
        assert_eq!(run.stderr().lines().count(), 1, "{}", run.stderr());
    }
}

/// Issue 6: how each misbehaviour is stopped, and how long that takes (`plugin check` times
/// every scenario). Limits per call: 2e9 instructions of fuel, 64 MiB of memory.
#[test]
fn each_misbehaviour_is_stopped_within_its_limits() {
    let w = Warehouse::new("");
    let cases: &[(&str, bool, &str)] = &[
        ("loop", false, "fuel limit"),
        ("memory", false, "memory limit"),
        ("recursion", false, "trapped"),
        ("trap", false, "trapped"),
        ("gigantic-groups", false, "invalid answer"),
        ("gigantic-reason", true, "bytes, cut"),
        ("slow", true, "compact 1 group"),
        ("escape", true, "net=Err"),
    ];
    let mut report = String::from("mode             slowest scenario\n");
    for &(mode, passes, needle) in cases {
        let setting = format!("mode={mode}");
        let run = w.run(&[
            "plugin",
            "check",
            hostile_plugin(),
            "--setting",
            &setting,
            "--json",
        ]);
        run.expect_code(if passes { 0 } else { 1 });
        let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let scenarios = json["scenarios"].as_array().unwrap();
        let detail: Vec<&str> = scenarios
            .iter()
            .map(|s| s["detail"].as_str().unwrap())
            .collect();
        assert!(
            detail.iter().any(|d| d.contains(needle)),
            "{mode}: {needle:?} not in {detail:#?}"
        );
        assert!(
            detail.iter().all(|d| d.len() < 2000),
            "{mode}: answers are cut for reports"
        );
        let slowest = scenarios
            .iter()
            .map(|s| s["millis"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(slowest < 15_000, "{mode}: a scenario took {slowest} ms");
        report += &format!("{mode:<16} {slowest:>6} ms\n");
    }
    eprintln!("{report}");
}

/// Issue 8: a table may pin its plugin file by SHA-256; another file is refused at start.
#[test]
fn a_pinned_plugin_with_another_digest_is_refused() {
    let default = std::fs::read(env!("COMPACTOR_DEFAULT_PLUGIN_WASM")).unwrap();
    let pin = compactor::policy::wasm::sha256_hex(&default);
    let tables = |pin: &str| {
        format!(
            "[[tables]]\nname = \"events\"\nprefix = \"events/\"\nplugin = \"policy.wasm\"\nplugin_sha256 = \"{pin}\"\n"
        )
    };
    let w = Warehouse::with_tables(&tables(&pin));
    std::fs::write(w.base.join("policy.wasm"), &default).unwrap();
    for i in 0..2 {
        w.put(
            &format!("{}part-{i}.parquet", cold(1)),
            &corpus("alltypes_plain.parquet"),
        );
    }
    w.run(&["plan"]).expect_code(0);

    // The same pin, another file: refused before anything happens.
    std::fs::copy(hostile_plugin(), w.base.join("policy.wasm")).unwrap();
    let run = w.run(&["once"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("plugin_sha256 pins"),
        "{}",
        run.stderr()
    );
    assert_eq!(w.files(&cold(1)).len(), 2, "nothing done");
}

/// Issue 8: `plan --plugin FILE` shows what another policy would do to the real bucket,
/// writing nothing.
#[test]
fn plan_with_another_plugin_previews_it() {
    let w = Warehouse::new("");
    for i in 0..3 {
        w.put(
            &format!("{HOT}part-{i}.parquet"),
            &corpus("alltypes_plain.parquet"),
        );
    }
    let configured = w.run(&["plan"]);
    configured.expect_code(0);
    assert!(
        configured.stdout().contains(&format!("{HOT}: hot")),
        "{}",
        configured.stdout()
    );
    // The hostile plugin with no mode merges everything, the hot hour included.
    let preview = w.run(&["plan", "--plugin", hostile_plugin()]);
    preview.expect_code(0);
    let out = preview.stdout();
    assert!(out.contains("plugin hostile 0.0.1"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(HOT) && l.contains("compact 1 group")),
        "{out}"
    );
    assert_eq!(w.files(HOT).len(), 3, "a plan writes nothing");
    let bad = w.run(&["plan", "--plugin", "default", "--table", "nope"]);
    bad.expect_code(2);
    assert!(bad.stderr().contains("no such table"), "{}", bad.stderr());
}

/// Issue 8: `plugin check` reports what each scenario used of the limits.
#[test]
fn plugin_check_reports_fuel_and_memory() {
    let w = Warehouse::new("");
    let run = w.run(&["plugin", "check", "default", "--json"]);
    run.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    for s in report["scenarios"].as_array().unwrap() {
        assert!(s["fuel"].as_u64().unwrap() > 0, "{s}");
        let memory = s["memory_bytes"].as_u64().unwrap();
        assert!(memory > 0 && memory <= 64 << 20, "{s}");
    }
    let text = w.run(&["plugin", "check", "default"]);
    assert!(
        text.stdout().contains("limits per call: 2000000000 fuel"),
        "{}",
        text.stdout()
    );
    assert!(text.stdout().contains("M fuel"), "{}", text.stdout());
}

/// Issue 8: the size-tiered example policy, built as a real component, passes `plugin check`
/// and compacts a table tier by tier, every row kept.
#[test]
fn the_size_tiered_example_passes_its_checks_and_compacts_by_tier() {
    let plugin = env!("COMPACTOR_SIZE_TIERED_PLUGIN_WASM");
    let w = Warehouse::with_tables(&format!(
        "[[tables]]\nname = \"events\"\nprefix = \"events/\"\nplugin = \"{plugin}\"\n\
         [tables.settings]\ntarget_size = \"64KiB\"\ntier_ratio = \"4\"\nmin_files = \"4\"\n"
    ));
    let check = w.run(&["plugin", "check", plugin]);
    check.expect_code(0);
    assert!(
        check.stdout().contains("plugin size-tiered"),
        "{}",
        check.stdout()
    );

    let small = corpus("alltypes_plain.parquet");
    for i in 0..8 {
        w.put(&format!("{}part-{i}.parquet", cold(1)), &small);
    }
    // Three files: below min_files in their tier, left alone.
    for i in 0..3 {
        w.put(&format!("{}part-{i}.parquet", cold(2)), &small);
    }
    let run = w.run(&["once"]);
    run.expect_code(0);
    assert!(run.stdout().contains("1 too_few_files"), "{}", run.stdout());
    let outputs = w.outputs(&cold(1));
    assert!(!outputs.is_empty() && outputs.len() < 8, "{outputs:?}");
    assert_eq!(
        w.files(&cold(1)),
        outputs,
        "all eight small files were merged"
    );
    let rows: i64 = outputs.iter().map(|k| rows_in(&w.path(k))).sum();
    assert_eq!(rows, 8 * rows_in(&small));
    assert_eq!(w.files(&cold(2)).len(), 3);
}

/// Issue 8, versioning: the default policy exactly as it was built against contract 0.1.0
/// (kept byte for byte in tests/fixtures) loads and compacts beside a 0.2.0 plugin.
#[test]
fn a_plugin_built_for_contract_0_1_0_still_runs() {
    let old = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/default-policy-wit-0.1.0.wasm");
    let w = Warehouse::with_tables(&format!(
        "[[tables]]\nname = \"old\"\nprefix = \"old/\"\nplugin = \"{}\"\n\
         [[tables]]\nname = \"new\"\nprefix = \"new/\"\n",
        old.display()
    ));
    for table in ["old", "new"] {
        for i in 0..3 {
            let key = format!("{table}/dt=2026-11-20/hour=01/part-{i}.parquet");
            w.put(&key, &corpus("alltypes_plain.parquet"));
        }
    }
    let plan = w.run(&["plan"]);
    plan.expect_code(0);
    let out = plan.stdout();
    assert!(
        out.contains("table old (plugin default 0.1.0, compaction:policy@0.1.0"),
        "{out}"
    );
    assert!(
        out.contains("table new (plugin default 0.1.0, compaction:policy@0.2.0"),
        "{out}"
    );
    w.run(&["once"]).expect_code(0);
    for table in ["old", "new"] {
        let prefix = format!("{table}/dt=2026-11-20/hour=01/");
        let outputs = w.outputs(&prefix);
        assert_eq!(
            w.files(&prefix),
            outputs,
            "{table}: only the merged file is left"
        );
        assert_eq!(
            rows_in(&w.path(&outputs[0])),
            3 * rows_in(&corpus("alltypes_plain.parquet"))
        );
    }
}

/// Contract 0.2.0: a group's compression is what its output is written with; without one,
/// the host's `[merge] compression` (zstd) applies. Per-table settings on one plugin: the
/// tables differ in codec, and a third in target size (1 KiB: its files are already large).
#[test]
fn a_policy_chooses_the_output_compression() {
    let w = Warehouse::with_tables(
        "[[tables]]\nname = \"fast\"\nprefix = \"fast/\"\n[tables.settings]\ncompression = \"snappy\"\n\
         [[tables]]\nname = \"plain\"\nprefix = \"plain/\"\n\
         [[tables]]\nname = \"tiny\"\nprefix = \"tiny/\"\n[tables.settings]\ntarget_size = \"1KiB\"\n",
    );
    for table in ["fast", "plain", "tiny"] {
        for i in 0..2 {
            w.put(
                &format!("{table}/dt=2026-11-20/hour=01/part-{i}.parquet"),
                &corpus("alltypes_plain.parquet"),
            );
        }
    }
    let plan = w.run(&["plan"]);
    assert!(
        plan.stdout().contains("compression snappy"),
        "{}",
        plan.stdout()
    );
    assert!(
        plan.stdout().contains(
            "tiny/dt=2026-11-20/hour=01/: 2 files, 3.6 KiB: skip (too few files: 0 below the target size"
        ),
        "{}",
        plan.stdout()
    );
    w.run(&["once"]).expect_code(0);
    assert!(w.outputs("tiny/dt=2026-11-20/hour=01/").is_empty());
    let codecs = |table: &str| -> Vec<String> {
        let output = w
            .outputs(&format!("{table}/dt=2026-11-20/hour=01/"))
            .remove(0);
        let md = footer(&w.path(&output));
        let rg = md.row_group(0);
        let mut codecs: Vec<String> = rg
            .columns()
            .iter()
            .map(|c| format!("{:?}", c.compression()))
            .collect();
        codecs.dedup();
        codecs
    };
    assert_eq!(codecs("fast"), ["SNAPPY"]);
    // (Parquet does not record the zstd level, so the reader cannot tell it.)
    let plain = codecs("plain");
    assert!(
        plain.len() == 1 && plain[0].starts_with("ZSTD"),
        "{plain:?}"
    );
}

/// Issue 8, authoring: `plugin new` makes a crate that passes its own native tests, builds to a
/// component and passes `plugin check`, with nothing edited. (Its build shares a target
/// directory under target/, so only the first run pays for compiling wit-bindgen.)
#[test]
fn a_new_plugin_from_the_template_builds_and_passes_plugin_check() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("night-owl");
    let made = run_compactor(
        &repo.join("config.toml"),
        &[
            "plugin",
            "new",
            "night-owl",
            "--dir",
            crate_dir.to_str().unwrap(),
        ],
        &[],
    );
    made.expect_code(0);
    assert!(
        made.stdout()
            .contains("cargo build --release --target wasm32-wasip2")
    );
    // The repository's lock file: the same dependency versions as the plugins built here.
    std::fs::copy(repo.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let target = repo.join("target/plugin-new");
    let cargo = |args: &[&str]| {
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cmd.current_dir(&crate_dir)
            .args(args)
            .env("CARGO_TARGET_DIR", &target);
        for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tests = cargo(&["test"]);
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/night_owl.wasm");
    let check = run_compactor(
        &repo.join("config.toml"),
        &["plugin", "check", wasm.to_str().unwrap()],
        &[],
    );
    check.expect_code(0);
    let out = check.stdout();
    assert!(
        out.contains("plugin night-owl 0.1.0 (compaction:policy@0.2.0)"),
        "{out}"
    );
    assert_eq!(out.matches("  pass  ").count(), 5, "{out}");
}

/// Example policy: daily roll-up. A finished day is rolled up with zstd(9); today is left
/// until it has more than `intraday_max_files` small files.
#[test]
fn the_daily_rollup_example_rolls_up_finished_days() {
    let w = Warehouse::with_tables(&format!(
        "[[tables]]\nname = \"daily\"\nprefix = \"daily/\"\nplugin = \"{}\"\n\
         [tables.settings]\nintraday_max_files = \"3\"\n",
        env!("COMPACTOR_DAILY_ROLLUP_PLUGIN_WASM")
    ));
    let put = |day: &str, n: usize| {
        for i in 0..n {
            w.put(
                &format!("daily/dt={day}/part-{i}.parquet"),
                &corpus("alltypes_plain.parquet"),
            );
        }
    };
    put("2026-11-19", 4);
    put("2026-11-20", 3);
    let plan = w.run(&["plan"]);
    plan.expect_code(0);
    let out = plan.stdout();
    assert!(out.contains("daily/dt=2026-11-19/: 4 files"), "{out}");
    assert!(out.contains("compression zstd(9)"), "{out}");
    assert!(out.contains("day still open: 3 small files"), "{out}");

    w.run(&["once"]).expect_code(0);
    let rows = rows_in(&corpus("alltypes_plain.parquet"));
    let yesterday = w.outputs("daily/dt=2026-11-19/");
    assert_eq!(w.files("daily/dt=2026-11-19/"), yesterday);
    assert_eq!(rows_in(&w.path(&yesterday[0])), 4 * rows);
    assert_eq!(
        w.files("daily/dt=2026-11-20/").len(),
        3,
        "today is left alone"
    );

    // A fourth file today crosses intraday_max_files: merged now.
    w.put(
        "daily/dt=2026-11-20/part-3.parquet",
        &corpus("alltypes_plain.parquet"),
    );
    w.run(&["once"]).expect_code(0);
    let today = w.outputs("daily/dt=2026-11-20/");
    assert_eq!(w.files("daily/dt=2026-11-20/"), today);
    assert_eq!(rows_in(&w.path(&today[0])), 4 * rows);
}

/// Issue 8, a second language: the quiet-hours policy written in Python. Its logic passes its
/// own unit tests in plain Python; componentize-py builds it into a 0.2.0 component, which
/// passes `plugin check` and compacts only inside its time window.
#[test]
fn a_python_plugin_compacts_only_in_its_quiet_hours() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = repo.join("plugins/quiet-hours-py");
    let unit = std::process::Command::new(python())
        .current_dir(&source)
        .args(["-m", "unittest", "-q", "test_policy"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&unit.stderr);
    assert!(
        unit.status.success() && said.contains("Ran 6 tests"),
        "{said}"
    );

    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("quiet-hours.wasm");
    let componentize = std::env::var_os("COMPACTOR_TEST_COMPONENTIZE_PY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join("target/pyenv/bin/componentize-py"));
    let built = std::process::Command::new(&componentize)
        .current_dir(&source)
        .arg("-d")
        .arg(repo.join("wit/since_v0.2.0"))
        .args(["-w", "plugin", "componentize", "app", "-o"])
        .arg(&wasm)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} ({e}): run scripts/test, which installs it",
                componentize.display()
            )
        });
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let cache = dir.path().join("cache");
    let env = [("COMPACTOR_PLUGIN_CACHE", cache.to_str().unwrap())];
    let wasm = wasm.to_str().unwrap();
    let check = run_compactor(
        &repo.join("config.toml"),
        &["plugin", "check", wasm, "--setting", "window=00:00-24:00"],
        &env,
    );
    check.expect_code(0);
    let out = check.stdout();
    assert!(
        out.contains("plugin quiet-hours 0.1.0 (compaction:policy@0.2.0)"),
        "{out}"
    );
    assert!(
        out.contains("many tiny files") && out.contains("compact 1 group(s): 5000 files"),
        "{out}"
    );
    assert!(
        std::fs::read_dir(&cache).unwrap().next().is_some(),
        "compiled once, cached"
    );
    let refused = run_compactor(
        &repo.join("config.toml"),
        &["plugin", "check", wasm, "--setting", "window=late"],
        &env,
    );
    refused.expect_code(2);
    assert!(
        refused.stderr().contains("setting window = 'late'"),
        "{}",
        refused.stderr()
    );

    // The tests' now is 05:10 UTC: outside 01:00-05:00 nothing is touched, inside 05:00-06:00
    // the finished hours are merged.
    let tables = |window: &str| {
        format!(
            "[[tables]]\nname = \"events\"\nprefix = \"events/\"\nplugin = \"{wasm}\"\n\
             [tables.settings]\nwindow = \"{window}\"\n"
        )
    };
    let w = Warehouse::with_tables(&tables("01:00-05:00"));
    for i in 0..3 {
        w.put(
            &format!("{}part-{i}.parquet", cold(2)),
            &corpus("alltypes_plain.parquet"),
        );
    }
    w.run_with_env(&["once"], &env).expect_code(0);
    assert_eq!(w.files(&cold(2)).len(), 3, "outside the window: untouched");
    assert!(w.outputs(&cold(2)).is_empty());
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, config.replace("01:00-05:00", "05:00-06:00")).unwrap();
    w.run_with_env(&["once"], &env).expect_code(0);
    let outputs = w.outputs(&cold(2));
    assert_eq!(w.files(&cold(2)), outputs, "inside the window: merged");
    assert_eq!(
        rows_in(&w.path(&outputs[0])),
        3 * rows_in(&corpus("alltypes_plain.parquet"))
    );
}

/// With `[merge] mode = "concat"`, a group whose policy chose a compression is still written
/// with it: chunks are copied as they are only when they already have that codec.
#[test]
fn concat_mode_gives_way_to_a_policy_chosen_compression() {
    let w = Warehouse::with_tables(
        "mode = \"concat\"\n\
         [[tables]]\nname = \"fast\"\nprefix = \"fast/\"\n[tables.settings]\ncompression = \"snappy\"\n\
         [[tables]]\nname = \"plain\"\nprefix = \"plain/\"\n",
    );
    for table in ["fast", "plain"] {
        for i in 0..3 {
            w.put(
                &format!("{table}/dt=2026-11-20/hour=01/part-{i}.parquet"),
                &corpus("alltypes_plain.parquet"),
            );
        }
    }
    w.run(&["once"]).expect_code(0);
    let layout = |table: &str| {
        let output = w
            .outputs(&format!("{table}/dt=2026-11-20/hour=01/"))
            .remove(0);
        let md = footer(&w.path(&output));
        (
            md.num_row_groups(),
            format!("{:?}", md.row_group(0).column(0).compression()),
        )
    };
    // The inputs are uncompressed, one row group each.
    assert_eq!(
        layout("fast"),
        (1, "SNAPPY".to_string()),
        "rewritten as asked"
    );
    assert_eq!(
        layout("plain"),
        (3, "UNCOMPRESSED".to_string()),
        "copied as they are"
    );
}

//! `compactor daemon` as a real process (issue 5): metrics that move after a run, `POST /run`,
//! SIGTERM in the middle of a merge, plugin files swapped under it, SIGHUP config reloads,
//! runs that outlast the interval; and `once --metrics-file`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

fn small() -> PathBuf {
    corpus("alltypes_plain.parquet")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to `secs` for `cond`, panicking with `what` (and the daemon's log) otherwise.
fn wait_for(d: &Daemon, secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}; daemon log:\n{}", d.log());
}

struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    /// Starts `compactor daemon` on `w` with these `[daemon]` lines (metrics_addr added).
    fn start(w: &Warehouse, daemon: &str, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let mut config = std::fs::read_to_string(&w.config).unwrap();
        config.push_str(&format!(
            "\n[daemon]\nmetrics_addr = \"127.0.0.1:{port}\"\n{daemon}\n"
        ));
        std::fs::write(&w.config, config).unwrap();
        let log = w.base.join(format!("daemon-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_compactor"));
        cmd.arg("--config")
            .arg(&w.config)
            .args(["--now", NOW, "daemon"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let d = Daemon {
            child: cmd.spawn().unwrap(),
            port,
            log,
        };
        wait_for(&d, 60, "/healthz", || {
            d.request("GET", "/healthz").is_some_and(|(s, _)| s == 200)
        });
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP/1.1 request; `None` when nothing listens (yet).
    fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path).expect("daemon answers")
    }

    /// The value of one series, e.g. `compactor_runs_total{outcome="success"}`; 0 if absent.
    fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    fn runs(&self, outcome: &str) -> f64 {
        self.metric(&format!("compactor_runs_total{{outcome=\"{outcome}\"}}"))
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Waits for the process to exit; returns its code and how long that took.
    fn wait_exit(&mut self, secs: u64) -> (i32, Duration) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not exit; log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn total_rows(w: &Warehouse, prefix: &str) -> i64 {
    w.files(prefix).iter().map(|k| rows_in(&w.path(k))).sum()
}

fn put_n(w: &Warehouse, prefix: &str, from: usize, n: usize) {
    for i in from..from + n {
        w.put(&format!("{prefix}part-{i}.parquet"), &small());
    }
}

#[test]
fn metrics_move_after_a_run_and_post_run_triggers_one() {
    let w = Warehouse::new("");
    put_n(&w, &cold(1), 0, 3);
    put_n(&w, HOT, 0, 3);
    let per_file = rows_in(&small());
    let mut d = Daemon::start(&w, "interval = \"1h\"", &[]);

    wait_for(&d, 60, "the run at start", || d.runs("success") == 1.0);
    assert_eq!(d.metric("compactor_files_compacted_total"), 3.0);
    assert_eq!(d.metric("compactor_files_written_total"), 1.0);
    assert_eq!(
        d.metric("compactor_partitions_skipped_total{reason=\"hot\"}"),
        1.0
    );
    assert_eq!(d.metric("compactor_partitions_compacted_total"), 1.0);
    assert!(d.metric("compactor_read_bytes_total") > 0.0);
    assert!(d.metric("compactor_last_success_timestamp_seconds") > 1.7e9);
    assert_eq!(d.metric("compactor_run_duration_seconds_count"), 1.0);
    assert!(
        d.metric(
            "compactor_plugin_call_duration_seconds_count{plugin=\"default\",function=\"plan\"}"
        ) >= 1.0
    );
    let (_, text) = d.get("/metrics");
    assert!(
        text.contains("compactor_plugin{table=\"events\",plugin=\"default\",version=\"0.1.0\""),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text");
    assert_eq!(w.outputs(&cold(1)).len(), 1);
    assert_eq!(w.files(HOT).len(), 3, "the hot hour is left alone");

    let (status, body) = d.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("reachable"), "{body}");

    put_n(&w, &cold(2), 0, 4);
    let (status, _) = d.request("POST", "/run").unwrap();
    assert_eq!(status, 202);
    wait_for(&d, 60, "the requested run", || d.runs("success") == 2.0);
    assert_eq!(d.metric("compactor_files_compacted_total"), 7.0);
    assert_eq!(w.files(&cold(2)), w.outputs(&cold(2)));
    assert_eq!(total_rows(&w, &cold(2)), 4 * per_file);

    d.signal("TERM");
    let (code, _) = d.wait_exit(30);
    assert_eq!(code, 0, "{}", d.log());
    assert!(d.log().contains("stopped cleanly"), "{}", d.log());
}

#[test]
fn sigterm_during_a_merge_abandons_it_cleanly_and_the_next_run_finishes_it() {
    sigterm_during_a_merge_abandons_it("parallelism = 1", false);
}

/// The same with the lone merge in two parts (tiny row groups make the 9 KB of input worth
/// cutting): both parts stop, and neither part's file nor a stitched one is left behind.
#[test]
fn sigterm_during_a_merge_in_parts_abandons_every_part() {
    sigterm_during_a_merge_abandons_it("parallelism = 2\nrow_group_size = \"1KiB\"", true);
}

fn sigterm_during_a_merge_abandons_it(merge_settings: &str, in_parts: bool) {
    let w = Warehouse::new("");
    w.add_merge_settings(merge_settings);
    put_n(&w, &cold(1), 0, 5);
    let per_file = rows_in(&small());
    let before = w.files(&cold(1));
    // Each input takes 3 s to arrive: the merge is in flight for 15 s.
    let mut d = Daemon::start(
        &w,
        "shutdown_grace = \"1s\"",
        &[
            ("COMPACTOR_TEST_SLOW_FETCH_MS", "3000"),
            ("RUST_LOG", "compactor=debug"),
        ],
    );
    let work = w.base.join("work");
    let spooled = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|e| e.flatten().count())
            .unwrap_or(0)
    };
    wait_for(&d, 60, "a merge in flight", || spooled(&work) > 0);
    assert_eq!(
        d.log().contains("merging in parts parts=2"),
        in_parts,
        "{}",
        d.log()
    );
    d.signal("TERM");
    let (code, took) = d.wait_exit(30);
    assert_eq!(code, 0, "{}", d.log());
    assert!(
        took < Duration::from_secs(8),
        "abandoned after the 1s grace, took {took:?}"
    );
    assert!(d.log().contains("abandon"), "{}", d.log());
    assert_eq!(
        w.files(&cold(1)),
        before,
        "no input deleted, no output written"
    );
    assert_eq!(spooled(&work), 0, "the temporary merged file is gone");

    // The next run does the work: every row exactly once.
    w.run(&["once"]).expect_code(0);
    assert_eq!(w.files(&cold(1)), w.outputs(&cold(1)));
    assert_eq!(w.outputs(&cold(1)).len(), 1);
    assert_eq!(total_rows(&w, &cold(1)), 5 * per_file);
    assert_same_rows(&w.path(&w.outputs(&cold(1))[0]), &vec![small(); 5]);
}

#[test]
fn sigterm_within_the_grace_period_lets_the_merge_finish() {
    let w = Warehouse::new("");
    put_n(&w, &cold(1), 0, 3);
    let mut d = Daemon::start(
        &w,
        "shutdown_grace = \"60s\"",
        &[("COMPACTOR_TEST_SLOW_FETCH_MS", "1000")],
    );
    let work = w.base.join("work");
    wait_for(&d, 60, "a merge in flight", || {
        std::fs::read_dir(&work).is_ok_and(|mut e| e.next().is_some())
    });
    d.signal("TERM");
    let (code, _) = d.wait_exit(60);
    assert_eq!(code, 0, "{}", d.log());
    assert_eq!(w.outputs(&cold(1)).len(), 1, "{}", d.log());
    assert_eq!(w.files(&cold(1)), w.outputs(&cold(1)), "inputs deleted");
    assert_same_rows(&w.path(&w.outputs(&cold(1))[0]), &vec![small(); 3]);
}

fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_swapped_plugin_file_is_checked_then_used_and_a_broken_one_is_refused() {
    let w = Warehouse::with_tables(
        "[[tables]]\nname = \"events\"\nprefix = \"events/\"\nplugin = \"policy.wasm\"\n",
    );
    let policy = w.base.join("policy.wasm");
    std::fs::copy(env!("COMPACTOR_DEFAULT_PLUGIN_WASM"), &policy).unwrap();
    put_n(&w, HOT, 0, 3);
    put_n(&w, &cold(1), 0, 3);
    let per_file = rows_in(&small());
    let d = Daemon::start(&w, "", &[]);
    wait_for(&d, 60, "the first run", || d.runs("success") == 1.0);
    assert_eq!(w.files(HOT).len(), 3, "default policy: the hot hour stays");
    assert_eq!(w.outputs(&cold(1)).len(), 1);

    // The hostile plugin with no mode merges everything, the hot hour included.
    replace_file(&policy, &std::fs::read(hostile_plugin()).unwrap());
    d.request("POST", "/run").unwrap();
    wait_for(&d, 60, "a run with the new plugin", || {
        d.runs("success") == 2.0
    });
    assert_eq!(
        w.files(HOT),
        w.outputs(HOT),
        "new behaviour: hot hour merged"
    );
    assert_eq!(total_rows(&w, HOT), 3 * per_file);
    let (_, text) = d.get("/metrics");
    assert!(text.contains("plugin=\"hostile\""), "{text}");
    assert!(
        !text.contains("table=\"events\",plugin=\"default\""),
        "{text}"
    );

    // A broken file is refused; the hostile plugin keeps running.
    replace_file(&policy, b"\0asm but not really");
    put_n(&w, HOT, 10, 2);
    d.request("POST", "/run").unwrap();
    wait_for(&d, 60, "a run after the broken swap", || {
        d.runs("success") == 3.0
    });
    assert_eq!(
        d.metric("compactor_plugin_reload_failures_total{table=\"events\"}"),
        1.0
    );
    assert_eq!(w.files(HOT), w.outputs(HOT), "old behaviour continues");
    assert_eq!(total_rows(&w, HOT), 5 * per_file);
    assert!(d.log().contains("changed plugin refused"), "{}", d.log());

    // Not tried again while the file stays the same.
    d.request("POST", "/run").unwrap();
    wait_for(&d, 60, "another run", || d.runs("success") == 4.0);
    assert_eq!(
        d.metric("compactor_plugin_reload_failures_total{table=\"events\"}"),
        1.0
    );
}

#[test]
fn sighup_reloads_the_config_and_a_bad_one_keeps_the_old() {
    let w = Warehouse::new("min_files = 5");
    put_n(&w, &cold(1), 0, 3);
    let d = Daemon::start(&w, "", &[]);
    wait_for(&d, 60, "the first run", || d.runs("success") == 1.0);
    assert_eq!(
        d.metric("compactor_partitions_skipped_total{reason=\"too_few_files\"}"),
        1.0
    );
    assert_eq!(w.outputs(&cold(1)).len(), 0);

    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, config.replace("min_files = 5", "min_files = 2")).unwrap();
    d.signal("HUP");
    wait_for(&d, 60, "a run after SIGHUP", || d.runs("success") == 2.0);
    assert_eq!(w.files(&cold(1)), w.outputs(&cold(1)), "{}", d.log());
    assert!(d.log().contains("config reloaded"), "{}", d.log());

    std::fs::write(&w.config, "[store\nurl = ").unwrap();
    put_n(&w, &cold(2), 0, 2);
    d.signal("HUP");
    wait_for(&d, 60, "a run after a bad SIGHUP", || {
        d.runs("success") == 3.0
    });
    assert_eq!(d.metric("compactor_config_reload_failures_total"), 1.0);
    assert_eq!(
        w.files(&cold(2)),
        w.outputs(&cold(2)),
        "the old config runs on"
    );
    assert!(d.log().contains("config reload refused"), "{}", d.log());
}

#[test]
fn a_run_longer_than_the_interval_delays_the_next_and_is_counted() {
    let w = Warehouse::new("");
    put_n(&w, &cold(1), 0, 3);
    let mut d = Daemon::start(
        &w,
        "interval = \"1s\"",
        &[("COMPACTOR_TEST_SLOW_FETCH_MS", "800")],
    );
    wait_for(&d, 60, "a delayed run", || {
        d.metric("compactor_runs_delayed_total") >= 1.0
    });
    // Runs never overlap: the slow one completed, later ones found nothing to do.
    wait_for(&d, 60, "a second run", || d.runs("success") >= 2.0);
    assert_eq!(w.outputs(&cold(1)).len(), 1);
    assert_eq!(w.files(&cold(1)), w.outputs(&cold(1)));
    d.signal("INT");
    assert_eq!(d.wait_exit(30).0, 0);
}

#[test]
fn once_writes_a_metrics_file_for_the_textfile_collector() {
    let w = Warehouse::new("");
    put_n(&w, &cold(1), 0, 3);
    let file = w.base.join("metrics/compactor.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    w.run(&["once", "--metrics-file", file.to_str().unwrap()])
        .expect_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    for line in [
        "compactor_runs_total{outcome=\"success\"} 1",
        "compactor_files_compacted_total 3",
        "compactor_partitions_compacted_total 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}

#[test]
fn a_busy_metrics_port_is_a_usage_error() {
    let w = Warehouse::new("");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        format!("{config}\n[daemon]\nmetrics_addr = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let run = w.run(&["daemon"]);
    run.expect_code(2);
    assert!(run.stderr().contains("metrics_addr"), "{}", run.stderr());
}

#[test]
fn readyz_says_503_while_the_store_is_unreachable() {
    let w = Warehouse::new("");
    // An S3 endpoint where nothing listens: the daemon starts, but is not ready.
    let port = free_port();
    let config = std::fs::read_to_string(&w.config).unwrap().replace(
        "url = \"file://./warehouse\"",
        &format!(
            "url = \"s3://bucket\"\nendpoint = \"http://127.0.0.1:{port}\"\npath_style = true\n\
             region = \"us-east-1\"\nmax_attempts = 1"
        ),
    );
    std::fs::write(&w.config, config).unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut d = Daemon::start(&w, "run_at_start = false", &env);
    let (status, body) = d.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store unreachable"), "{body}");
    assert_eq!(d.get("/healthz").0, 200, "alive all the same");
    d.signal("TERM");
    assert_eq!(d.wait_exit(30).0, 0);
}

#[test]
fn json_logs_name_the_partition_and_the_file() {
    let w = Warehouse::new("");
    put_n(&w, &cold(1), 0, 2);
    put_n(&w, &cold(2), 0, 2);
    std::fs::write(
        w.path(&format!("{}part-9.parquet", cold(2))),
        b"not parquet",
    )
    .unwrap();
    let run = w.run(&["--log-format", "json", "once"]);
    run.expect_code(1);
    let lines: Vec<serde_json::Value> = run
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let merged = lines
        .iter()
        .find(|l| l["fields"]["message"] == "merged")
        .expect("a merged line");
    assert_eq!(merged["span"]["partition"], cold(1), "{merged}");
    assert_eq!(merged["span"]["table"], "events", "{merged}");
    let error = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .expect("an error line");
    assert_eq!(error["span"]["partition"], cold(2), "{error}");
    assert!(
        error["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("part-9.parquet"),
        "{error}"
    );
}

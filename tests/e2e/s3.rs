//! The same compaction on S3: a real S3-compatible server on 127.0.0.1 per test (moto, or
//! s3s-fs), the real binary with credentials from the environment (the standard AWS chain),
//! outputs read back by pyarrow's own S3 client. Faults are met on the wire: the binary talks
//! to the server through a [`FaultProxy`].

use std::path::{Path, PathBuf};

use compactor::store::fault_proxy::{Fault, FaultProxy, Rule};
use compactor::store::s3::READS_AT_ONCE;
use compactor::store::test_server::{TEST_ACCESS_KEY, TEST_SECRET_KEY, TestS3Server};
use compactor::store::{S3Store, Store};
use futures::StreamExt;
use serde_json::Value;

use crate::util::*;

const BUCKET: &str = "lake";
/// Everything lives under this key prefix of the bucket, as in `s3://lake/warehouse/`.
const ROOT: &str = "warehouse/";

struct S3Warehouse {
    server: TestS3Server,
    /// Between the binary and the server when the test injects faults.
    proxy: Option<FaultProxy>,
    rt: tokio::runtime::Runtime,
    /// Talks to the server directly, never through the proxy.
    store: S3Store,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl S3Warehouse {
    /// On moto, the most complete S3 API.
    fn new() -> S3Warehouse {
        S3Warehouse::on(TestS3Server::moto().unwrap(), false)
    }

    /// On s3s-fs, which checks signatures and checksums.
    fn on_s3s_fs() -> S3Warehouse {
        S3Warehouse::on(TestS3Server::s3s_fs().unwrap(), false)
    }

    /// On moto, the binary talking to it through a [`FaultProxy`].
    fn behind_proxy() -> S3Warehouse {
        S3Warehouse::on(TestS3Server::moto().unwrap(), true)
    }

    fn on(server: TestS3Server, with_proxy: bool) -> S3Warehouse {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt.block_on(server.bucket(BUCKET, ROOT)).unwrap();
        let proxy = with_proxy.then(|| FaultProxy::start(&server.endpoint).unwrap());
        let endpoint = proxy.as_ref().map_or(&server.endpoint, |p| &p.endpoint);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[store]
url = "s3://{BUCKET}/{ROOT}"
region = "us-east-1"
endpoint = "{endpoint}"
path_style = true
retry_backoff = "50ms"
[merge]
work_dir = "work"
[[tables]]
name = "events"
prefix = "events/"
"#
            ),
        )
        .unwrap();
        S3Warehouse {
            server,
            proxy,
            rt,
            store,
            _dir: dir,
            config,
        }
    }

    /// More `[store]` lines for the config.
    fn add_store_settings(&self, lines: &str) {
        self.add_lines_after("path_style = true\n", lines);
    }

    /// More `[merge]` lines for the config.
    fn add_merge_settings(&self, lines: &str) {
        self.add_lines_after("work_dir = \"work\"\n", lines);
    }

    /// `lines` into the config, after the line `anchor`.
    fn add_lines_after(&self, anchor: &str, lines: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen(anchor, &format!("{anchor}{lines}"), 1);
        std::fs::write(&self.config, text).unwrap();
    }

    fn proxy(&self) -> &FaultProxy {
        self.proxy.as_ref().expect("a warehouse behind the proxy")
    }

    fn put(&self, key: &str, src: &Path) {
        self.rt.block_on(self.store.put_file(key, src)).unwrap();
    }

    fn files(&self, prefix: &str) -> Vec<String> {
        let listing = self.rt.block_on(self.store.list(prefix)).unwrap();
        listing.objects.into_iter().map(|o| o.key).collect()
    }

    fn outputs(&self, prefix: &str) -> Vec<String> {
        self.files(prefix)
            .into_iter()
            .filter(|k| k.contains("/compacted-"))
            .collect()
    }

    /// The merged files under `prefix`, asserting that nothing else is left there (`context`
    /// goes with a failure).
    fn only_merged(&self, prefix: &str, context: &str) -> Vec<String> {
        let outputs = self.outputs(prefix);
        assert_eq!(self.files(prefix), outputs, "{context}");
        outputs
    }

    /// Credentials as a deployment would pass them: the environment. Nothing from the
    /// machine's own AWS config may leak in.
    fn env<'a>(&self, secret: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
        ]
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut env = self.env(TEST_SECRET_KEY);
        env.extend_from_slice(extra);
        run_compactor(&self.config, args, &env)
    }

    /// pyarrow, through its own S3 client, compares the output with the local inputs.
    fn assert_same_rows(&self, key: &str, inputs: &[PathBuf]) -> Value {
        let url = format!("s3://{BUCKET}/{ROOT}{key}");
        let report = pyarrow_check_with_env(
            std::ffi::OsStr::new(&url),
            inputs,
            &[
                ("COMPACTOR_S3_ENDPOINT", self.server.endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY.into()),
                ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY.into()),
            ],
        );
        assert_eq!(report["equal"], true, "{url}: {report}");
        report
    }
}

#[test]
fn compacts_cold_partitions_on_moto_and_leaves_the_hot_hour() {
    compacts_cold_partitions_and_leaves_the_hot_hour(S3Warehouse::new());
}

#[test]
fn compacts_cold_partitions_on_s3s_fs_and_leaves_the_hot_hour() {
    compacts_cold_partitions_and_leaves_the_hot_hour(S3Warehouse::on_s3s_fs());
}

fn compacts_cold_partitions_and_leaves_the_hot_hour(w: S3Warehouse) {
    let inputs = [
        corpus("alltypes_plain.parquet"),
        corpus("alltypes_dictionary.parquet"),
        corpus("alltypes_plain.snappy.parquet"),
    ];
    for (i, src) in inputs.iter().enumerate() {
        w.put(&format!("{}part-{i}.parquet", cold(2)), src);
        w.put(&format!("{HOT}part-{i}.parquet"), src);
    }
    let hot_before = w.files(HOT);

    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    assert!(run.stdout().contains("1 compacted"), "{}", run.stdout());
    let outputs = w.only_merged(&cold(2), "inputs deleted, one merged file");
    assert_eq!(w.assert_same_rows(&outputs[0], &inputs)["rows"], 12);
    assert_eq!(w.files(HOT), hot_before);

    let again = w.run(&["once"], &[]);
    again.expect_code(0);
    assert!(again.stdout().contains("0 compacted"), "{}", again.stdout());
    assert_eq!(w.files(&cold(2)), outputs);
    // A partition holding only its merged file has no unfinished commit to look for: the
    // second run lists, and reads nothing.
    assert_eq!(
        request_count(&again.stdout(), "GET"),
        0,
        "{}",
        again.stdout()
    );
}

/// A lone cold partition on S3 is merged in two parts, each downloading its own inputs, and
/// the stitched file is uploaded, verified and committed like any other: one output with every
/// row in order (pyarrow, through its own S3 client), the inputs deleted, each input read once.
#[test]
fn a_lone_partition_is_merged_in_parts_on_s3s_fs() {
    let w = S3Warehouse::on_s3s_fs();
    w.add_merge_settings(SETTINGS_FOR_PARTS);
    let dir = tempfile::tempdir().unwrap();
    let inputs = put_inputs_for_parts(dir.path(), |key, src| w.put(key, src));
    let run = w.run(&["once"], &[("RUST_LOG", "compactor=debug")]);
    run.expect_code(0);
    assert_merged_in_parts(&run);
    let outputs = w.only_merged(&cold(3), "inputs deleted, one merged file");
    assert_eq!(w.assert_same_rows(&outputs[0], &inputs)["rows"], 120_000);
    // Each input's footer and data: read once each (small files come whole with their
    // footer), plus the merged file's footer read back to verify it.
    let gets = request_count(&run.stdout(), "GET");
    assert!(
        gets <= 2 * inputs.len() + 2,
        "{gets} GETs: {}",
        run.stdout()
    );
}

/// How many requests of `kind` (`GET`, `LIST`, ...) the summary of a run says it made.
fn request_count(stdout: &str, kind: &str) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no request line in {stdout}"));
    let before = line
        .split(&format!(" {kind}"))
        .next()
        .unwrap_or_else(|| panic!("no {kind} in {line}"));
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of {kind} in {line}"))
}

#[test]
fn crash_between_upload_and_delete_is_finished_on_moto() {
    crash_between_upload_and_delete_is_finished(S3Warehouse::new());
}

#[test]
fn crash_between_upload_and_delete_is_finished_on_s3s_fs() {
    crash_between_upload_and_delete_is_finished(S3Warehouse::on_s3s_fs());
}

fn crash_between_upload_and_delete_is_finished(w: S3Warehouse) {
    let inputs = vec![corpus("datapage_v2.snappy.parquet"); 3];
    for (i, src) in inputs.iter().enumerate() {
        w.put(&format!("{}part-{i}.parquet", cold(1)), src);
    }
    w.run(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")])
        .expect_killed();
    assert_eq!(
        w.files(&cold(1)).len(),
        4,
        "merged file written, inputs still there"
    );

    let next = w.run(&["once"], &[]);
    next.expect_code(0);
    assert!(next.stdout().contains("recovered:  1"), "{}", next.stdout());
    let outputs = w.only_merged(&cold(1), "");
    assert_eq!(w.assert_same_rows(&outputs[0], &inputs)["rows"], 15);
}

/// A distinctive secret appears in no output at any log level, the SDK's included.
#[test]
fn the_secret_key_is_never_printed() {
    // Logs at every level, errors, the summary and the metrics file.
    let w = S3Warehouse::new();
    for i in 0..2 {
        w.put(
            &format!("{}part-{i}.parquet", cold(3)),
            &corpus("alltypes_plain.parquet"),
        );
    }
    let secret = "SeCrEt-compactor-7f3a9c2e-do-not-print";
    let mut env = w.env(secret);
    // Every level from our code, the AWS SDK and the HTTP stack; the wasm compiler's own
    // trace (which never sees credentials) is muted to keep the test fast.
    env.push(("RUST_LOG", "trace,cranelift_codegen=off,cranelift_frontend=off,regalloc2=off,wasmtime_cranelift=off,wasmtime_environ=off,wasmtime=off"));
    let metrics = w.config.parent().unwrap().join("metrics.prom");
    let metrics_arg = metrics.to_str().unwrap();
    for args in [
        &["-vv", "once", "--metrics-file", metrics_arg][..],
        &["plan", "--json"][..],
    ] {
        let run = run_compactor(&w.config, args, &env);
        let mut all = format!("{}{}", run.stdout(), run.stderr());
        // Metrics too (issue 6).
        all += &std::fs::read_to_string(&metrics).unwrap_or_default();
        assert!(
            all.contains("aws_smithy") || all.contains("aws_sigv4"),
            "the SDK's trace is in: {}",
            &all[..all.len().min(2000)]
        );
        assert!(
            !all.contains(secret),
            "the secret appeared in the output of {args:?}"
        );
        assert!(
            !all.contains(&secret[..16]),
            "part of the secret appeared in {args:?}"
        );
    }
    assert!(metrics.is_file(), "the metrics file was checked");
}

/// A partition of 1,000 small files: compacted into one, every row kept, and the S3 requests
/// stay at one GET per input (its footer and data together) plus a handful for the partition.
#[test]
fn a_thousand_file_partition_of_small_files_costs_one_get_per_file() {
    let w = S3Warehouse::new();
    let n = 1000;
    let src = corpus("datapage_v2.snappy.parquet");
    let prefix = cold(4);
    w.rt.block_on(async {
        let puts = (0..n).map(|i| {
            let key = format!("{prefix}part-{i:05}.parquet");
            let (store, src) = (&w.store, &src);
            async move { store.put_file(&key, src).await.unwrap() }
        });
        futures::stream::iter(puts)
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    });
    assert_eq!(w.files(&prefix).len(), n);

    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    let out = run.stdout();
    let outputs = w.only_merged(&prefix, &out);
    assert_eq!(
        w.assert_same_rows(&outputs[0], &vec![src.clone(); n])["rows"],
        5 * n
    );

    let requests = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .expect("request line");
    eprintln!("{n}-file partition: {requests}");
    let number = |kind: &str| request_count(&out, kind);
    // Each file is read whole with its footer, only once: its merge reads the copy kept in
    // the work dir. The output's footer is read back once.
    assert!((n..=n + 2).contains(&number("GET")), "{requests}");
    assert!(number("LIST") <= 10, "{requests}");
    assert!(number("HEAD") <= 5, "{requests}");
    // One of each for the run's check that deletes are allowed (per table, not per partition).
    assert_eq!(
        number("PUT"),
        2,
        "the check's and the merged file: {requests}"
    );
    assert_eq!(
        number("DELETE"),
        2,
        "the check's and one DeleteObjects batch: {requests}"
    );
}

/// The URL path form of a key prefix as the SDK sends it (`=` is percent-encoded).
fn on_the_wire(prefix: &str) -> String {
    prefix.replace('=', "%3D")
}

impl S3Warehouse {
    /// Puts `src` under `prefix` as `part-0.parquet`, `part-1.parquet`, ...
    fn put_copies(&self, prefix: &str, src: &Path, n: usize) {
        for i in 0..n {
            self.put(&format!("{prefix}part-{i}.parquet"), src);
        }
    }
}

/// Throttling on reads, a server error on the upload, a dropped connection on a listing and a
/// throttled delete: all retried by the SDK with backoff; the run succeeds as if nothing
/// happened.
#[test]
fn throttling_server_errors_and_dropped_connections_are_retried() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    let proxy = w.proxy();
    proxy.add(
        Rule::new(Fault::slow_down())
            .method("GET")
            .query("")
            .times(3),
    );
    proxy.add(Rule::new(Fault::Reset).query("list-type").skip(1).times(1));
    proxy.add(
        Rule::new(Fault::Error {
            status: 500,
            code: "InternalError",
        })
        .method("PUT")
        .times(1),
    );
    proxy.add(Rule::new(Fault::slow_down()).query("delete").times(1));

    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    let injected = proxy.injected();
    assert_eq!(injected.len(), 6, "{injected:#?}");
    let outputs = w.only_merged(&cold(1), "inputs deleted, one merged file");
    assert_eq!(w.assert_same_rows(&outputs[0], &vec![src; 3])["rows"], 24);
}

/// The prefixes above a table's are checked for a Delta Lake, Hudi or Iceberg table that holds
/// it. A policy that lets compactor list its table's prefix only (403 above it) cannot be
/// checked, which is logged and let pass, as such a deployment is locked down on purpose; a
/// Delta log above the table that can be listed fails the run and changes nothing.
#[test]
fn enclosing_prefixes_are_checked_for_a_table_format_unless_denied() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    // Only the checks ask for one key: a listing of a prefix asks for whole pages.
    w.proxy()
        .add(Rule::new(Fault::access_denied()).query("max-keys=1"));
    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    assert_eq!(w.proxy().injected().len(), 3, "one per marker, not retried");
    assert!(
        run.stderr()
            .contains("cannot tell whether events/ lies inside a Delta Lake, Hudi or Iceberg"),
        "{}",
        run.stderr()
    );
    let outputs = w.only_merged(&cold(1), "compacted as plain Parquet");
    assert_eq!(
        w.assert_same_rows(&outputs[0], &vec![src.clone(); 3])["rows"],
        24
    );
    // Two starts below the same parents: each marker above them is asked about once, at the
    // store's root, events/ and events/dt=2026-11-20/ (not once per start: 18).
    let before = w.proxy().injected().len();
    w.run(&["plan", "--prefix", &cold(3), "--prefix", &cold(4)], &[])
        .expect_code(0);
    assert_eq!(w.proxy().injected().len() - before, 9);

    w.proxy().clear();
    w.put_copies(&cold(2), &src, 3);
    w.put("_delta_log/00000000000000000000.json", &src);
    let run = w.run(&["once"], &[]);
    run.expect_code(1);
    assert!(
        run.stdout()
            .contains("_delta_log/ shows a table kept by Delta Lake that holds events/"),
        "{}",
        run.stdout()
    );
    assert_eq!(w.files(&cold(2)).len(), 3, "nothing merged");
    assert!(w.outputs(&cold(2)).is_empty());
}

/// `[store] server_side_encryption`, `kms_key_id` and `storage_class` reach the merged file
/// through the binary: S3 reports them on it, and its rows are the inputs'.
#[test]
fn merged_files_are_written_with_the_configured_encryption_and_class() {
    let w = S3Warehouse::new();
    let key_arn = "arn:aws:kms:us-east-1:123456789012:key/merged";
    w.add_store_settings(&format!(
        "server_side_encryption = \"aws:kms\"\nkms_key_id = \"{key_arn}\"\n\
         storage_class = \"STANDARD_IA\"\n"
    ));
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    w.run(&["once"], &[]).expect_code(0);
    let outputs = w.only_merged(&cold(1), "");
    let head =
        w.rt.block_on(
            w.store
                .client()
                .head_object()
                .bucket(BUCKET)
                .key(format!("{ROOT}{}", outputs[0]))
                .send(),
        )
        .unwrap();
    use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some(key_arn));
    assert_eq!(head.storage_class(), Some(&StorageClass::StandardIa));
    assert_eq!(w.assert_same_rows(&outputs[0], &vec![src; 3])["rows"], 24);
}

/// Files a lifecycle rule moved to an archive class cannot be read until restored: they are
/// left alone and counted in `plan`, and the rest of the partition is compacted. A read of one
/// says to restore it, not that access was denied.
#[test]
fn archived_files_are_left_alone_and_counted() {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::StorageClass;
    let w = S3Warehouse::new();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    let archived = |i: usize| format!("{}archived-{i}.parquet", cold(1));
    for i in 0..2 {
        w.rt.block_on(
            w.store
                .client()
                .put_object()
                .bucket(BUCKET)
                .key(format!("{ROOT}{}", archived(i)))
                .storage_class(StorageClass::Glacier)
                .body(ByteStream::from(std::fs::read(&src).unwrap()))
                .send(),
        )
        .unwrap();
    }
    let plan = w.run(&["plan"], &[]);
    plan.expect_code(0);
    let note = format!(
        "  2 data files left alone in an archive storage class (first: {}): S3 cannot read",
        archived(0)
    );
    assert!(plan.stdout().contains(&note), "{}", plan.stdout());

    let metrics = w.config.with_file_name("metrics.prom");
    w.run(&["once", "--metrics-file", metrics.to_str().unwrap()], &[])
        .expect_code(0);
    let metrics = std::fs::read_to_string(metrics).unwrap();
    let line = "compactor_files_left_alone{table=\"events\",reason=\"archived\"} 2";
    assert!(metrics.contains(line), "{line}\n{metrics}");
    let outputs = w.outputs(&cold(1));
    assert_eq!(outputs.len(), 1);
    let mut expected = vec![archived(0), archived(1), outputs[0].clone()];
    expected.sort();
    assert_eq!(w.files(&cold(1)), expected, "the archived files stay");
    assert_eq!(w.assert_same_rows(&outputs[0], &vec![src; 3])["rows"], 24);

    let read =
        w.rt.block_on(w.store.get(&archived(0)))
            .unwrap_err()
            .to_string();
    assert!(read.contains("restore it first"), "{read}");
}

/// A store that lets compactor write but not delete would leave every merged row twice: in
/// the merged file and in its inputs. Before a table's first merge of a run, a delete is tried
/// under its prefix; denied, the table is not touched and the run fails naming the permission.
/// Once deletes are allowed, the next run compacts, and the check leaves no object behind.
#[test]
fn a_table_where_deletes_are_denied_is_not_merged() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    w.proxy().add(
        Rule::new(Fault::access_denied())
            .method("POST")
            .query("delete"),
    );
    let run = w.run(&["once"], &[]);
    run.expect_code(1);
    let said = run.stdout();
    assert!(
        said.contains(&format!(
            "{}: not compacted: cannot delete under events/",
            cold(1)
        )),
        "{said}"
    );
    assert!(said.contains("every row twice"), "{said}");
    assert_eq!(w.files(&cold(1)).len(), 3, "the inputs stay");
    assert!(w.outputs(&cold(1)).is_empty(), "no merged file beside them");

    w.proxy().clear();
    w.run(&["once"], &[]).expect_code(0);
    let outputs = w.only_merged(&cold(1), "");
    assert_eq!(w.assert_same_rows(&outputs[0], &vec![src; 3])["rows"], 24);
    let keys = w.all_keys();
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(compactor::compact::DELETE_CHECK)),
        "{keys:?}"
    );
}

/// Issue 7: S3 answers each read after a round trip, so footers and inputs are read several at
/// once, never more than `READS_AT_ONCE`. One at a time, a 1,000-file partition waits 1,000
/// round trips or more.
#[test]
fn reads_overlap_on_a_store_with_latency() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    let n = 24;
    w.put_copies(&cold(1), &src, n);
    let latency = Fault::Delay(std::time::Duration::from_millis(100));
    w.proxy().add(Rule::new(latency).method("GET"));

    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    let peak = w.proxy().peak_in_flight("GET");
    assert!(
        (2..=READS_AT_ONCE).contains(&peak),
        "{peak} GETs in flight at most, expected 2 to {READS_AT_ONCE}"
    );
    let outputs = w.only_merged(&cold(1), &run.stdout());
    assert_eq!(
        w.assert_same_rows(&outputs[0], &vec![src; n])["rows"],
        8 * n
    );
}

/// Planning lists several prefixes at once on S3 (each listing waits a round trip: a year of
/// hourly partitions is 8,760 of them) and still reports the partitions in key order.
#[test]
fn prefixes_are_listed_several_at_once_and_planned_in_key_order() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    let prefixes = twelve_partitions(&w, &src);
    let latency = Fault::Delay(std::time::Duration::from_millis(100));
    w.proxy().add(Rule::new(latency).query("list-type"));

    let run = w.run(&["plan"], &[]);
    run.expect_code(0);
    let listings = w.proxy().peak_in_flight("GET");
    assert!(listings >= 2, "{listings} listing(s) in flight at most");
    let out = run.stdout();
    let at: Vec<usize> = prefixes
        .iter()
        .map(|p| out.find(&format!("{p}: 3 files")).expect(p))
        .collect();
    assert!(at.is_sorted(), "partitions in key order:\n{out}");
}

/// A server that stops answering (issue 6): the request is cut off after `[store] timeout`
/// and retried, so a hung connection never stalls a run.
#[test]
fn a_hung_request_is_cut_off_by_the_timeout_and_retried() {
    let w = S3Warehouse::behind_proxy();
    let config = std::fs::read_to_string(&w.config).unwrap().replace(
        "retry_backoff = \"50ms\"",
        "retry_backoff = \"50ms\"\ntimeout = \"1s\"",
    );
    std::fs::write(&w.config, config).unwrap();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 2);
    // The first data GET and the first listing hang for far longer than the timeout.
    let hang = Fault::Delay(std::time::Duration::from_secs(120));
    w.proxy()
        .add(Rule::new(hang.clone()).method("GET").query("").times(1));
    w.proxy()
        .add(Rule::new(hang).query("list-type").skip(1).times(1));
    let started = std::time::Instant::now();
    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(w.proxy().injected().len(), 2);
    let outputs = w.only_merged(&cold(1), "");
    w.assert_same_rows(&outputs[0], &vec![src; 2]);
}

/// A partition whose files cannot be read within the retry budget is skipped and reported by
/// name, with the store's answer; its files stay; the other partition is compacted.
#[test]
fn a_partition_that_keeps_failing_is_skipped_and_the_rest_compacts() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 2);
    w.put_copies(&cold(2), &src, 2);
    let before = w.files(&cold(1));
    w.proxy().add(
        Rule::new(Fault::slow_down())
            .method("GET")
            .path(on_the_wire(&cold(1))),
    );

    let run = w.run(&["once"], &[]);
    run.expect_code(1);
    assert!(!w.proxy().injected().is_empty());
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains(&cold(1)) && all.contains("SlowDown"), "{all}");
    assert!(run.stdout().contains("1 compacted"), "{}", run.stdout());
    assert_eq!(
        w.files(&cold(1)),
        before,
        "the failing partition is untouched"
    );
    let outputs = w.only_merged(&cold(2), "");
    assert_eq!(w.assert_same_rows(&outputs[0], &vec![src; 2])["rows"], 16);
}

/// DeleteObjects answers 200 but lists every key as not deleted, twice: the keys are sent
/// again until they are gone, and the run succeeds. (The run's first DeleteObjects, its check
/// that deletes are allowed, passes.)
#[test]
fn keys_delete_objects_refuses_are_sent_again() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    w.proxy().add(
        Rule::new(Fault::DeleteKeysFail)
            .query("delete")
            .skip(1)
            .times(2),
    );

    let run = w.run(&["once"], &[]);
    run.expect_code(0);
    assert_eq!(w.proxy().injected().len(), 2);
    w.only_merged(&cold(1), "inputs deleted in the end");
}

/// Keys that are never deleted are reported by name, never assumed gone; the merged file and
/// its inputs both remain until the next run finishes the job, and then every row is there
/// exactly once. (Deletes fail only after the run's check that they are allowed passed.)
#[test]
fn keys_never_deleted_are_reported_and_the_next_run_finishes() {
    let w = S3Warehouse::behind_proxy();
    let src = corpus("alltypes_plain.parquet");
    w.put_copies(&cold(1), &src, 3);
    w.proxy()
        .add(Rule::new(Fault::DeleteKeysFail).query("delete").skip(1));

    let run = w.run(&["once"], &[]);
    run.expect_code(1);
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        all.contains(&format!("{}part-", cold(1))) && all.contains("InternalError"),
        "{all}"
    );
    assert_eq!(w.files(&cold(1)).len(), 4, "merged file and all inputs");

    w.proxy().clear();
    let next = w.run(&["once"], &[]);
    next.expect_code(0);
    assert!(next.stdout().contains("recovered:  1"), "{}", next.stdout());
    let outputs = w.only_merged(&cold(1), "");
    assert_eq!(w.assert_same_rows(&outputs[0], &vec![src; 3])["rows"], 24);
}

/// 100,000 objects in 100 partitions (s3s-fs, laid out on its disk directly): the plan lists
/// every one of them, walking the hive levels with one delimited listing per prefix, and the
/// hot hour's files are never listed.
#[test]
fn plans_over_a_hundred_thousand_objects() {
    let w = S3Warehouse::on(TestS3Server::s3s_fs().unwrap(), true);
    let table = w
        .server
        .data_dir()
        .unwrap()
        .join(BUCKET)
        .join(ROOT)
        .join("events");
    let mut partitions = Vec::new();
    for day in 10..15 {
        for hour in 0..20 {
            partitions.push(format!("dt=2026-11-{day:02}/hour={hour:02}"));
        }
    }
    partitions.push("dt=2026-11-20/hour=05".into()); // the hot hour
    for p in &partitions {
        let dir = table.join(p);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..1000 {
            std::fs::write(dir.join(format!("part-{i:04}.parquet")), b"small").unwrap();
        }
    }

    let started = std::time::Instant::now();
    let run = w.run(&["plan", "--json"], &[]);
    run.expect_code(0);
    let elapsed = started.elapsed();
    let plan: Value = serde_json::from_str(&run.stdout()).unwrap();
    let planned = plan["tables"][0]["partitions"].as_array().unwrap();
    assert_eq!(planned.len(), 100);
    let files: u64 = planned.iter().map(|p| p["files"].as_u64().unwrap()).sum();
    assert_eq!(files, 100_000);
    assert!(
        planned.iter().all(|p| p["action"]["action"] == "compact"),
        "{}",
        planned[0]
    );

    let requests = w.proxy().requests();
    let lists: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("list-type=2"))
        .collect();
    assert_eq!(lists.len(), requests.len(), "only listings: {requests:?}");
    assert!(
        lists
            .iter()
            .all(|r| !r.contains(&on_the_wire(HOT).replace('/', "%2F"))),
        "the hot hour is never listed"
    );
    // Root, the days, each day's hours, and each partition: 1,000 keys fit one page.
    assert!(
        lists.len() <= 1 + 6 + 6 + 100 + 5,
        "{} listings",
        lists.len()
    );
    eprintln!(
        "100,000 objects in 100 partitions planned in {:.1} s with {} LIST requests",
        elapsed.as_secs_f64(),
        lists.len()
    );
}

impl S3Warehouse {
    /// Every key in the bucket, at any depth.
    fn all_keys(&self) -> Vec<String> {
        let listed = self
            .rt
            .block_on(self.store.client().list_objects_v2().bucket(BUCKET).send());
        let mut keys: Vec<String> = listed
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }

    fn unfinished_uploads(&self) -> usize {
        let answer = self.rt.block_on(
            self.store
                .client()
                .list_multipart_uploads()
                .bucket(BUCKET)
                .send(),
        );
        answer.unwrap().uploads().len()
    }
}

/// Issue 6 on S3 (moto): SIGKILL at every step of the commit protocol, then run again: every
/// row exactly once, no input beside its merged file, no stray object or unfinished upload.
#[test]
fn a_kill_at_every_step_of_the_commit_loses_no_row_on_moto() {
    use compactor::crash::CrashPoint;
    let src = corpus("alltypes_plain.parquet");
    for (point, _) in CrashPoint::ALL {
        let w = S3Warehouse::new();
        for (hour, n) in crate::crash::LAYOUT {
            w.put_copies(&cold(hour), &src, n);
        }
        if point == "mid-recovery" {
            w.run(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")])
                .expect_killed();
        }
        w.run(&["once"], &[("COMPACTOR_CRASH_AT", point)])
            .expect_killed();
        w.run(&["once"], &[]).expect_code(0);

        let mut expected = Vec::new();
        for (hour, n) in crate::crash::LAYOUT {
            let outputs = w.outputs(&cold(hour));
            assert_eq!(outputs.len(), 1, "{point}: {:?}", w.files(&cold(hour)));
            assert_eq!(w.files(&cold(hour)), outputs, "{point}: inputs left");
            let report = w.assert_same_rows(&outputs[0], &vec![src.clone(); n]);
            assert_eq!(report["rows"], 8 * n as u64, "{point}");
            expected.push(format!("{ROOT}{}", outputs[0]));
        }
        expected.sort();
        assert_eq!(w.all_keys(), expected, "{point}: stray objects");
        assert_eq!(w.unfinished_uploads(), 0, "{point}");

        let work = w.config.parent().unwrap().join("work");
        crate::crash::backdate(&work);
        let again = w.run(&["once"], &[]);
        again.expect_code(0);
        assert!(
            again.stdout().contains("0 compacted"),
            "{point}: {}",
            again.stdout()
        );
        assert_eq!(crate::crash::file_count(&work), 0, "{point}: work_dir");
    }
}

/// Twelve cold partitions of three files each, on days 2026-11-10..13, hours 00..02.
fn twelve_partitions(w: &S3Warehouse, src: &Path) -> Vec<String> {
    let mut prefixes = Vec::new();
    for day in 10..14 {
        for hour in 0..3 {
            let prefix = format!("events/dt=2026-11-{day}/hour={hour:02}/");
            w.put_copies(&prefix, src, 3);
            prefixes.push(prefix);
        }
    }
    prefixes
}

fn with_leases(w: &S3Warehouse, ttl: &str) {
    let mut config = std::fs::read_to_string(&w.config).unwrap();
    config.push_str(&format!("[leases]\nenabled = true\nttl = \"{ttl}\"\n"));
    std::fs::write(&w.config, config).unwrap();
}

/// "N compacted" from a run's summary.
fn compacted(run: &Run) -> usize {
    let out = run.stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("partitions:"))
        .unwrap_or("");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {out}"))
}

/// Every partition holds one merged file with all its rows, nothing else is left.
fn assert_each_compacted_once(w: &S3Warehouse, prefixes: &[String], src: &Path) {
    for prefix in prefixes {
        let outputs = w.only_merged(prefix, &format!("{prefix}: exactly one merged file"));
        assert_eq!(outputs.len(), 1, "{prefix}");
        assert_eq!(
            w.assert_same_rows(&outputs[0], &vec![src.to_path_buf(); 3])["rows"],
            24
        );
    }
    let stray: Vec<String> = w
        .all_keys()
        .into_iter()
        .filter(|k| !k.contains("/compacted-"))
        .collect();
    assert!(stray.is_empty(), "leases or other objects left: {stray:?}");
    assert_eq!(w.unfinished_uploads(), 0);
}

/// Issue 6: several replicas at once on one bucket share the partitions through leases: each
/// partition is compacted exactly once, no row lost or duplicated.
#[test]
fn replicas_share_the_work_through_leases() {
    let w = S3Warehouse::new();
    with_leases(&w, "30s");
    let src = corpus("alltypes_plain.parquet");
    let prefixes = twelve_partitions(&w, &src);
    let slow = [("COMPACTOR_TEST_SLOW_FETCH_MS", "150")];
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| w.run(&["once"], &slow)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.expect_code(0);
    }
    let total: usize = runs.iter().map(compacted).sum();
    assert_eq!(total, 12, "each partition compacted by exactly one replica");
    assert!(
        runs.iter()
            .any(|r| r.stdout().contains("being compacted by")
                || r.stdout().contains("changed since it was planned")),
        "the replicas met each other"
    );
    assert_each_compacted_once(&w, &prefixes, &src);
}

/// One replica is killed in the middle of a merge while two others run: its partition stays
/// leased until the lease expires, then a later run takes it over and finishes.
#[test]
fn a_killed_replica_s_partition_is_taken_over_after_its_lease_expires() {
    let w = S3Warehouse::new();
    with_leases(&w, "3s");
    let src = corpus("alltypes_plain.parquet");
    let prefixes = twelve_partitions(&w, &src);
    let runs: Vec<Run> = std::thread::scope(|s| {
        let doomed = s.spawn(|| {
            w.run(
                &["once"],
                &[
                    ("COMPACTOR_CRASH_AT", "after-merge"),
                    ("COMPACTOR_TEST_SLOW_FETCH_MS", "100"),
                ],
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let others: Vec<_> = (0..2)
            .map(|_| s.spawn(|| w.run(&["once"], &[("COMPACTOR_TEST_SLOW_FETCH_MS", "100")])))
            .collect();
        doomed.join().unwrap().expect_killed();
        others.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.expect_code(0);
    }
    // The killed replica's lease expires; then its partition is taken over.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let last = w.run(&["once"], &[]);
    last.expect_code(0);
    let total: usize = runs.iter().map(compacted).sum::<usize>() + compacted(&last);
    assert_eq!(
        total, 12,
        "each partition compacted once, the killed one's included"
    );
    assert_each_compacted_once(&w, &prefixes, &src);
}

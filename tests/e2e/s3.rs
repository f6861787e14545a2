//! The same compaction on S3: a real moto server on 127.0.0.1 per test, the real binary with
//! credentials from the environment (the standard AWS chain), outputs read back by pyarrow's
//! own S3 client.

use std::path::{Path, PathBuf};

use compactor::store::test_server::{TEST_ACCESS_KEY, TEST_SECRET_KEY, TestS3Server};
use compactor::store::{S3Store, Store};
use futures::StreamExt;
use serde_json::Value;

use crate::util::*;

const BUCKET: &str = "lake";
/// Everything lives under this key prefix of the bucket, as in `s3://lake/warehouse/`.
const ROOT: &str = "warehouse/";

struct S3Warehouse {
    moto: TestS3Server,
    rt: tokio::runtime::Runtime,
    store: S3Store,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl S3Warehouse {
    fn new() -> S3Warehouse {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let moto = TestS3Server::moto().unwrap();
        let store = rt.block_on(moto.bucket(BUCKET, ROOT)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[store]
url = "s3://{BUCKET}/{ROOT}"
region = "us-east-1"
endpoint = "{}"
path_style = true
[merge]
work_dir = "work"
[[tables]]
name = "events"
prefix = "events/"
"#,
                moto.endpoint
            ),
        )
        .unwrap();
        S3Warehouse {
            moto,
            rt,
            store,
            _dir: dir,
            config,
        }
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
                ("COMPACTOR_S3_ENDPOINT", self.moto.endpoint.clone()),
                ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY.into()),
                ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY.into()),
            ],
        );
        assert_eq!(report["equal"], true, "{url}: {report}");
        report
    }
}

#[test]
fn compacts_cold_partitions_on_s3_and_leaves_the_hot_hour() {
    let w = S3Warehouse::new();
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
    let outputs = w.outputs(&cold(2));
    assert_eq!(
        w.files(&cold(2)),
        outputs,
        "inputs deleted, one merged file"
    );
    assert_eq!(w.assert_same_rows(&outputs[0], &inputs)["rows"], 12);
    assert_eq!(w.files(HOT), hot_before);

    let again = w.run(&["once"], &[]);
    again.expect_code(0);
    assert!(again.stdout().contains("0 compacted"), "{}", again.stdout());
    assert_eq!(w.files(&cold(2)), outputs);
}

#[test]
fn crash_between_upload_and_delete_is_finished_on_s3() {
    let w = S3Warehouse::new();
    let inputs = vec![corpus("datapage_v2.snappy.parquet"); 3];
    for (i, src) in inputs.iter().enumerate() {
        w.put(&format!("{}part-{i}.parquet", cold(1)), src);
    }
    w.run(&["once"], &[("COMPACTOR_CRASH_AT", "after-upload")])
        .expect_code(86);
    assert_eq!(
        w.files(&cold(1)).len(),
        4,
        "merged file written, inputs still there"
    );

    let next = w.run(&["once"], &[]);
    next.expect_code(0);
    assert!(next.stdout().contains("recovered:  1"), "{}", next.stdout());
    let outputs = w.outputs(&cold(1));
    assert_eq!(w.files(&cold(1)), outputs);
    assert_eq!(w.assert_same_rows(&outputs[0], &inputs)["rows"], 15);
}

/// A distinctive secret appears in no output at any log level, the SDK's included.
#[test]
fn the_secret_key_is_never_printed() {
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
    for args in [&["-vv", "once"][..], &["plan", "--json"][..]] {
        let run = run_compactor(&w.config, args, &env);
        let all = format!("{}{}", run.stdout(), run.stderr());
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
}

/// A partition of 1,000 small files: compacted into one, every row kept, and the S3 requests
/// stay at about two GETs per input (footer, data) plus a handful for the whole partition.
#[test]
fn a_thousand_file_partition_costs_two_gets_per_file() {
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
    let outputs = w.outputs(&prefix);
    assert_eq!(w.files(&prefix), outputs, "{out}");
    assert_eq!(
        w.assert_same_rows(&outputs[0], &vec![src.clone(); n])["rows"],
        5 * n
    );

    let requests = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .expect("request line");
    eprintln!("{n}-file partition: {requests}");
    let number = |kind: &str| -> usize {
        let before = requests.split(&format!(" {kind}")).next().unwrap();
        before
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(number("GET") <= 2 * n + 5, "{requests}");
    assert!(number("LIST") <= 10, "{requests}");
    assert!(number("HEAD") <= 5, "{requests}");
    assert_eq!(number("PUT"), 1, "{requests}");
    assert_eq!(number("DELETE"), 1, "one DeleteObjects batch: {requests}");
}

//! Test support: real S3-compatible servers on 127.0.0.1, started for a test and stopped when
//! dropped. Used by the S3 backend's conformance tests and the end-to-end tests.
//!
//! * moto (`scripts/test` installs it into the test venv, `COMPACTOR_TEST_PYTHON`): the most
//!   complete API, including multipart listings and atomic conditional writes.
//! * s3s-fs (`scripts/test` installs it under `target/tools`, `COMPACTOR_TEST_S3S_FS`): checks
//!   request signatures and rejects wrong checksums, which moto does not; it has no
//!   ListMultipartUploads and its `If-None-Match` is not atomic under races.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::{S3Location, S3Store};

/// The credentials tests use (moto accepts any; s3s-fs is started with these).
pub const TEST_ACCESS_KEY: &str = "compactor-test-key";
pub const TEST_SECRET_KEY: &str = "compactor-test-secret";

pub struct TestS3Server {
    child: Child,
    pub endpoint: String,
    /// s3s-fs keeps its objects here.
    data: Option<tempfile::TempDir>,
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl TestS3Server {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn moto() -> Result<TestS3Server, String> {
        let python = std::env::var("COMPACTOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = free_port()?;
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        TestS3Server::spawn(cmd, port, None, &format!("moto (with {python})"))
    }

    /// Starts s3s-fs on a free loopback port, storing into a fresh temp dir, with the test
    /// credentials (it checks signatures).
    pub fn s3s_fs() -> Result<TestS3Server, String> {
        let binary = std::env::var("COMPACTOR_TEST_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
        let port = free_port()?;
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&binary);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                TEST_ACCESS_KEY,
                "--secret-key",
                TEST_SECRET_KEY,
            ])
            .arg(data.path());
        TestS3Server::spawn(cmd, port, Some(data), &format!("s3s-fs ({binary})"))
    }

    fn spawn(
        mut cmd: Command,
        port: u16,
        data: Option<tempfile::TempDir>,
        what: &str,
    ) -> Result<TestS3Server, String> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {what} (run scripts/test): {e}"))?;
        let mut server = TestS3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{what} exited at start ({status}); is it installed? (run scripts/test)"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("{what} did not answer within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The directory s3s-fs serves (bucket `b`, key `k` is the file `b/k` in it), so tests can
    /// lay out very many objects without a request each. `None` for moto.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data.as_ref().map(|d| d.path())
    }

    /// Where a bucket of this server is, for `S3Store::connect` or a config file.
    pub fn location(&self, bucket: &str, prefix: &str) -> S3Location {
        S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            max_attempts: 6,
            // Short, so tests that provoke retries stay quick.
            retry_backoff_ms: 50,
            timeout_ms: 60_000,
            concurrent_reads: super::s3::READS_AT_ONCE,
            writes: Default::default(),
        }
    }

    /// Creates `bucket` and returns a store on it under `prefix`.
    pub async fn bucket(&self, bucket: &str, prefix: &str) -> Result<S3Store, String> {
        let store = S3Store::connect(
            self.location(bucket, prefix),
            Some((TEST_ACCESS_KEY.into(), TEST_SECRET_KEY.into())),
        )
        .await;
        store
            .client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "creating bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        Ok(store)
    }
}

impl Drop for TestS3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

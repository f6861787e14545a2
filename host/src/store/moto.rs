//! Test support: a real S3-compatible server (moto) on 127.0.0.1, started for a test and
//! stopped when dropped. Used by the S3 backend's conformance tests and the end-to-end tests;
//! `scripts/test` installs moto into the test venv (`COMPACTOR_TEST_PYTHON`).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::{S3Location, S3Store};

/// The credentials tests use; moto accepts any.
pub const TEST_ACCESS_KEY: &str = "compactor-test-key";
pub const TEST_SECRET_KEY: &str = "compactor-test-secret";

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Result<MotoServer, String> {
        let python = std::env::var("COMPACTOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start moto with {python} (run scripts/test): {e}"))?;
        let mut server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "moto exited at start ({status}); is it installed for {python}? (run scripts/test)"
                ));
            }
            if Instant::now() > deadline {
                return Err("moto did not answer within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Where a bucket of this server is, for `S3Store::connect` or a config file.
    pub fn location(&self, bucket: &str, prefix: &str) -> S3Location {
        S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
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

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Amazon S3 and S3-compatible stores (aws-sdk-s3).
//!
//! * Listing: ListObjectsV2 with delimiter `/` (one hive level per call), following every page.
//! * Reads: footers with one bounded range GET over an object's last bytes (the size is known
//!   from the listing; some S3-compatible servers fail a suffix range longer than the object).
//! * Reads: [`READS_AT_ONCE`] in flight at once by default (`[store] concurrent_reads`) where
//!   the caller has several to do (footers, listings, inputs downloaded ahead of a merge).
//! * Writes: files up to [`PART_SIZE`] in one PUT; larger ones as a multipart upload,
//!   [`PARTS_AT_ONCE`] parts at a time, each streamed from disk (no part is held in memory),
//!   aborted on any failure, so an object appears whole or not at all.
//! * Conditional create: `If-None-Match: *` (a 412 answer means the key exists).
//! * Deletes: DeleteObjects in batches of at most 1000; the per-key errors of a 200 answer are
//!   read and returned, never assumed gone.
//! * Credentials come from the standard AWS chain (environment, profile, web identity, instance
//!   metadata); they are never in the config and never in our messages.

use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption,
    StorageClass,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Listing, ObjectMeta, RequestCounts, Store, StoreError, validate_key};

/// Multipart part size, and the largest object written with a single PUT.
pub const PART_SIZE: u64 = 16 << 20;
/// Parts of one multipart upload sent at once: a single connection to S3 carries far less
/// than the machine's bandwidth.
const PARTS_AT_ONCE: usize = 4;
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;
/// Reads in flight at once (footers, listings, and inputs downloaded ahead of a merge within
/// its byte bound): S3 answers each GET after tens of milliseconds, about as long as decoding
/// a small file takes. One partition of 200 files through a proxy adding 50 ms to each
/// request read its footers in 2.3 s 8 at a time, 0.8 s 32 at a time.
pub const READS_AT_ONCE: usize = 32;

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket, empty or ending in `/`.
    pub prefix: String,
    /// Region; when `None`, from the environment or profile (and `us-east-1` failing that).
    pub region: Option<String>,
    /// For S3-compatible stores, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub path_style: bool,
    /// Attempts per request (the first included) for throttling and transient errors.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling; doubled each retry (up to 20 s), full jitter.
    pub retry_backoff_ms: u64,
    /// A request that receives nothing for this long is cut off (and retried, within
    /// `max_attempts`): a hung server or connection never stalls a run.
    pub timeout_ms: u64,
    /// Reads in flight at once ([`Store::reads_at_once`]); [`READS_AT_ONCE`] by default.
    pub concurrent_reads: usize,
    pub writes: WriteOptions,
}

/// How objects are written; `None` leaves each to the bucket's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `AES256`, `aws:kms` or `aws:kms:dsse`, on every object written: a bucket policy may
    /// refuse writes without it, and merged files must stay encrypted as their inputs were.
    pub server_side_encryption: Option<String>,
    /// The KMS key of `aws:kms`.
    pub kms_key_id: Option<String>,
    /// Merged files' storage class (not leases: small and short-lived).
    pub storage_class: Option<String>,
}

impl WriteOptions {
    fn encryption(&self) -> Option<ServerSideEncryption> {
        self.server_side_encryption
            .as_deref()
            .map(ServerSideEncryption::from)
    }

    fn storage_class(&self) -> Option<StorageClass> {
        self.storage_class.as_deref().map(StorageClass::from)
    }
}

#[derive(Debug)]
pub struct S3Store {
    client: Client,
    location: S3Location,
    counts: Counters,
}

/// Requests sent, by kind (see [`RequestCounts`]).
#[derive(Debug, Default)]
struct Counters {
    list: AtomicU64,
    head: AtomicU64,
    get: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl S3Store {
    /// Connects with credentials from the standard AWS chain, or with `static_credentials`
    /// (access key, secret) when given: tests only, since config files never hold secrets.
    pub async fn connect(
        location: S3Location,
        static_credentials: Option<(String, String)>,
    ) -> S3Store {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some((access_key, secret)) = static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                access_key, secret, None, None, "static",
            ));
        }
        if let Some(region) = &location.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(location.path_style)
            // Throttling (503 SlowDown) and transient errors: retried with exponential
            // backoff and jitter, within this budget.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(location.max_attempts)
                    .with_initial_backoff(std::time::Duration::from_millis(
                        location.retry_backoff_ms,
                    )),
            );
        let timeout = std::time::Duration::from_millis(location.timeout_ms);
        builder = builder.timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
                .read_timeout(timeout)
                .build(),
        );
        if shared.region().is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &location.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        S3Store {
            client: Client::from_conf(builder.build()),
            location,
            counts: Counters::default(),
        }
    }

    /// A PUT only if no object exists (`if_match` `None`: `If-None-Match: *`) or only if the
    /// object's ETag is `if_match`. `Ok(false)` when the condition does not hold.
    async fn put_conditional(
        &self,
        key: &str,
        data: Bytes,
        if_match: Option<&str>,
    ) -> Result<bool, StoreError> {
        let full = self.full_key(key)?;
        count(&self.counts.put);
        let request = self
            .client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .set_server_side_encryption(self.location.writes.encryption())
            .set_ssekms_key_id(self.location.writes.kms_key_id.clone())
            .body(ByteStream::from(data));
        let request = match if_match {
            None => request.if_none_match("*"),
            Some(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            // 412: the condition failed; 404 (with If-Match): the object is gone.
            Err(e) if status(&e) == Some(412) => Ok(false),
            Err(e) if if_match.is_some() && status(&e) == Some(404) => Ok(false),
            Err(e) => Err(sdk_error(key, e)),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.location.prefix))
    }

    fn strip<'a>(&self, full: &'a str) -> &'a str {
        full.strip_prefix(self.location.prefix.as_str())
            .unwrap_or(full)
    }

    /// One GET, ranged when `range` (an HTTP Range header value) is given. Returns the body and
    /// the Content-Range answer, or `None` when the range lies past the end (416).
    async fn fetch(
        &self,
        key: &str,
        range: Option<String>,
        if_match: Option<&str>,
    ) -> Result<Option<(Bytes, Option<String>)>, StoreError> {
        let full = self.full_key(key)?;
        count(&self.counts.get);
        let answer = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .set_range(range)
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await;
        let object = match answer {
            Ok(o) => o,
            Err(e) if status(&e) == Some(416) => return Ok(None),
            Err(e) if status(&e) == Some(412) => {
                return Err(StoreError::Changed {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(sdk_error(key, e)),
        };
        let content_range = object.content_range().map(str::to_string);
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| backend(key, e.to_string()))?;
        Ok(Some((body.into_bytes(), content_range)))
    }

    async fn put_small(&self, full: &str, src: &Path) -> Result<(), String> {
        let body = ByteStream::from_path(src)
            .await
            .map_err(|e| e.to_string())?;
        count(&self.counts.put);
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(full)
            .set_server_side_encryption(self.location.writes.encryption())
            .set_ssekms_key_id(self.location.writes.kms_key_id.clone())
            .set_storage_class(self.location.writes.storage_class())
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        Ok(())
    }

    async fn put_multipart(&self, full: &str, src: &Path, size: u64) -> Result<(), String> {
        count(&self.counts.put);
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(full)
            .set_server_side_encryption(self.location.writes.encryption())
            .set_ssekms_key_id(self.location.writes.kms_key_id.clone())
            .set_storage_class(self.location.writes.storage_class())
            .send()
            .await
            .map_err(describe)?;
        let upload_id = upload
            .upload_id()
            .ok_or("no upload id in the answer")?
            .to_string();
        match self.upload_parts(full, &upload_id, src, size).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Nothing of a failed upload may stay behind.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.location.bucket)
                    .key(full)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    /// Uploads `src`, of `size` bytes, in parts of [`PART_SIZE`], [`PARTS_AT_ONCE`] at a time.
    /// Each part's body is read from the file as it is sent (and again if the SDK retries it),
    /// so an upload holds no part in memory.
    async fn upload_parts(
        &self,
        full: &str,
        upload_id: &str,
        src: &Path,
        size: u64,
    ) -> Result<(), String> {
        // Made up front, as in `read_inputs`; each does nothing until polled.
        let uploads: Vec<_> = (0..size.div_ceil(PART_SIZE).max(1))
            .map(|i| async move {
                let offset = i * PART_SIZE;
                let body = ByteStream::read_from()
                    .path(src)
                    .offset(offset)
                    .length(Length::Exact(PART_SIZE.min(size - offset)))
                    .build()
                    .await
                    .map_err(|e| e.to_string())?;
                let number = i as i32 + 1;
                count(&self.counts.put);
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.location.bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(describe)?;
                Ok::<_, String>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                )
            })
            .collect();
        let parts: Vec<CompletedPart> = futures::stream::iter(uploads)
            .buffered(PARTS_AT_ONCE)
            .try_collect()
            .await?;
        count(&self.counts.put);
        self.client
            .complete_multipart_upload()
            .bucket(&self.location.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(describe)?;
        Ok(())
    }
}

/// The SDK's error for messages: the store's answer (status, code, message) when there was
/// one, else the cause chain (timeouts, connection errors). Holds no credentials.
fn describe<E>(e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = &e {
        let status = service.raw().status().as_u16();
        let meta = service.err().meta();
        if let Some(code) = meta.code() {
            return format!(
                "HTTP {status} {code}: {}",
                meta.message().unwrap_or_default()
            );
        }
    }
    DisplayErrorContext(e).to_string()
}

fn status<E, R: HasStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status)
}

trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

fn backend(key: &str, message: String) -> StoreError {
    StoreError::Backend {
        backend: "s3",
        key: key.to_string(),
        message,
    }
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    key: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    let code = match &e {
        SdkError::ServiceError(service) => service.err().meta().code().map(str::to_string),
        _ => None,
    };
    if code.as_deref() == Some("InvalidObjectState") {
        // A 403 that is not about permissions: an archive tier (Intelligent-Tiering's archive
        // tiers do not show in a listing), or a Glacier object not restored.
        return backend(
            key,
            format!(
                "{}; the object is archived (S3 Glacier or an Intelligent-Tiering archive \
                 tier): restore it first",
                describe(e)
            ),
        );
    }
    match status(&e) {
        Some(404) => StoreError::NotFound {
            key: key.to_string(),
        },
        Some(403) => StoreError::Denied {
            backend: "s3",
            key: key.to_string(),
            message: describe(e),
        },
        _ => backend(key, describe(e)),
    }
}

/// Storage classes whose objects must be restored before a GET can read them.
fn is_archive_class(class: &str) -> bool {
    matches!(class, "GLACIER" | "DEEP_ARCHIVE")
}

fn millis(t: Option<&aws_sdk_s3::primitives::DateTime>) -> i64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or(0)
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.location.bucket, self.location.prefix)
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        if !prefix.is_empty() {
            validate_key(prefix.trim_end_matches('/'))?;
        }
        let full = format!("{}{prefix}", self.location.prefix);
        let mut listing = Listing::default();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&full)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            count(&self.counts.list);
            let page = page.map_err(|e| sdk_error(prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                listing.objects.push(ObjectMeta {
                    key: self.strip(key).to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified_ms: millis(o.last_modified()),
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    archived: o
                        .storage_class()
                        .is_some_and(|c| is_archive_class(c.as_str())),
                });
            }
            for p in page.common_prefixes() {
                if let Some(p) = p.prefix() {
                    listing.prefixes.push(self.strip(p).to_string());
                }
            }
        }
        listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
        listing.prefixes.sort();
        Ok(listing)
    }

    async fn holds_objects(&self, prefix: &str) -> Result<bool, StoreError> {
        validate_key(prefix.trim_end_matches('/'))?;
        count(&self.counts.list);
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(format!("{}{prefix}", self.location.prefix))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| sdk_error(prefix, e))?;
        Ok(!page.contents().is_empty())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let full = self.full_key(key)?;
        count(&self.counts.head);
        let head = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| sdk_error(key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: head.content_length().unwrap_or(0).max(0) as u64,
            last_modified_ms: millis(head.last_modified()),
            etag: head.e_tag().unwrap_or_default().to_string(),
            archived: head
                .storage_class()
                .is_some_and(|c| is_archive_class(c.as_str())),
        })
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        Ok(self
            .fetch(key, None, None)
            .await?
            .map(|(b, _)| b)
            .unwrap_or_default())
    }

    async fn get_unchanged(&self, key: &str, etag: &str) -> Result<Bytes, StoreError> {
        Ok(self
            .fetch(key, None, Some(etag))
            .await?
            .map(|(b, _)| b)
            .unwrap_or_default())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        Ok(self
            .fetch(key, Some(header), None)
            .await?
            .map(|(b, _)| b)
            .unwrap_or_default())
    }

    async fn put_file(&self, key: &str, src: &Path) -> Result<ObjectMeta, StoreError> {
        let full = self.full_key(key)?;
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| backend(key, format!("reading {}: {e}", src.display())))?
            .len();
        let written = if size <= PART_SIZE {
            self.put_small(&full, src).await
        } else {
            self.put_multipart(&full, src, size).await
        };
        written.map_err(|e| backend(key, e))?;
        self.head(key).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        self.put_conditional(key, data, None).await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<bool, StoreError> {
        self.put_conditional(key, data, Some(etag)).await
    }

    fn reads_at_once(&self) -> usize {
        self.location.concurrent_reads
    }

    fn reads_are_requests(&self) -> bool {
        true
    }

    fn request_counts(&self) -> Option<RequestCounts> {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(RequestCounts {
            list: get(&c.list),
            head: get(&c.head),
            get: get(&c.get),
            put: get(&c.put),
            delete: get(&c.delete),
        })
    }

    async fn abort_stale_uploads(
        &self,
        prefix: &str,
        older_than_ms: i64,
        is_ours: &(dyn for<'k> Fn(&'k str) -> bool + Sync),
    ) -> Result<usize, StoreError> {
        let full = format!("{}{prefix}", self.location.prefix);
        let cutoff = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
            - older_than_ms;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        let mut aborted = 0;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.location.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                // Some S3-compatible stores cannot list uploads; nothing to clean there.
                Err(e) if status(&e) == Some(501) => {
                    tracing::debug!(
                        prefix,
                        "the store does not list multipart uploads: {}",
                        describe(e)
                    );
                    return Ok(aborted);
                }
                Err(e) => return Err(sdk_error(prefix, e)),
            };
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let key = self.strip(key);
                // An upload whose start is unknown may be in flight: leave it.
                let started = upload.initiated().and_then(|t| t.to_millis().ok());
                if !is_ours(key) || started.is_none_or(|t| t > cutoff) {
                    tracing::debug!(file = %key, ?started, cutoff, "upload left alone");
                    continue;
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.location.bucket)
                    .key(format!("{}{key}", self.location.prefix))
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| sdk_error(key, e))?;
                tracing::info!(file = %key, "aborted an upload left by an earlier run");
                aborted += 1;
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
        }
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<(String, StoreError)> {
        let mut failed = Vec::new();
        let mut pending = Vec::with_capacity(keys.len());
        for key in keys {
            match self.full_key(key) {
                Ok(full) => pending.push(full),
                Err(e) => failed.push((key.clone(), e)),
            }
        }
        // Keys a 200 answer lists as not deleted are sent again (after a pause) a few times:
        // such errors are mostly transient (InternalError, SlowDown) on S3.
        for round in 0..DELETE_ROUNDS {
            if round > 0 {
                let pause = self.location.retry_backoff_ms << (round - 1);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let mut refused = Vec::new();
            for batch in pending.chunks(DELETE_BATCH) {
                match self.delete_batch(batch).await {
                    Ok(not_deleted) => refused.extend(not_deleted),
                    // The SDK already retried the request itself; give up on these keys.
                    Err(message) => {
                        failed.extend(batch.iter().map(|k| self.failure(k, message.clone())))
                    }
                }
            }
            if refused.is_empty() {
                break;
            }
            tracing::debug!(
                round,
                keys = refused.len(),
                "DeleteObjects left keys undeleted"
            );
            if round + 1 == DELETE_ROUNDS {
                failed.extend(refused.into_iter().map(|(k, m)| self.failure(&k, m)));
            } else {
                pending = refused.into_iter().map(|(k, _)| k).collect();
            }
        }
        failed
    }
}

/// How many times a key DeleteObjects refused is sent (the first included).
const DELETE_ROUNDS: u32 = 4;

impl S3Store {
    /// A key that could not be deleted, by its key relative to the store's root.
    fn failure(&self, full: &str, message: String) -> (String, StoreError) {
        let key = self.strip(full).to_string();
        let error = backend(&key, message);
        (key, error)
    }

    /// One DeleteObjects call for full keys. Returns the keys it reports as not deleted, with
    /// why, or the request's own error.
    async fn delete_batch(&self, batch: &[String]) -> Result<Vec<(String, String)>, String> {
        let ids = batch
            .iter()
            .map(|full| ObjectIdentifier::builder().key(full).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| e.to_string())?;
        count(&self.counts.delete);
        let out = self
            .client
            .delete_objects()
            .bucket(&self.location.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(describe)?;
        // A 200 answer can still list keys it did not delete.
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (
                    e.key().unwrap_or_default().to_string(),
                    format!(
                        "not deleted: {} {}",
                        e.code().unwrap_or("?"),
                        e.message().unwrap_or_default()
                    ),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_server::{TEST_ACCESS_KEY, TEST_SECRET_KEY, TestS3Server};

    #[tokio::test(flavor = "multi_thread")]
    async fn conformance_on_moto() {
        let moto = TestS3Server::moto().unwrap();
        // At the bucket root, and under a prefix with odd characters.
        for (bucket, prefix) in [
            ("conformance-root", ""),
            ("conformance-prefix", "lake/zone=é 1/"),
        ] {
            let store = moto.bucket(bucket, prefix).await.unwrap();
            crate::store::conformance::run_all(&store, crate::store::conformance::Supports::ALL)
                .await;
        }
    }

    /// s3s-fs checks signatures and checksums; ListMultipartUploads-based tests stay on moto.
    #[tokio::test(flavor = "multi_thread")]
    async fn conformance_on_s3s_fs() {
        let server = TestS3Server::s3s_fs().unwrap();
        let store = server
            .bucket("conformance", "lake/zone=é 1/")
            .await
            .unwrap();
        let supports = crate::store::conformance::Supports { if_match: false };
        crate::store::conformance::run_all(&store, supports).await;
        // Multipart through a server that verifies every part's checksum.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        let data: Vec<u8> = (0..(PART_SIZE + 777)).map(|i| (i % 253) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        store.put_file("t/big.bin", &src).await.unwrap();
        assert_eq!(store.get("t/big.bin").await.unwrap(), Bytes::from(data));
    }

    /// Through a proxy that holds each part 300 ms, as a slow link would: the parts go up
    /// several at a time, and the object comes back byte for byte.
    #[tokio::test(flavor = "multi_thread")]
    async fn large_files_go_up_in_parts_and_come_back_whole() {
        use crate::store::fault_proxy::{Fault, FaultProxy, Rule};
        let moto = TestS3Server::moto().unwrap();
        moto.bucket("multipart", "").await.unwrap();
        let proxy = FaultProxy::start(&moto.endpoint).unwrap();
        let slow_link = Fault::Delay(std::time::Duration::from_millis(300));
        proxy.add(Rule::new(slow_link).method("PUT").query("partNumber"));
        let mut location = moto.location("multipart", "");
        location.endpoint = Some(proxy.endpoint.clone());
        let store = S3Store::connect(
            location,
            Some((TEST_ACCESS_KEY.into(), TEST_SECRET_KEY.into())),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        let data: Vec<u8> = (0..(2 * PART_SIZE + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        let meta = store.put_file("t/big.bin", &src).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(proxy.injected().len(), 3, "{:#?}", proxy.injected());
        assert_eq!(proxy.peak_in_flight("PUT"), 3, "the three parts at once");
        assert_eq!(
            store.get("t/big.bin").await.unwrap(),
            Bytes::from(data.clone())
        );
        let n = data.len() as u64;
        let tail = store.get_range("t/big.bin", n - 100..n).await.unwrap();
        assert_eq!(tail.as_ref(), &data[data.len() - 100..]);
        // No upload of ours is left open.
        let open = store
            .client()
            .list_multipart_uploads()
            .bucket("multipart")
            .send()
            .await
            .unwrap();
        assert!(open.uploads().is_empty());
    }

    /// Every object written carries the configured encryption (a bucket policy may refuse
    /// writes without it), merged files the configured storage class too: single PUTs,
    /// multipart uploads and conditional writes alike, as S3 reports them back.
    #[tokio::test(flavor = "multi_thread")]
    async fn writes_carry_the_configured_encryption_and_storage_class() {
        let moto = TestS3Server::moto().unwrap();
        moto.bucket("sealed", "").await.unwrap();
        let mut location = moto.location("sealed", "");
        location.writes = WriteOptions {
            server_side_encryption: Some("aws:kms".into()),
            kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/compactor-test".into()),
            storage_class: Some("INTELLIGENT_TIERING".into()),
        };
        let store = S3Store::connect(
            location.clone(),
            Some((TEST_ACCESS_KEY.into(), TEST_SECRET_KEY.into())),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (small, big) = (dir.path().join("small"), dir.path().join("big"));
        std::fs::write(&small, b"small").unwrap();
        std::fs::write(&big, vec![7u8; (PART_SIZE + 777) as usize]).unwrap();
        store.put_file("t/small.parquet", &small).await.unwrap();
        store.put_file("t/big.parquet", &big).await.unwrap();
        assert!(
            store
                .put_if_absent("t/lease", Bytes::from_static(b"l"))
                .await
                .unwrap()
        );
        for (key, data_file) in [
            ("t/small.parquet", true),
            ("t/big.parquet", true),
            ("t/lease", false),
        ] {
            let head = store
                .client()
                .head_object()
                .bucket("sealed")
                .key(key)
                .send()
                .await
                .unwrap();
            assert_eq!(
                head.server_side_encryption(),
                Some(&ServerSideEncryption::AwsKms),
                "{key}"
            );
            assert_eq!(
                head.ssekms_key_id(),
                location.writes.kms_key_id.as_deref(),
                "{key}"
            );
            let class = data_file.then_some(&StorageClass::IntelligentTiering);
            assert_eq!(head.storage_class(), class, "{key}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stale_uploads_of_ours_are_aborted_others_kept() {
        let moto = TestS3Server::moto().unwrap();
        let store = moto.bucket("stale", "root/").await.unwrap();
        for key in [
            "root/t/p/compacted-abc.parquet",
            "root/t/p/someone-elses.parquet",
        ] {
            store
                .client()
                .create_multipart_upload()
                .bucket("stale")
                .key(key)
                .send()
                .await
                .unwrap();
        }
        let ours = |k: &str| crate::layout::is_output(k);
        // Younger than the threshold: left alone, it may be in flight. (moto dates every upload
        // 2010-11-10, so "young" here means a threshold of 40 years.)
        let forty_years_ms = 40 * 365 * 86_400_000;
        assert_eq!(
            store
                .abort_stale_uploads("t/", forty_years_ms, &ours)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .abort_stale_uploads("t/", 3_600_000, &ours)
                .await
                .unwrap(),
            1
        );
        let left = store
            .client()
            .list_multipart_uploads()
            .bucket("stale")
            .send()
            .await
            .unwrap();
        let keys: Vec<_> = left.uploads().iter().filter_map(|u| u.key()).collect();
        assert_eq!(keys, ["root/t/p/someone-elses.parquet"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delete_batches_beyond_a_thousand_keys() {
        let moto = TestS3Server::moto().unwrap();
        let store = moto.bucket("many", "").await.unwrap();
        let keys: Vec<String> = (0..1001).map(|i| format!("d/{i:05}")).collect();
        for key in &keys {
            assert!(
                store
                    .put_if_absent(key, Bytes::from_static(b"x"))
                    .await
                    .unwrap()
            );
        }
        assert_eq!(
            store.list("d/").await.unwrap().objects.len(),
            1001,
            "listing follows pages"
        );
        assert!(store.delete_many(&keys).await.is_empty());
        assert!(store.list("d/").await.unwrap().objects.is_empty());
    }
}

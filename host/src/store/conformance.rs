//! Checks every [`Store`] backend must pass. Each backend's tests call [`run_all`] against a
//! real instance: a temp dir, and real S3-compatible servers on 127.0.0.1.

use bytes::Bytes;

use super::{Store, StoreError};

/// Keys with spaces, `=`, and non-ASCII, as hive partitions and real users produce them.
const ODD_KEY: &str = "conf/dt=2026-11-20/région=Île de France/part 0.parquet";

/// What a backend under test can do; the suite skips the checks of what it lacks.
#[derive(Debug, Clone, Copy)]
pub struct Supports {
    /// `If-Match` on GET and PUT (s3s-fs 0.14 ignores it).
    pub if_match: bool,
}

impl Supports {
    pub const ALL: Supports = Supports { if_match: true };
}

pub async fn run_all(store: &dyn Store, supports: Supports) {
    put_get_head_roundtrip(store).await;
    ranges(store).await;
    listing_is_one_sorted_level(store).await;
    holds_objects_at_any_depth(store).await;
    put_replaces_whole_objects(store).await;
    put_if_absent_creates_once(store).await;
    if supports.if_match {
        conditional_reads_and_writes(store).await;
    }
    delete_many_tolerates_missing_keys(store).await;
    missing_objects_are_not_found(store).await;
}

async fn write(store: &dyn Store, key: &str, data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::write(&src, data).expect("write temp file");
    let meta = store.put_file(key, &src).await.expect("put_file");
    assert_eq!(meta.key, key);
    assert_eq!(meta.size, data.len() as u64);
}

async fn put_get_head_roundtrip(store: &dyn Store) {
    write(store, ODD_KEY, b"hello parquet").await;
    assert_eq!(
        store.get(ODD_KEY).await.expect("get"),
        Bytes::from_static(b"hello parquet")
    );
    let head = store.head(ODD_KEY).await.expect("head");
    assert_eq!(head.size, 13);
    assert!(!head.etag.is_empty());
    assert!(head.last_modified_ms > 1_600_000_000_000, "plausible mtime");
}

async fn ranges(store: &dyn Store) {
    write(store, "conf/range", b"0123456789").await;
    assert_eq!(
        store.get_range("conf/range", 2..5).await.expect("range"),
        "234"
    );
    assert_eq!(
        store
            .get_range("conf/range", 8..100)
            .await
            .expect("clamped"),
        "89"
    );
    assert_eq!(
        store.get_range("conf/range", 6..10).await.expect("tail"),
        "6789"
    );
    assert!(
        store
            .get_range("conf/range", 12..20)
            .await
            .expect("past the end")
            .is_empty()
    );
}

async fn listing_is_one_sorted_level(store: &dyn Store) {
    for key in [
        "conf/list/b",
        "conf/list/a",
        "conf/list/sub/x",
        "conf/list/sub2/deeper/y",
    ] {
        write(store, key, b"x").await;
    }
    let listing = store.list("conf/list/").await.expect("list");
    let keys: Vec<_> = listing.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["conf/list/a", "conf/list/b"]);
    assert_eq!(listing.prefixes, ["conf/list/sub/", "conf/list/sub2/"]);
    let empty = store
        .list("conf/nothing-here/")
        .await
        .expect("list missing");
    assert!(empty.objects.is_empty() && empty.prefixes.is_empty());
}

async fn holds_objects_at_any_depth(store: &dyn Store) {
    for key in ["conf/holds/direct", "conf/holds/deep/er/object"] {
        write(store, key, b"x").await;
    }
    for (prefix, holds) in [
        ("conf/holds/", true),
        ("conf/holds/deep/", true),
        ("conf/holds/deep/er/", true),
        ("conf/holds/de/", false), // a prefix of a name, not of a path
        ("conf/holds/direct/", false),
        ("conf/holds-not/", false),
    ] {
        assert_eq!(
            store.holds_objects(prefix).await.expect("holds_objects"),
            holds,
            "{prefix}"
        );
    }
}

async fn put_replaces_whole_objects(store: &dyn Store) {
    write(store, "conf/replace", b"first version").await;
    write(store, "conf/replace", b"second").await;
    assert_eq!(store.get("conf/replace").await.expect("get"), "second");
}

async fn put_if_absent_creates_once(store: &dyn Store) {
    let key = "conf/lease";
    assert!(
        store
            .put_if_absent(key, Bytes::from_static(b"one"))
            .await
            .expect("first")
    );
    assert!(
        !store
            .put_if_absent(key, Bytes::from_static(b"two"))
            .await
            .expect("second")
    );
    assert_eq!(store.get(key).await.expect("get"), "one");
}

async fn conditional_reads_and_writes(store: &dyn Store) {
    let key = "conf/cond";
    write(store, key, b"v1").await;
    let first = store.head(key).await.expect("head").etag;
    assert_eq!(store.get_unchanged(key, &first).await.expect("get"), "v1");
    assert!(
        store
            .put_if_match(key, Bytes::from_static(b"v2"), &first)
            .await
            .expect("put_if_match")
    );
    let second = store.head(key).await.expect("head").etag;
    assert_ne!(first, second, "a write changes the ETag");
    assert!(matches!(
        store.get_unchanged(key, &first).await,
        Err(StoreError::Changed { .. })
    ));
    // A store that also reads on the calling thread reads as `get_unchanged` does.
    if let Some(read) = store.blocking_reader() {
        let (current, stale) = (second.clone(), first.clone());
        let (now, then) =
            tokio::task::spawn_blocking(move || (read(key, &current), read(key, &stale)))
                .await
                .expect("blocking reads");
        assert_eq!(now.expect("blocking read"), "v2");
        assert!(matches!(then, Err(StoreError::Changed { .. })));
    }
    assert!(
        !store
            .put_if_match(key, Bytes::from_static(b"v3"), &first)
            .await
            .expect("stale put_if_match"),
        "a stale ETag must not overwrite"
    );
    assert_eq!(store.get(key).await.expect("get"), "v2");
    assert!(
        !store
            .put_if_match("conf/cond-absent", Bytes::from_static(b"x"), &second)
            .await
            .expect("put_if_match on a missing key")
    );
    assert!(matches!(
        store.get("conf/cond-absent").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn delete_many_tolerates_missing_keys(store: &dyn Store) {
    write(store, "conf/del/a", b"a").await;
    write(store, "conf/del/b", b"b").await;
    let failed = store
        .delete_many(&["conf/del/a".into(), "conf/del/never-existed".into()])
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let keys: Vec<_> = store.list("conf/del/").await.expect("list").objects;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key, "conf/del/b");
}

async fn missing_objects_are_not_found(store: &dyn Store) {
    assert!(matches!(
        store.get("conf/missing").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.head("conf/missing").await,
        Err(StoreError::NotFound { .. })
    ));
}

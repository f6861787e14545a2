//! Test support: a [`Store`] wrapper that fails, or hangs, the Nth call of one operation, and
//! the sweep that runs a whole compaction against every such fault point (issue 6).
//!
//! A hang is cut short by dropping the run, which is what a kill does to an in-process run:
//! every await point is a place the process can die. After each faulty run a clean one must
//! leave every row exactly once.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Listing, ObjectMeta, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List,
    Head,
    Get,
    GetRange,
    PutFile,
    Delete,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::List,
        Op::Head,
        Op::Get,
        Op::GetRange,
        Op::PutFile,
        Op::Delete,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fail,
    Hang,
}

/// Wraps a store; the `nth` call (1-based) of `op` fails or never returns.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    fault: Option<(Op, usize, Mode)>,
    calls: [AtomicUsize; 6],
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>, fault: Option<(Op, usize, Mode)>) -> FaultyStore {
        FaultyStore {
            inner,
            fault,
            calls: Default::default(),
        }
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: Op) -> usize {
        self.calls[op as usize].load(Ordering::SeqCst)
    }

    async fn enter(&self, op: Op, key: &str) -> Result<(), StoreError> {
        let n = self.calls[op as usize].fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            Some((o, nth, mode)) if o == op && nth == n => match mode {
                Mode::Fail => Err(StoreError::Backend {
                    backend: "faulty",
                    key: key.to_string(),
                    message: format!("injected failure of {op:?} call {n}"),
                }),
                Mode::Hang => std::future::pending().await,
            },
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.enter(Op::List, prefix).await?;
        self.inner.list(prefix).await
    }
    async fn holds_objects(&self, prefix: &str) -> Result<bool, StoreError> {
        self.enter(Op::List, prefix).await?;
        self.inner.holds_objects(prefix).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.enter(Op::Head, key).await?;
        self.inner.head(key).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.enter(Op::Get, key).await?;
        self.inner.get(key).await
    }
    async fn get_unchanged(&self, key: &str, etag: &str) -> Result<Bytes, StoreError> {
        self.enter(Op::Get, key).await?;
        self.inner.get_unchanged(key, etag).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.enter(Op::GetRange, key).await?;
        self.inner.get_range(key, range).await
    }
    async fn put_file(&self, key: &str, src: &Path) -> Result<ObjectMeta, StoreError> {
        self.enter(Op::PutFile, key).await?;
        self.inner.put_file(key, src).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        self.inner.put_if_absent(key, data).await
    }
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<bool, StoreError> {
        self.inner.put_if_match(key, data, etag).await
    }
    async fn delete_many(&self, keys: &[String]) -> Vec<(String, StoreError)> {
        let key = keys.first().cloned().unwrap_or_default();
        if let Err(e) = self.enter(Op::Delete, &key).await {
            let message = e.reason();
            return keys
                .iter()
                .map(|k| {
                    let e = StoreError::Backend {
                        backend: "faulty",
                        key: k.clone(),
                        message: message.clone(),
                    };
                    (k.clone(), e)
                })
                .collect();
        }
        self.inner.delete_many(keys).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::app::App;
    use crate::config::Config;
    use crate::shutdown::Stop;
    use crate::store::LocalStore;

    const CONFIG: &str = "[store]\nurl = \"file://./w\"\n[merge]\nwork_dir = \"work\"\n\
                          [[tables]]\nname = \"t\"\nprefix = \"t/\"\n";

    fn partition(hour: u32) -> String {
        format!("t/dt=2026-11-20/hour={hour:02}/")
    }

    /// Two cold partitions of three small files; row ids 0..60, each once.
    fn seed(root: &Path) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        for f in 0..6i64 {
            let dir = root.join(partition(1 + (f % 2) as u32));
            std::fs::create_dir_all(&dir).unwrap();
            let file = std::fs::File::create(dir.join(format!("part-{f}.parquet"))).unwrap();
            let ids = Int64Array::from_iter_values(f * 10..f * 10 + 10);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
    }

    /// Every row id in the data files, sorted, duplicates kept.
    fn ids(root: &Path) -> Vec<i64> {
        let mut out = Vec::new();
        for hour in [1, 2] {
            for e in std::fs::read_dir(root.join(partition(hour)))
                .unwrap()
                .flatten()
            {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                        std::fs::File::open(e.path()).unwrap(),
                    )
                    .unwrap()
                    .build()
                    .unwrap();
                for batch in reader {
                    let batch = batch.unwrap();
                    let col = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap();
                    out.extend(col.values().iter());
                }
            }
        }
        out.sort();
        out
    }

    /// Compiles the default plugin once for the whole sweep.
    fn engine() -> Arc<crate::policy::PluginEngine> {
        static ENGINE: std::sync::OnceLock<Arc<crate::policy::PluginEngine>> =
            std::sync::OnceLock::new();
        ENGINE
            .get_or_init(|| Arc::new(crate::policy::PluginEngine::try_new().unwrap()))
            .clone()
    }

    async fn run(dir: &Path, fault: Option<(Op, usize, Mode)>) -> Arc<FaultyStore> {
        let config = Config::parse(&dir.join("config.toml"), CONFIG).unwrap();
        let inner: Arc<dyn Store> = Arc::new(LocalStore::try_new(dir.join("w")).unwrap());
        let store = Arc::new(FaultyStore::new(inner, fault));
        let app = tokio::task::spawn_blocking({
            let store = store.clone();
            move || App::open_with(config, store, engine()).unwrap()
        })
        .await
        .unwrap();
        let now = crate::policy::check::default_now_ms();
        // A hang ends the run as a kill would: the future is dropped mid-flight.
        let _ = tokio::time::timeout(Duration::from_secs(1), app.run_once(now, &Stop::new())).await;
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_fault_point_of_every_store_operation_loses_nothing() {
        let expected: Vec<i64> = (0..60).collect();
        // How often a clean run calls each operation.
        let dir = tempfile::tempdir().unwrap();
        seed(&dir.path().join("w"));
        let clean = run(dir.path(), None).await;
        assert_eq!(ids(&dir.path().join("w")), expected);
        let mut points = 0;
        for op in Op::ALL {
            for nth in 1..=clean.calls(op) {
                for mode in [Mode::Fail, Mode::Hang] {
                    let dir = tempfile::tempdir().unwrap();
                    let root = dir.path().join("w");
                    seed(&root);
                    run(dir.path(), Some((op, nth, mode))).await;
                    let mut seen = ids(&root);
                    seen.dedup();
                    assert_eq!(seen, expected, "{op:?} #{nth} {mode:?}: rows lost");
                    run(dir.path(), None).await;
                    assert_eq!(
                        ids(&root),
                        expected,
                        "{op:?} #{nth} {mode:?}: after a clean run"
                    );
                    points += 1;
                }
            }
        }
        assert!(points >= 20, "only {points} fault points");
        eprintln!("store fault points survived: {points}");
    }
}

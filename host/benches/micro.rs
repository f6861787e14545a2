//! Micro-benchmarks (issue 7), without a framework: `cargo bench -p compactor --bench micro`.
//!
//! * plugin calls: the default plugin's `is-cold` (a fresh instance per call, so this is the
//!   instantiation cost) and `plan` over 1,000 files;
//! * the merge engine: `compactor merge`'s code path on 64 generated files of 200,000 rows in
//!   all, reported in MiB/s of input.
//!
//! Each figure is the median of several rounds. Whole-run comparisons with other tools live in
//! `scripts/bench` (docs/benchmarks.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use compactor::config::MergeConfig;
use compactor::layout::Partition;
use compactor::policy::wasm::Limits;
use compactor::policy::{DEFAULT_PLUGIN, PluginEngine, PolicyPlugin};
use compactor::store::ObjectMeta;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn plugin_calls() {
    let engine = PluginEngine::try_new().expect("engine");
    let started = Instant::now();
    let plugin = PolicyPlugin::load(
        &engine,
        DEFAULT_PLUGIN,
        "default",
        vec![],
        Limits::default(),
    )
    .expect("default plugin");
    println!(
        "plugin load (compile + info + configure): {:?}",
        started.elapsed()
    );
    let now = compactor::policy::check::default_now_ms();
    let prefix = "t/dt=2026-11-20/hour=01/";
    let partition = Partition {
        table: "t".into(),
        prefix: prefix.into(),
        keys: vec![
            ("dt".into(), "2026-11-20".into()),
            ("hour".into(), "01".into()),
        ],
    };
    let files: Vec<ObjectMeta> = (0..1000)
        .map(|i| ObjectMeta {
            key: format!("{prefix}part-{i:05}.parquet"),
            size: 300_000 + i,
            last_modified_ms: now - 7_200_000,
            etag: format!("e{i}"),
            archived: false,
        })
        .collect();
    let cold = time(200, || plugin.is_cold(&partition, now).expect("is-cold"));
    let plan = time(50, || plugin.plan(&partition, &files, now).expect("plan"));
    println!("plugin is-cold (fresh instance per call): {cold:?}");
    println!("plugin plan, 1,000 files: {plan:?}");
}

fn write_file(path: &std::path::Path, first: i64, rows: i64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, true),
        Field::new("value", DataType::Float64, false),
    ]));
    let ids = first..first + rows;
    let kinds: Vec<&str> = ids
        .clone()
        .map(|i| ["click", "view", "buy"][(i % 3) as usize])
        .collect();
    let messages: Vec<String> = ids
        .clone()
        .map(|i| format!("event {i} from host-{}", i % 97))
        .collect();
    let values: Vec<f64> = ids.clone().map(|i| i as f64 * 0.5).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(messages)),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

fn merge_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in/dt=2026-11-20/hour=01");
    std::fs::create_dir_all(&input).expect("mkdir");
    let mut bytes = 0;
    for f in 0..64 {
        let path = input.join(format!("part-{f:03}.parquet"));
        write_file(&path, f * 3125, 3125);
        bytes += std::fs::metadata(&path).expect("size").len();
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let cfg = MergeConfig {
        parallelism: 1,
        ..MergeConfig::default()
    };
    let mut round = 0;
    let took = time(5, || {
        round += 1;
        let out = dir.path().join(format!("out{round}"));
        runtime
            .block_on(compactor::merge_dir::merge_dir(
                &dir.path().join("in"),
                &out,
                128 << 20,
                &compactor::layout::DataFiles::default(),
                &cfg,
                &compactor::shutdown::Stop::new(),
            ))
            .expect("merge")
    });
    println!(
        "merge engine, 64 files ({:.1} MiB) into 1, one core: {took:?} = {:.0} MiB/s",
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / took.as_secs_f64()
    );
}

fn main() {
    // `cargo test` runs benches with --bench only when asked; also accept being run plainly.
    plugin_calls();
    merge_engine();
}

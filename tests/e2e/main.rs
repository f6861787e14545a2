//! End-to-end tests: the real `compactor` binary on real Parquet files (../shared/testdata),
//! with real wasm plugins, checked by an independent reader (pyarrow). `scripts/test` sets up
//! what they need.

// Tests fail loudly on any surprise; unwrap is the point here.
#![allow(clippy::unwrap_used)]

mod corpus;
mod crash;
mod daemon;
mod drift;
mod lifecycle;
mod merge_dir;
mod plugins;
mod s3;
mod soak;
mod util;

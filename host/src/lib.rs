//! compactor: merges small Parquet files in hive-partitioned storage into large ones, with the
//! policy (what is cold, what to group, how large) in WebAssembly plugins.
//!
//! The pieces, in the order a run uses them: [`config`] → [`app`] opens the [`store`] and loads
//! the [`policy`] plugins → [`plan`] walks the [`layout`] and asks the policy → [`compact`]
//! carries the plan out with [`merge`], committing through the [`journal`] → [`summary`] and
//! [`metrics`]. [`daemon`] repeats that on a schedule, with [`http`] endpoints and a graceful
//! [`shutdown`]; [`daemon::Daemon`] is the API for embedding compactor in another service.

pub mod app;
pub mod cli;
pub mod compact;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod demo;
pub mod http;
pub mod journal;
pub mod layout;
pub mod lease;
pub mod malloc;
pub mod merge;
pub mod merge_dir;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod shutdown;
pub mod store;
pub mod summary;

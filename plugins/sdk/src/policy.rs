//! What a policy is, in plain Rust: the types of the contract (`wit/since_v0.2.0`) and the
//! [`Policy`] trait. A plugin implements the trait and calls [`export_policy!`](crate::export_policy);
//! the same code runs natively in unit tests, without wasm.

/// One hive partition: a prefix whose path segments are `key=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The table name from the host's config.
    pub table: String,
    /// The partition's full prefix, ending in `/`, e.g. `events/dt=2026-11-20/hour=03/`.
    pub prefix: String,
    /// The hive keys in path order, e.g. `[("dt", "2026-11-20"), ("hour", "03")]`.
    pub keys: Vec<(String, String)>,
}

impl Partition {
    /// A partition of `table` from its prefix: the `key=value` segments after the table's own
    /// prefix become the keys. Handy in tests: `Partition::of("events", "events/dt=2026-11-20/")`.
    pub fn of(table: &str, prefix: &str) -> Partition {
        let keys = prefix
            .split('/')
            .filter_map(|segment| segment.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Partition {
            table: table.to_string(),
            prefix: prefix.to_string(),
            keys,
        }
    }

    /// The value of hive key `name`, if the partition has it.
    pub fn key(&self, name: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One data file of a partition, as listed by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Full object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-modified time, milliseconds since the Unix epoch (UTC).
    pub last_modified_ms: i64,
    /// Row count when the host knows it.
    pub rows: Option<u64>,
}

/// Files to merge into one output: indices into the list handed to [`Policy::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub files: Vec<u32>,
    /// The size in bytes the output should aim at (1 KiB to 64 GiB).
    pub target_size: u64,
    /// The output's compression, as in the host's `[merge] compression` (`zstd(9)`, `snappy`,
    /// ...); `None` keeps the host's setting.
    pub compression: Option<String>,
}

impl Group {
    /// A group with the host's compression.
    pub fn new(files: Vec<u32>, target_size: u64) -> Group {
        Group {
            files,
            target_size,
            compression: None,
        }
    }
}

/// What to do with a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it alone; the text says why (logged and counted by the host).
    Skip(String),
    /// Merge these groups. An empty list means the same as `Skip`.
    Compact(Vec<Group>),
}

/// Severity of a line sent to the host's log with [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A compaction policy. The host makes a fresh instance for every call and configures it
/// first, so a policy is just its settings: no state survives from one partition to the next.
pub trait Policy: Sized {
    /// Short stable name, shown in logs and metrics, e.g. `"quiet-hours"`.
    const NAME: &'static str;
    /// The plugin's own version; `env!("CARGO_PKG_VERSION")` is a good choice.
    const VERSION: &'static str;

    /// Builds the policy from the table's settings (`[tables.settings]`, all values strings).
    /// Refuse unknown keys and bad values with a message naming them: the host then refuses to
    /// start, instead of running with a typo.
    fn configure(settings: &[(String, String)]) -> Result<Self, String>;

    /// Whether `p` may hold cold data, asked before it is listed. `false` skips the prefix and
    /// everything below it, so return it only when all of that is certainly still being
    /// written. The default lists everything and leaves the decision to [`Policy::plan`].
    fn is_cold(&self, p: &Partition, now_ms: i64) -> bool {
        let _ = (p, now_ms);
        true
    }

    /// Decides what to merge. `files` comes in no particular order; the answer must not depend
    /// on that order.
    fn plan(&self, p: &Partition, files: &[FileInfo], now_ms: i64) -> Decision;
}

/// Sends a line to the host's log (tagged there with the plugin and partition). The host keeps
/// at most 100 lines per call. Natively (in unit tests) the line goes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wasm::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Smallest and largest target size the host accepts.
pub const MIN_TARGET_SIZE: u64 = 1 << 10;
pub const MAX_TARGET_SIZE: u64 = 64 << 30;

/// Checks an answer the way the host does before it acts on it: indices in range, no file in
/// two groups, no empty group, target sizes within bounds. (The host also checks that a
/// group's compression names a codec it knows.) Returns the reason on failure.
pub fn validate(decision: &Decision, file_count: usize) -> Result<(), String> {
    let Decision::Compact(groups) = decision else {
        return Ok(());
    };
    let mut seen = vec![false; file_count];
    for (g, group) in groups.iter().enumerate() {
        if group.files.is_empty() {
            return Err(format!("group {g} has no files"));
        }
        if !(MIN_TARGET_SIZE..=MAX_TARGET_SIZE).contains(&group.target_size) {
            return Err(format!(
                "group {g} has target size {} bytes, outside {MIN_TARGET_SIZE}..={MAX_TARGET_SIZE}",
                group.target_size
            ));
        }
        for &i in &group.files {
            let Some(slot) = seen.get_mut(i as usize) else {
                return Err(format!(
                    "group {g} names file index {i}, but only {file_count} files were given"
                ));
            };
            if *slot {
                return Err(format!("file index {i} appears more than once"));
            }
            *slot = true;
        }
    }
    Ok(())
}

/// Exports `$policy` (a type implementing [`Policy`](crate::Policy)) as the plugin's
/// `compaction:policy/policy@0.2.0`. Put it once in the plugin crate's `lib.rs`; it expands
/// to nothing in native builds, so unit tests call the policy directly.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::bindings::compaction::policy::types as wit;
            use $crate::__private::bindings::exports::compaction::policy::policy::Guest;
            thread_local! {
                static SLOT: $crate::__private::Slot<$policy> = const { $crate::__private::Slot::new() };
            }
            struct Exported;
            impl Guest for Exported {
                fn info() -> wit::PluginInfo {
                    $crate::__private::Slot::<$policy>::info()
                }
                fn configure(settings: ::std::vec::Vec<(String, String)>) -> Result<(), String> {
                    SLOT.with(|s| s.configure(settings))
                }
                fn is_cold(p: wit::Partition, now_ms: i64) -> bool {
                    SLOT.with(|s| s.is_cold(p, now_ms))
                }
                fn plan(
                    p: wit::Partition,
                    files: ::std::vec::Vec<wit::DataFile>,
                    now_ms: i64,
                ) -> wit::Decision {
                    SLOT.with(|s| s.plan(p, files, now_ms))
                }
            }
            $crate::__private::bindings::__export_wit!(Exported);
        };
    };
}

//! Hive layout: which prefixes are partitions, what their keys are, which objects are data.
//! Pure functions, no I/O.

use serde::Serialize;

use crate::store::ObjectMeta;

/// A hive partition of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub table: String,
    /// Full prefix in the store, ending in `/` (or the table prefix itself).
    pub prefix: String,
    /// `key=value` segments below the table prefix, in path order.
    pub keys: Vec<(String, String)>,
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.prefix)
    }
}

/// Name prefix of the files compactor writes; recovery looks only at these.
pub const OUTPUT_PREFIX: &str = "compacted-";

/// Hive keys of `prefix` below `table_prefix`: every `k=v` segment. Other segments carry no key.
pub fn partition_keys(table_prefix: &str, prefix: &str) -> Vec<(String, String)> {
    prefix
        .strip_prefix(table_prefix)
        .unwrap_or(prefix)
        .split('/')
        .filter_map(|segment| segment.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Hidden names (`_SUCCESS`, `_temporary/`, `.spark-staging/`, `.crc` files) are never data
/// and never partitions, as in Hive, Spark and Trino.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// Which objects of a partition are its data files: visible names ending in the table's
/// `file_suffix` (any case), and compactor's own merged files. An empty suffix takes every
/// visible file: Hive (`000000_0`), Trino and Flink name Parquet files without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFiles {
    /// Lowercase.
    suffix: String,
}

impl Default for DataFiles {
    fn default() -> Self {
        DataFiles::ending_in(DataFiles::DEFAULT_SUFFIX)
    }
}

impl DataFiles {
    pub const DEFAULT_SUFFIX: &str = ".parquet";

    pub fn ending_in(suffix: &str) -> DataFiles {
        DataFiles {
            suffix: suffix.to_ascii_lowercase(),
        }
    }

    /// The name ending that makes a file data (lowercase; empty: every file not hidden).
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    pub fn matches(&self, key: &str) -> bool {
        let name = crate::store::file_name(key);
        let lower = name.to_ascii_lowercase();
        // Merged files are named `.parquet` whatever the suffix, and must be seen as data by
        // the next run: to finish their commit, and to be merged again with what came after.
        !is_hidden(name)
            && (lower.ends_with(&self.suffix) || (is_output(name) && lower.ends_with(".parquet")))
    }

    /// For messages: `*.parquet`, or `every visible file`.
    pub fn describe(&self) -> String {
        if self.suffix.is_empty() {
            "every visible file".into()
        } else {
            format!("*{}", self.suffix)
        }
    }
}

/// One level of a listing, split for the walk.
#[derive(Debug, Default)]
pub struct Level {
    /// The data files directly under the prefix.
    pub files: Vec<ObjectMeta>,
    /// Visible objects that are not data files by the table's suffix (never touched).
    pub others: Vec<String>,
    /// Data files in an archive storage class, unreadable until restored (never touched).
    pub archived: Vec<String>,
    /// The sub-prefixes worth walking (hidden ones such as `_temporary/` are not).
    pub below: Vec<String>,
}

impl Level {
    pub fn of(listing: crate::store::Listing, data: &DataFiles) -> Level {
        let mut level = Level::default();
        for o in listing.objects {
            match (data.matches(&o.key), o.archived) {
                (true, true) => level.archived.push(o.key),
                (true, false) => level.files.push(o),
                (false, _) if !is_hidden(crate::store::file_name(&o.key)) => {
                    level.others.push(o.key)
                }
                (false, _) => {}
            }
        }
        level.below = listing
            .prefixes
            .into_iter()
            .filter(|p| !is_hidden(last_segment(p)))
            .collect();
        level
    }
}

/// Whether an object was written by compactor.
pub fn is_output(key: &str) -> bool {
    crate::store::file_name(key).starts_with(OUTPUT_PREFIX)
}

/// The last segment of a prefix ending in `/`.
pub fn last_segment(prefix: &str) -> &str {
    prefix
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
}

/// A table format that keeps its own list of a table's data files, in a log or metadata beside
/// them. Its readers open exactly the files listed there: a file merged and its inputs deleted
/// behind the format's back is a table that names missing files and misses the merged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    DeltaLake,
    Hudi,
    Iceberg,
}

impl TableFormat {
    /// The marker directories' names, as sub-prefixes of a table's root.
    pub const MARKERS: [&str; 3] = ["_delta_log/", ".hoodie/", "metadata/"];

    /// The format a sub-prefix at a table's root marks, by its name. `metadata/` is a common
    /// name, so it marks an Iceberg table only if it holds a table metadata file
    /// ([`TableFormat::is_iceberg_metadata`]).
    pub fn marked_by(sub_prefix: &str) -> Option<TableFormat> {
        match last_segment(sub_prefix) {
            "_delta_log" => Some(TableFormat::DeltaLake),
            ".hoodie" => Some(TableFormat::Hudi),
            "metadata" => Some(TableFormat::Iceberg),
            _ => None,
        }
    }

    /// `v3.metadata.json`, `00002-<uuid>.metadata.json`, also compressed (`.metadata.json.gz`,
    /// `.gz.metadata.json`).
    pub fn is_iceberg_metadata(key: &str) -> bool {
        let name = crate::store::file_name(key);
        name.contains(".metadata.json") && !is_hidden(name)
    }

    /// The format's own way of merging small files, for the refusal to point at.
    pub fn own_compaction(self) -> &'static str {
        match self {
            TableFormat::DeltaLake => "Delta Lake's OPTIMIZE",
            TableFormat::Hudi => "Hudi's clustering",
            TableFormat::Iceberg => "Iceberg's rewrite_data_files",
        }
    }
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TableFormat::DeltaLake => "Delta Lake",
            TableFormat::Hudi => "Hudi",
            TableFormat::Iceberg => "Iceberg",
        })
    }
}

/// The prefixes that enclose `prefix` (empty or ending in `/`), outermost first, the store's
/// root (`""`) included and `prefix` itself not: `a/b/` gives `""` and `a/`.
pub fn enclosing_prefixes(prefix: &str) -> Vec<String> {
    if prefix.is_empty() {
        return Vec::new();
    }
    std::iter::once(String::new())
        .chain(
            prefix
                .match_indices('/')
                .map(|(end, _)| prefix[..=end].to_string()),
        )
        .filter(|p| p != prefix)
        .collect()
}

/// Hive path segment for a value: `dt=2026-11-20/hour=03/`.
pub fn hour_prefix(table_prefix: &str, date: &str, hour: u32) -> String {
    format!("{table_prefix}dt={date}/hour={hour:02}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_hive_segments_only() {
        let keys = partition_keys("events/", "events/dt=2026-11-20/raw/hour=03/");
        assert_eq!(
            keys,
            vec![
                ("dt".into(), "2026-11-20".into()),
                ("hour".into(), "03".into())
            ]
        );
        assert!(partition_keys("events/", "events/").is_empty());
        assert_eq!(
            partition_keys("t/", "t/a=b=c/"),
            vec![("a".into(), "b=c".into())]
        );
    }

    #[test]
    fn data_files_and_hidden_names() {
        let parquet = DataFiles::default();
        assert!(parquet.matches("t/dt=1/part-0.parquet"));
        assert!(parquet.matches("t/dt=1/PART-0.PARQUET"));
        assert!(!parquet.matches("t/dt=1/_SUCCESS"));
        assert!(!parquet.matches("t/dt=1/.part-0.parquet.crc"));
        assert!(!parquet.matches("t/dt=1/_tmp.parquet"));
        assert!(!parquet.matches("t/dt=1/notes.txt"));
        assert!(!parquet.matches("t/dt=1/000000_0"));

        let every = DataFiles::ending_in("");
        assert!(every.matches("t/dt=1/000000_0"));
        assert!(every.matches("t/dt=1/notes.txt"));
        assert!(!every.matches("t/dt=1/_SUCCESS"));
        assert!(!every.matches("t/dt=1/.hive-staging_1"));

        let impala = DataFiles::ending_in(".PARQ");
        assert!(impala.matches("t/dt=1/f2_data.0.parq"));
        assert!(!impala.matches("t/dt=1/part-0.parquet"));
        assert!(
            impala.matches("t/dt=1/compacted-0123.parquet"),
            "ours, whatever the suffix"
        );
        assert!(!impala.matches("t/dt=1/compacted-0123.json"));

        let level = Level::of(
            crate::store::Listing {
                objects: ["t/a.parquet", "t/000000_0", "t/_SUCCESS"]
                    .map(|key| ObjectMeta {
                        key: key.into(),
                        size: 1,
                        last_modified_ms: 0,
                        etag: String::new(),
                        archived: false,
                    })
                    .to_vec(),
                prefixes: vec!["t/dt=1/".into(), "t/_temporary/".into()],
            },
            &parquet,
        );
        assert_eq!(level.files.len(), 1);
        assert_eq!(level.others, ["t/000000_0"]);
        assert_eq!(level.below, ["t/dt=1/"]);
        assert!(is_output("t/dt=1/compacted-0123.parquet"));
        assert!(!is_output("t/dt=1/part-compacted-0123.parquet"));
    }

    #[test]
    fn table_formats_by_their_marker_directories() {
        use TableFormat::*;
        assert_eq!(TableFormat::marked_by("t/_delta_log/"), Some(DeltaLake));
        assert_eq!(TableFormat::marked_by(".hoodie/"), Some(Hudi));
        assert_eq!(TableFormat::marked_by("t/metadata/"), Some(Iceberg));
        for plain in [
            "t/dt=1/",
            "t/_temporary/",
            "t/delta_log/",
            "t/metadata=1/",
            "t/data/",
        ] {
            assert_eq!(TableFormat::marked_by(plain), None, "{plain}");
        }
        for metadata in [
            "t/metadata/v3.metadata.json",
            "t/metadata/00002-6b2c1a3e-0f0e-4f3a-9a51-2b0c5c1f7e11.metadata.json",
            "t/metadata/00001-x.gz.metadata.json",
            "t/metadata/v1.metadata.json.gz",
        ] {
            assert!(TableFormat::is_iceberg_metadata(metadata), "{metadata}");
        }
        for other in [
            "t/metadata/snap-1-1-abc.avro",
            "t/metadata/version-hint.text",
            "t/metadata/schema.json",
            "t/metadata/.v1.metadata.json.crc",
        ] {
            assert!(!TableFormat::is_iceberg_metadata(other), "{other}");
        }
    }

    #[test]
    fn enclosing_prefixes_up_to_the_root() {
        assert_eq!(enclosing_prefixes("a/b/c/"), ["", "a/", "a/b/"]);
        assert_eq!(enclosing_prefixes("events/"), [""]);
        assert!(enclosing_prefixes("").is_empty());
    }

    #[test]
    fn segments() {
        assert_eq!(last_segment("t/dt=1/hour=02/"), "hour=02");
        assert_eq!(
            hour_prefix("t/", "2026-11-20", 3),
            "t/dt=2026-11-20/hour=03/"
        );
    }
}

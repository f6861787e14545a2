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

/// Whether an object is a data file of its partition.
/// One level of a listing, split into its data files and the sub-prefixes worth walking
/// (hidden ones such as `_temporary/` are not).
pub fn data_and_subprefixes(listing: crate::store::Listing) -> (Vec<ObjectMeta>, Vec<String>) {
    let files = listing
        .objects
        .into_iter()
        .filter(|o| is_data_file(&o.key))
        .collect();
    let subs = listing
        .prefixes
        .into_iter()
        .filter(|p| !is_hidden(last_segment(p)))
        .collect();
    (files, subs)
}

pub fn is_data_file(key: &str) -> bool {
    let name = crate::store::file_name(key);
    !is_hidden(name) && name.to_ascii_lowercase().ends_with(".parquet")
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
        assert!(is_data_file("t/dt=1/part-0.parquet"));
        assert!(is_data_file("t/dt=1/PART-0.PARQUET"));
        assert!(!is_data_file("t/dt=1/_SUCCESS"));
        assert!(!is_data_file("t/dt=1/.part-0.parquet.crc"));
        assert!(!is_data_file("t/dt=1/_tmp.parquet"));
        assert!(!is_data_file("t/dt=1/notes.txt"));
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

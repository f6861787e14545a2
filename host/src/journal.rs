//! The commit protocol's memory, kept in the bucket itself.
//!
//! Every merged file records its inputs (key, size, ETag, rows) in its footer's key-value
//! metadata. The steps are: write the merged file whole (atomic) → read its footer back and
//! check the rows → delete exactly the recorded inputs that are unchanged. A process killed
//! between the write and the last delete leaves a merged file whose inputs still exist;
//! [`detect`] finds it at the start of the next run and [`apply`] finishes the job: roll forward
//! (delete the leftover inputs) when the merged file verifies, roll back (delete the merged file)
//! when it does not. So a kill at any moment costs at most a short window of duplicates.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::{OUTPUT_PREFIX, is_output};
use crate::merge::footer::{read_metadata, row_group_rows};
use crate::store::{ObjectMeta, Store};
use parquet::file::metadata::{KeyValue, ParquetMetaData};

/// Footer keys we own start with this; they are never copied from inputs.
pub const KEY_PREFIX: &str = "compactor.";
/// The footer key holding the [`Journal`].
pub const INPUTS_KEY: &str = "compactor.inputs";
/// The newest record format this build reads (it reads every older one too). Any other fails
/// its partition instead of being guessed at (see [`detect`]).
pub const VERSION: u32 = 2;
/// A record up to this size is written as plain JSON (version 1), which any Parquet tool shows
/// as it is; a larger one, zstd-compressed (version 2). 64 KiB is the tail many readers fetch
/// first to find the footer, and about 500 inputs.
const PLAIN_MAX_BYTES: usize = 64 << 10;
/// A compressed record never unpacks to more than this (about 500,000 inputs), whatever its
/// frame claims.
const UNPACKED_MAX_BYTES: usize = 64 << 20;

/// What a merged file was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Total rows, equal to the sum of the inputs' rows.
    pub rows: u64,
    pub inputs: Vec<JournalInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalInput {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub rows: u64,
}

/// Version 1: the inputs as JSON.
#[derive(Serialize, Deserialize)]
struct Plain<I> {
    version: u32,
    rows: u64,
    inputs: I,
}

/// Version 2: the inputs' JSON, zstd-compressed and in base64. A merge of 10,000 tiny files
/// records 1.1 MB in plain JSON, which every reader of the file would fetch and parse with its
/// footer; packed, about 170 KB.
#[derive(Serialize, Deserialize)]
struct Packed {
    version: u32,
    rows: u64,
    inputs_zstd: String,
}

impl Journal {
    pub fn to_key_value(&self) -> KeyValue {
        KeyValue::new(INPUTS_KEY.to_string(), self.encode())
    }

    fn encode(&self) -> String {
        let plain = to_json(&Plain {
            version: 1,
            rows: self.rows,
            inputs: &self.inputs,
        });
        if plain.len() <= PLAIN_MAX_BYTES {
            return plain;
        }
        match zstd::bulk::compress(to_json(&self.inputs).as_bytes(), 3) {
            Ok(packed) => to_json(&Packed {
                version: 2,
                rows: self.rows,
                inputs_zstd: BASE64.encode(packed),
            }),
            // Larger, but as good a record.
            Err(_) => plain,
        }
    }

    /// The journal in a footer: `None` if there is none, `Some(Err)` if it is unreadable or
    /// of a version this build does not know.
    pub fn from_metadata(md: &ParquetMetaData) -> Option<Result<Journal, String>> {
        let kv = md.file_metadata().key_value_metadata()?;
        let value = kv
            .iter()
            .find(|kv| kv.key == INPUTS_KEY)?
            .value
            .as_deref()?;
        Some(Self::decode(value))
    }

    fn decode(value: &str) -> Result<Journal, String> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let damaged =
            |e: &dyn std::fmt::Display| format!("damaged {INPUTS_KEY} in the footer: {e}");
        let Versioned { version } = serde_json::from_str(value).map_err(|e| damaged(&e))?;
        match version {
            1 => {
                let plain: Plain<Vec<JournalInput>> =
                    serde_json::from_str(value).map_err(|e| damaged(&e))?;
                Ok(Journal {
                    rows: plain.rows,
                    inputs: plain.inputs,
                })
            }
            2 => {
                let packed: Packed = serde_json::from_str(value).map_err(|e| damaged(&e))?;
                let zstd = BASE64
                    .decode(&packed.inputs_zstd)
                    .map_err(|e| damaged(&e))?;
                let json =
                    zstd::bulk::decompress(&zstd, UNPACKED_MAX_BYTES).map_err(|e| damaged(&e))?;
                Ok(Journal {
                    rows: packed.rows,
                    inputs: serde_json::from_slice(&json).map_err(|e| damaged(&e))?,
                })
            }
            _ => Err(format!(
                "{INPUTS_KEY} is of version {version}, which this compactor cannot read (it \
                 reads versions 1 to {VERSION}): run the compactor that wrote it, or a newer one"
            )),
        }
    }
}

/// Plain data (no maps with other than string keys) always serializes.
fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The output key for a set of inputs: derived from their keys and ETags, so a retried merge
/// of the same inputs writes the same key instead of a second copy.
pub fn output_key(partition_prefix: &str, inputs: &[ObjectMeta]) -> String {
    let mut sorted: Vec<&ObjectMeta> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut hash = Sha256::new();
    for m in sorted {
        hash.update(m.key.as_bytes());
        hash.update([0]);
        hash.update(m.etag.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("{partition_prefix}{OUTPUT_PREFIX}{hex}.parquet")
}

/// Reads the output's footer back and checks it holds `journal` and the journal's row count.
pub async fn verify_output(
    store: &dyn Store,
    output: &ObjectMeta,
    journal: &Journal,
) -> Result<(), String> {
    let md = read_metadata(store, output)
        .await
        .map_err(|e| e.to_string())?;
    check_footer(&md, journal)
}

fn check_footer(md: &ParquetMetaData, expected: &Journal) -> Result<(), String> {
    let rows = row_group_rows(md);
    match Journal::from_metadata(md) {
        None => return Err("its footer has no record of its inputs".into()),
        Some(Err(e)) => return Err(e),
        Some(Ok(found)) if &found != expected => {
            return Err("its footer records other inputs than expected".into());
        }
        Some(Ok(_)) => {}
    }
    if rows < 0 || rows as u64 != expected.rows {
        return Err(format!(
            "it holds {rows} rows, its inputs {}",
            expected.rows
        ));
    }
    Ok(())
}

/// An unfinished commit found in a partition.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Recovery {
    /// The merged file is good: delete the inputs that are still there and unchanged.
    RollForward {
        output: String,
        delete: Vec<String>,
        /// Inputs whose size or ETag changed since the merge: left alone.
        changed: Vec<String>,
    },
    /// The merged file is not good, and every input is still there: delete it; the inputs stay.
    RollBack { output: String, reason: String },
    /// The merged file is not good, but some inputs were already deleted: nothing is touched,
    /// and the partition is reported as failed until someone looks.
    Stuck {
        output: String,
        reason: String,
        inputs: Vec<String>,
    },
}

/// Finds unfinished commits among a partition's `files`.
///
/// An unfinished commit is a merged file with some of its inputs still beside it, so a
/// partition of one file has none: a compacted partition (the usual state of all but the newest
/// ones) is planned without reading its merged file's footer. A table of a year of hourly
/// partitions would otherwise cost 8,760 footer reads every run.
///
/// A merged file whose record cannot be read (the footer read failed, or the record is damaged
/// or from a newer compactor) fails the partition. Planned as an ordinary file, it would be
/// merged again with any of its inputs still beside it, and their rows would then be in the
/// new file twice, for good.
pub async fn detect(store: &dyn Store, files: &[ObjectMeta]) -> Result<Vec<Recovery>, String> {
    let mut found = Vec::new();
    if files.len() < 2 {
        return Ok(found);
    }
    // By key: a merged file of 10,000 inputs beside 10,000 files is 10,000 lookups, not 10^8
    // comparisons.
    let by_key: HashMap<&str, &ObjectMeta> = files.iter().map(|f| (f.key.as_str(), f)).collect();
    for output in files.iter().filter(|f| is_output(&f.key)) {
        let unreadable = |e: String| {
            format!(
                "{}: cannot tell whether this merged file has an unfinished commit ({e}); the \
                 partition is left as it is until its record can be read",
                output.key
            )
        };
        let md = read_metadata(store, output)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let journal = match Journal::from_metadata(&md) {
            Some(Ok(j)) => j,
            Some(Err(e)) => return Err(unreadable(e)),
            // Named like ours but not written by us (`compactor merge` writes no record).
            None => continue,
        };
        let present: Vec<(&JournalInput, &ObjectMeta)> = journal
            .inputs
            .iter()
            .filter_map(|i| by_key.get(i.key.as_str()).map(|&f| (i, f)))
            .filter(|(_, f)| f.key != output.key)
            .collect();
        let (same, changed): (Vec<_>, Vec<_>) = present
            .into_iter()
            .partition(|(i, f)| i.size == f.size && i.etag == f.etag);
        // An input replaced since the merge is a new file: its rows are not in the merged
        // file, and it is compacted like any other. Only unchanged inputs are unfinished work.
        if same.is_empty() {
            continue;
        }
        let same: Vec<String> = same.into_iter().map(|(_, f)| f.key.clone()).collect();
        found.push(match check_footer(&md, &journal) {
            Ok(()) => Recovery::RollForward {
                output: output.key.clone(),
                delete: same,
                changed: changed.into_iter().map(|(_, f)| f.key.clone()).collect(),
            },
            // Every input is still there, unchanged: the merged file adds nothing; remove it.
            Err(reason) if same.len() == journal.inputs.len() => Recovery::RollBack {
                output: output.key.clone(),
                reason,
            },
            // Some inputs are gone, so their rows live only in the merged file, which no
            // longer verifies: deleting anything could lose rows. Leave it all for a person.
            Err(reason) => Recovery::Stuck {
                output: output.key.clone(),
                reason,
                inputs: same,
            },
        });
    }
    Ok(found)
}

impl Recovery {
    /// Keys this recovery touches, which the policy must not plan around this run.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Recovery::RollForward {
                output,
                delete,
                changed,
            } => std::iter::once(output.as_str())
                .chain(delete.iter().map(String::as_str))
                .chain(changed.iter().map(String::as_str))
                .collect(),
            Recovery::RollBack { output, .. } => vec![output.as_str()],
            Recovery::Stuck { output, inputs, .. } => std::iter::once(output.as_str())
                .chain(inputs.iter().map(String::as_str))
                .collect(),
        }
    }
}

/// Carries out a recovery. Returns the number of objects deleted.
pub async fn apply(store: &dyn Store, recovery: &Recovery) -> Result<usize, String> {
    let keys: Vec<String> = match recovery {
        Recovery::RollForward {
            output,
            delete,
            changed,
        } => {
            for key in changed {
                tracing::warn!(file = %key, output = %output,
                    "input changed since it was merged; left in place (its old rows are in the merged file)");
            }
            delete.clone()
        }
        Recovery::Stuck { output, reason, .. } => {
            return Err(format!(
                "merged file {output} no longer verifies ({reason}), and some of its inputs \
                 are already deleted, so their rows exist only there: left untouched, with \
                 its remaining inputs; inspect it by hand"
            ));
        }
        Recovery::RollBack { output, reason } => {
            tracing::warn!(file = %output, "merged file failed verification ({reason}); deleting it, its inputs stay");
            vec![output.clone()]
        }
    };
    let failed = store.delete_many(&keys).await;
    if let Some((key, e)) = failed.first() {
        return Err(format!("recovery could not delete {key}: {e}"));
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size: 1,
            last_modified_ms: 0,
            etag: etag.into(),
            archived: false,
        }
    }

    fn journal(inputs: usize) -> Journal {
        Journal {
            rows: 60 * inputs as u64,
            inputs: (0..inputs)
                .map(|i| JournalInput {
                    key: format!("events/dt=2026-11-20/hour=03/part-{i:05}.parquet"),
                    size: 12_000 + i as u64,
                    etag: format!(
                        "\"{:032x}\"",
                        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ),
                    rows: 60,
                })
                .collect(),
        }
    }

    #[test]
    fn small_records_stay_plain_json_and_large_ones_are_compressed() {
        let small = journal(10);
        let plain = small.encode();
        assert!(plain.starts_with(r#"{"version":1,"#), "{plain}");
        assert!(plain.contains("part-00009.parquet"));
        assert_eq!(Journal::decode(&plain), Ok(small));

        let large = journal(10_000);
        let packed = large.encode();
        assert!(packed.starts_with(r#"{"version":2,"#), "{packed:.100}");
        let plain_len = to_json(&Plain {
            version: 1,
            rows: large.rows,
            inputs: &large.inputs,
        })
        .len();
        assert!(
            packed.len() * 3 < plain_len,
            "{} against {plain_len} bytes",
            packed.len()
        );
        assert_eq!(Journal::decode(&packed), Ok(large));
    }

    #[test]
    fn records_of_earlier_builds_still_read() {
        let v1 = r#"{"version":1,"rows":5,"inputs":[{"key":"t/p/a.parquet","size":10,"etag":"\"e\"","rows":5}]}"#;
        assert_eq!(
            Journal::decode(v1),
            Ok(Journal {
                rows: 5,
                inputs: vec![JournalInput {
                    key: "t/p/a.parquet".into(),
                    size: 10,
                    etag: "\"e\"".into(),
                    rows: 5,
                }],
            })
        );
    }

    #[test]
    fn unknown_damaged_and_oversized_records_are_refused() {
        let newer = Journal::decode(r#"{"version":3,"rows":1}"#).unwrap_err();
        assert!(
            newer.contains("version 3") && newer.contains("newer one"),
            "{newer}"
        );
        for damaged in [
            r#"{"rows":1}"#,
            r#"{"version":2,"rows":1,"inputs_zstd":"not base64!"}"#,
            r#"{"version":2,"rows":1,"inputs_zstd":"AAAA"}"#,
        ] {
            let e = Journal::decode(damaged).unwrap_err();
            assert!(e.starts_with("damaged compactor.inputs"), "{damaged}: {e}");
        }
        // A small frame that unpacks to more than the limit (a zip bomb in a footer).
        let bomb = zstd::bulk::compress(&vec![b' '; UNPACKED_MAX_BYTES + 1], 3).unwrap();
        let value = to_json(&Packed {
            version: 2,
            rows: 1,
            inputs_zstd: BASE64.encode(bomb),
        });
        assert!(value.len() < 20_000);
        let e = Journal::decode(&value).unwrap_err();
        assert!(e.starts_with("damaged compactor.inputs"), "{e}");
    }

    #[test]
    fn output_key_depends_on_inputs_not_their_order() {
        let a = meta("t/p/a.parquet", "1");
        let b = meta("t/p/b.parquet", "2");
        let k1 = output_key("t/p/", &[a.clone(), b.clone()]);
        assert_eq!(k1, output_key("t/p/", &[b.clone(), a.clone()]));
        assert!(k1.starts_with("t/p/compacted-") && k1.ends_with(".parquet"));
        assert_ne!(k1, output_key("t/p/", &[a, meta("t/p/b.parquet", "3")]));
    }
}

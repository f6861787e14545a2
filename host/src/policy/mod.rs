//! Policies decide, the host acts. A policy is a WebAssembly component ([`wasm`]); this module
//! holds what the rest of the host sees of it: its answers, and the validation every answer
//! passes before it can touch storage.

pub mod check;
mod contract;
pub mod new;
pub mod wasm;

pub use wasm::{PluginEngine, PolicyPlugin};

/// Bytes of the default policy, built from `plugins/default` by `build.rs`.
pub const DEFAULT_PLUGIN: &[u8] = include_bytes!(env!("COMPACTOR_DEFAULT_PLUGIN_WASM"));

pub use compactor_plugin_sdk::{Decision, Group, MAX_TARGET_SIZE, MIN_TARGET_SIZE};

/// Everything that can go wrong with a plugin; each names the plugin and, for calls, the
/// function.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("plugin {origin}: cannot load: {reason}")]
    Load { origin: String, reason: String },
    #[error("plugin {plugin} {version}, {function}: {reason}")]
    Call {
        plugin: String,
        version: String,
        function: &'static str,
        reason: String,
    },
    #[error("plugin {plugin} {version}, plan: invalid answer: {reason}")]
    InvalidAnswer {
        plugin: String,
        version: String,
        reason: String,
    },
}

/// Checks a `plan` answer against the `file_count` files it was given: indices in range, no
/// file in two groups, no empty group, target sizes within bounds (the SDK's rules, which
/// plugins also test themselves against), and a compression this host knows. Returns the reason
/// on failure.
pub fn validate(decision: &Decision, file_count: usize) -> Result<(), String> {
    compactor_plugin_sdk::validate(decision, file_count)?;
    if let Decision::Compact(groups) = decision {
        for (g, group) in groups.iter().enumerate() {
            if let Some(codec) = &group.compression
                && let Err(e) = crate::config::parse_compression(codec)
            {
                return Err(format!("group {g} has compression {codec:?}: {e}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a valid answer is, written independently of [`validate`].
    fn is_valid(groups: &[Group], file_count: usize) -> bool {
        let mut all: Vec<u32> = groups.iter().flat_map(|g| g.files.clone()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        groups.iter().all(|g| {
            !g.files.is_empty() && (MIN_TARGET_SIZE..=MAX_TARGET_SIZE).contains(&g.target_size)
        }) && all.len() == n
            && all.iter().all(|&i| (i as usize) < file_count)
    }

    fn target() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(MIN_TARGET_SIZE),
            Just(MAX_TARGET_SIZE),
            Just(MAX_TARGET_SIZE + 1),
            Just(u64::MAX),
            MIN_TARGET_SIZE..=MAX_TARGET_SIZE,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Issue 6: plugin answers, fuzzed. `validate` accepts exactly the valid ones and
        /// never panics, whatever the indices, duplicates, empty groups and targets.
        #[test]
        fn validation_accepts_exactly_the_valid_answers(
            file_count in 0usize..40,
            raw in prop::collection::vec(
                (prop::collection::vec(prop_oneof![0u32..45, Just(u32::MAX)], 0..8), target()),
                0..8,
            ),
        ) {
            let groups: Vec<Group> = raw
                .into_iter()
                .map(|(files, target_size)| Group { files, target_size, compression: None })
                .collect();
            let valid = is_valid(&groups, file_count);
            let verdict = validate(&Decision::Compact(groups), file_count);
            prop_assert_eq!(verdict.is_ok(), valid, "{:?}", verdict);
        }
    }

    fn compact(groups: &[(&[u32], u64)]) -> Decision {
        Decision::Compact(
            groups
                .iter()
                .map(|(files, target_size)| Group {
                    files: files.to_vec(),
                    target_size: *target_size,
                    compression: None,
                })
                .collect(),
        )
    }

    #[test]
    fn validation_table() {
        let ok = 1 << 27;
        let cases: &[(Decision, Option<&str>)] = &[
            (Decision::Skip("hot".into()), None),
            (compact(&[]), None),
            (compact(&[(&[0, 1], ok), (&[2], ok)]), None),
            (compact(&[(&[0, 3], ok)]), Some("only 3 files")),
            (compact(&[(&[0, 0], ok)]), Some("more than once")),
            (compact(&[(&[0], ok), (&[0], ok)]), Some("more than once")),
            (compact(&[(&[], ok)]), Some("no files")),
            (compact(&[(&[0], 10)]), Some("target size")),
            (compact(&[(&[0], u64::MAX)]), Some("target size")),
            (
                Decision::Compact(vec![Group {
                    files: vec![0],
                    target_size: ok,
                    compression: Some("zstd(9)".into()),
                }]),
                None,
            ),
            (
                Decision::Compact(vec![Group {
                    files: vec![0],
                    target_size: ok,
                    compression: Some("zip".into()),
                }]),
                Some("compression \"zip\""),
            ),
        ];
        for (decision, want) in cases {
            match (validate(decision, 3), want) {
                (Ok(()), None) => {}
                (Err(e), Some(needle)) => assert!(e.contains(needle), "{e}"),
                (got, want) => panic!("{decision:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}

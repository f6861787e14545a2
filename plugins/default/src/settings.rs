//! The policy's settings, parsed from the string pairs of `[tables.settings]`.

use compactor_plugin_sdk::{
    TimeZone, parse_codec, parse_count, parse_duration_ms, parse_size, parse_timezone,
};

/// Typed settings with the defaults of the classic hourly compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Output size to aim at, bytes (`target_size`, default 128 MiB).
    pub target_size: u64,
    /// Fewest small files worth merging (`min_files`, default 2).
    pub min_files: usize,
    /// Time after a partition's window ends before it counts as cold (`grace_period`, default 0).
    pub grace_period_ms: i64,
    /// For partitions without time keys: how old the newest file must be (`undated_cold_after`,
    /// default 1h).
    pub undated_cold_after_ms: i64,
    /// The outputs' compression (`compression`, e.g. `zstd(9)`); unset: the host's
    /// `[merge] compression`.
    pub compression: Option<String>,
    /// The zone the partitions' time keys are written in (`timezone`: an IANA name or an
    /// offset such as `+05:30`; default UTC).
    pub timezone: TimeZone,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            target_size: 128 << 20,
            min_files: 2,
            grace_period_ms: 0,
            undated_cold_after_ms: 3_600_000,
            compression: None,
            timezone: TimeZone::UTC,
        }
    }
}

impl Settings {
    /// Parses settings; an unknown key or a bad value is an error that names it.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Settings, String> {
        let mut s = Settings::default();
        for (key, value) in pairs {
            let bad = |why: String| format!("setting {key} = {value:?}: {why}");
            match key.as_str() {
                "target_size" => s.target_size = parse_size(value).map_err(bad)?,
                "min_files" => s.min_files = parse_count(value, 1).map_err(bad)? as usize,
                "grace_period" => s.grace_period_ms = parse_duration_ms(value).map_err(bad)?,
                "undated_cold_after" => {
                    s.undated_cold_after_ms = parse_duration_ms(value).map_err(bad)?
                }
                "compression" => {
                    parse_codec(value).map_err(bad)?;
                    s.compression = Some(value.trim().to_string());
                }
                "timezone" => s.timezone = parse_timezone(value).map_err(bad)?,
                _ => {
                    return Err(format!(
                        "unknown setting {key:?}; known: target_size, min_files, grace_period, \
                         undated_cold_after, compression, timezone"
                    ));
                }
            }
        }
        if s.target_size == 0 {
            return Err("setting target_size must be above 0".into());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_bad_key() {
        let err = Settings::from_pairs(&[("min_files".into(), "two".into())]).unwrap_err();
        assert!(err.contains("min_files"), "{err}");
        let err = Settings::from_pairs(&[("target".into(), "1MiB".into())]).unwrap_err();
        assert!(err.contains("unknown setting \"target\""), "{err}");
        let err = Settings::from_pairs(&[("compression".into(), "zip".into())]).unwrap_err();
        assert!(err.contains("compression"), "{err}");
        let err = Settings::from_pairs(&[("timezone".into(), "EST5".into())]).unwrap_err();
        assert!(
            err.contains("timezone") && err.contains("America/New_York"),
            "{err}"
        );
    }
}

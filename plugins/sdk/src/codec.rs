//! Compression names, as written in `[merge] compression` and in a group's `compression`.

/// A Parquet compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd at a level from 1 to 22.
    Zstd(i32),
    Snappy,
    /// LZ4 (raw, the codec current Parquet readers expect).
    Lz4,
    Gzip,
    Uncompressed,
}

/// Parses `zstd` (level 3), `zstd(N)`, `snappy`, `lz4`, `gzip`, `uncompressed` or `none`.
pub fn parse_codec(text: &str) -> Result<Codec, String> {
    let t = text.trim().to_ascii_lowercase();
    let (name, level) = match t.split_once('(') {
        Some((name, rest)) => {
            let level = rest
                .strip_suffix(')')
                .and_then(|l| l.trim().parse::<i32>().ok())
                .ok_or("expected a level like zstd(3)")?;
            (name.trim().to_string(), Some(level))
        }
        None => (t.clone(), None),
    };
    Ok(match (name.as_str(), level) {
        ("zstd", None) => Codec::Zstd(3),
        ("zstd", Some(level)) if (1..=22).contains(&level) => Codec::Zstd(level),
        ("zstd", Some(level)) => return Err(format!("zstd level {level} is outside 1..=22")),
        ("snappy", None) => Codec::Snappy,
        ("lz4", None) => Codec::Lz4,
        ("gzip", None) => Codec::Gzip,
        ("none" | "uncompressed", None) => Codec::Uncompressed,
        _ => {
            return Err(
                "expected zstd, zstd(LEVEL), snappy, lz4, gzip or uncompressed".to_string(),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_codec("zstd"), Ok(Codec::Zstd(3)));
        assert_eq!(parse_codec(" ZSTD( 9 ) "), Ok(Codec::Zstd(9)));
        assert_eq!(parse_codec("snappy"), Ok(Codec::Snappy));
        assert_eq!(parse_codec("none"), Ok(Codec::Uncompressed));
        for bad in ["zstd(99)", "zstd(0)", "snappy(2)", "zip", "zstd(x)", ""] {
            assert!(parse_codec(bad).is_err(), "{bad}");
        }
    }
}

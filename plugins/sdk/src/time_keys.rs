//! Hive time keys to the end of the time window they cover.

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Keys whose value names the day, in the order they are looked for: `dt` and `date` (Spark,
/// Flink, Glue), `ds` (Hive's and Airflow's convention).
pub const DAY_KEYS: [&str; 3] = ["dt", "date", "ds"];

/// Keys whose value names the hour of that day.
pub const HOUR_KEYS: [&str; 2] = ["hour", "hr"];

/// Whether the keys name an hour: such a partition covers one hour, and while that hour is
/// open it is certainly hot (a policy may skip it before it is even listed).
pub fn has_hour_key(keys: &[(String, String)]) -> bool {
    keys.iter().any(|(k, _)| HOUR_KEYS.contains(&k.as_str()))
}

/// The instant (ms since the epoch, UTC) at which the partition's time window ends, or `None`
/// when its keys do not name a day.
///
/// Understood: a day key ([`DAY_KEYS`]: `dt`, `date` or `ds`) = `YYYY-MM-DD` or `YYYYMMDD`, or
/// `year`/`month`/`day`; with an hour key ([`HOUR_KEYS`]: `hour` or `hr`) = `0`..`23` the window
/// is that hour, without it the whole day. Any unparseable value gives `None`.
pub fn partition_window_end_ms(keys: &[(String, String)]) -> Option<i64> {
    let get = |name: &str| {
        keys.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let first = |names: &[&str]| names.iter().find_map(|name| get(name));
    let (y, m, d) = match first(&DAY_KEYS) {
        Some(date) => parse_date(date)?,
        None => (
            get("year")?.parse().ok()?,
            get("month")?.parse().ok()?,
            get("day")?.parse().ok()?,
        ),
    };
    if !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&d) {
        return None;
    }
    let day_start = days_from_civil(y, m, d) * DAY_MS;
    match first(&HOUR_KEYS) {
        Some(h) => {
            let hour: i64 = h.parse().ok().filter(|h| (0..24).contains(h))?;
            Some(day_start + (hour + 1) * HOUR_MS)
        }
        None => Some(day_start + DAY_MS),
    }
}

/// `YYYY-MM-DD`, or the same without dashes (`YYYYMMDD`, Hive's `ds` and Airflow's `ds_nodash`).
fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let (y, m, d) = match text.len() {
        10 if text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-' => {
            (text.get(..4)?, text.get(5..7)?, text.get(8..)?)
        }
        8 => (text.get(..4)?, text.get(4..6)?, text.get(6..)?),
        _ => return None,
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y) && digits(m) && digits(d)) {
        return None;
    }
    Some((y.parse().ok()?, m.parse().ok()?, d.parse().ok()?))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 20), 20_777);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in [-1000, -1, 0, 1, 11_017, 20_777, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(20_777), (2026, 11, 20));
    }

    #[test]
    fn day_and_hour_keys_in_every_spelling() {
        let end = |pairs: &[(&str, &str)]| {
            let keys: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            partition_window_end_ms(&keys)
        };
        let day_end = Some((days_from_civil(2026, 11, 20) + 1) * DAY_MS);
        let four_am = Some(days_from_civil(2026, 11, 20) * DAY_MS + 4 * HOUR_MS);
        for key in DAY_KEYS {
            assert_eq!(end(&[(key, "2026-11-20")]), day_end, "{key}");
            assert_eq!(end(&[(key, "20261120")]), day_end, "{key}");
            for hour in HOUR_KEYS {
                assert_eq!(
                    end(&[(key, "20261120"), (hour, "03")]),
                    four_am,
                    "{key} {hour}"
                );
            }
        }
        assert_eq!(
            end(&[
                ("year", "2026"),
                ("month", "11"),
                ("day", "20"),
                ("hr", "3")
            ]),
            four_am
        );
        // The first day key in DAY_KEYS' order wins.
        assert_eq!(end(&[("ds", "2026-11-21"), ("dt", "2026-11-20")]), day_end);
        for bad in [
            "2026-1120",
            "2026/11/20",
            "202611200",
            "2026112",
            "+2026112",
            "2026-+1-20",
            "２０２６１１２０",
        ] {
            assert_eq!(end(&[("ds", bad)]), None, "{bad}");
        }
        let hourly = |k: &str| has_hour_key(&[(k.to_string(), "03".to_string())]);
        assert!(hourly("hour") && hourly("hr") && !hourly("dt") && !hourly("hours"));
    }

    #[test]
    fn leap_days() {
        let k = |d: &str| vec![("dt".to_string(), d.to_string())];
        assert!(partition_window_end_ms(&k("2024-02-29")).is_some());
        assert!(partition_window_end_ms(&k("2026-02-29")).is_none());
    }
}

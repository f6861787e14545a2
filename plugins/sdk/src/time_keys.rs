//! Hive time keys to the end of the time window they cover.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

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

/// The instant (ms since the epoch, UTC) at which the partition's time window ends, its keys
/// read as UTC, or `None` when its keys do not name a day.
///
/// Understood: a day key ([`DAY_KEYS`]: `dt`, `date` or `ds`) = `YYYY-MM-DD` or `YYYYMMDD`, or
/// `year`/`month`/`day`; with an hour key ([`HOUR_KEYS`]: `hour` or `hr`) = `0`..`23` the window
/// is that hour, without it the whole day. Any unparseable value gives `None`.
pub fn partition_window_end_ms(keys: &[(String, String)]) -> Option<i64> {
    partition_window_end_ms_in(keys, &TimeZone::UTC)
}

/// [`partition_window_end_ms`] with the keys read as wall-clock time in `tz`: a writer in New
/// York that files its rows by local hour closes `hour=23` at 04:00 or 05:00 UTC, by the season.
/// A window whose end the clocks skip or repeat (a daylight saving change) ends at the later
/// instant, so it never counts as ended early.
pub fn partition_window_end_ms_in(keys: &[(String, String)], tz: &TimeZone) -> Option<i64> {
    let (day, end_hour) = window_end(keys)?;
    let (y, m, d) = civil_from_days(day + end_hour / 24);
    let end = DateTime::new(
        i16::try_from(y).ok()?,
        m as i8,
        d as i8,
        (end_hour % 24) as i8,
        0,
        0,
        0,
    )
    .ok()?;
    let instant = tz.to_ambiguous_timestamp(end).later().ok()?;
    Some(instant.as_millisecond())
}

/// The day the keys name (days since 1970-01-01) and the hour of that day at which the window
/// ends (its hour + 1, or 24 for the whole day).
fn window_end(keys: &[(String, String)]) -> Option<(i64, i64)> {
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
    let day = days_from_civil(y, m, d);
    match first(&HOUR_KEYS) {
        Some(h) => {
            let hour: i64 = h.parse().ok().filter(|h| (0..24).contains(h))?;
            Some((day, hour + 1))
        }
        None => Some((day, 24)),
    }
}

/// A time zone setting: an IANA name (`America/New_York`, `Europe/Berlin`, `UTC`; the database
/// is compiled in) or a fixed offset from UTC (`+05:30`, `-0800`, `+09`).
pub fn parse_timezone(text: &str) -> Result<TimeZone, String> {
    let text = text.trim();
    if let Some(sign) = text.strip_prefix(['+', '-']).map(|_| &text[..1]) {
        let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
        let (hours, minutes) = match digits.len() {
            2 => (&digits[..], "0"),
            4 => (&digits[..2], &digits[2..]),
            _ => return Err(format!("{text:?}: an offset is +HH, +HH:MM or +HHMM")),
        };
        let number = |part: &str| {
            part.parse::<i32>()
                .ok()
                .filter(|_| part.bytes().all(|b| b.is_ascii_digit()))
        };
        let (Some(h), Some(m)) = (number(hours), number(minutes)) else {
            return Err(format!("{text:?}: an offset is +HH, +HH:MM or +HHMM"));
        };
        if h > 25 || m > 59 {
            return Err(format!("{text:?}: offsets reach at most 25:59"));
        }
        let seconds = (h * 3600 + m * 60) * if sign == "-" { -1 } else { 1 };
        let offset =
            jiff::tz::Offset::from_seconds(seconds).map_err(|e| format!("{text:?}: {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(text).map_err(|_| {
        format!(
            "{text:?} is no time zone: use an IANA name such as America/New_York or Asia/Kolkata, \
             or an offset from UTC such as +05:30"
        )
    })
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

    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 24 * HOUR_MS;

    fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Milliseconds since the epoch of a UTC wall-clock time.
    fn utc(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS + min * 60_000
    }

    #[test]
    fn keys_read_in_a_time_zone_end_when_that_zone_s_hour_or_day_ends() {
        let new_york = parse_timezone("America/New_York").unwrap();
        let end =
            |pairs: &[(&str, &str)], tz: &TimeZone| partition_window_end_ms_in(&keys(pairs), tz);
        // Winter (UTC-5) and summer (UTC-4).
        let late_nov = [("dt", "2026-11-20"), ("hour", "23")];
        assert_eq!(end(&late_nov, &new_york), Some(utc(2026, 11, 21, 4 + 1, 0)));
        let july = [("dt", "2026-07-01"), ("hour", "23")];
        assert_eq!(end(&july, &new_york), Some(utc(2026, 7, 2, 4, 0)));
        // A whole day ends at the zone's midnight.
        assert_eq!(
            end(&[("dt", "2026-11-20")], &new_york),
            Some(utc(2026, 11, 21, 5, 0))
        );
        // Clocks back on 2026-11-01: 01:00 comes twice; hour 0 ends at the later one.
        let fold = [("dt", "2026-11-01"), ("hour", "00")];
        assert_eq!(end(&fold, &new_york), Some(utc(2026, 11, 1, 6, 0)));
        let after_fold = [("dt", "2026-11-01"), ("hour", "01")];
        assert_eq!(end(&after_fold, &new_york), Some(utc(2026, 11, 1, 7, 0)));
        // Clocks forward on 2026-03-08: 02:00 never comes; hour 1 (EST) ends at 07:00 UTC,
        // when the clocks jump, not an hour before.
        let gap = [("dt", "2026-03-08"), ("hour", "01")];
        assert_eq!(end(&gap, &new_york), Some(utc(2026, 3, 8, 7, 0)));
        // A fixed offset, ahead of UTC: India's 04:00 is 22:30 UTC the day before.
        let india = parse_timezone("+05:30").unwrap();
        let early = [("dt", "2026-11-20"), ("hour", "03")];
        assert_eq!(end(&early, &india), Some(utc(2026, 11, 19, 22, 30)));
        assert_eq!(
            end(&early, &parse_timezone("Asia/Kolkata").unwrap()),
            end(&early, &india)
        );
        // UTC, by name or offset, is what the keys mean without a zone.
        for utc_zone in ["UTC", "+00:00", "Etc/UTC"] {
            let zone = parse_timezone(utc_zone).unwrap();
            assert_eq!(
                end(&early, &zone),
                partition_window_end_ms(&keys(&early)),
                "{utc_zone}"
            );
        }
        assert_eq!(end(&[("dt", "2026-02-30")], &new_york), None);
    }

    #[test]
    fn time_zone_settings_are_names_or_offsets() {
        assert_eq!(
            parse_timezone("-0800").unwrap(),
            TimeZone::fixed(jiff::tz::Offset::from_seconds(-8 * 3600).unwrap())
        );
        assert_eq!(
            parse_timezone("+09").unwrap(),
            TimeZone::fixed(jiff::tz::Offset::from_seconds(9 * 3600).unwrap())
        );
        for bad in ["Mars/Olympus", "+5", "+05:3", "+AB:00", "+05:60", ""] {
            let err = parse_timezone(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

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

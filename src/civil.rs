//! UTC calendar dates from and to Unix time, without a date crate (Howard Hinnant's
//! algorithms): for certificate validity (preflight) and snapshot names (backup).

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A UTC time of day and date: `(year, month, day, hour, minute, second)`.
pub type Civil = (i64, i64, i64, i64, i64, i64);

/// The inverse of `days_from_civil`, with the time of day.
pub fn civil(unix: i64) -> Civil {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `2026-11-21 09:30 UTC`, for messages.
pub fn date(unix: i64) -> String {
    let (year, month, day, hour, minute, _) = civil(unix);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// `20261121T093005Z` (ISO 8601 basic): sorts as time does, and is safe in an object key.
pub fn compact(unix: i64) -> String {
    let (year, month, day, hour, minute, second) = civil(unix);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

/// The inverse of `compact`; `None` for anything else.
pub fn parse_compact(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|_| text[r].parse::<i64>().ok())
    };
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    // 31 February and the like do not come back as themselves.
    (compact(unix) == text).then_some(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_795_254_600), "2026-11-21 09:50 UTC");
        assert_eq!(
            date(days_from_civil(2049, 12, 31) * 86_400),
            "2049-12-31 00:00 UTC"
        );
    }

    #[test]
    fn compact_times_sort_and_round_trip() {
        assert_eq!(compact(1_795_254_605), "20261121T095005Z");
        assert_eq!(parse_compact("20261121T095005Z"), Some(1_795_254_605));
        assert!(compact(1_795_254_605) < compact(1_795_254_606));
        for bad in [
            "20260231T000000Z",
            "20261121T246000Z",
            "2026112TT095005Z",
            "20261121T095005",
            "",
            "٢٠٢٦1121T095005Z",
        ] {
            assert_eq!(parse_compact(bad), None, "{bad}");
        }
    }
}

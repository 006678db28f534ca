//! RFC 3339 timestamps (`2026-11-27T10:15:00Z`), checked by hand: whc keeps the text as sent,
//! and Unix times (as trackers' postbacks send them) written as one.

/// Whether `text` is an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
///
/// The date must exist (leap years included); seconds may be 60 (a leap second). `T` and `Z`
/// may be lower case, as RFC 3339 allows; a space instead of `T` is not RFC 3339's grammar.
pub fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        part.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i).is_some_and(|&x| x.eq_ignore_ascii_case(&c));
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let (Some(hour), Some(minute), Some(second)) = (digits(11..13), digits(14..16), digits(17..19))
    else {
        return false;
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if !(1..=days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let frac = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let (Some(h), Some(m)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
                return false;
            };
            at(i + 3, b':') && h <= 23 && m <= 59 && i + 6 == b.len()
        }
        _ => false,
    }
}

/// A Unix time as trackers send it, in seconds (9 or 10 digits, `1764238500`) or milliseconds
/// (12 or 13 digits, `1764238500123`), as an RFC 3339 UTC timestamp:
/// `2025-11-27T10:15:00Z`, `2025-11-27T10:15:00.123Z`. `None` for any other text, so that a
/// count or a date without separators is never read as a time by accident.
pub fn from_unix_text(text: &str) -> Option<String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = text.parse().ok()?;
    let (seconds, millis) = match text.len() {
        9 | 10 => (number, None),
        12 | 13 => (number / 1000, Some(number % 1000)),
        _ => return None,
    };
    let (days, in_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let clock = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    );
    Some(match millis {
        None => format!("{clock}Z"),
        Some(ms) => format!("{clock}.{ms:03}Z"),
    })
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{from_unix_text, is_rfc3339};

    #[test]
    fn unix_times_become_rfc3339() {
        let cases = [
            ("1764238500", "2025-11-27T10:15:00Z"),
            ("1764238500123", "2025-11-27T10:15:00.123Z"),
            ("946684800", "2000-01-01T00:00:00Z"),
            ("951782400", "2000-02-29T00:00:00Z"),
            ("4102444799", "2099-12-31T23:59:59Z"),
            ("100000000000", "1973-03-03T09:46:40.000Z"),
        ];
        for (unix, rfc) in cases {
            assert_eq!(from_unix_text(unix).as_deref(), Some(rfc), "{unix}");
            assert!(is_rfc3339(rfc), "{rfc}");
        }
        for not_a_time in [
            "",
            "12345678",
            "20261127",
            "17642385001",
            "-1764238500",
            "1764238500.5",
            " 1764238500",
            "99999999999999",
        ] {
            assert_eq!(from_unix_text(not_a_time), None, "{not_a_time}");
        }
    }

    #[test]
    fn accepts_rfc3339_date_times() {
        for ok in [
            "2026-11-27T10:15:00Z",
            "2026-11-27t10:15:00z",
            "2026-11-27T10:15:00.123456Z",
            "2026-11-27T10:15:00+05:30",
            "2026-11-27T10:15:00.5-00:00",
            "2024-02-29T00:00:00Z",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "yesterday",
            "1764238500",
            "2026-11-27",
            "2026-11-27 10:15:00Z",
            "2026-11-27T10:15:00",
            "2026-11-27T10:15Z",
            "2026-11-27T10:15:00.Z",
            "2026-11-27T10:15:00+0530",
            "2026-11-27T10:15:00+05:30 ",
            "2026-11-27T10:15:00ZZ",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T10:60:00Z",
            "2026-11-27T10:15:61Z",
            "2026-11-27T10:15:00+24:00",
            "+2026-11-27T10:15:00Z",
            "２026-11-27T10:15:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}

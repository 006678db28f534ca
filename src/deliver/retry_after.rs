//! Reads a target's `Retry-After` header: delta-seconds or an HTTP date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;

/// How long a `Retry-After` header asks to wait.
///
/// Reads delta-seconds (`Retry-After: 120`) and the IMF-fixdate form of an HTTP date
/// (`Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`, measured from the local clock; a date in the
/// past means no wait). The obsolete RFC 850 and asctime date forms and anything unreadable give
/// `None`: the schedule then decides alone. The result is not clamped here; see
/// [`RetryPolicy::delay_after`](super::RetryPolicy::delay_after).
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    parse_at(value, SystemTime::now())
}

/// [`parse_retry_after`] with the clock given, for tests.
fn parse_at(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than u64 holds is still "a very long time"; the policy clamps it.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let at = UNIX_EPOCH + Duration::from_secs(imf_fixdate(text)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Unix seconds of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
fn imf_fixdate(text: &str) -> Option<u64> {
    let mut parts = text.split(' ');
    let weekday = parts.next()?;
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || zone != "GMT" || !is_weekday(weekday) {
        return None;
    }
    let day: u64 = two_digits(day)?;
    let month = month_number(month)?;
    let year: u64 = (year.len() == 4).then(|| year.parse().ok())??;
    let mut clock = time.split(':').map(two_digits);
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some() || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn is_weekday(text: &str) -> bool {
    ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"].contains(&text)
}

fn two_digits(text: &str) -> Option<u64> {
    (text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn month_number(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let index = MONTHS.iter().position(|m| *m == text)?;
    u64::try_from(index + 1).ok()
}

/// Days from 1970-01-01 to a date in or after 1970 (Howard Hinnant's `days_from_civil`).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn read(text: &str) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(text).unwrap())
    }

    #[test]
    fn reads_delta_seconds() {
        assert_eq!(read("7"), Some(secs(7)));
        assert_eq!(read(" 120 "), Some(secs(120)));
        assert_eq!(read("0"), Some(secs(0)));
        assert_eq!(read("99999999999999999999999"), Some(secs(u64::MAX)));
        assert_eq!(read("-5"), None);
        assert_eq!(read("1.5"), None);
        assert_eq!(read(""), None);
    }

    #[test]
    fn reads_http_dates_against_the_clock() {
        let value = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        let date = UNIX_EPOCH + secs(1_445_412_480);
        assert_eq!(parse_at(&value, date - secs(90)), Some(secs(90)));
        assert_eq!(parse_at(&value, date + secs(90)), Some(Duration::ZERO));
        assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
    }

    #[test]
    fn converts_dates_exactly() {
        assert_eq!(imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            imf_fixdate("Thu, 31 Dec 2099 23:59:59 GMT"),
            Some(4_102_444_799)
        );
    }

    #[test]
    fn refuses_other_date_forms_and_nonsense() {
        for text in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "soon",
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }
}

//! Time for humans and for the wire: RFC 3339 in and out, uptimes, short
//! durations.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Now, in milliseconds since the epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

pub fn now_unix() -> i64 {
    now_millis().div_euclid(1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds since the epoch as `2026-12-05T16:50:40.123Z`.
pub fn format_rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

/// Parses an RFC 3339 timestamp (`2024-03-01T12:00:00.5+01:00`) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let sep = |at: usize, allowed: &[u8]| -> Option<()> {
        s.as_bytes()
            .get(at)
            .filter(|b| allowed.contains(b))
            .map(|_| ())
    };
    let year = digits(0, 4)?;
    sep(4, b"-")?;
    let month = digits(5, 7)?;
    sep(7, b"-")?;
    let day = digits(8, 10)?;
    sep(10, b"Tt ")?;
    let hour = digits(11, 13)?;
    sep(13, b":")?;
    let minute = digits(14, 16)?;
    sep(16, b":")?;
    let second = digits(17, 19)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let offset = parse_offset(s.get(19..)?)?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// The seconds east of UTC of what follows the seconds: an optional
/// fraction, then `Z` or `+hh:mm`/`-hh:mm` (nothing counts as UTC).
fn parse_offset(rest: &str) -> Option<i64> {
    let rest = match rest.strip_prefix('.') {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    if matches!(rest, "" | "Z" | "z") {
        return Some(0);
    }
    let sign = match rest.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let (h, m) = rest.get(1..)?.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Some(sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
}

/// A short human duration: `45s`, `3m05s`, `2h07m`, `4d03h`.
pub fn format_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// When a service started, in Unix seconds, from `started_at` (Unix
/// seconds, Unix milliseconds, or RFC 3339).
pub fn started_at(svc: &Value) -> Option<i64> {
    match svc.get("started_at")? {
        Value::Number(n) => {
            let t = n.as_f64()?;
            // Anything past the year 5000 in seconds is milliseconds.
            Some(if t > 1e11 {
                (t / 1000.0) as i64
            } else {
                t as i64
            })
        }
        Value::String(s) => parse_rfc3339(s),
        _ => None,
    }
}

/// `now - since` as a short duration, never negative.
pub fn since(started: i64, now: i64) -> String {
    let secs = now.saturating_sub(started).max(0);
    format_duration(u64::try_from(secs).unwrap_or(0))
}

/// How long a service has been up, from `uptime_secs` or `started_at`.
pub fn uptime_of(svc: &Value, now: i64) -> Option<String> {
    if let Some(secs) = svc.get("uptime_secs").and_then(Value::as_u64) {
        return Some(format_duration(secs));
    }
    started_at(svc).map(|t| since(t, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-03-01T12:00:00+01:00"),
            Some(1_709_290_800)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T11:00:00.123456Z"),
            Some(1_709_290_800)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(185), "3m05s");
        assert_eq!(format_duration(7620), "2h07m");
        assert_eq!(format_duration(356_400), "4d03h");
        // started_at in milliseconds is recognised.
        let svc = json!({"started_at": 1_000_000_000_000u64});
        assert_eq!(uptime_of(&svc, 1_000_000_010).as_deref(), Some("10s"));
    }

    #[test]
    fn formatted_times_parse_back() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_709_290_800_123),
            "2024-03-01T11:00:00.123Z"
        );
        for ms in [-1_000, 951_782_400_000, 4_107_542_399_999, now_millis()] {
            let text = format_rfc3339_millis(ms);
            assert_eq!(parse_rfc3339(&text), Some(ms.div_euclid(1000)), "{text}");
        }
    }
}

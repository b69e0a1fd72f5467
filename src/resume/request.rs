//! The body of `POST /v1/restore`: `{"time", "entropy", "generation"}`,
//! each optional, checked field by field so a 400 names the bad one. Holds
//! the small RFC 3339 parser and base64 decoder it needs.

use serde_json::Value;

/// Host entropy must be at least this many bytes (256 bits) ...
pub const ENTROPY_MIN: usize = 32;
/// ... and at most this many.
pub const ENTROPY_MAX: usize = 512;

/// A wall-clock instant: seconds since the Unix epoch and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WallTime {
    pub secs: i64,
    pub nanos: u32,
}

impl WallTime {
    pub fn as_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    #[cfg(test)]
    pub fn from_nanos(ns: i128) -> WallTime {
        WallTime {
            secs: ns.div_euclid(1_000_000_000) as i64,
            nanos: ns.rem_euclid(1_000_000_000) as u32,
        }
    }
}

/// What the host asked for. Everything is optional: an empty body asks for
/// what the init can do alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    pub time: Option<WallTime>,
    pub entropy: Option<Vec<u8>>,
    pub generation: Option<u64>,
}

/// Why a body was refused: not JSON at all, or a field with a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadBody {
    Json(String),
    Field(String),
}

impl RestoreRequest {
    /// No body, an empty one, `{}` and `null` fields all mean "not given".
    pub fn parse(body: &[u8]) -> Result<RestoreRequest, BadBody> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(RestoreRequest::default());
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| BadBody::Json(format!("invalid JSON body: {e}")))?;
        let Value::Object(map) = v else {
            return Err(BadBody::Field(
                "the restore body must be a JSON object like {\"time\": ..., \"entropy\": ..., \"generation\": ...}".into(),
            ));
        };
        let mut req = RestoreRequest::default();
        for (key, val) in &map {
            if val.is_null() {
                if !matches!(key.as_str(), "time" | "entropy" | "generation") {
                    return Err(unknown(key));
                }
                continue;
            }
            match key.as_str() {
                "time" => req.time = Some(time_field(val)?),
                "entropy" => req.entropy = Some(entropy_field(val)?),
                "generation" => req.generation = Some(generation_field(val)?),
                _ => return Err(unknown(key)),
            }
        }
        Ok(req)
    }
}

fn unknown(key: &str) -> BadBody {
    BadBody::Field(format!(
        "unknown field `{key}`, expected one of `time`, `entropy`, `generation`"
    ))
}

fn time_field(v: &Value) -> Result<WallTime, BadBody> {
    let s = v.as_str().ok_or_else(|| {
        BadBody::Field(
            "`time` must be an RFC 3339 string such as \"2026-12-05T16:50:40.123Z\"".into(),
        )
    })?;
    parse_rfc3339(s).map_err(|why| BadBody::Field(format!("`time` {s:?} is not valid: {why}")))
}

fn entropy_field(v: &Value) -> Result<Vec<u8>, BadBody> {
    let s = v
        .as_str()
        .ok_or_else(|| BadBody::Field("`entropy` must be a base64 string".into()))?;
    let bytes = decode_base64(s)
        .map_err(|why| BadBody::Field(format!("`entropy` is not valid base64: {why}")))?;
    if !(ENTROPY_MIN..=ENTROPY_MAX).contains(&bytes.len()) {
        return Err(BadBody::Field(format!(
            "`entropy` must decode to {ENTROPY_MIN} to {ENTROPY_MAX} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn generation_field(v: &Value) -> Result<u64, BadBody> {
    // `7.0` is the integer 7, as JSON Schema and the API document read it.
    crate::core::json_number::as_u64(v).ok_or_else(|| {
        BadBody::Field(format!(
            "`generation` must be an integer from 0 to {}, got {v}",
            u64::MAX
        ))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, as RFC 3339 section
/// 5.6 (`t`/`z` in lower case too; a leap second `:60` counts as the next
/// second). Times before 1970 are refused: the clock cannot be set to them.
pub fn parse_rfc3339(s: &str) -> Result<WallTime, String> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or("too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("expected {len} digits at offset {from}"));
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, want: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if want.contains(c) => Ok(()),
            _ => Err(format!(
                "expected {:?} at offset {at}",
                want.first().map_or('?', |&c| c as char)
            )),
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt")?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date".into());
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time of day".into());
    }
    let mut at = 19;
    let mut nanos: i64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let frac = b.get(at..).unwrap_or_default();
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err("a '.' must be followed by digits".into());
        }
        // Digits beyond nanoseconds are dropped (truncated).
        for d in frac.iter().take(digits.min(9)) {
            nanos = nanos * 10 + i64::from(d - b'0');
        }
        nanos *= 10_i64.pow(9u32.saturating_sub(digits as u32));
        at += digits;
    }
    let offset_secs = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if at + 6 == b.len() => {
            sep(at + 3, b":")?;
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err("no such offset".into());
            }
            let off = oh * 3600 + om * 60;
            if c == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return Err("needs a time zone: 'Z' or an offset like +01:00 at the end".into()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs < 0 {
        return Err("before 1970".into());
    }
    Ok(WallTime {
        secs,
        nanos: nanos as u32,
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days-from-civil).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Standard base64 (RFC 4648 section 4), also the URL-safe alphabet;
/// padding optional but exact when present; no whitespace.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    if pad > 2 || (pad > 0 && !s.len().is_multiple_of(4)) {
        return Err("wrong padding".into());
    }
    if body.len() % 4 == 1 {
        return Err("wrong length".into());
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in body.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(format!("character {:?} at offset {i}", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err("stray bits at the end".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_err(body: &str) -> String {
        match RestoreRequest::parse(body.as_bytes()) {
            Err(BadBody::Field(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn empty_bodies_ask_for_nothing() {
        for body in [
            "",
            "  \r\n",
            "{}",
            r#"{"time":null,"entropy":null,"generation":null}"#,
        ] {
            assert_eq!(
                RestoreRequest::parse(body.as_bytes()),
                Ok(RestoreRequest::default()),
                "{body:?}"
            );
        }
    }

    #[test]
    fn full_body() {
        let e = "A".repeat(43) + "="; // 32 zero bytes
        let body =
            format!(r#"{{"time":"2026-12-05T16:50:40.123Z","entropy":"{e}","generation":7}}"#);
        let r = RestoreRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(
            r.time,
            Some(WallTime {
                secs: 1_796_489_440,
                nanos: 123_000_000
            })
        );
        assert_eq!(r.entropy, Some(vec![0u8; 32]));
        assert_eq!(r.generation, Some(7));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert!(matches!(
            RestoreRequest::parse(b"{\"time\":"),
            Err(BadBody::Json(_))
        ));
        assert!(field_err("[]").contains("JSON object"));
        assert!(field_err("\"x\"").contains("JSON object"));
        assert!(field_err(r#"{"tme":"x"}"#).contains("`tme`"));
        assert!(field_err(r#"{"tme":null}"#).contains("`tme`"));
        for bad in [
            r#"{"time":"yesterday"}"#,
            r#"{"time":5}"#,
            r#"{"time":"2026-12-05T16:50:40"}"#,
            r#"{"time":"2026-02-30T00:00:00Z"}"#,
        ] {
            assert!(field_err(bad).contains("`time`"), "{bad}");
        }
        for bad in [
            r#"{"entropy":"AAAA"}"#,
            r#"{"entropy":"!!!!"}"#,
            r#"{"entropy":7}"#,
            &format!(r#"{{"entropy":"{}"}}"#, "A".repeat(700)),
        ] {
            assert!(field_err(bad).contains("`entropy`"), "{bad}");
        }
        // Found by the schema test: an integral float is an integer.
        assert_eq!(
            RestoreRequest::parse(br#"{"generation":7.0}"#)
                .unwrap()
                .generation,
            Some(7)
        );
        for bad in [
            r#"{"generation":-1}"#,
            r#"{"generation":1.5}"#,
            r#"{"generation":"7"}"#,
            r#"{"generation":18446744073709551616}"#,
        ] {
            assert!(field_err(bad).contains("`generation`"), "{bad}");
        }
        assert_eq!(
            RestoreRequest::parse(br#"{"generation":18446744073709551615}"#)
                .unwrap()
                .generation,
            Some(u64::MAX)
        );
    }

    #[test]
    fn rfc3339_forms() {
        let t = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(t("1970-01-01T00:00:00Z"), WallTime { secs: 0, nanos: 0 });
        assert_eq!(t("2000-02-29T00:00:00Z").secs, 951_782_400);
        assert_eq!(t("2026-11-30T00:53:19Z").secs, 1_795_999_999);
        assert_eq!(t("2026-11-30t00:53:19z").secs, 1_795_999_999);
        assert_eq!(t("2026-11-30T01:53:19+01:00").secs, 1_795_999_999);
        assert_eq!(t("2026-11-29T23:23:19-01:30").secs, 1_795_999_999);
        assert_eq!(t("2026-11-30T00:53:19.5Z").nanos, 500_000_000);
        assert_eq!(t("2026-11-30T00:53:19.000000001Z").nanos, 1);
        assert_eq!(t("2026-11-30T00:53:19.1234567899Z").nanos, 123_456_789);
        assert_eq!(t("2016-12-31T23:59:60Z"), t("2017-01-01T00:00:00Z"));
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30T00:53:19",
            "2026-11-30 00:53:19Z",
            "2026-13-01T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T00:60:00Z",
            "2026-11-30T00:53:19.Z",
            "2026-11-30T00:53:19+0100",
            "2026-11-30T00:53:19+01:00x",
            "2026-11-30T00:53:19Zx",
            "1969-12-31T23:59:59Z",
            "+026-11-30T00:53:19Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_agrees_with_the_formatter() {
        for secs in [0u64, 86_399, 951_782_400, 1_795_999_999, 4_102_444_800] {
            let s = crate::api::model::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            );
            assert_eq!(parse_rfc3339(&s).unwrap().secs, secs as i64, "{s}");
        }
    }

    #[test]
    fn base64() {
        let d = |s: &str| decode_base64(s);
        assert_eq!(d("").unwrap(), b"");
        assert_eq!(d("Zg==").unwrap(), b"f");
        assert_eq!(d("Zg").unwrap(), b"f");
        assert_eq!(d("Zm8=").unwrap(), b"fo");
        assert_eq!(d("Zm9v").unwrap(), b"foo");
        assert_eq!(d("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(d("+/+/").unwrap(), d("-_-_").unwrap());
        assert_eq!(d("+/+/").unwrap(), vec![0xfb, 0xff, 0xbf]);
        for bad in [
            "Z", "Zg=", "Zg===", "Zh==", "Zm9v\n", "Zm 9v", "Z=g=", "====",
        ] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wall_time_nanos_round_trip() {
        for ns in [0i128, 1, 999_999_999, 1_000_000_000, -1, -1_500_000_000] {
            assert_eq!(WallTime::from_nanos(ns).as_nanos(), ns);
        }
    }
}

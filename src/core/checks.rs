//! The definition fields `health` and `liveness`: which check tells that a
//! service is ready or still alive, parsed with messages that name the field.
//!
//! Both fields are read through a generic JSON value, so the same code (and
//! the same messages) serves a PUT body and a drop-in TOML file.

use super::json_number;
use crate::core::bounds;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

/// Default readiness deadline (`timeout_secs`, `health_timeout_secs`).
pub const DEFAULT_TIMEOUT_SECS: f64 = 60.0;
/// Default pause between attempts of `http` and `exec` readiness checks.
pub const DEFAULT_INTERVAL_MS: u64 = 250;
/// Default pause between liveness checks.
pub const DEFAULT_LIVENESS_INTERVAL_SECS: f64 = 10.0;
/// Default number of failed liveness checks in a row that restarts.
pub const DEFAULT_LIVENESS_FAILURES: u32 = 3;
/// One attempt of a check never takes longer than this (a server that
/// accepted and never answers, a command that hangs).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

const MAX_PATH_LEN: usize = 2048;
const MAX_INTERVAL_MS: u64 = 86_400_000;

/// One kind of check.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Loopback `:port` accepts a connection.
    Tcp(u16),
    /// A `GET` on loopback answers a status within a range.
    Http(HttpCheck),
    /// A command run in the service's context exits 0.
    Exec(Vec<String>),
    /// A line of the service's output contains the text.
    Log(String),
    /// The service sends `READY=1` to `NOTIFY_SOCKET`.
    Notify,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpCheck {
    pub port: u16,
    pub path: String,
    /// Inclusive range of statuses that pass.
    pub status: (u16, u16),
}

impl Check {
    /// The key that names this kind in a definition.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Tcp(_) => "tcp",
            Check::Http(_) => "http",
            Check::Exec(_) => "exec",
            Check::Log(_) => "log",
            Check::Notify => "notify",
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Check::Tcp(p) => json!(p),
            Check::Http(h) => {
                json!({"port": h.port, "path": h.path, "status": [h.status.0, h.status.1]})
            }
            Check::Exec(argv) => json!(argv),
            Check::Log(text) => json!(text),
            Check::Notify => json!(true),
        }
    }
}

/// A human description: `GET http://127.0.0.1:8080/healthz (200-399)`.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Tcp(p) => write!(f, "tcp port {p}"),
            Check::Http(h) => write!(
                f,
                "GET http://127.0.0.1:{}{} ({}-{})",
                h.port, h.path, h.status.0, h.status.1
            ),
            Check::Exec(argv) => write!(f, "exec {}", argv.join(" ")),
            Check::Log(text) => write!(f, "log line containing {text:?}"),
            Check::Notify => f.write_str("READY=1 on NOTIFY_SOCKET"),
        }
    }
}

/// The `health` field: the readiness check and its timing.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub check: Check,
    /// None: `health_timeout_secs` (or its default) applies.
    pub timeout_secs: Option<f64>,
    pub interval_ms: u64,
}

impl Health {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// The `liveness` field: a check repeated while the service runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Liveness {
    pub check: Check,
    pub interval_secs: f64,
    pub failures: u32,
}

impl Liveness {
    pub fn interval(&self) -> Duration {
        Duration::try_from_secs_f64(self.interval_secs).unwrap_or(ATTEMPT_TIMEOUT)
    }
    /// One check may take until the next one is due, at most
    /// [`ATTEMPT_TIMEOUT`].
    pub fn attempt_timeout(&self) -> Duration {
        self.interval().min(ATTEMPT_TIMEOUT)
    }
}

const KINDS: [&str; 5] = ["tcp", "http", "exec", "log", "notify"];

/// Parses a `health` value (object). Messages name the field.
pub fn parse_health(v: &Value) -> Result<Health, String> {
    let obj = as_object(v, "health")?;
    let mut timeout_secs = None;
    let mut interval_ms = DEFAULT_INTERVAL_MS;
    let mut kinds = Vec::new();
    for (k, val) in obj {
        match k.as_str() {
            "timeout_secs" => {
                timeout_secs = Some(secs_in(
                    val,
                    "health.timeout_secs",
                    bounds::MIN_TIMEOUT_SECS,
                    bounds::MAX_HEALTH_TIMEOUT_SECS,
                )?)
            }
            "interval_ms" => interval_ms = interval(val)?,
            k if KINDS.contains(&k) => kinds.push((k, val)),
            other => {
                return Err(format!(
                    "unknown field `health.{other}`: use one of tcp, http, exec, log, notify, \
                     plus timeout_secs and interval_ms"
                ))
            }
        }
    }
    let check = one_check(&kinds, "health")?;
    Ok(Health {
        check,
        timeout_secs,
        interval_ms,
    })
}

/// Parses a `liveness` value (object). Messages name the field.
pub fn parse_liveness(v: &Value) -> Result<Liveness, String> {
    let obj = as_object(v, "liveness")?;
    let mut interval_secs = DEFAULT_LIVENESS_INTERVAL_SECS;
    let mut failures = DEFAULT_LIVENESS_FAILURES;
    let mut kinds = Vec::new();
    for (k, val) in obj {
        match k.as_str() {
            "interval_secs" => {
                interval_secs = secs_in(
                    val,
                    "liveness.interval_secs",
                    bounds::MIN_TIMEOUT_SECS,
                    bounds::MAX_LIVENESS_INTERVAL_SECS,
                )?
            }
            "failures" => failures = int_in(val, "liveness.failures", 1, 1000)? as u32,
            "tcp" | "http" | "exec" => kinds.push((k.as_str(), val)),
            "log" | "notify" => {
                return Err(format!(
                    "`liveness.{k}` is not a liveness check: use http, exec or tcp"
                ))
            }
            other => {
                return Err(format!(
                    "unknown field `liveness.{other}`: use one of http, exec, tcp, \
                     plus interval_secs and failures"
                ))
            }
        }
    }
    let check = one_check(&kinds, "liveness")?;
    Ok(Liveness {
        check,
        interval_secs,
        failures,
    })
}

fn one_check(kinds: &[(&str, &Value)], field: &str) -> Result<Check, String> {
    match kinds {
        [(kind, v)] => parse_check(kind, v, &format!("{field}.{kind}")),
        [] => Err(format!(
            "`{field}` must hold one check ({})",
            if field == "health" {
                "tcp, http, exec, log or notify"
            } else {
                "http, exec or tcp"
            }
        )),
        many => Err(format!(
            "`{field}` holds more than one check ({}): choose one",
            many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn parse_check(kind: &str, v: &Value, field: &str) -> Result<Check, String> {
    Ok(match kind {
        "tcp" => Check::Tcp(port(v, field)?),
        "http" => Check::Http(parse_http(v, field)?),
        "exec" => Check::Exec(argv(v, field)?),
        "log" => {
            let text = v
                .as_str()
                .ok_or_else(|| format!("`{field}` must be a string"))?;
            if text.is_empty() || text.contains(['\n', '\r', '\0']) {
                return Err(format!(
                    "`{field}` must be non-empty text on one line, got {text:?}"
                ));
            }
            Check::Log(text.to_string())
        }
        _ => match v {
            Value::Bool(true) => Check::Notify,
            _ => return Err(format!("`{field}` must be true")),
        },
    })
}

fn parse_http(v: &Value, field: &str) -> Result<HttpCheck, String> {
    let obj = as_object(v, field)?;
    let mut port_v = None;
    let mut path = "/".to_string();
    let mut status = (200, 399);
    for (k, val) in obj {
        match k.as_str() {
            "port" => port_v = Some(port(val, &format!("{field}.port"))?),
            "path" => path = http_path(val, &format!("{field}.path"))?,
            "status" => status = status_range(val, &format!("{field}.status"))?,
            other => {
                return Err(format!(
                    "unknown field `{field}.{other}`: use port, path and status"
                ))
            }
        }
    }
    let port = port_v.ok_or_else(|| format!("`{field}.port` is required"))?;
    Ok(HttpCheck { port, path, status })
}

fn as_object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("`{field}` must be an object (a table in TOML)"))
}

fn int_in(v: &Value, field: &str, lo: i64, hi: i64) -> Result<i64, String> {
    match json_number::as_i64(v) {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{field}` must be an integer in {lo}-{hi}, got {v}"
        )),
    }
}

fn port(v: &Value, field: &str) -> Result<u16, String> {
    Ok(int_in(v, field, 1, 65535)? as u16)
}

fn interval(v: &Value) -> Result<u64, String> {
    Ok(int_in(v, "health.interval_ms", 1, MAX_INTERVAL_MS as i64)? as u64)
}

/// Seconds from `min` to `max`: a tiny positive value would be a zero
/// duration (a check in a busy loop), a huge one a deadline past the end
/// of the clock.
fn secs_in(v: &Value, field: &str, min: f64, max: f64) -> Result<f64, String> {
    let s = v
        .as_f64()
        .ok_or_else(|| format!("`{field}` must be a number of seconds, got {v}"))?;
    bounds::check_secs(field, s, min, max)?;
    Ok(s)
}

fn argv(v: &Value, field: &str) -> Result<Vec<String>, String> {
    let bad =
        || format!("`{field}` must be a non-empty list of strings (the command and its arguments)");
    let list = v.as_array().ok_or_else(bad)?;
    let argv: Vec<String> = list
        .iter()
        .map(|a| a.as_str().map(str::to_string).ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    match argv.first() {
        Some(cmd) if !cmd.trim().is_empty() => {}
        _ => return Err(bad()),
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(format!("`{field}` must not contain NUL bytes"));
    }
    Ok(argv)
}

fn http_path(v: &Value, field: &str) -> Result<String, String> {
    let p = v
        .as_str()
        .ok_or_else(|| format!("`{field}` must be a string"))?;
    let ok =
        p.starts_with('/') && p.len() <= MAX_PATH_LEN && p.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(format!(
            "`{field}` must start with '/' and hold no spaces or control characters, got {p:?}"
        ));
    }
    Ok(p.to_string())
}

/// Two statuses in 100-599, the range between them: `[399, 200]` is the
/// range `[200, 399]` (a JSON schema cannot ask for the order, so the
/// document allows both).
fn status_range(v: &Value, field: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{field}` must be [lo, hi] with 100 <= lo, hi <= 599, got {v}");
    let [a, b] = v.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err(bad());
    };
    let status = |s: &Value| json_number::as_u64(s).filter(|s| (100..=599).contains(s));
    match (status(a), status(b)) {
        (Some(a), Some(b)) => Ok((a.min(b) as u16, a.max(b) as u16)),
        _ => Err(bad()),
    }
}

impl Serialize for Health {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = Map::new();
        m.insert(self.check.kind().into(), self.check.to_value());
        if let Some(t) = self.timeout_secs {
            m.insert("timeout_secs".into(), json!(t));
        }
        m.insert("interval_ms".into(), json!(self.interval_ms));
        m.serialize(s)
    }
}

impl Serialize for Liveness {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = Map::new();
        m.insert(self.check.kind().into(), self.check.to_value());
        m.insert("interval_secs".into(), json!(self.interval_secs));
        m.insert("failures".into(), json!(self.failures));
        m.serialize(s)
    }
}

/// `deserialize_with` for `health`: null means none.
pub fn de_health<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<Health>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_health(&v)
            .map(|h| Some(Box::new(h)))
            .map_err(serde::de::Error::custom),
    }
}

/// `deserialize_with` for `liveness`: null means none.
pub fn de_liveness<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<Liveness>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_liveness(&v)
            .map(|l| Some(Box::new(l)))
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(s: &str) -> Result<Health, String> {
        parse_health(&serde_json::from_str(s).unwrap())
    }

    #[test]
    fn every_kind_parses_with_defaults() {
        let h = health(r#"{"tcp": 6379}"#).unwrap();
        assert_eq!(h.check, Check::Tcp(6379));
        assert_eq!((h.timeout_secs, h.interval_ms), (None, 250));
        let h = health(r#"{"http": {"port": 8080}}"#).unwrap();
        assert_eq!(
            h.check,
            Check::Http(HttpCheck {
                port: 8080,
                path: "/".into(),
                status: (200, 399)
            })
        );
        let h = health(
            r#"{"http": {"port": 8080, "path": "/healthz", "status": [200, 204]},
                "timeout_secs": 5, "interval_ms": 50}"#,
        )
        .unwrap();
        assert_eq!(h.timeout_secs, Some(5.0));
        assert_eq!(h.interval(), Duration::from_millis(50));
        assert!(
            matches!(h.check, Check::Http(ref c) if c.path == "/healthz" && c.status == (200, 204))
        );
        // Found by the schema test: the document cannot ask for the order.
        let h = health(r#"{"http": {"port": 8080, "status": [399, 200]}}"#).unwrap();
        match h.check {
            Check::Http(ref c) => assert_eq!(c.status, (200, 399)),
            ref other => panic!("{other:?}"),
        }
        let h = health(r#"{"exec": ["pg_isready", "-h", "127.0.0.1"]}"#).unwrap();
        assert_eq!(h.check.kind(), "exec");
        let h = health(r#"{"log": "ready to accept connections"}"#).unwrap();
        assert_eq!(h.check, Check::Log("ready to accept connections".into()));
        assert_eq!(health(r#"{"notify": true}"#).unwrap().check, Check::Notify);
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (r#"{}"#, "`health` must hold one check"),
            (r#"{"timeout_secs": 3}"#, "`health` must hold one check"),
            (r#"{"tcp": 1, "log": "x"}"#, "more than one check"),
            (r#"{"tcp": 0}"#, "`health.tcp`"),
            (r#"{"tcp": "80"}"#, "`health.tcp`"),
            (r#"{"htp": {"port": 1}}"#, "`health.htp`"),
            (
                r#"{"http": {"path": "/"}}"#,
                "`health.http.port` is required",
            ),
            (r#"{"http": {"port": 70000}}"#, "`health.http.port`"),
            (
                r#"{"http": {"port": 1, "path": "healthz"}}"#,
                "`health.http.path`",
            ),
            (
                r#"{"http": {"port": 1, "path": "/a b"}}"#,
                "`health.http.path`",
            ),
            (
                r#"{"http": {"port": 1, "status": [99, 200]}}"#,
                "`health.http.status`",
            ),
            (
                r#"{"http": {"port": 1, "status": [200]}}"#,
                "`health.http.status`",
            ),
            (
                r#"{"http": {"port": 1, "status": [200, 700]}}"#,
                "`health.http.status`",
            ),
            (
                r#"{"http": {"port": 1, "verb": "GET"}}"#,
                "`health.http.verb`",
            ),
            (r#"{"http": 8080}"#, "`health.http` must be an object"),
            (r#"{"exec": []}"#, "`health.exec`"),
            (r#"{"exec": "pg_isready"}"#, "`health.exec`"),
            (r#"{"exec": [1]}"#, "`health.exec`"),
            (r#"{"log": ""}"#, "`health.log`"),
            (r#"{"log": "a\nb"}"#, "`health.log`"),
            (r#"{"notify": false}"#, "`health.notify` must be true"),
            (r#"{"notify": "yes"}"#, "`health.notify` must be true"),
            (r#"{"tcp": 1, "timeout_secs": 0}"#, "`health.timeout_secs`"),
            (r#"{"tcp": 1, "timeout_secs": -1}"#, "`health.timeout_secs`"),
            // Bounds: a deadline past the clock's end, a zero duration.
            (
                r#"{"tcp": 1, "timeout_secs": 1e19}"#,
                "`health.timeout_secs`",
            ),
            (
                r#"{"tcp": 1, "timeout_secs": 86401}"#,
                "`health.timeout_secs`",
            ),
            (
                r#"{"tcp": 1, "timeout_secs": 1e-60}"#,
                "`health.timeout_secs`",
            ),
            (r#"{"tcp": 1, "interval_ms": 0}"#, "`health.interval_ms`"),
            (r#"{"tcp": 1, "interval_ms": 2.5}"#, "`health.interval_ms`"),
            (r#"[1]"#, "`health` must be an object"),
        ];
        for (body, want) in cases {
            let e = health(body).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn liveness_parses_and_rejects() {
        let l = parse_liveness(&json!({"http": {"port": 80, "path": "/live"}})).unwrap();
        assert_eq!((l.interval_secs, l.failures), (10.0, 3));
        assert_eq!(l.attempt_timeout(), ATTEMPT_TIMEOUT);
        let l = parse_liveness(&json!({"exec": ["true"], "interval_secs": 0.5, "failures": 1}))
            .unwrap();
        assert_eq!(l.interval(), Duration::from_millis(500));
        assert_eq!(l.attempt_timeout(), Duration::from_millis(500));
        for (v, want) in [
            (
                json!({"log": "x"}),
                "`liveness.log` is not a liveness check",
            ),
            (json!({"notify": true}), "`liveness.notify`"),
            (json!({"tcp": 1, "failures": 0}), "`liveness.failures`"),
            (
                json!({"tcp": 1, "interval_secs": 0}),
                "`liveness.interval_secs`",
            ),
            (
                json!({"tcp": 1, "interval_secs": 1e-60}),
                "`liveness.interval_secs`",
            ),
            (
                json!({"tcp": 1, "interval_secs": 1e19}),
                "`liveness.interval_secs`",
            ),
            (
                json!({"tcp": 1, "timeout_secs": 3}),
                "`liveness.timeout_secs`",
            ),
            (
                json!({"interval_secs": 3}),
                "`liveness` must hold one check",
            ),
        ] {
            let e = parse_liveness(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn serialized_form_parses_back_the_same() {
        for s in [
            r#"{"http": {"port": 8080, "path": "/h", "status": [200, 204]}, "timeout_secs": 5}"#,
            r#"{"exec": ["a", "b"], "interval_ms": 10}"#,
            r#"{"notify": true}"#,
        ] {
            let h = health(s).unwrap();
            let back = parse_health(&serde_json::to_value(&h).unwrap()).unwrap();
            assert_eq!(back, h);
        }
        let l = parse_liveness(&json!({"tcp": 9, "failures": 2})).unwrap();
        assert_eq!(
            parse_liveness(&serde_json::to_value(&l).unwrap()).unwrap(),
            l
        );
    }

    #[test]
    fn descriptions() {
        let h = health(r#"{"http": {"port": 8080, "path": "/healthz"}}"#).unwrap();
        assert_eq!(
            h.check.to_string(),
            "GET http://127.0.0.1:8080/healthz (200-399)"
        );
        assert_eq!(
            Check::Exec(vec!["pg_isready".into(), "-q".into()]).to_string(),
            "exec pg_isready -q"
        );
    }
}

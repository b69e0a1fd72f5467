//! A service definition: the fields of the contract (PUT body, drop-in keys),
//! their defaults, and validation. Also the rule for service names.

use super::checks::{self, Check, Health, Liveness};
use super::json_number;
use crate::core::limits::Limits;
use crate::core::{bounds, json_object};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What happens when a running service's process ends on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after a non-zero exit or a signal; a clean exit 0 leaves it stopped.
    #[default]
    OnFailure,
    Always,
    Never,
}

/// A long-running process, or one that runs to completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    #[default]
    Service,
    /// Done once it exited 0; `needs` on it means "completed in this boot".
    Oneshot,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub cmd: String,
    #[serde(default, deserialize_with = "null_is_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub env: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub working_dir: Option<String>,
    /// A user name or a numeric uid (JSON/TOML integer or string).
    #[serde(default, deserialize_with = "user_spec")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "health_port")]
    pub health_port: Option<i64>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub needs: Vec<String>,
    #[serde(default)]
    pub container: bool,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub image: Option<String>,
    #[serde(default, deserialize_with = "restart_policy")]
    pub restart: RestartPolicy,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: f64,
    #[serde(default = "default_health_timeout")]
    pub health_timeout_secs: f64,
    #[serde(default = "default_true")]
    pub autostart: bool,
    /// The readiness check; `health_port` is its short form.
    #[serde(
        default,
        deserialize_with = "checks::de_health",
        skip_serializing_if = "Option::is_none"
    )]
    pub health: Option<Box<Health>>,
    /// A check repeated while the service runs.
    #[serde(
        default,
        deserialize_with = "checks::de_liveness",
        skip_serializing_if = "Option::is_none"
    )]
    pub liveness: Option<Box<Liveness>>,
    #[serde(default, rename = "type", deserialize_with = "service_type")]
    pub service_type: ServiceType,
    /// Resource limits written to the service's cgroup before it runs.
    #[serde(
        default,
        deserialize_with = "crate::core::limits::limits_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub limits: Option<Limits>,
    /// What a restore after a memory snapshot does to it while it runs.
    #[serde(default)]
    pub on_restore: OnRestore,
}

/// Which keys a body names, whatever their values: what serde's defaults
/// hide (a `restart` given explicitly on a oneshot).
#[derive(Deserialize, Default)]
struct Given {
    #[serde(default)]
    restart: Option<serde_json::Value>,
}

impl Given {
    fn restart_given(&self) -> bool {
        self.restart.as_ref().is_some_and(|v| !v.is_null())
    }
}

/// `on_restore`: a running service after `POST /v1/restore` is kept as it
/// is, restarted, or sent a signal (to its process group), e.g. so it
/// reconnects or rereads the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnRestore {
    #[default]
    Keep,
    Restart,
    Signal(nix::sys::signal::Signal),
}

impl OnRestore {
    /// `keep`, `restart`, or a signal name with or without `SIG`
    /// (`SIGHUP`, `HUP`), in upper case as `kill -s` takes it.
    pub fn parse(s: &str) -> Result<OnRestore, String> {
        match s {
            "keep" => return Ok(OnRestore::Keep),
            "restart" => return Ok(OnRestore::Restart),
            _ => {}
        }
        let full = if s.starts_with("SIG") {
            s.to_string()
        } else {
            format!("SIG{s}")
        };
        full.parse::<nix::sys::signal::Signal>()
            .map(OnRestore::Signal)
            .map_err(|_| {
                format!(
                    "`on_restore` must be \"keep\", \"restart\" or a signal name such as \"SIGHUP\", got {s:?}"
                )
            })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            OnRestore::Keep => "keep",
            OnRestore::Restart => "restart",
            OnRestore::Signal(sig) => sig.as_str(),
        }
    }
}

impl Serialize for OnRestore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OnRestore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Option<String> = Option::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "`on_restore` must be a string: \"keep\", \"restart\" or a signal name",
            )
        })?;
        match v {
            None => Ok(OnRestore::Keep),
            Some(s) => OnRestore::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

fn default_stop_timeout() -> f64 {
    10.0
}
fn default_health_timeout() -> f64 {
    60.0
}
fn default_true() -> bool {
    true
}

/// Clients that send `null` for an optional list or table mean "none".
pub(crate) fn null_is_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

/// A word from `words` (null: the default), with a message naming the field.
fn word<'de, D: Deserializer<'de>, T: Default + Copy>(
    d: D,
    field: &str,
    words: &[(&str, T)],
) -> Result<T, D::Error> {
    let names = || {
        let w: Vec<String> = words.iter().map(|(w, _)| format!("{w:?}")).collect();
        w.join(", ")
    };
    let v = Option::<serde_json::Value>::deserialize(d)?;
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(T::default());
    };
    let found = v
        .as_str()
        .and_then(|s| words.iter().find(|(w, _)| *w == s).map(|(_, t)| *t));
    found.ok_or_else(|| {
        serde::de::Error::custom(format!("`{field}` must be one of {}, got {v}", names()))
    })
}

fn restart_policy<'de, D: Deserializer<'de>>(d: D) -> Result<RestartPolicy, D::Error> {
    use RestartPolicy::*;
    word(
        d,
        "restart",
        &[
            ("on-failure", OnFailure),
            ("always", Always),
            ("never", Never),
        ],
    )
}

fn service_type<'de, D: Deserializer<'de>>(d: D) -> Result<ServiceType, D::Error> {
    use ServiceType::*;
    word(d, "type", &[("service", Service), ("oneshot", Oneshot)])
}

fn user_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let bad = || serde::de::Error::custom("`user` must be a user name or a numeric uid");
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s).filter(|s| !s.is_empty())),
        Some(v) => json_number::as_u64(&v)
            .filter(|uid| u32::try_from(*uid).is_ok())
            .map(|uid| Some(uid.to_string()))
            .ok_or_else(bad),
    }
}

fn health_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    json_number::opt_i64(d, "health_port")
}

/// Why a definition or a name is not acceptable. The message names the field.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidDefinition(pub String);

impl fmt::Display for InvalidDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Definition {
    /// Checks what serde cannot: ranges, required combinations, valid names.
    pub fn validate(&self) -> Result<(), InvalidDefinition> {
        let bad = |m: String| Err(InvalidDefinition(m));
        if self.cmd.trim().is_empty() && !self.container {
            return bad("`cmd` must not be empty".into());
        }
        if self.cmd.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return bad("`cmd` and `args` must not contain NUL bytes".into());
        }
        validate_env("env", &self.env)?;
        if let Some(p) = self.health_port {
            if !(1..=65535).contains(&p) {
                return bad(format!("`health_port` must be in 1-65535, got {p}"));
            }
        }
        bounds::check_secs(
            "stop_timeout_secs",
            self.stop_timeout_secs,
            0.0,
            bounds::MAX_STOP_TIMEOUT_SECS,
        )
        .map_err(InvalidDefinition)?;
        bounds::check_secs(
            "health_timeout_secs",
            self.health_timeout_secs,
            bounds::MIN_TIMEOUT_SECS,
            bounds::MAX_HEALTH_TIMEOUT_SECS,
        )
        .map_err(InvalidDefinition)?;
        if self.container && self.image.is_none() {
            return bad("`image` is required when `container` is true".into());
        }
        self.validate_checks()?;
        for n in &self.needs {
            validate_name(n).map_err(|e| InvalidDefinition(format!("`needs`: {e}")))?;
        }
        if let Some(l) = &self.limits {
            l.validate().map_err(InvalidDefinition)?;
        }
        Ok(())
    }

    /// `health` against `health_port`, `type` against `restart`/`health`.
    fn validate_checks(&self) -> Result<(), InvalidDefinition> {
        let bad = |m: &str| Err(InvalidDefinition(m.to_string()));
        if self.health.is_some() && self.health_port.is_some() {
            return bad(
                "`health_port` and `health` are both set: `health_port: N` is the short \
                 form of `health: {\"tcp\": N}`; use one",
            );
        }
        if self.service_type == ServiceType::Oneshot {
            if self.health.is_some() || self.health_port.is_some() {
                return bad(
                    "`health` does not apply to a oneshot service: it is done once it exits 0",
                );
            }
            if self.liveness.is_some() {
                return bad(
                    "`liveness` does not apply to a oneshot service: it never runs as a server",
                );
            }
        }
        Ok(())
    }

    /// Validated at definition time; clamped again so that no value (an
    /// older state file's) can make a deadline overflow.
    pub fn stop_timeout(&self) -> std::time::Duration {
        bounds::clamped_secs(self.stop_timeout_secs, bounds::MAX_STOP_TIMEOUT_SECS)
    }

    /// The readiness deadline (`health.timeout_secs` or
    /// `health_timeout_secs`), clamped likewise.
    pub fn health_timeout(&self) -> std::time::Duration {
        bounds::clamped_secs(self.health_timeout_secs(), bounds::MAX_HEALTH_TIMEOUT_SECS)
    }

    pub fn health_port(&self) -> Option<u16> {
        self.health_port.and_then(|p| u16::try_from(p).ok())
    }

    /// The readiness check, from `health` or its short form `health_port`.
    pub fn readiness(&self) -> Option<Check> {
        match (&self.health, self.health_port()) {
            (Some(h), _) => Some(h.check.clone()),
            (None, Some(port)) => Some(Check::Tcp(port)),
            (None, None) => None,
        }
    }

    /// Seconds to wait for readiness: `health.timeout_secs`, else
    /// `health_timeout_secs` (the older key).
    pub fn health_timeout_secs(&self) -> f64 {
        self.health
            .as_ref()
            .and_then(|h| h.timeout_secs)
            .unwrap_or(self.health_timeout_secs)
    }

    pub fn is_oneshot(&self) -> bool {
        self.service_type == ServiceType::Oneshot
    }

    pub fn from_json(body: &[u8]) -> Result<Definition, InvalidDefinition> {
        let def: Definition = json_object::from_slice(body)
            .map_err(|e| InvalidDefinition(format!("invalid definition: {e}")))?;
        let given: Given = serde_json::from_slice(body).unwrap_or_default();
        def.validate_given(&given)?;
        Ok(def)
    }

    pub fn from_toml(text: &str) -> Result<Definition, InvalidDefinition> {
        let def: Definition =
            toml::from_str(text).map_err(|e| InvalidDefinition(one_line(&e.to_string())))?;
        let given: Given = toml::from_str(text).unwrap_or_default();
        def.validate_given(&given)?;
        Ok(def)
    }

    fn validate_given(&self, given: &Given) -> Result<(), InvalidDefinition> {
        self.validate()?;
        if self.is_oneshot() && given.restart_given() {
            return Err(InvalidDefinition(
                "`restart` does not apply to a oneshot service: it runs once per start".into(),
            ));
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Environment variables (`field` names them in the message): no empty key,
/// no `=` in a key, no NUL anywhere; execve would mangle or refuse them.
pub fn validate_env(field: &str, env: &BTreeMap<String, String>) -> Result<(), InvalidDefinition> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(InvalidDefinition(format!(
                "`{field}` key {k:?} is not a valid variable name (empty, or contains '=' or NUL)"
            )));
        }
        if v.contains('\0') {
            return Err(InvalidDefinition(format!(
                "`{field}` value of {k:?} must not contain NUL bytes"
            )));
        }
    }
    Ok(())
}

/// Service names: 1-64 of `[A-Za-z0-9_.-]`, not starting with `.`. A name is
/// used in file paths (logs, cgroups), so nothing else may get in.
pub fn validate_name(name: &str) -> Result<(), InvalidDefinition> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with('.') {
        return Err(InvalidDefinition(format!(
            "invalid service name {name:?}: use 1-64 characters of [A-Za-z0-9_.-], not starting with '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "redis", "web-1.2_x", &"x".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(65),
            "a\0",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_from_minimal_json() {
        let d = Definition::from_json(br#"{"cmd":"sleep"}"#).unwrap();
        assert_eq!(d.restart, RestartPolicy::OnFailure);
        assert_eq!(d.stop_timeout_secs, 10.0);
        assert_eq!(d.health_timeout_secs, 60.0);
        assert!(d.autostart && !d.container && d.args.is_empty());
    }

    #[test]
    fn seed_example_parses() {
        let d = Definition::from_json(
            br#"{"cmd":"redis-server","args":["--port","6379"],"env":{"A":"b"},
                "working_dir":"/data","user":"nobody","health_port":6379,
                "needs":["postgres"],"container":false,"image":""}"#,
        )
        .unwrap();
        assert_eq!(d.health_port(), Some(6379));
        assert_eq!(d.image, None);
        assert_eq!(d.user.as_deref(), Some("nobody"));
    }

    #[test]
    fn nulls_mean_none() {
        let d = Definition::from_json(
            br#"{"cmd":"x","args":null,"env":null,"needs":null,"image":null,"health_port":null,"user":null}"#,
        )
        .unwrap();
        assert!(d.args.is_empty() && d.env.is_empty() && d.needs.is_empty());
        assert_eq!((d.image, d.health_port, d.user), (None, None, None));
    }

    /// Found by the schema test: JSON Schema reads `8080.0` as an integer,
    /// so the document allowed what the server refused.
    #[test]
    fn integral_floats_are_integers() {
        let d =
            Definition::from_json(br#"{"cmd":"x","health_port":8080.0,"user":65534.0}"#).unwrap();
        assert_eq!(d.health_port(), Some(8080));
        assert_eq!(d.user.as_deref(), Some("65534"));
        let d = Definition::from_json(
            br#"{"cmd":"x","health":{"http":{"port":80.0,"status":[200.0,204]},"interval_ms":50.0},
                "liveness":{"tcp":347.0,"failures":2.0}}"#,
        )
        .unwrap();
        assert!(d.health.is_some() && d.liveness.is_some());
        for (body, field) in [
            (&br#"{"cmd":"x","health_port":80.5}"#[..], "health_port"),
            (br#"{"cmd":"x","health_port":"80"}"#, "health_port"),
            (br#"{"cmd":"x","user":1.5}"#, "user"),
            (br#"{"cmd":"x","user":-1}"#, "user"),
            (br#"{"cmd":"x","user":4294967296}"#, "user"),
            (br#"{"cmd":"x","health":{"tcp":80.5}}"#, "health.tcp"),
        ] {
            let e = Definition::from_json(body).unwrap_err();
            assert!(
                e.0.contains(field),
                "{}: {e}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Found by the schema test: `limits` was read from a list.
    #[test]
    fn limits_must_be_an_object() {
        for body in [
            &br#"{"cmd":"x","limits":[null,null]}"#[..],
            br#"{"cmd":"x","limits":5}"#,
        ] {
            let e = Definition::from_json(body).unwrap_err();
            assert!(e.0.contains("`limits` must be an object"), "{e}");
        }
        let d = Definition::from_json(br#"{"cmd":"x","limits":{"pids_max":8}}"#).unwrap();
        assert_eq!(d.limits.map(|l| l.pids_max), Some(Some(8)));
        let d = Definition::from_toml("cmd = \"x\"\nlimits = { memory_max = \"1M\" }\n").unwrap();
        assert_eq!(d.limits.map(|l| l.memory_max), Some(Some(1 << 20)));
        assert!(Definition::from_json(br#"{"cmd":"x","limits":null}"#)
            .unwrap()
            .limits
            .is_none());
    }

    #[test]
    fn numeric_user() {
        let d = Definition::from_json(br#"{"cmd":"x","user":65534}"#).unwrap();
        assert_eq!(d.user.as_deref(), Some("65534"));
    }

    #[test]
    fn rejects_with_field_named() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"cmd":"x","comand":"y"}"#, "comand"),
            (br#"{"cmd":""}"#, "cmd"),
            (br#"{"args":[]}"#, "cmd"),
            (br#"{"cmd":"x","health_port":0}"#, "health_port"),
            (br#"{"cmd":"x","health_port":70000}"#, "health_port"),
            (
                br#"{"cmd":"x","stop_timeout_secs":-1}"#,
                "stop_timeout_secs",
            ),
            (br#"{"cmd":"x","container":true}"#, "image"),
            (br#"{"cmd":"x","restart":"sometimes"}"#, "sometimes"),
            (br#"{"cmd":"x","needs":["../etc"]}"#, "needs"),
            (br#"{"cmd":"x""#, "invalid definition"),
            (
                br#"{"cmd":"x","limits":{"memory_max":"1T"}}"#,
                "limits.memory_max",
            ),
            (br#"{"cmd":"x","limits":{"pids_max":0}}"#, "limits.pids_max"),
            (br#"{"cmd":"x","limits":{"cpus":1}}"#, "cpus"),
            (br#"{"cmd":"x","limits":5}"#, "limits"),
        ];
        for (i, (body, word)) in cases.iter().enumerate() {
            let e = Definition::from_json(body).unwrap_err();
            assert!(e.0.contains(word), "case {i}: {e}");
        }
    }

    #[test]
    fn on_restore_values() {
        use nix::sys::signal::Signal;
        let parse = |body: &str| Definition::from_json(body.as_bytes());
        assert_eq!(parse(r#"{"cmd":"x"}"#).unwrap().on_restore, OnRestore::Keep);
        assert_eq!(
            parse(r#"{"cmd":"x","on_restore":null}"#)
                .unwrap()
                .on_restore,
            OnRestore::Keep
        );
        assert_eq!(
            parse(r#"{"cmd":"x","on_restore":"restart"}"#)
                .unwrap()
                .on_restore,
            OnRestore::Restart
        );
        for name in ["SIGHUP", "HUP"] {
            let d = parse(&format!(r#"{{"cmd":"x","on_restore":"{name}"}}"#)).unwrap();
            assert_eq!(d.on_restore, OnRestore::Signal(Signal::SIGHUP));
            let v = serde_json::to_value(&d).unwrap();
            assert_eq!(v["on_restore"], "SIGHUP", "shown by its full name");
        }
        assert_eq!(
            serde_json::to_value(parse(r#"{"cmd":"x"}"#).unwrap()).unwrap()["on_restore"],
            "keep"
        );
        for bad in [
            r#""sometimes""#,
            r#""hup""#,
            r#""SIGFOO""#,
            "1",
            r#""""#,
            "true",
        ] {
            let e = parse(&format!(r#"{{"cmd":"x","on_restore":{bad}}}"#)).unwrap_err();
            assert!(e.0.contains("on_restore"), "{bad}: {e}");
        }
        let d = Definition::from_toml("cmd = \"x\"\non_restore = \"SIGUSR1\"\n").unwrap();
        assert_eq!(d.on_restore, OnRestore::Signal(Signal::SIGUSR1));
        let back: Definition = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d, "the state file keeps it");
    }

    #[test]
    fn checks_and_types_parse() {
        let d = Definition::from_json(
            br#"{"cmd":"web","health":{"http":{"port":8080,"path":"/healthz"},"timeout_secs":5},
                "liveness":{"exec":["true"],"interval_secs":1},"type":"service"}"#,
        )
        .unwrap();
        assert!(matches!(d.readiness(), Some(Check::Http(ref h)) if h.port == 8080));
        assert_eq!(d.health_timeout_secs(), 5.0);
        assert_eq!(d.liveness.as_ref().map(|l| l.failures), Some(3));
        let d = Definition::from_json(br#"{"cmd":"r","health_port":6379,"health_timeout_secs":9}"#)
            .unwrap();
        assert_eq!(d.readiness(), Some(Check::Tcp(6379)));
        assert_eq!(d.health_timeout_secs(), 9.0);
        let d =
            Definition::from_json(br#"{"cmd":"m","type":"oneshot","restart":null,"health":null}"#)
                .unwrap();
        assert!(d.is_oneshot() && d.readiness().is_none());
        assert_eq!(d.service_type, ServiceType::Oneshot);
    }

    #[test]
    fn definition_round_trips_through_json() {
        let d = Definition::from_json(
            br#"{"cmd":"w","health":{"exec":["pg_isready"],"interval_ms":100},
                "liveness":{"tcp":5432,"failures":2},"type":"oneshot"}"#,
        );
        assert!(d.is_err(), "health on a oneshot");
        let d = Definition::from_json(
            br#"{"cmd":"w","health":{"exec":["pg_isready"],"interval_ms":100},
                "liveness":{"tcp":5432,"failures":2}}"#,
        )
        .unwrap();
        let back: Definition = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn bad_check_and_type_values_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"cmd":"x","health_port":1,"health":{"tcp":1}}"#,
                "`health_port` and `health`",
            ),
            (
                br#"{"cmd":"x","health":{"http":{"port":0}}}"#,
                "`health.http.port`",
            ),
            (br#"{"cmd":"x","health":{}}"#, "`health`"),
            (
                br#"{"cmd":"x","health":{"tcp":1,"exec":["a"]}}"#,
                "more than one",
            ),
            (
                br#"{"cmd":"x","health":{"tcp":1,"timeout_secs":"5"}}"#,
                "`health.timeout_secs`",
            ),
            (br#"{"cmd":"x","liveness":{"log":"x"}}"#, "`liveness.log`"),
            (br#"{"cmd":"x","type":"daemon"}"#, "`type`"),
            (br#"{"cmd":"x","type":5}"#, "`type`"),
            (br#"{"cmd":"x","restart":"sometimes"}"#, "`restart`"),
            (
                br#"{"cmd":"x","type":"oneshot","restart":"always"}"#,
                "`restart` does not apply",
            ),
            (
                br#"{"cmd":"x","type":"oneshot","restart":"on-failure"}"#,
                "`restart`",
            ),
            (
                br#"{"cmd":"x","type":"oneshot","health":{"tcp":1}}"#,
                "`health` does not apply",
            ),
            (
                br#"{"cmd":"x","type":"oneshot","health_port":1}"#,
                "`health` does not apply",
            ),
            (
                br#"{"cmd":"x","type":"oneshot","liveness":{"tcp":1}}"#,
                "`liveness`",
            ),
        ];
        for (i, (body, word)) in cases.iter().enumerate() {
            let e = Definition::from_json(body).unwrap_err();
            assert!(e.0.contains(word), "case {i}: {e}");
        }
    }

    #[test]
    fn checks_in_toml() {
        let d = Definition::from_toml(
            "cmd = \"postgres\"\n[health]\nexec = [\"pg_isready\", \"-h\", \"127.0.0.1\"]\ntimeout_secs = 30\n\n[liveness]\ntcp = 5432\ninterval_secs = 5\nfailures = 2\n",
        )
        .unwrap();
        assert_eq!(d.readiness().map(|c| c.kind()), Some("exec"));
        assert_eq!(d.health_timeout_secs(), 30.0);
        assert_eq!(d.liveness.map(|l| l.failures), Some(2));
        let d = Definition::from_toml("cmd = \"m\"\ntype = \"oneshot\"\n").unwrap();
        assert!(d.is_oneshot());
        for (text, word) in [
            (
                "cmd = \"x\"\nhealth = { http = { port = 99999 } }\n",
                "health.http.port",
            ),
            (
                "cmd = \"x\"\nhealth_port = 1\nhealth = { tcp = 1 }\n",
                "health_port",
            ),
            (
                "cmd = \"x\"\ntype = \"oneshot\"\nrestart = \"never\"\n",
                "restart",
            ),
            (
                "cmd = \"x\"\nhealth = { notify = false }\n",
                "health.notify",
            ),
        ] {
            let e = Definition::from_toml(text).unwrap_err();
            assert!(e.0.contains(word), "{text}: {e}");
        }
    }

    #[test]
    fn only_an_object_is_a_definition() {
        for body in [
            &br#"["sleep"]"#[..],
            br#"["sleep", ["1"]]"#,
            br#""sleep""#,
            b"null",
            b"42",
        ] {
            let e = Definition::from_json(body).unwrap_err();
            assert!(e.0.contains("invalid definition"), "{e}");
        }
    }

    #[test]
    fn timeouts_have_a_maximum() {
        let at_max = format!(
            r#"{{"cmd":"x","stop_timeout_secs":{},"health_timeout_secs":{}}}"#,
            bounds::MAX_STOP_TIMEOUT_SECS,
            bounds::MAX_HEALTH_TIMEOUT_SECS
        );
        assert!(Definition::from_json(at_max.as_bytes()).is_ok());
        for (body, field) in [
            (
                r#"{"cmd":"x","stop_timeout_secs":1e19}"#,
                "stop_timeout_secs",
            ),
            (
                r#"{"cmd":"x","stop_timeout_secs":3601}"#,
                "stop_timeout_secs",
            ),
            (
                r#"{"cmd":"x","health_timeout_secs":1e19}"#,
                "health_timeout_secs",
            ),
            (
                r#"{"cmd":"x","health_timeout_secs":86401}"#,
                "health_timeout_secs",
            ),
            (
                r#"{"cmd":"x","health_timeout_secs":0}"#,
                "health_timeout_secs",
            ),
            (
                r#"{"cmd":"x","health_timeout_secs":1e-60}"#,
                "health_timeout_secs",
            ),
        ] {
            let e = Definition::from_json(body.as_bytes()).unwrap_err();
            assert!(e.0.contains(field), "{body}: {e}");
        }
        let e = Definition::from_toml("cmd = \"x\"\nstop_timeout_secs = 1e19\n").unwrap_err();
        assert!(e.0.contains("stop_timeout_secs"), "{e}");
    }

    #[test]
    fn env_keys() {
        for key in ["", "A=B", "=", "A\0"] {
            let body = serde_json::json!({"cmd": "x", "env": {key: "v"}}).to_string();
            let e = Definition::from_json(body.as_bytes()).unwrap_err();
            assert!(e.0.contains("`env`"), "{key:?}: {e}");
        }
        let mut env = BTreeMap::new();
        env.insert("A=B".to_string(), "v".to_string());
        assert!(validate_env("env", &env).unwrap_err().0.contains("`env`"));
        env.clear();
        env.insert("PATH".to_string(), "/bin:=x".to_string());
        assert!(validate_env("env", &env).is_ok());
    }

    #[test]
    fn toml_dropin() {
        let d = Definition::from_toml(
            "cmd = \"redis-server\"\nargs = [\"--port\", \"6379\"]\nenv = { L = \"w\" }\nhealth_port = 6379\nautostart = false\n",
        )
        .unwrap();
        assert_eq!(d.env.get("L").map(String::as_str), Some("w"));
        assert!(!d.autostart);
        let e = Definition::from_toml("cmd = \"x\"\nhelth_port = 1\n").unwrap_err();
        assert!(e.0.contains("helth_port"), "{e}");
    }

    #[test]
    fn limits_in_json_and_toml() {
        let d =
            Definition::from_json(br#"{"cmd":"x","limits":{"memory_max":"32M","cpu_max":0.5}}"#)
                .unwrap();
        let l = d.limits.unwrap();
        assert_eq!((l.memory_max, l.cpu_max), (Some(32 << 20), Some(0.5)));
        let d = Definition::from_toml("cmd = \"x\"\n[limits]\npids_max = 64\n").unwrap();
        assert_eq!(d.limits.and_then(|l| l.pids_max), Some(64));
        // `{}` and null are no limits at all (an identical PUT either way).
        for body in [
            &br#"{"cmd":"x","limits":{}}"#[..],
            br#"{"cmd":"x","limits":null}"#,
        ] {
            assert_eq!(Definition::from_json(body).unwrap().limits, None);
        }
    }
}

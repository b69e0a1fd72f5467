//! A service definition: the fields of the contract (PUT body, drop-in keys),
//! their defaults, and validation. Also the rule for service names.

use crate::core::{json_object, limits};
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
    #[serde(default)]
    pub health_port: Option<i64>,
    #[serde(default, deserialize_with = "null_is_default")]
    pub needs: Vec<String>,
    #[serde(default)]
    pub container: bool,
    #[serde(default, deserialize_with = "empty_is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: f64,
    #[serde(default = "default_health_timeout")]
    pub health_timeout_secs: f64,
    #[serde(default = "default_true")]
    pub autostart: bool,
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
fn null_is_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

fn user_spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrId {
        Name(String),
        Id(u32),
    }
    let v: Option<NameOrId> = Option::deserialize(d)
        .map_err(|_| serde::de::Error::custom("`user` must be a user name or a numeric uid"))?;
    Ok(match v {
        Some(NameOrId::Name(s)) if !s.is_empty() => Some(s),
        Some(NameOrId::Id(n)) => Some(n.to_string()),
        _ => None,
    })
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
        limits::check_secs(
            "stop_timeout_secs",
            self.stop_timeout_secs,
            0.0,
            limits::MAX_STOP_TIMEOUT_SECS,
        )
        .map_err(InvalidDefinition)?;
        limits::check_secs(
            "health_timeout_secs",
            self.health_timeout_secs,
            limits::MIN_TIMEOUT_SECS,
            limits::MAX_HEALTH_TIMEOUT_SECS,
        )
        .map_err(InvalidDefinition)?;
        if self.container && self.image.is_none() {
            return bad("`image` is required when `container` is true".into());
        }
        for n in &self.needs {
            validate_name(n).map_err(|e| InvalidDefinition(format!("`needs`: {e}")))?;
        }
        Ok(())
    }

    /// Validated at definition time; clamped again so that no value (an
    /// older state file's) can make a deadline overflow.
    pub fn stop_timeout(&self) -> std::time::Duration {
        limits::clamped_secs(self.stop_timeout_secs, limits::MAX_STOP_TIMEOUT_SECS)
    }

    pub fn health_timeout(&self) -> std::time::Duration {
        limits::clamped_secs(self.health_timeout_secs, limits::MAX_HEALTH_TIMEOUT_SECS)
    }

    pub fn health_port(&self) -> Option<u16> {
        self.health_port.and_then(|p| u16::try_from(p).ok())
    }

    pub fn from_json(body: &[u8]) -> Result<Definition, InvalidDefinition> {
        let def: Definition = json_object::from_slice(body)
            .map_err(|e| InvalidDefinition(format!("invalid definition: {e}")))?;
        def.validate()?;
        Ok(def)
    }

    pub fn from_toml(text: &str) -> Result<Definition, InvalidDefinition> {
        let def: Definition =
            toml::from_str(text).map_err(|e| InvalidDefinition(one_line(&e.to_string())))?;
        def.validate()?;
        Ok(def)
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
        ];
        for (i, (body, word)) in cases.iter().enumerate() {
            let e = Definition::from_json(body).unwrap_err();
            assert!(e.0.contains(word), "case {i}: {e}");
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
            limits::MAX_STOP_TIMEOUT_SECS,
            limits::MAX_HEALTH_TIMEOUT_SECS
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
}

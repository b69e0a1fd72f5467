//! The bodies of `POST /v1/exec` and `POST /v1/services/NAME/exec`: parsed
//! and checked here, so the exec subsystem only ever sees a valid request.

use super::error::ApiError;
use crate::core::definition::null_is_default;
use crate::core::definition::validate_env;
use crate::core::{bounds, json_object};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Used when a request names no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// `POST /v1/exec`: a command in the sandbox.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxExec {
    pub cmd: Vec<String>,
    #[serde(default, deserialize_with = "timeout_ms")]
    pub timeout_ms: Option<u64>,
    /// `null` is none, as in a definition.
    #[serde(default, deserialize_with = "null_is_default")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stdin: Option<String>,
}

fn timeout_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    crate::core::json_number::opt_u64(d, "timeout_ms")
}

impl SandboxExec {
    pub fn timeout(&self) -> Duration {
        self.timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT)
            .min(bounds::MAX_EXEC_TIMEOUT)
    }
}

/// `POST /v1/services/NAME/exec`: a command in a service's context.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceExec {
    pub cmd: Vec<String>,
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    #[serde(default)]
    pub stdin: Option<String>,
}

impl ServiceExec {
    /// Checked by `parse_service_exec`: positive and at most a day.
    pub fn timeout(&self) -> Duration {
        self.timeout_secs
            .map(|s| bounds::clamped_secs(s, bounds::MAX_EXEC_TIMEOUT.as_secs_f64()))
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// An object only: serde would read the body struct from an array.
fn body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    json_object::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            ApiError::BadJson(format!("invalid JSON body: {e}"))
        } else {
            ApiError::InvalidDefinition(format!("invalid exec request: {e}"))
        }
    })
}

fn check_cmd(cmd: &[String]) -> Result<(), ApiError> {
    match cmd.first() {
        None => Err(ApiError::InvalidDefinition(
            "`cmd` must name a command".into(),
        )),
        Some(c) if c.is_empty() => Err(ApiError::InvalidDefinition(
            "`cmd` must name a command".into(),
        )),
        Some(_) if cmd.iter().any(|a| a.contains('\0')) => Err(ApiError::InvalidDefinition(
            "`cmd` must not contain NUL bytes".into(),
        )),
        Some(_) => Ok(()),
    }
}

/// Parses and checks a `POST /v1/exec` body.
pub fn parse_sandbox_exec(bytes: &[u8]) -> Result<SandboxExec, ApiError> {
    let b: SandboxExec = body(bytes)?;
    check_cmd(&b.cmd)?;
    validate_env("env", &b.env).map_err(|e| ApiError::InvalidDefinition(e.0))?;
    if let Some(ms) = b.timeout_ms {
        bounds::exec_timeout_ms("timeout_ms", ms).map_err(ApiError::InvalidDefinition)?;
    }
    Ok(b)
}

/// Parses and checks a `POST /v1/services/NAME/exec` body.
pub fn parse_service_exec(bytes: &[u8]) -> Result<ServiceExec, ApiError> {
    let b: ServiceExec = body(bytes)?;
    check_cmd(&b.cmd)?;
    if let Some(s) = b.timeout_secs {
        bounds::exec_timeout_secs("timeout_secs", s).map_err(ApiError::InvalidDefinition)?;
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_field_by_field() {
        let ok = parse_sandbox_exec(br#"{"cmd":["echo","hi"],"timeout_ms":5}"#).unwrap();
        assert_eq!(ok.cmd, ["echo", "hi"]);
        assert_eq!(ok.timeout(), Duration::from_millis(5));
        let cases: &[(&[u8], &str)] = &[
            (b"{", "bad_json"),
            (br#"{"cmd":[]}"#, "invalid_definition"),
            (br#"{"cmd":[""]}"#, "invalid_definition"),
            (br#"{"cmd":["a\u0000b"]}"#, "invalid_definition"),
            (br#"{"cmd":["x"],"bogus":1}"#, "invalid_definition"),
        ];
        for (body, code) in cases {
            let e = parse_sandbox_exec(body).unwrap_err();
            assert_eq!(e.code(), *code, "{}", String::from_utf8_lossy(body));
        }
        // Found by the schema test: an integral float is an integer.
        let b = parse_sandbox_exec(br#"{"cmd":["x"],"timeout_ms":1500.0}"#).unwrap();
        assert_eq!(b.timeout(), Duration::from_millis(1500));
        let e = parse_sandbox_exec(br#"{"cmd":["x"],"timeout_ms":1.5}"#).unwrap_err();
        assert!(e.to_string().contains("`timeout_ms`"), "{e}");
        // Found by the schema test: `null` for env, as the document allows.
        let null_env = br#"{"cmd":["x"],"env":null,"working_dir":null,"user":null}"#;
        assert!(parse_sandbox_exec(null_env).unwrap().env.is_empty());
        let e = parse_service_exec(br#"{"cmd":["x"],"timeout_secs":0}"#).unwrap_err();
        assert!(e.to_string().contains("timeout_secs"), "{e}");
        let s = parse_service_exec(br#"{"cmd":["x"],"timeout_secs":1.5}"#).unwrap();
        assert_eq!(s.timeout(), Duration::from_millis(1500));
        assert_eq!(
            parse_service_exec(br#"{"cmd":["x"]}"#).unwrap().timeout(),
            DEFAULT_TIMEOUT
        );
    }

    fn invalid(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidDefinition(m)) => m,
            other => panic!("not an invalid request: {other:?}"),
        }
    }

    #[test]
    fn env_keys_must_be_names() {
        for key in ["A=B", "", "=x"] {
            let body = serde_json::json!({"cmd": ["env"], "env": {key: "v"}}).to_string();
            let m = invalid(parse_sandbox_exec(body.as_bytes()));
            assert!(m.contains("`env`"), "{key:?}: {m}");
        }
    }

    #[test]
    fn timeouts_at_the_limit() {
        let max = bounds::MAX_EXEC_TIMEOUT;
        let b = parse_sandbox_exec(br#"{"cmd":["true"],"timeout_ms":86400000}"#).unwrap();
        assert_eq!(b.timeout(), max);
        let b = parse_service_exec(br#"{"cmd":["true"],"timeout_secs":86400}"#).unwrap();
        assert_eq!(b.timeout(), max);
        for body in [
            &br#"{"cmd":["true"],"timeout_ms":86400001}"#[..],
            br#"{"cmd":["true"],"timeout_ms":18446744073709551615}"#,
            br#"{"cmd":["true"],"timeout_ms":0}"#,
        ] {
            assert!(invalid(parse_sandbox_exec(body)).contains("`timeout_ms`"));
        }
        for body in [
            &br#"{"cmd":["true"],"timeout_secs":1e19}"#[..],
            br#"{"cmd":["true"],"timeout_secs":86400.5}"#,
            br#"{"cmd":["true"],"timeout_secs":0}"#,
            br#"{"cmd":["true"],"timeout_secs":-1}"#,
            // Found by the fuzzer: positive, yet a zero duration.
            br#"{"cmd":["true"],"timeout_secs":90060.555555555e-55}"#,
        ] {
            assert!(invalid(parse_service_exec(body)).contains("`timeout_secs`"));
        }
    }

    #[test]
    fn objects_only() {
        let m = invalid(parse_sandbox_exec(br#"[["true"]]"#));
        assert!(m.contains("expected an object"), "{m}");
        assert!(invalid(parse_service_exec(br#"[["true"], 5]"#)).contains("expected an object"));
        assert_eq!(parse_sandbox_exec(b"").unwrap_err().code(), "bad_json");
    }
}

//! The bodies of `POST /v1/exec` and `POST /v1/services/NAME/exec`: parsed
//! and checked here, so the exec subsystem only ever sees a valid request.

use super::error::ApiError;
use crate::core::definition::null_is_default;
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
    /// Checked by `parse_service_exec`: finite and positive when given.
    pub fn timeout(&self) -> Duration {
        self.timeout_secs
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}

fn body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde_json::Value>(body).is_err() {
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
    Ok(b)
}

/// Parses and checks a `POST /v1/services/NAME/exec` body.
pub fn parse_service_exec(bytes: &[u8]) -> Result<ServiceExec, ApiError> {
    let b: ServiceExec = body(bytes)?;
    check_cmd(&b.cmd)?;
    match b.timeout_secs {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(ApiError::InvalidDefinition(
            "`timeout_secs` must be > 0".into(),
        )),
        _ => Ok(b),
    }
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
}

//! The bodies of `POST /v1/exec` and `POST /v1/services/{name}/exec`,
//! parsed and checked without I/O: an object, a command, valid `env` keys,
//! a timeout within its limit.

use crate::core::definition::validate_env;
use crate::core::{json_object, limits};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Used when a request names no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxBody {
    cmd: Vec<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceBody {
    cmd: Vec<String>,
    #[serde(default)]
    timeout_secs: Option<f64>,
    #[serde(default)]
    stdin: Option<String>,
}

/// A checked exec request. Fields a service exec cannot set are empty.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub timeout: Duration,
    pub env: BTreeMap<String, String>,
    /// Never empty when set.
    pub working_dir: Option<String>,
    /// Never empty when set.
    pub user: Option<String>,
    pub stdin: Option<String>,
}

/// Why a body is refused: not JSON at all (`bad_json`), or JSON that is not
/// a valid request (`invalid_definition`). Both are 400s.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    BadJson(String),
    Invalid(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::BadJson(m) | BodyError::Invalid(m) => f.write_str(m),
        }
    }
}

/// `POST /v1/exec`: `cmd`, `timeout_ms`, `env`, `working_dir`, `user`, `stdin`.
pub fn sandbox(body: &[u8]) -> Result<ExecRequest, BodyError> {
    let b: SandboxBody = parse(body)?;
    check_cmd(&b.cmd)?;
    validate_env("env", &b.env).map_err(|e| BodyError::Invalid(e.0))?;
    let timeout = match b.timeout_ms {
        Some(ms) => limits::exec_timeout_ms("timeout_ms", ms).map_err(BodyError::Invalid)?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(ExecRequest {
        cmd: b.cmd,
        timeout,
        env: b.env,
        working_dir: b.working_dir.filter(|d| !d.is_empty()),
        user: b.user.filter(|u| !u.is_empty()),
        stdin: b.stdin,
    })
}

/// `POST /v1/services/{name}/exec`: `cmd`, `timeout_secs`, `stdin`.
pub fn service(body: &[u8]) -> Result<ExecRequest, BodyError> {
    let b: ServiceBody = parse(body)?;
    check_cmd(&b.cmd)?;
    let timeout = match b.timeout_secs {
        Some(s) => limits::exec_timeout_secs("timeout_secs", s).map_err(BodyError::Invalid)?,
        None => DEFAULT_TIMEOUT,
    };
    Ok(ExecRequest {
        cmd: b.cmd,
        timeout,
        env: BTreeMap::new(),
        working_dir: None,
        user: None,
        stdin: b.stdin,
    })
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    json_object::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            BodyError::BadJson(format!("invalid JSON body: {e}"))
        } else {
            BodyError::Invalid(format!("invalid exec request: {e}"))
        }
    })
}

fn check_cmd(cmd: &[String]) -> Result<(), BodyError> {
    match cmd.first() {
        Some(c) if !c.is_empty() => {}
        _ => return Err(BodyError::Invalid("`cmd` must name a command".into())),
    }
    if cmd.iter().any(|a| a.contains('\0')) {
        return Err(BodyError::Invalid(
            "`cmd` must not contain NUL bytes".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(r: Result<ExecRequest, BodyError>) -> String {
        match r {
            Err(BodyError::Invalid(m)) => m,
            other => panic!("not an invalid request: {other:?}"),
        }
    }

    #[test]
    fn sandbox_body() {
        let r = sandbox(
            br#"{"cmd":["sh","-c","x"],"timeout_ms":1500,"env":{"A":"1"},"working_dir":"","user":"nobody","stdin":"in"}"#,
        )
        .unwrap();
        assert_eq!(r.cmd, ["sh", "-c", "x"]);
        assert_eq!(r.timeout, Duration::from_millis(1500));
        assert_eq!(r.working_dir, None);
        assert_eq!(r.user.as_deref(), Some("nobody"));
        assert_eq!(
            sandbox(br#"{"cmd":["true"]}"#).unwrap().timeout,
            DEFAULT_TIMEOUT
        );
    }

    #[test]
    fn service_body() {
        let r = service(br#"{"cmd":["true"],"timeout_secs":2.5}"#).unwrap();
        assert_eq!(r.timeout, Duration::from_millis(2500));
        let m = invalid(service(br#"{"cmd":["true"],"timeout_ms":5}"#));
        assert!(m.contains("timeout_ms"), "{m}");
        let m = invalid(sandbox(br#"{"cmd":["true"],"timeout_secs":5}"#));
        assert!(m.contains("timeout_secs"), "{m}");
    }

    #[test]
    fn env_keys_must_be_names() {
        for key in ["A=B", "", "=x"] {
            let body = serde_json::json!({"cmd": ["env"], "env": {key: "v"}}).to_string();
            let m = invalid(sandbox(body.as_bytes()));
            assert!(m.contains("`env`"), "{key:?}: {m}");
        }
    }

    #[test]
    fn timeouts_at_the_limit() {
        assert_eq!(
            sandbox(br#"{"cmd":["true"],"timeout_ms":86400000}"#)
                .unwrap()
                .timeout,
            limits::MAX_EXEC_TIMEOUT
        );
        assert_eq!(
            service(br#"{"cmd":["true"],"timeout_secs":86400}"#)
                .unwrap()
                .timeout,
            limits::MAX_EXEC_TIMEOUT
        );
        for body in [
            &br#"{"cmd":["true"],"timeout_ms":86400001}"#[..],
            br#"{"cmd":["true"],"timeout_ms":18446744073709551615}"#,
            br#"{"cmd":["true"],"timeout_ms":0}"#,
        ] {
            assert!(invalid(sandbox(body)).contains("`timeout_ms`"));
        }
        for body in [
            &br#"{"cmd":["true"],"timeout_secs":1e19}"#[..],
            br#"{"cmd":["true"],"timeout_secs":86400.5}"#,
            br#"{"cmd":["true"],"timeout_secs":0}"#,
            br#"{"cmd":["true"],"timeout_secs":-1}"#,
        ] {
            assert!(invalid(service(body)).contains("`timeout_secs`"));
        }
    }

    #[test]
    fn objects_only_and_bad_json() {
        let m = invalid(sandbox(br#"[["true"]]"#));
        assert!(m.contains("expected an object"), "{m}");
        assert!(invalid(service(br#"[["true"], 5]"#)).contains("expected an object"));
        assert!(matches!(sandbox(b"{"), Err(BodyError::BadJson(_))));
        assert!(matches!(sandbox(b""), Err(BodyError::BadJson(_))));
        assert!(invalid(sandbox(br#"{"cmd":[]}"#)).contains("`cmd`"));
        assert!(invalid(sandbox(br#"{"cmd":[""]}"#)).contains("`cmd`"));
    }
}

//! The one place errors become the contract's JSON error answers:
//! `{"error": "<code>", "message": "<human sentence>"}` with a status.

use super::http::{ParseError, Response};
use crate::containers::driver::ContainerExecError;
use crate::core::supervisor::SupError;
use crate::output::exec::ExecError;
use crate::proc::spawn::SpawnError;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    BadJson(String),
    InvalidDefinition(String),
    InvalidName(String),
    NotFound(String),
    NoRoute(String),
    MethodNotAllowed {
        allowed: &'static str,
    },
    Conflict(String),
    /// A start/restart/restore that ended in `failed`.
    ServiceFailed(String),
    TooLarge,
    TooSlow,
    Forbidden,
    LengthRequired,
    HeadTooLarge,
    Malformed(String),
    VersionNotSupported,
    Unavailable(String),
    /// A change was made but the state file could not be written.
    NotDurable(String),
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadJson(_)
            | ApiError::InvalidDefinition(_)
            | ApiError::InvalidName(_)
            | ApiError::Malformed(_) => 400,
            ApiError::Forbidden => 403,
            ApiError::NotFound(_) | ApiError::NoRoute(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::TooSlow => 408,
            ApiError::Conflict(_) | ApiError::ServiceFailed(_) => 409,
            ApiError::LengthRequired => 411,
            ApiError::TooLarge => 413,
            ApiError::HeadTooLarge => 431,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) | ApiError::NotDurable(_) => 503,
            ApiError::VersionNotSupported => 505,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::InvalidDefinition(_) => "invalid_definition",
            ApiError::InvalidName(_) => "invalid_name",
            ApiError::NotFound(_) => "not_found",
            ApiError::NoRoute(_) => "no_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::ServiceFailed(_) => "service_failed",
            ApiError::TooLarge => "body_too_large",
            ApiError::TooSlow => "request_timeout",
            ApiError::Forbidden => "forbidden",
            ApiError::LengthRequired => "length_required",
            ApiError::HeadTooLarge => "headers_too_large",
            ApiError::Malformed(_) => "bad_request",
            ApiError::VersionNotSupported => "http_version_not_supported",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotDurable(_) => "state_not_durable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn to_response(&self, keep_alive: bool) -> Response {
        let body = serde_json::json!({"error": self.code(), "message": self.to_string()});
        let mut r = Response::json(self.status(), serde_json::to_vec(&body).unwrap_or_default());
        r.keep_alive = keep_alive;
        if let ApiError::MethodNotAllowed { allowed } = self {
            r.extra_headers.push(("Allow", (*allowed).to_string()));
        }
        r
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadJson(m)
            | ApiError::InvalidDefinition(m)
            | ApiError::InvalidName(m)
            | ApiError::Conflict(m)
            | ApiError::ServiceFailed(m)
            | ApiError::Malformed(m)
            | ApiError::Unavailable(m)
            | ApiError::NotDurable(m) => f.write_str(m),
            ApiError::NotFound(name) => write!(f, "service '{name}' is not defined"),
            ApiError::NoRoute(path) => write!(f, "no such endpoint: {path}"),
            ApiError::MethodNotAllowed { allowed } => {
                write!(f, "method not allowed here; allowed: {allowed}")
            }
            ApiError::TooLarge => f.write_str("request body is over the 1 MiB limit"),
            ApiError::TooSlow => f.write_str("request not received in time"),
            ApiError::Forbidden => f.write_str("only root may use this socket"),
            ApiError::LengthRequired => {
                f.write_str("request bodies must be sent with Content-Length, not chunked")
            }
            ApiError::HeadTooLarge => f.write_str("request line and headers are too large"),
            ApiError::VersionNotSupported => f.write_str("only HTTP/1.0 and HTTP/1.1 are served"),
            ApiError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl From<SupError> for ApiError {
    fn from(e: SupError) -> Self {
        match e {
            SupError::NotFound(n) => ApiError::NotFound(n),
            SupError::Conflict(m) => ApiError::Conflict(m),
            SupError::Failed(m) => ApiError::ServiceFailed(m),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            // A command that cannot be executed is the request's fault.
            ExecError::Spawn(_) => ApiError::InvalidDefinition(e.to_string()),
            ExecError::Pipes(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl ApiError {
    /// A command in service `name`'s context could not start: the command
    /// itself (not found, not executable) is the request's fault (400);
    /// the service's user, working directory or setup is a conflict with
    /// the service as it is defined (409), as a start of it would fail.
    pub(crate) fn service_exec(name: &str, e: ExecError) -> ApiError {
        match e {
            ExecError::Spawn(SpawnError::NotFound { .. } | SpawnError::PermissionDenied { .. }) => {
                ApiError::InvalidDefinition(e.to_string())
            }
            ExecError::Spawn(_) => {
                ApiError::Conflict(format!("service '{name}' cannot run a command: {e}"))
            }
            ExecError::Pipes(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ContainerExecError> for ApiError {
    fn from(e: ContainerExecError) -> Self {
        match e {
            ContainerExecError::NotRunning(_) => ApiError::Conflict(e.to_string()),
            ContainerExecError::Empty(_) => ApiError::InvalidDefinition(e.to_string()),
            ContainerExecError::Prepare(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Malformed(m) => ApiError::Malformed(m),
            ParseError::BodyTooLarge => ApiError::TooLarge,
            ParseError::HeadTooLarge => ApiError::HeadTooLarge,
            ParseError::LengthRequired => ApiError::LengthRequired,
            ParseError::VersionNotSupported => ApiError::VersionNotSupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_code_and_message() {
        let r = ApiError::NotFound("db".into()).to_response(true);
        assert_eq!(r.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "not_found");
        assert_eq!(v["message"], "service 'db' is not defined");
        let r = ApiError::Malformed("quote \" and\nnewline".into()).to_response(false);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["message"], "quote \" and\nnewline");
    }
}

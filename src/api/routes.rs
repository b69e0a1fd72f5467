//! Routing: (method, path, query) -> a typed request. Pure.

use super::error::ApiError;
use crate::core::definition::validate_name;

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    ListServices,
    GetService(String),
    PutService(String),
    DeleteService(String),
    /// `pull`: a container service pulls its image again.
    Start {
        name: String,
        wait: bool,
        pull: bool,
    },
    Stop {
        name: String,
        wait: bool,
    },
    Restart {
        name: String,
        wait: bool,
    },
    ServiceExec(String),
    Logs {
        name: String,
        tail: Option<usize>,
        follow: bool,
    },
    Exec,
    Checkpoint,
    Restore,
    LastRestore,
    System,
    /// `GET /v1/metrics`: Prometheus text.
    Metrics,
    Poweroff,
    Reboot,
}

fn name(seg: &str) -> Result<String, ApiError> {
    validate_name(seg).map_err(|e| ApiError::InvalidName(e.0))?;
    Ok(seg.to_string())
}

fn flag(query: &[(String, String)], key: &str, default: bool) -> Result<bool, ApiError> {
    match query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
    {
        None => Ok(default),
        Some("true" | "1" | "yes" | "") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(v) => Err(ApiError::Malformed(format!(
            "query parameter `{key}` must be true or false, got {v:?}"
        ))),
    }
}

/// `method` must be `allowed`: then `r`, else 405.
fn only(method: &str, allowed: &'static str, r: Route) -> Result<Route, ApiError> {
    if method == allowed {
        Ok(r)
    } else {
        Err(ApiError::MethodNotAllowed { allowed })
    }
}

pub fn route(method: &str, path: &str, query: &[(String, String)]) -> Result<Route, ApiError> {
    let trimmed = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    let allow = |allowed: &'static str| Err(ApiError::MethodNotAllowed { allowed });
    match segs.as_slice() {
        ["v1", "services"] => only(method, "GET", Route::ListServices),
        ["v1", "services", n] => match method {
            "GET" => Ok(Route::GetService(name(n)?)),
            "PUT" => Ok(Route::PutService(name(n)?)),
            "DELETE" => Ok(Route::DeleteService(name(n)?)),
            _ => allow("GET, PUT, DELETE"),
        },
        ["v1", "services", n, action] => service_action(method, n, action, query, path),
        ["v1", "exec"] => only(method, "POST", Route::Exec),
        ["v1", "checkpoint"] => only(method, "POST", Route::Checkpoint),
        ["v1", "restore"] => match method {
            "POST" => Ok(Route::Restore),
            "GET" => Ok(Route::LastRestore),
            _ => allow("GET, POST"),
        },
        ["v1", "system"] => only(method, "GET", Route::System),
        ["v1", "metrics"] => only(method, "GET", Route::Metrics),
        ["v1", "system", "poweroff"] => only(method, "POST", Route::Poweroff),
        ["v1", "system", "reboot"] => only(method, "POST", Route::Reboot),
        _ => Err(ApiError::NoRoute(path.to_string())),
    }
}

/// `/v1/services/{n}/{action}`.
fn service_action(
    method: &str,
    n: &str,
    action: &str,
    query: &[(String, String)],
    path: &str,
) -> Result<Route, ApiError> {
    let wait = || flag(query, "wait", true);
    match action {
        "start" => only(
            method,
            "POST",
            Route::Start {
                name: name(n)?,
                wait: wait()?,
                pull: flag(query, "pull", false)?,
            },
        ),
        "stop" => only(
            method,
            "POST",
            Route::Stop {
                name: name(n)?,
                wait: wait()?,
            },
        ),
        "restart" => only(
            method,
            "POST",
            Route::Restart {
                name: name(n)?,
                wait: wait()?,
            },
        ),
        "exec" => only(method, "POST", Route::ServiceExec(name(n)?)),
        "logs" => {
            if method != "GET" {
                return Err(ApiError::MethodNotAllowed { allowed: "GET" });
            }
            let tail = match query.iter().rev().find(|(k, _)| k == "tail") {
                None => None,
                Some((_, v)) => Some(v.parse::<usize>().map_err(|_| {
                    ApiError::Malformed(format!(
                        "query parameter `tail` must be a number, got {v:?}"
                    ))
                })?),
            };
            Ok(Route::Logs {
                name: name(n)?,
                tail,
                follow: flag(query, "follow", false)?,
            })
        }
        _ => Err(ApiError::NoRoute(path.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/v1/services", &[]), Ok(Route::ListServices));
        assert_eq!(route("GET", "/v1/services/", &[]), Ok(Route::ListServices));
        assert_eq!(
            route("PUT", "/v1/services/web", &[]),
            Ok(Route::PutService("web".into()))
        );
        assert_eq!(
            route("POST", "/v1/services/web/start", &q(&[("wait", "false")])),
            Ok(Route::Start {
                name: "web".into(),
                wait: false,
                pull: false
            })
        );
        assert_eq!(
            route(
                "GET",
                "/v1/services/web/logs",
                &q(&[("tail", "5"), ("follow", "true")])
            ),
            Ok(Route::Logs {
                name: "web".into(),
                tail: Some(5),
                follow: true
            })
        );
        assert_eq!(route("GET", "/v1/restore", &[]), Ok(Route::LastRestore));
        assert_eq!(route("GET", "/v1/metrics", &[]), Ok(Route::Metrics));
        assert_eq!(
            route("POST", "/v1/system/poweroff", &[]),
            Ok(Route::Poweroff)
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET", "/v1/nothing", 404),
            ("GET", "/", 404),
            ("GET", "/v1/services/web/explode", 404),
            ("POST", "/v1/services", 405),
            ("GET", "/v1/services/web/start", 405),
            ("PATCH", "/v1/services/web", 405),
            ("POST", "/v1/metrics", 405),
            ("GET", "/v1/services/.hidden", 400),
            ("GET", "/v1/services/a%2Fb", 400),
            ("GET", &format!("/v1/services/{}", "x".repeat(65)), 400),
        ];
        for (i, (m, p, status)) in cases.iter().enumerate() {
            let e = route(m, p, &[]).unwrap_err();
            assert_eq!(e.status(), *status, "case {i}: {m} {p}: {e}");
        }
        assert_eq!(
            route("POST", "/v1/services/a/start", &q(&[("wait", "maybe")]))
                .unwrap_err()
                .status(),
            400
        );
    }
}

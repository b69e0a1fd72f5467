//! Routing: (method, path, query) -> a typed request. Pure.

use super::error::ApiError;
use super::events::{self, Filter};
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
    /// `?since=N` (the `Last-Event-ID` header is the handler's to read).
    Events {
        since: Option<u64>,
        filter: Filter,
    },
    /// The API's own OpenAPI document.
    OpenApi,
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
        ["v1", "events"] => only(method, "GET", events_route(query)?),
        ["v1", "system", "poweroff"] => only(method, "POST", Route::Poweroff),
        ["v1", "system", "reboot"] => only(method, "POST", Route::Reboot),
        ["v1", "openapi.json"] => only(method, "GET", Route::OpenApi),
        _ => Err(ApiError::NoRoute(path.to_string())),
    }
}

/// `GET /v1/events?since=N&services=a,b`.
fn events_route(query: &[(String, String)]) -> Result<Route, ApiError> {
    let last = |key: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let since = events::parse_since(last("since"), None).map_err(ApiError::Malformed)?;
    let filter =
        events::parse_services(last("services").unwrap_or("")).map_err(ApiError::Malformed)?;
    Ok(Route::Events { since, filter })
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
                Some((_, v)) => Some(tail(v)?),
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

/// `tail=N`: digits only; more lines than a machine can count is all of them.
fn tail(v: &str) -> Result<usize, ApiError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::Malformed(format!(
            "query parameter `tail` must be a number, got {v:?}"
        )));
    }
    Ok(v.parse::<usize>().unwrap_or(usize::MAX))
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
        // Found by the schema test: any non-negative integer is a tail.
        let huge = q(&[("tail", "1304943450184300363776")]);
        assert!(matches!(
            route("GET", "/v1/services/web/logs", &huge),
            Ok(Route::Logs {
                tail: Some(usize::MAX),
                ..
            })
        ));
        for bad in ["-1", "+5", "", "1e3", "5 "] {
            let r = route("GET", "/v1/services/web/logs", &q(&[("tail", bad)]));
            assert_eq!(r.unwrap_err().status(), 400, "tail={bad:?}");
        }
        assert_eq!(route("GET", "/v1/restore", &[]), Ok(Route::LastRestore));
        assert_eq!(route("GET", "/v1/metrics", &[]), Ok(Route::Metrics));
        assert_eq!(
            route("POST", "/v1/system/poweroff", &[]),
            Ok(Route::Poweroff)
        );
        assert_eq!(
            route(
                "GET",
                "/v1/events",
                &q(&[("since", "12"), ("services", "a,b")])
            ),
            Ok(Route::Events {
                since: Some(12),
                filter: Filter {
                    services: vec!["a".into(), "b".into()]
                }
            })
        );
    }

    /// Every route with its method, and every other method on its path
    /// (405 naming the allowed ones).
    #[test]
    fn the_whole_route_table() {
        let svc = |r: fn(String) -> Route| r("web".into());
        let table: Vec<(&str, Route, &str)> = vec![
            ("/v1/services", Route::ListServices, "GET"),
            ("/v1/services/web", svc(Route::GetService), "GET"),
            ("/v1/services/web", svc(Route::PutService), "PUT"),
            ("/v1/services/web", svc(Route::DeleteService), "DELETE"),
            ("/v1/services/web/exec", svc(Route::ServiceExec), "POST"),
            ("/v1/exec", Route::Exec, "POST"),
            ("/v1/checkpoint", Route::Checkpoint, "POST"),
            ("/v1/restore", Route::Restore, "POST"),
            ("/v1/restore", Route::LastRestore, "GET"),
            ("/v1/system", Route::System, "GET"),
            ("/v1/system/poweroff", Route::Poweroff, "POST"),
            ("/v1/system/reboot", Route::Reboot, "POST"),
        ];
        for (path, want, method) in &table {
            assert_eq!(
                route(method, path, &[]).as_ref(),
                Ok(want),
                "{method} {path}"
            );
        }
        let allowed: &[(&str, &str)] = &[
            ("/v1/services", "GET"),
            ("/v1/services/web", "GET, PUT, DELETE"),
            ("/v1/services/web/start", "POST"),
            ("/v1/services/web/stop", "POST"),
            ("/v1/services/web/restart", "POST"),
            ("/v1/services/web/exec", "POST"),
            ("/v1/services/web/logs", "GET"),
            ("/v1/exec", "POST"),
            ("/v1/checkpoint", "POST"),
            ("/v1/restore", "GET, POST"),
            ("/v1/system", "GET"),
            ("/v1/system/poweroff", "POST"),
            ("/v1/system/reboot", "POST"),
        ];
        for (path, allow) in allowed {
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
                let r = route(method, path, &[]);
                if allow.split(", ").any(|m| m == method) {
                    assert!(r.is_ok(), "{method} {path}: {r:?}");
                } else {
                    assert_eq!(
                        r,
                        Err(ApiError::MethodNotAllowed { allowed: allow }),
                        "{method} {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn actions_and_their_query_flags() {
        let name = || "web".to_string();
        for (query, wait) in [
            (vec![], true),
            (vec![("wait", "false")], false),
            (vec![("wait", "0")], false),
            (vec![("wait", "no")], false),
            (vec![("wait", "no"), ("wait", "1")], true),
            (vec![("wait", "yes")], true),
            (vec![("wait", "")], true),
        ] {
            let q = q(&query);
            assert_eq!(
                route("POST", "/v1/services/web/stop", &q),
                Ok(Route::Stop { name: name(), wait }),
                "{query:?}"
            );
            assert_eq!(
                route("POST", "/v1/services/web/restart", &q),
                Ok(Route::Restart { name: name(), wait }),
                "{query:?}"
            );
            assert_eq!(
                route("POST", "/v1/services/web/start", &q),
                Ok(Route::Start {
                    name: name(),
                    wait,
                    pull: false
                }),
                "{query:?}"
            );
        }
        assert_eq!(
            route("POST", "/v1/services/web/start", &q(&[("pull", "true")])),
            Ok(Route::Start {
                name: name(),
                wait: true,
                pull: true
            })
        );
        assert_eq!(
            route("GET", "/v1/services/web/logs", &[]),
            Ok(Route::Logs {
                name: name(),
                tail: None,
                follow: false
            })
        );
        let e = route("GET", "/v1/services/web/logs", &q(&[("tail", "x")])).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains("tail"), "{e}");
        let e = route("POST", "/v1/services/web/stop", &q(&[("wait", "2")])).unwrap_err();
        assert!(e.to_string().contains("wait"), "{e}");
    }

    /// The operation a route serves, as the OpenAPI document names it.
    /// Exhaustive: a new route does not compile until it is named here.
    fn operation(r: &Route) -> (&'static str, &'static str) {
        match r {
            Route::ListServices => ("GET", "/v1/services"),
            Route::GetService(_) => ("GET", "/v1/services/{name}"),
            Route::PutService(_) => ("PUT", "/v1/services/{name}"),
            Route::DeleteService(_) => ("DELETE", "/v1/services/{name}"),
            Route::Start { .. } => ("POST", "/v1/services/{name}/start"),
            Route::Stop { .. } => ("POST", "/v1/services/{name}/stop"),
            Route::Restart { .. } => ("POST", "/v1/services/{name}/restart"),
            Route::ServiceExec(_) => ("POST", "/v1/services/{name}/exec"),
            Route::Logs { .. } => ("GET", "/v1/services/{name}/logs"),
            Route::Exec => ("POST", "/v1/exec"),
            Route::Checkpoint => ("POST", "/v1/checkpoint"),
            Route::Restore => ("POST", "/v1/restore"),
            Route::LastRestore => ("GET", "/v1/restore"),
            Route::System => ("GET", "/v1/system"),
            Route::Poweroff => ("POST", "/v1/system/poweroff"),
            Route::Reboot => ("POST", "/v1/system/reboot"),
            Route::Metrics => ("GET", "/v1/metrics"),
            Route::Events { .. } => ("GET", "/v1/events"),
            Route::OpenApi => ("GET", "/v1/openapi.json"),
        }
    }

    const METHODS: [&str; 7] = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];

    /// Every operation of the served document is a route that serves it,
    /// every other method on its paths is a 405, and paths it does not
    /// list are 404s: the document and the router agree both ways.
    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(crate::api::handlers::OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        let mut served = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let concrete = path.replace("{name}", "web");
            for m in METHODS {
                let r = route(m, &concrete, &[]);
                if ops.get(m.to_lowercase()).is_some() {
                    let r = r.unwrap_or_else(|e| panic!("{m} {path} is documented: {e}"));
                    assert_eq!(operation(&r), (m, path.as_str()));
                    served.insert(operation(&r));
                } else {
                    let e = r.expect_err(&format!("{m} {path} is served but not documented"));
                    assert_eq!(e.status(), 405, "{m} {path}");
                }
            }
        }
        // One of each route: all of them are documented operations.
        let every = [
            Route::ListServices,
            Route::GetService("a".into()),
            Route::PutService("a".into()),
            Route::DeleteService("a".into()),
            Route::Start {
                name: "a".into(),
                wait: true,
                pull: false,
            },
            Route::Stop {
                name: "a".into(),
                wait: true,
            },
            Route::Restart {
                name: "a".into(),
                wait: true,
            },
            Route::ServiceExec("a".into()),
            Route::Logs {
                name: "a".into(),
                tail: None,
                follow: false,
            },
            Route::Exec,
            Route::Checkpoint,
            Route::Restore,
            Route::LastRestore,
            Route::System,
            Route::Poweroff,
            Route::Reboot,
            Route::Metrics,
            Route::Events {
                since: None,
                filter: Filter::default(),
            },
            Route::OpenApi,
        ];
        let all: std::collections::BTreeSet<_> = every.iter().map(operation).collect();
        assert_eq!(all, served, "routes and documented operations differ");
        for p in [
            "/",
            "/v1",
            "/v2/services",
            "/openapi.json",
            "/v1/openapi",
            "/v1/service",
            "/v1/services/web/status",
            "/v1/services/web/logs/more",
            "/v1/services/web/start/now",
            "/v1/system/halt",
            "/v1/restore/last",
            "/v1/exec/web",
        ] {
            for m in METHODS {
                let e = route(m, p, &[]).expect_err(p);
                assert_eq!(e.status(), 404, "{m} {p}");
            }
        }
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
            ("POST", "/v1/events", 405),
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
        for bad in [("since", "-1"), ("services", "a,.b")] {
            let e = route("GET", "/v1/events", &q(&[bad])).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
            assert!(e.to_string().contains(bad.0), "{e}");
        }
    }
}

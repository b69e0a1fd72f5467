//! From a parsed command to the HTTP request it sends: method, path (with
//! the service name percent-encoded) and JSON body; drop-in files for
//! `apply`; the restore body; which requests may time out.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use iris_init::client::Request;
use serde_json::{Map, Value};

use crate::args::Cmd;
use crate::clock::{format_rfc3339_millis, now_millis};

/// Read timeout for requests the server answers at once. Requests that wait
/// for processes (start, stop, exec, ...) get none: a health wait can take minutes.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most entropy bytes the init takes.
const MAX_ENTROPY: u64 = 512;

/// Percent-encodes a path segment, so whatever the user typed the request
/// line stays well-formed; the server judges whether the name is valid.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn service_path(name: &str, suffix: &str) -> String {
    format!("/v1/services/{}{suffix}", encode_segment(name))
}

fn json_request(method: &str, path: impl Into<String>, body: Map<String, Value>) -> Request {
    Request::new(method, path).body(Value::Object(body).to_string())
}

/// `GET .../logs` with its query.
pub fn logs_request(name: &str, tail: Option<u64>, follow: bool) -> Request {
    let mut query = Vec::new();
    if let Some(n) = tail {
        query.push(format!("tail={n}"));
    }
    if follow {
        query.push("follow=true".to_string());
    }
    let suffix = if query.is_empty() {
        "/logs".to_string()
    } else {
        format!("/logs?{}", query.join("&"))
    };
    Request::new("GET", service_path(name, &suffix))
}

/// `GET /v1/events`, replaying after `since`, only `names` when given.
pub fn events_request(since: Option<u64>, names: &[String]) -> Request {
    let mut query = Vec::new();
    if let Some(n) = since {
        query.push(format!("since={n}"));
    }
    if !names.is_empty() {
        let names: Vec<String> = names.iter().map(|n| encode_segment(n)).collect();
        query.push(format!("services={}", names.join(",")));
    }
    let path = if query.is_empty() {
        "/v1/events".to_string()
    } else {
        format!("/v1/events?{}", query.join("&"))
    };
    Request::new("GET", path).header("Accept", "text/event-stream")
}

fn exec_request(name: &str, timeout: Option<u64>, cmd: &[String]) -> Request {
    let mut body = Map::new();
    body.insert("cmd".into(), Value::from(cmd.to_vec()));
    if let Some(t) = timeout {
        body.insert("timeout_secs".into(), Value::from(t));
    }
    json_request("POST", service_path(name, "/exec"), body)
}

fn run_request(
    timeout_ms: Option<u64>,
    env: &[(String, String)],
    cwd: Option<&str>,
    user: Option<&str>,
    cmd: &[String],
) -> Request {
    let mut body = Map::new();
    body.insert("cmd".into(), Value::from(cmd.to_vec()));
    if let Some(t) = timeout_ms {
        body.insert("timeout_ms".into(), Value::from(t));
    }
    if !env.is_empty() {
        let env: Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        body.insert("env".into(), Value::Object(env));
    }
    if let Some(dir) = cwd {
        body.insert("working_dir".into(), Value::from(dir));
    }
    if let Some(user) = user {
        body.insert("user".into(), Value::from(user));
    }
    json_request("POST", "/v1/exec", body)
}

/// The request a command sends; `None` for commands that send none or
/// several (apply, logs of several services, watch, completions). Reads
/// the entropy file of `restore`.
pub fn request_for(cmd: &Cmd) -> Result<Option<Request>, InputError> {
    let get = |path: &str| Request::new("GET", path);
    let post = |path: &str| Request::new("POST", path);
    let req = match cmd {
        Cmd::List | Cmd::CompleteServices => get("/v1/services"),
        Cmd::Status { name } => get(&service_path(name, "")),
        Cmd::Start { name, no_wait } => {
            let suffix = if *no_wait {
                "/start?wait=false"
            } else {
                "/start"
            };
            post(&service_path(name, suffix))
        }
        Cmd::Stop { name } => post(&service_path(name, "/stop")),
        Cmd::Restart { name } => post(&service_path(name, "/restart")),
        Cmd::Delete { name } => Request::new("DELETE", service_path(name, "")),
        Cmd::Exec { name, timeout, cmd } => exec_request(name, *timeout, cmd),
        Cmd::Run {
            timeout_ms,
            env,
            cwd,
            user,
            cmd,
        } => run_request(*timeout_ms, env, cwd.as_deref(), user.as_deref(), cmd),
        Cmd::Logs {
            names,
            tail,
            follow,
        } => match names.as_slice() {
            [name] => logs_request(name, *tail, *follow),
            _ => return Ok(None),
        },
        Cmd::Checkpoint => post("/v1/checkpoint"),
        Cmd::Restore { last: true, .. } => get("/v1/restore"),
        Cmd::Restore {
            time,
            entropy_file,
            generation,
            ..
        } => {
            let entropy = entropy_file.as_deref().map(read_entropy).transpose()?;
            let body = restore_body(
                time.as_deref(),
                entropy.as_deref(),
                *generation,
                now_millis(),
            );
            match body {
                Some(body) => json_request("POST", "/v1/restore", body),
                None => post("/v1/restore"),
            }
        }
        Cmd::System => get("/v1/system"),
        Cmd::Metrics => get("/v1/metrics"),
        Cmd::Openapi => get("/v1/openapi.json"),
        Cmd::Events { since, names } => events_request(*since, names),
        Cmd::Poweroff => post("/v1/system/poweroff"),
        Cmd::Reboot => post("/v1/system/reboot"),
        Cmd::Apply { .. } | Cmd::Watch { .. } | Cmd::Completions { .. } | Cmd::Man { .. } => {
            return Ok(None)
        }
    };
    Ok(Some(req))
}

/// How long to wait for an answer. Only requests the server answers at once
/// get a limit; the rest may legitimately wait for processes for minutes.
pub fn read_timeout(cmd: &Cmd) -> Option<Duration> {
    match cmd {
        Cmd::List
        | Cmd::Status { .. }
        | Cmd::Checkpoint
        | Cmd::Restore { last: true, .. }
        | Cmd::System
        | Cmd::Metrics
        | Cmd::Openapi
        | Cmd::CompleteServices
        | Cmd::Poweroff
        | Cmd::Reboot => Some(QUICK_TIMEOUT),
        Cmd::Logs { follow, .. } if !follow => Some(QUICK_TIMEOUT),
        _ => None,
    }
}

/// The body of `POST /v1/restore` (contract: restore after a memory
/// snapshot); `None` when no option asks for one (the old behaviour).
pub fn restore_body(
    time: Option<&str>,
    entropy: Option<&[u8]>,
    generation: Option<u64>,
    now_ms: i64,
) -> Option<Map<String, Value>> {
    let mut body = Map::new();
    if let Some(t) = time {
        let t = match t {
            "now" => format_rfc3339_millis(now_ms),
            t => t.to_string(),
        };
        body.insert("time".into(), Value::from(t));
    }
    if let Some(bytes) = entropy {
        body.insert("entropy".into(), Value::from(base64(bytes)));
    }
    if let Some(g) = generation {
        body.insert("generation".into(), Value::from(g));
    }
    (!body.is_empty()).then_some(body)
}

/// The bytes of `--entropy-file`: a whole regular file, or the first 512
/// bytes of a device such as `/dev/urandom`.
fn read_entropy(path: &Path) -> Result<Vec<u8>, InputError> {
    let fail = |e: io::Error| InputError::Entropy(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if meta.is_file() && meta.len() > MAX_ENTROPY {
        return Err(InputError::Entropy(format!(
            "{}: {} bytes; the init takes 32 to {MAX_ENTROPY}",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENTROPY)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    Ok(bytes)
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32| char::from(ALPHABET.get((n & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sextet(n >> 18));
        out.push(sextet(n >> 12));
        out.push(if group.len() > 1 { sextet(n >> 6) } else { '=' });
        out.push(if group.len() > 2 { sextet(n) } else { '=' });
    }
    out
}

/// Input that is not the server's to judge: a drop-in file, an entropy file.
#[derive(Debug)]
pub enum InputError {
    NoName,
    Read(io::Error),
    Toml(toml::de::Error),
    Float(String),
    Entropy(String),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::NoName => f.write_str("cannot take a service name from this file name"),
            InputError::Read(e) => write!(f, "cannot read: {e}"),
            // toml's message spans lines (position, excerpt, caret); keep it.
            InputError::Toml(e) => write!(f, "invalid TOML: {}", e.to_string().trim_end()),
            InputError::Float(key) => write!(f, "'{key}' is not a finite number"),
            InputError::Entropy(why) => write!(f, "--entropy-file {why}"),
        }
    }
}

/// The service name `apply` uses for a file: its stem.
fn name_from_file(file: &Path) -> Option<String> {
    file.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Converts TOML to JSON by hand, so datetimes become plain strings instead
/// of serde's private marker object.
fn toml_to_json(key: &str, v: toml::Value) -> Result<Value, InputError> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(x) => serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| InputError::Float(key.to_string()))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| toml_to_json(key, item))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => Value::Object(table_to_json(t)?),
    })
}

fn table_to_json(t: toml::Table) -> Result<Map<String, Value>, InputError> {
    let mut map = Map::new();
    for (k, v) in t {
        let json = toml_to_json(&k, v)?;
        map.insert(k, json);
    }
    Ok(map)
}

/// The PUT for one drop-in file, from its path and text: the name and the request.
pub fn apply_request(file: &Path, text: &str) -> Result<(String, Request), InputError> {
    let name = name_from_file(file).ok_or(InputError::NoName)?;
    let table: toml::Table = text.parse().map_err(InputError::Toml)?;
    let req = json_request("PUT", service_path(&name, ""), table_to_json(table)?);
    Ok((name, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    fn command(s: &[&str]) -> Cmd {
        crate::args::Cli::try_parse_from(std::iter::once("irisctl").chain(s.iter().copied()))
            .unwrap()
            .command
    }

    fn request(s: &[&str]) -> Request {
        request_for(&command(s)).unwrap().unwrap()
    }

    fn body(req: &Request) -> Option<Value> {
        req.body
            .as_ref()
            .map(|b| serde_json::from_slice(b).unwrap())
    }

    #[test]
    fn requests_have_the_contract_methods_and_paths() {
        let cases: Vec<(&[&str], &str, &str)> = vec![
            (&["list"], "GET", "/v1/services"),
            (&["status", "redis"], "GET", "/v1/services/redis"),
            (&["start", "redis"], "POST", "/v1/services/redis/start"),
            (
                &["start", "redis", "--no-wait"],
                "POST",
                "/v1/services/redis/start?wait=false",
            ),
            (&["stop", "redis"], "POST", "/v1/services/redis/stop"),
            (&["restart", "redis"], "POST", "/v1/services/redis/restart"),
            (&["delete", "redis"], "DELETE", "/v1/services/redis"),
            (&["logs", "redis"], "GET", "/v1/services/redis/logs"),
            (
                &["logs", "redis", "-n", "5", "-f"],
                "GET",
                "/v1/services/redis/logs?tail=5&follow=true",
            ),
            (&["checkpoint"], "POST", "/v1/checkpoint"),
            (&["restore"], "POST", "/v1/restore"),
            (&["restore", "--last"], "GET", "/v1/restore"),
            (&["system"], "GET", "/v1/system"),
            (&["metrics"], "GET", "/v1/metrics"),
            (&["openapi"], "GET", "/v1/openapi.json"),
            (&["events"], "GET", "/v1/events"),
            (
                &["events", "--since", "12", "a", "b"],
                "GET",
                "/v1/events?since=12&services=a,b",
            ),
            (&["poweroff"], "POST", "/v1/system/poweroff"),
            (&["reboot"], "POST", "/v1/system/reboot"),
        ];
        for (args, method, path) in cases {
            let req = request(args);
            assert_eq!(
                (req.method.as_str(), req.path.as_str()),
                (method, path),
                "{args:?}"
            );
            assert_eq!(req.body, None, "{args:?}");
        }
        assert!(request_for(&command(&["logs", "a", "b"]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn odd_names_cannot_break_the_request_line() {
        let req = request(&["status", "a b/../c?x"]);
        assert_eq!(req.path, "/v1/services/a%20b%2F..%2Fc%3Fx");
    }

    #[test]
    fn exec_and_run_bodies_omit_absent_fields() {
        let req = request(&["exec", "redis", "--", "redis-cli", "ping"]);
        assert_eq!(req.path, "/v1/services/redis/exec");
        assert_eq!(body(&req), Some(json!({"cmd": ["redis-cli", "ping"]})));
        let req = request(&["exec", "r", "--timeout", "10", "--", "x"]);
        assert_eq!(body(&req), Some(json!({"cmd": ["x"], "timeout_secs": 10})));

        let req = request(&["run", "--", "echo", "hi"]);
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("POST", "/v1/exec")
        );
        assert_eq!(body(&req), Some(json!({"cmd": ["echo", "hi"]})));
        let req = request(&[
            "run",
            "--timeout-ms",
            "200",
            "--env",
            "K=V",
            "--cwd",
            "/srv",
            "--user",
            "1000",
            "--",
            "pwd",
        ]);
        assert_eq!(
            body(&req),
            Some(json!({
                "cmd": ["pwd"], "timeout_ms": 200, "env": {"K": "V"},
                "working_dir": "/srv", "user": "1000"
            }))
        );
    }

    #[test]
    fn restore_body_carries_time_entropy_and_generation() {
        assert_eq!(restore_body(None, None, None, 0), None);
        let body = restore_body(Some("now"), Some(b"\x00\xffab"), Some(7), 1_709_290_800_123);
        assert_eq!(
            body.map(Value::Object),
            Some(
                json!({"time": "2024-03-01T11:00:00.123Z", "entropy": "AP9hYg==", "generation": 7})
            )
        );
        let body = restore_body(Some("2026-12-05T16:50:40Z"), None, None, 0);
        assert_eq!(
            body.map(Value::Object),
            Some(json!({"time": "2026-12-05T16:50:40Z"}))
        );
        let req = request(&["restore", "--generation", "3"]);
        assert_eq!(body_of(&req), json!({"generation": 3}));
    }

    fn body_of(req: &Request) -> Value {
        body(req).unwrap()
    }

    #[test]
    fn entropy_comes_from_the_file_base64_encoded() {
        let dir = std::env::temp_dir().join(format!("irisctl-entropy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = dir.join("seed.bin");
        let bytes: Vec<u8> = (0u8..64).collect();
        std::fs::write(&seed, &bytes).unwrap();
        let req = request(&["restore", "--entropy-file", seed.to_str().unwrap()]);
        assert_eq!(body_of(&req), json!({"entropy": base64(&bytes)}));
        std::fs::write(&seed, vec![0u8; 600]).unwrap();
        let err = request_for(&command(&[
            "restore",
            "--entropy-file",
            seed.to_str().unwrap(),
        ]));
        assert!(err.unwrap_err().to_string().contains("600 bytes"));
        let missing = dir.join("missing");
        let err = request_for(&command(&[
            "restore",
            "--entropy-file",
            missing.to_str().unwrap(),
        ]));
        assert!(err.unwrap_err().to_string().contains("missing"));
        // A device gives its first 512 bytes.
        let req = request(&["restore", "--entropy-file", "/dev/zero"]);
        assert_eq!(body_of(&req), json!({"entropy": base64(&[0u8; 512])}));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn apply_turns_a_drop_in_file_into_a_put() {
        let text = "cmd = \"redis-server\"\nargs = [\"--port\", \"6379\"]\n\
                    env = { REDIS_LOGLEVEL = \"warning\" }\nhealth_port = 6379\n";
        let (name, req) = apply_request(Path::new("/etc/init.d/redis.toml"), text).unwrap();
        assert_eq!(name, "redis");
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("PUT", "/v1/services/redis")
        );
        assert_eq!(
            body(&req),
            Some(json!({
                "cmd": "redis-server", "args": ["--port", "6379"],
                "env": {"REDIS_LOGLEVEL": "warning"}, "health_port": 6379
            }))
        );
    }

    #[test]
    fn apply_reports_toml_errors_with_their_position() {
        let err = apply_request(Path::new("bad.toml"), "cmd = \n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid TOML"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        assert!(matches!(
            apply_request(Path::new("conf/.."), "cmd = \"x\""),
            Err(InputError::NoName)
        ));
        // Datetimes become plain strings rather than serde's marker object.
        let (_, req) = apply_request(Path::new("d.toml"), "at = 1979-05-27T07:32:00Z").unwrap();
        assert_eq!(body(&req), Some(json!({"at": "1979-05-27T07:32:00Z"})));
        assert!(matches!(
            apply_request(Path::new("f.toml"), "x = nan"),
            Err(InputError::Float(_))
        ));
    }

    #[test]
    fn only_instant_requests_get_a_read_timeout() {
        assert!(read_timeout(&Cmd::List).is_some());
        assert!(read_timeout(&command(&["start", "web"])).is_none());
        assert!(read_timeout(&command(&["stop", "web"])).is_none());
        assert!(read_timeout(&command(&["exec", "web", "--", "sleep", "100"])).is_none());
        assert!(read_timeout(&command(&["logs", "web", "-f"])).is_none());
        assert!(read_timeout(&command(&["logs", "web"])).is_some());
        assert!(read_timeout(&command(&["events"])).is_none());
    }
}

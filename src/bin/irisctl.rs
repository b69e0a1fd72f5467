//! `irisctl`, the command-line client of iris-init. This file owns the whole
//! client: parsing the command line into a [`Command`], turning it into one
//! HTTP/1.1 request on the init's unix socket, reading the answer
//! (`Content-Length`, chunked or until close), and printing it either as the
//! API's JSON (`--json`) or for humans (tables and `key: value` lines). It is
//! deliberately self-contained (external crates only, nothing from the
//! library) so it builds whatever state the init's internals are in.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

const DEFAULT_SOCKET: &str = "/run/services.sock";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Read timeout for requests the server answers at once. Requests that wait
/// for processes (start, stop, exec, ...) get none: a health wait can take minutes.
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests are tiny; a server that does not take them within this is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A response head larger than this is not from iris-init.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// Exit status for usage errors (as most Unix tools do).
const EXIT_USAGE: i32 = 2;
/// Exit status when an exec'd command timed out (as timeout(1) does).
const EXIT_TIMED_OUT: i32 = 124;

const USAGE: &str = "\
irisctl - control iris-init over its unix socket

Usage: irisctl [--socket PATH] COMMAND [ARGS] [--json]

Commands:
  list                          list services
  status NAME                   show one service
  start NAME [--no-wait]        start a service and its needs; waits until running
  stop NAME                     stop a service
  restart NAME                  stop, then start a service
  apply FILE.toml...            create or replace services from drop-in files
                                (the file stem is the service name)
  delete NAME                   stop a service and remove its definition
  exec NAME [--timeout SECS] -- CMD...
                                run a one-shot command in a service's context
  run [--timeout-ms MS] [--env K=V]... [--cwd DIR] [--user U] -- CMD...
                                run a one-shot command in the sandbox
  logs NAME [-n N] [-f]         print a service's output (-f: follow it)
  checkpoint                    make the state file durable before a snapshot
  restore [--last]              apply the state file (--last: show the last report)
  system                        show the init itself
  poweroff | reboot             stop all services, then power off or reboot
  help                          show this text

Options:
  --socket PATH   the API socket, before COMMAND
                  (default: $IRIS_SOCKET, else /run/services.sock)
  --json          after COMMAND: print the API's JSON answer as it is
  --version       print the version

Exit status: 0 on success, 1 on any error (the server's message goes to
stderr), 2 on a usage error. Without --json, exec and run exit with the
command's own status, and 124 if it timed out.
";

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// One subcommand with its arguments, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Help,
    Version,
    List,
    Status {
        name: String,
    },
    Start {
        name: String,
        wait: bool,
    },
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    Apply {
        files: Vec<PathBuf>,
    },
    Delete {
        name: String,
    },
    Exec {
        name: String,
        timeout_secs: Option<u64>,
        cmd: Vec<String>,
    },
    Run {
        timeout_ms: Option<u64>,
        env: BTreeMap<String, String>,
        working_dir: Option<String>,
        user: Option<String>,
        cmd: Vec<String>,
    },
    Logs {
        name: String,
        tail: Option<u64>,
        follow: bool,
    },
    Checkpoint,
    Restore,
    RestoreLast,
    System,
    Poweroff,
    Reboot,
}

/// The whole command line: global options plus the subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    socket: Option<PathBuf>,
    json: bool,
    command: Command,
}

/// A command line that does not make sense; reported with the usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage_err(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// An option a subcommand accepts; `names[0]` is the canonical name.
struct FlagSpec {
    names: &'static [&'static str],
    takes_value: bool,
}

/// What a subcommand accepts after its name.
struct SubSpec {
    flags: &'static [FlagSpec],
    /// Positionals before the command words, for subcommands that take a
    /// command (`exec`, `run`); `None` for the others.
    cmd_after: Option<usize>,
}

/// The raw result of scanning a subcommand's arguments.
#[derive(Debug, Default)]
struct Scanned {
    positionals: Vec<String>,
    flags: Vec<(&'static str, Option<String>)>,
    cmd: Vec<String>,
    help: bool,
}

impl Scanned {
    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    /// The last value given for `name` (a later flag wins, as usual).
    fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |(n, _)| *n == name)
            .filter_map(|(_, v)| v.as_deref())
    }
}

/// Splits a subcommand's arguments into options, positionals and command
/// words. `--json` is accepted by every subcommand; everything after `--`
/// (or, for `exec`/`run`, after the first command word) is taken verbatim.
fn scan(
    sub: &str,
    spec: &SubSpec,
    args: &[String],
    json: &mut bool,
) -> Result<Scanned, UsageError> {
    let mut out = Scanned::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            let rest: Vec<String> = iter.by_ref().cloned().collect();
            if spec.cmd_after.is_some() {
                out.cmd = rest;
            } else {
                out.positionals.extend(rest);
            }
            break;
        }
        let is_option = arg.starts_with('-') && arg.len() > 1;
        if !is_option {
            // For exec/run the first word after the positionals starts the
            // command, so `irisctl exec web ls -l` works without `--`.
            if spec.cmd_after == Some(out.positionals.len()) {
                out.cmd.push(arg.clone());
                out.cmd.extend(iter.by_ref().cloned());
                break;
            }
            out.positionals.push(arg.clone());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--json" if inline.is_none() => {
                *json = true;
                continue;
            }
            "-h" | "--help" if inline.is_none() => {
                out.help = true;
                continue;
            }
            "--socket" => {
                return Err(usage_err(
                    "--socket must come before the subcommand (irisctl --socket PATH COMMAND ...)",
                ))
            }
            _ => {}
        }
        let Some(fs) = spec.flags.iter().find(|fs| fs.names.contains(&flag)) else {
            return Err(usage_err(format!("unknown option '{arg}' for '{sub}'")));
        };
        let canonical: &'static str = fs.names.first().copied().unwrap_or_default();
        if fs.takes_value {
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| usage_err(format!("option '{flag}' needs a value")))?,
            };
            out.flags.push((canonical, Some(value)));
        } else if inline.is_some() {
            return Err(usage_err(format!("option '{flag}' takes no value")));
        } else {
            out.flags.push((canonical, None));
        }
    }
    Ok(out)
}

fn parse_number(flag: &str, value: &str) -> Result<u64, UsageError> {
    value.parse::<u64>().map_err(|_| {
        usage_err(format!(
            "option '{flag}' needs a non-negative whole number, not '{value}'"
        ))
    })
}

/// Exactly one positional: the service name.
fn one_name(sub: &str, s: &Scanned) -> Result<String, UsageError> {
    match s.positionals.as_slice() {
        [name] => Ok(name.clone()),
        [] => Err(usage_err(format!("'{sub}' needs a service name"))),
        [_, extra, ..] => Err(usage_err(format!(
            "'{sub}' takes one service name; unexpected '{extra}'"
        ))),
    }
}

fn no_positionals(sub: &str, s: &Scanned) -> Result<(), UsageError> {
    match s.positionals.first() {
        None => Ok(()),
        Some(extra) => Err(usage_err(format!(
            "'{sub}' takes no arguments; unexpected '{extra}'"
        ))),
    }
}

const NO_FLAGS: SubSpec = SubSpec {
    flags: &[],
    cmd_after: None,
};

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Invocation, UsageError> {
    let mut socket = None;
    let mut json = false;
    let mut iter = args.iter();
    // Global options come before the subcommand.
    let sub = loop {
        let Some(arg) = iter.next() else {
            return Err(usage_err("missing command"));
        };
        match arg.as_str() {
            "--socket" => {
                let path = iter
                    .next()
                    .ok_or_else(|| usage_err("option '--socket' needs a path"))?;
                socket = Some(PathBuf::from(path));
            }
            "--json" => json = true,
            "-h" | "--help" => {
                return Ok(Invocation {
                    socket,
                    json,
                    command: Command::Help,
                })
            }
            "-V" | "--version" => {
                return Ok(Invocation {
                    socket,
                    json,
                    command: Command::Version,
                })
            }
            s => match s.strip_prefix("--socket=") {
                Some(path) => socket = Some(PathBuf::from(path)),
                None if s.starts_with('-') => {
                    return Err(usage_err(format!("unknown option '{s}'")))
                }
                None => break s,
            },
        }
    };
    if socket.as_deref() == Some(Path::new("")) {
        return Err(usage_err("option '--socket' needs a non-empty path"));
    }
    let rest: Vec<String> = iter.cloned().collect();
    let command = parse_subcommand(sub, &rest, &mut json)?;
    Ok(Invocation {
        socket,
        json,
        command,
    })
}

fn parse_subcommand(sub: &str, rest: &[String], json: &mut bool) -> Result<Command, UsageError> {
    static START: SubSpec = SubSpec {
        flags: &[FlagSpec {
            names: &["--no-wait"],
            takes_value: false,
        }],
        cmd_after: None,
    };
    static EXEC: SubSpec = SubSpec {
        flags: &[FlagSpec {
            names: &["--timeout"],
            takes_value: true,
        }],
        cmd_after: Some(1),
    };
    static RUN: SubSpec = SubSpec {
        flags: &[
            FlagSpec {
                names: &["--timeout-ms"],
                takes_value: true,
            },
            FlagSpec {
                names: &["--env", "-e"],
                takes_value: true,
            },
            FlagSpec {
                names: &["--cwd"],
                takes_value: true,
            },
            FlagSpec {
                names: &["--user", "-u"],
                takes_value: true,
            },
        ],
        cmd_after: Some(0),
    };
    static LOGS: SubSpec = SubSpec {
        flags: &[
            FlagSpec {
                names: &["-n", "--tail"],
                takes_value: true,
            },
            FlagSpec {
                names: &["-f", "--follow"],
                takes_value: false,
            },
        ],
        cmd_after: None,
    };
    static RESTORE: SubSpec = SubSpec {
        flags: &[FlagSpec {
            names: &["--last"],
            takes_value: false,
        }],
        cmd_after: None,
    };

    if sub == "help" {
        return Ok(Command::Help);
    }
    let spec = match sub {
        "start" => &START,
        "exec" => &EXEC,
        "run" => &RUN,
        "logs" => &LOGS,
        "restore" => &RESTORE,
        "list" | "status" | "stop" | "restart" | "apply" | "delete" | "checkpoint" | "system"
        | "poweroff" | "reboot" => &NO_FLAGS,
        other => return Err(usage_err(format!("unknown command '{other}'"))),
    };
    let s = scan(sub, spec, rest, json)?;
    if s.help {
        return Ok(Command::Help);
    }
    let command = match sub {
        "list" => no_positionals(sub, &s).map(|()| Command::List)?,
        "status" => Command::Status {
            name: one_name(sub, &s)?,
        },
        "start" => Command::Start {
            name: one_name(sub, &s)?,
            wait: !s.has("--no-wait"),
        },
        "stop" => Command::Stop {
            name: one_name(sub, &s)?,
        },
        "restart" => Command::Restart {
            name: one_name(sub, &s)?,
        },
        "delete" => Command::Delete {
            name: one_name(sub, &s)?,
        },
        "apply" => {
            if s.positionals.is_empty() {
                return Err(usage_err("'apply' needs at least one FILE.toml"));
            }
            Command::Apply {
                files: s.positionals.iter().map(PathBuf::from).collect(),
            }
        }
        "exec" => {
            let name = one_name(sub, &s)?;
            if s.cmd.is_empty() {
                return Err(usage_err(
                    "'exec' needs a command: irisctl exec NAME -- CMD...",
                ));
            }
            let timeout_secs = s
                .value("--timeout")
                .map(|v| parse_number("--timeout", v))
                .transpose()?;
            Command::Exec {
                name,
                timeout_secs,
                cmd: s.cmd,
            }
        }
        "run" => {
            no_positionals(sub, &s)?;
            if s.cmd.is_empty() {
                return Err(usage_err("'run' needs a command: irisctl run -- CMD..."));
            }
            let timeout_ms = s
                .value("--timeout-ms")
                .map(|v| parse_number("--timeout-ms", v))
                .transpose()?;
            let mut env = BTreeMap::new();
            for kv in s.values("--env") {
                match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        env.insert(k.to_string(), v.to_string());
                    }
                    _ => return Err(usage_err(format!("--env needs KEY=VALUE, not '{kv}'"))),
                }
            }
            Command::Run {
                timeout_ms,
                env,
                working_dir: s.value("--cwd").map(str::to_string),
                user: s.value("--user").map(str::to_string),
                cmd: s.cmd,
            }
        }
        "logs" => Command::Logs {
            name: one_name(sub, &s)?,
            tail: s.value("-n").map(|v| parse_number("-n", v)).transpose()?,
            follow: s.has("-f"),
        },
        "checkpoint" => no_positionals(sub, &s).map(|()| Command::Checkpoint)?,
        "restore" => {
            no_positionals(sub, &s)?;
            if s.has("--last") {
                Command::RestoreLast
            } else {
                Command::Restore
            }
        }
        "system" => no_positionals(sub, &s).map(|()| Command::System)?,
        "poweroff" => no_positionals(sub, &s).map(|()| Command::Poweroff)?,
        "reboot" => no_positionals(sub, &s).map(|()| Command::Reboot)?,
        other => return Err(usage_err(format!("unknown command '{other}'"))),
    };
    Ok(command)
}

/// `--socket` wins over `IRIS_SOCKET`, which wins over the default. An
/// empty variable counts as unset.
fn resolve_socket(flag: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// One HTTP request to send, before encoding.
#[derive(Debug, Clone, PartialEq)]
struct Request {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Request {
    fn new(method: &'static str, path: String) -> Self {
        Request {
            method,
            path,
            body: None,
        }
    }
}

/// Percent-encodes a path segment, so whatever the user typed the request
/// line stays well-formed; the server judges whether the name is valid.
fn encode_segment(s: &str) -> String {
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

fn service_path(name: &str, suffix: &str) -> String {
    format!("/v1/services/{}{suffix}", encode_segment(name))
}

/// The request a command sends; `None` for commands that send none
/// (help, version) or several (apply, see [`apply_request`]).
fn request_for(cmd: &Command) -> Option<Request> {
    let req = match cmd {
        Command::Help | Command::Version | Command::Apply { .. } => return None,
        Command::List => Request::new("GET", "/v1/services".into()),
        Command::Status { name } => Request::new("GET", service_path(name, "")),
        Command::Start { name, wait } => {
            let suffix = if *wait { "/start" } else { "/start?wait=false" };
            Request::new("POST", service_path(name, suffix))
        }
        Command::Stop { name } => Request::new("POST", service_path(name, "/stop")),
        Command::Restart { name } => Request::new("POST", service_path(name, "/restart")),
        Command::Delete { name } => Request::new("DELETE", service_path(name, "")),
        Command::Exec {
            name,
            timeout_secs,
            cmd,
        } => {
            let mut body = Map::new();
            body.insert("cmd".into(), Value::from(cmd.clone()));
            if let Some(t) = timeout_secs {
                body.insert("timeout_secs".into(), Value::from(*t));
            }
            Request {
                method: "POST",
                path: service_path(name, "/exec"),
                body: Some(Value::Object(body)),
            }
        }
        Command::Run {
            timeout_ms,
            env,
            working_dir,
            user,
            cmd,
        } => {
            let mut body = Map::new();
            body.insert("cmd".into(), Value::from(cmd.clone()));
            if let Some(t) = timeout_ms {
                body.insert("timeout_ms".into(), Value::from(*t));
            }
            if !env.is_empty() {
                let env: Map<String, Value> = env
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
                body.insert("env".into(), Value::Object(env));
            }
            if let Some(dir) = working_dir {
                body.insert("working_dir".into(), Value::from(dir.clone()));
            }
            if let Some(user) = user {
                body.insert("user".into(), Value::from(user.clone()));
            }
            Request {
                method: "POST",
                path: "/v1/exec".into(),
                body: Some(Value::Object(body)),
            }
        }
        Command::Logs { name, tail, follow } => {
            let mut query = Vec::new();
            if let Some(n) = tail {
                query.push(format!("tail={n}"));
            }
            if *follow {
                query.push("follow=true".to_string());
            }
            let suffix = if query.is_empty() {
                "/logs".to_string()
            } else {
                format!("/logs?{}", query.join("&"))
            };
            Request::new("GET", service_path(name, &suffix))
        }
        Command::Checkpoint => Request::new("POST", "/v1/checkpoint".into()),
        Command::Restore => Request::new("POST", "/v1/restore".into()),
        Command::RestoreLast => Request::new("GET", "/v1/restore".into()),
        Command::System => Request::new("GET", "/v1/system".into()),
        Command::Poweroff => Request::new("POST", "/v1/system/poweroff".into()),
        Command::Reboot => Request::new("POST", "/v1/system/reboot".into()),
    };
    Some(req)
}

/// How long to wait for an answer. Only requests the server answers at once
/// get a limit; the rest may legitimately wait for processes for minutes.
fn read_timeout(cmd: &Command) -> Option<Duration> {
    match cmd {
        Command::List
        | Command::Status { .. }
        | Command::Checkpoint
        | Command::RestoreLast
        | Command::System
        | Command::Poweroff
        | Command::Reboot => Some(QUICK_TIMEOUT),
        Command::Logs { follow, .. } if !follow => Some(QUICK_TIMEOUT),
        _ => None,
    }
}

/// Why one file given to `apply` could not be sent.
#[derive(Debug)]
enum ApplyError {
    NoName,
    Read(io::Error),
    Toml(toml::de::Error),
    Float(String),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::NoName => f.write_str("cannot take a service name from this file name"),
            ApplyError::Read(e) => write!(f, "cannot read: {e}"),
            // toml's message spans lines (position, excerpt, caret); keep it.
            ApplyError::Toml(e) => write!(f, "invalid TOML: {}", e.to_string().trim_end()),
            ApplyError::Float(key) => write!(f, "'{key}' is not a finite number"),
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
fn toml_to_json(key: &str, v: toml::Value) -> Result<Value, ApplyError> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(x) => serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| ApplyError::Float(key.to_string()))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| toml_to_json(key, item))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => table_to_json(t)?,
    })
}

fn table_to_json(t: toml::Table) -> Result<Value, ApplyError> {
    let mut map = Map::new();
    for (k, v) in t {
        let json = toml_to_json(&k, v)?;
        map.insert(k, json);
    }
    Ok(Value::Object(map))
}

/// The PUT for one drop-in file, from its path and text: the name and the request.
fn apply_request(file: &Path, text: &str) -> Result<(String, Request), ApplyError> {
    let name = name_from_file(file).ok_or(ApplyError::NoName)?;
    let table: toml::Table = text.parse().map_err(ApplyError::Toml)?;
    let body = table_to_json(table)?;
    let req = Request {
        method: "PUT",
        path: service_path(&name, ""),
        body: Some(body),
    };
    Ok((name, req))
}

/// The bytes on the wire for a request.
fn encode_request(req: &Request) -> Vec<u8> {
    let body = req
        .body
        .as_ref()
        .map(|b| b.to_string().into_bytes())
        .unwrap_or_default();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: irisctl/{VERSION}\r\nAccept: application/json\r\n",
        req.method, req.path
    );
    if req.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Everything that can go wrong talking to the init or printing its answer.
#[derive(Debug)]
enum ClientError {
    Connect { socket: PathBuf, source: io::Error },
    Send { socket: PathBuf, source: io::Error },
    Receive(io::Error),
    Timeout(Duration),
    Closed,
    BadResponse(String),
    Api { message: String },
    Output(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { socket, source } => write!(
                f,
                "cannot connect to iris-init at {}: {source} (is it running? set --socket or IRIS_SOCKET)",
                socket.display()
            ),
            ClientError::Send { socket, source } => {
                write!(f, "cannot send the request to {}: {source}", socket.display())
            }
            ClientError::Receive(e) => write!(f, "cannot read the answer: {e}"),
            ClientError::Timeout(d) => {
                write!(f, "no answer from iris-init within {} seconds", d.as_secs())
            }
            ClientError::Closed => {
                f.write_str("iris-init closed the connection before the answer was complete")
            }
            ClientError::BadResponse(why) => write!(f, "bad answer from iris-init: {why}"),
            ClientError::Api { message, .. } => f.write_str(message),
            ClientError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    reason: String,
    framing: Framing,
}

impl Head {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Parses a response head; `Ok(None)` when more bytes are needed, else the
/// head and its length in bytes.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Err(ClientError::BadResponse(format!("malformed head: {e}"))),
    };
    let status = resp
        .code
        .ok_or_else(|| ClientError::BadResponse("no status code".into()))?;
    let mut chunked = false;
    let mut length = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "chunked") {
                chunked = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ClientError::BadResponse("invalid Content-Length".into()))?;
            length = Some(v);
        }
    }
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    let head = Head {
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        framing,
    };
    Ok(Some((len, head)))
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkError {
    BadSize(String),
    LineTooLong,
    MissingCrlf,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::BadSize(s) => write!(f, "bad chunk size '{s}'"),
            ChunkError::LineTooLong => f.write_str("chunk header line too long"),
            ChunkError::MissingCrlf => f.write_str("chunk data not followed by CRLF"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked`: bytes can be fed in
/// any split, so a followed log is printed as soon as a chunk arrives.
#[derive(Debug)]
struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
}

impl ChunkedDecoder {
    fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            line: Vec::new(),
        }
    }

    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `input` into `out`; returns how many bytes it
    /// consumed (less than all only once the final chunk has been seen).
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut rest = input;
        while !rest.is_empty() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(line) = self.take_line(&mut rest)? else {
                        continue;
                    };
                    self.state = if self.state == ChunkState::Size {
                        match parse_chunk_size(&line)? {
                            0 => ChunkState::Trailer,
                            n => ChunkState::Data(n),
                        }
                    } else if line.is_empty() {
                        ChunkState::Done
                    } else {
                        // A trailer field: ignored.
                        ChunkState::Trailer
                    };
                }
                ChunkState::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    let (data, after) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    out.extend_from_slice(data);
                    rest = after;
                    let left = left.saturating_sub(take as u64);
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataCr | ChunkState::DataLf => {
                    let Some((&b, after)) = rest.split_first() else {
                        break;
                    };
                    self.state = match (self.state, b) {
                        (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                        // A bare LF is tolerated, as most clients do.
                        (_, b'\n') => ChunkState::Size,
                        _ => return Err(ChunkError::MissingCrlf),
                    };
                    rest = after;
                }
                ChunkState::Done => break,
            }
        }
        Ok(input.len().saturating_sub(rest.len()))
    }

    /// Accumulates a line; returns it (without CR LF) once its LF arrived.
    fn take_line(&mut self, rest: &mut &[u8]) -> Result<Option<Vec<u8>>, ChunkError> {
        match rest.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let (part, after) = rest.split_at_checked(pos).unwrap_or((rest, &[]));
                self.line.extend_from_slice(part);
                // Skip the LF itself.
                *rest = after.get(1..).unwrap_or(&[]);
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > MAX_CHUNK_LINE {
                    return Err(ChunkError::LineTooLong);
                }
                Ok(Some(line))
            }
            None => {
                self.line.extend_from_slice(rest);
                *rest = &[];
                if self.line.len() > MAX_CHUNK_LINE {
                    return Err(ChunkError::LineTooLong);
                }
                Ok(None)
            }
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let text = String::from_utf8_lossy(line);
    // Chunk extensions (`;name=value`) are allowed and ignored.
    let size = text.split(';').next().unwrap_or("").trim();
    if size.is_empty() {
        return Err(ChunkError::BadSize(text.into_owned()));
    }
    u64::from_str_radix(size, 16).map_err(|_| ChunkError::BadSize(text.into_owned()))
}

/// One connection's read side: the stream plus bytes read but not yet used.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    timeout: Option<Duration>,
}

impl<S: Read> Conn<S> {
    fn new(stream: S, timeout: Option<Duration>) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            timeout,
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    fn fill(&mut self) -> Result<usize, ClientError> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(tmp.get(..n).unwrap_or(&[]));
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ClientError::Timeout(self.timeout.unwrap_or_default()))
                }
                Err(e) => return Err(ClientError::Receive(e)),
            }
        }
    }

    /// Reads the final response head, skipping interim `1xx` answers.
    fn read_head(&mut self) -> Result<Head, ClientError> {
        loop {
            if let Some((len, head)) = parse_head(&self.buf)? {
                self.buf.drain(..len.min(self.buf.len()));
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ClientError::BadResponse("response head too large".into()));
            }
            if self.fill()? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Passes the body to `sink` piece by piece as it arrives.
    fn read_body(
        &mut self,
        framing: Framing,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        match framing {
            Framing::Length(total) => {
                let mut left = total;
                loop {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    let piece: Vec<u8> = self.buf.drain(..take).collect();
                    if !piece.is_empty() {
                        sink(&piece)?;
                    }
                    left = left.saturating_sub(take as u64);
                    if left == 0 {
                        return Ok(());
                    }
                    if self.fill()? == 0 {
                        return Err(ClientError::Closed);
                    }
                }
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let mut out = Vec::new();
                    let used = decoder
                        .feed(&self.buf, &mut out)
                        .map_err(|e| ClientError::BadResponse(e.to_string()))?;
                    self.buf.drain(..used.min(self.buf.len()));
                    if !out.is_empty() {
                        sink(&out)?;
                    }
                    if decoder.is_done() {
                        return Ok(());
                    }
                    if self.fill()? == 0 {
                        return Err(ClientError::Closed);
                    }
                }
            }
            Framing::UntilClose => loop {
                let piece = std::mem::take(&mut self.buf);
                if !piece.is_empty() {
                    sink(&piece)?;
                }
                if self.fill()? == 0 {
                    return Ok(());
                }
            },
        }
    }

    fn read_body_all(&mut self, framing: Framing) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        self.read_body(framing, &mut |piece| {
            body.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(body)
    }
}

/// The human sentence for a failed request: the JSON `message`, else the
/// raw body, else the status line.
fn error_message(head: &Head, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(msg) = v.get("message").and_then(Value::as_str) {
            if !msg.trim().is_empty() {
                return msg.trim().to_string();
            }
        }
    }
    let raw = String::from_utf8_lossy(body);
    let raw = raw.trim();
    if raw.is_empty() {
        format!("HTTP {} {}", head.status, head.reason)
            .trim()
            .to_string()
    } else {
        raw.to_string()
    }
}

fn connect(socket: &Path, timeout: Option<Duration>) -> Result<Conn<UnixStream>, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        socket: socket.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .map_err(|source| ClientError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    Ok(Conn::new(stream, timeout))
}

/// Connects, sends `req` and reads the answer's head; the body is left to
/// the caller, which may stream it.
fn open(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<(Conn<UnixStream>, Head), ClientError> {
    let mut conn = connect(socket, timeout)?;
    conn.stream
        .write_all(&encode_request(req))
        .map_err(|source| ClientError::Send {
            socket: socket.to_path_buf(),
            source,
        })?;
    let head = conn.read_head()?;
    Ok((conn, head))
}

/// One complete exchange: the head and the whole body of a 2xx answer, or
/// the server's message as an error.
fn exchange(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<(Head, Vec<u8>), ClientError> {
    let (mut conn, head) = open(socket, req, timeout)?;
    let body = conn.read_body_all(head.framing)?;
    if !head.is_success() {
        return Err(ClientError::Api {
            message: error_message(&head, &body),
        });
    }
    Ok((head, body))
}

// ---------------------------------------------------------------------------
// Human output
// ---------------------------------------------------------------------------

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp (`2024-03-01T12:00:00.5+01:00`) to Unix seconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let sep = |at: usize, allowed: &[u8]| -> Option<()> {
        s.as_bytes()
            .get(at)
            .filter(|b| allowed.contains(b))
            .map(|_| ())
    };
    let year = digits(0, 4)?;
    sep(4, b"-")?;
    let month = digits(5, 7)?;
    sep(7, b"-")?;
    let day = digits(8, 10)?;
    sep(10, b"Tt ")?;
    let hour = digits(11, 13)?;
    sep(13, b":")?;
    let minute = digits(14, 16)?;
    sep(16, b":")?;
    let second = digits(17, 19)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (h, m) = rest.get(1..)?.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// A short human duration: `45s`, `3m05s`, `2h07m`, `4d03h`.
fn format_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// How long a service has been up, from `uptime_secs` or `started_at`
/// (Unix seconds, Unix milliseconds, or RFC 3339).
fn uptime_of(svc: &Value, now: i64) -> Option<String> {
    if let Some(secs) = svc.get("uptime_secs").and_then(Value::as_u64) {
        return Some(format_duration(secs));
    }
    let started = match svc.get("started_at")? {
        Value::Number(n) => {
            let t = n.as_f64()?;
            // Anything past the year 5000 in seconds is milliseconds.
            if t > 1e11 {
                (t / 1000.0) as i64
            } else {
                t as i64
            }
        }
        Value::String(s) => parse_rfc3339(s)?,
        _ => return None,
    };
    let secs = now.saturating_sub(started).max(0);
    Some(format_duration(u64::try_from(secs).unwrap_or(0)))
}

/// A scalar for a `key: value` line or a table cell; `-` for nothing.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One table cell: a single line.
fn cell(v: Option<&Value>) -> String {
    let text = v.map(scalar_text).unwrap_or_else(|| "-".into());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `irisctl list`: an aligned table of service objects.
fn render_table(list: &Value, now: i64) -> String {
    let Some(items) = list.as_array() else {
        return format!("{list}\n");
    };
    let mut rows: Vec<[String; 6]> = vec![[
        "NAME".into(),
        "STATUS".into(),
        "PID".into(),
        "RESTARTS".into(),
        "SOURCE".into(),
        "UPTIME/ERROR".into(),
    ]];
    for svc in items {
        let status = cell(svc.get("status"));
        let last = match status.as_str() {
            "failed" => cell(svc.get("error")),
            "running" => uptime_of(svc, now).unwrap_or_else(|| "-".into()),
            _ => "-".into(),
        };
        rows.push([
            cell(svc.get("name")),
            status,
            cell(svc.get("pid")),
            cell(svc.get("restarts")),
            cell(svc.get("source")),
            last,
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths.iter()).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Keys shown first by `status`, in this order; others follow sorted.
const STATUS_ORDER: &[&str] = &[
    "name",
    "status",
    "pid",
    "error",
    "exit_code",
    "restarts",
    "started_at",
    "source",
    "cmd",
    "args",
    "env",
    "working_dir",
    "user",
    "health_port",
    "needs",
    "container",
    "image",
    "restart",
    "stop_timeout_secs",
    "health_timeout_secs",
    "autostart",
];

/// The keys of `obj`, those in `order` first.
fn ordered_keys<'a>(obj: &'a Map<String, Value>, order: &[&str]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = order
        .iter()
        .filter_map(|k| obj.get_key_value(*k).map(|(k, _)| k.as_str()))
        .collect();
    keys.extend(
        obj.keys()
            .map(String::as_str)
            .filter(|k| !order.contains(k)),
    );
    keys
}

/// `irisctl status`: one `key: value` line per field.
fn render_status(svc: &Value, now: i64) -> String {
    let Some(obj) = svc.as_object() else {
        return format!("{svc}\n");
    };
    let mut out = String::new();
    for key in ordered_keys(obj, STATUS_ORDER) {
        let value = obj.get(key).map(scalar_text).unwrap_or_default();
        out.push_str(&format!("{key}: {value}\n"));
        if key == "started_at" && obj.get("status").and_then(Value::as_str) == Some("running") {
            if let Some(up) = uptime_of(svc, now) {
                out.push_str(&format!("uptime: {up}\n"));
            }
        }
    }
    out
}

/// start/stop/restart: `redis: running (pid 142)`.
fn render_action(name: &str, svc: &Value) -> String {
    let name = svc.get("name").and_then(Value::as_str).unwrap_or(name);
    let status = svc.get("status").and_then(Value::as_str).unwrap_or("ok");
    let mut line = format!("{name}: {status}");
    if let Some(pid) = svc.get("pid").filter(|p| !p.is_null()) {
        line.push_str(&format!(" (pid {pid})"));
    }
    if status == "failed" {
        if let Some(err) = svc.get("error").and_then(Value::as_str) {
            line.push_str(&format!(": {err}"));
        }
    }
    line.push('\n');
    line
}

/// One element of a report list: a name, or `name: error` for an object.
fn report_item(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let name = o.get("name").map(scalar_text);
            let why = o
                .get("error")
                .or_else(|| o.get("message"))
                .and_then(Value::as_str);
            match (name, why) {
                (Some(n), Some(w)) => format!("{n}: {w}"),
                (Some(n), None) => n,
                _ => v.to_string(),
            }
        }
        other => other.to_string(),
    }
}

const REPORT_ORDER: &[&str] = &[
    "version",
    "pid",
    "uptime_secs",
    "services",
    "zombies_reaped",
    "running_services",
    "started_services",
    "stopped_services",
    "failed_services",
];

/// checkpoint, restore and system: `key: value` lines; lists are joined,
/// or one per line when they carry explanations.
fn render_report(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return format!("{v}\n");
    };
    let mut out = String::new();
    for key in ordered_keys(obj, REPORT_ORDER) {
        match obj.get(key) {
            Some(Value::Array(items)) if items.iter().any(Value::is_object) => {
                out.push_str(&format!("{key}:\n"));
                for item in items {
                    out.push_str(&format!("  - {}\n", report_item(item)));
                }
            }
            Some(Value::Array(items)) if items.is_empty() => {
                out.push_str(&format!("{key}: -\n"));
            }
            Some(Value::Array(items)) => {
                let joined: Vec<String> = items.iter().map(report_item).collect();
                out.push_str(&format!("{key}: {}\n", joined.join(", ")));
            }
            Some(Value::Number(n)) if key == "uptime_secs" => {
                let human = n.as_u64().map(format_duration).unwrap_or_default();
                out.push_str(&format!("{key}: {n} ({human})\n"));
            }
            Some(other) => out.push_str(&format!("{key}: {}\n", scalar_text(other))),
            None => {}
        }
    }
    out
}

/// The result of an exec or run, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExecOutcome {
    stdout: String,
    stderr: String,
    exit: i32,
    timed_out: bool,
}

/// Maps an exec answer to what irisctl prints and its exit status: the
/// command's own code, 128+N for a signal, 124 for a timeout.
fn exec_outcome(v: &Value) -> ExecOutcome {
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let timed_out = v.get("timed_out").and_then(Value::as_bool).unwrap_or(false);
    let code = v.get("exit_code").and_then(Value::as_i64);
    let signal = v.get("signal").and_then(Value::as_i64);
    let exit = if timed_out {
        EXIT_TIMED_OUT
    } else {
        match (code, signal) {
            (Some(c), _) if (0..=255).contains(&c) => i32::try_from(c).unwrap_or(1),
            // Some servers report death by signal N as -N.
            (Some(c), _) if (-127..=-1).contains(&c) => i32::try_from(128 - c).unwrap_or(1),
            (_, Some(s)) if (1..=127).contains(&s) => i32::try_from(128 + s).unwrap_or(1),
            _ => 1,
        }
    };
    ExecOutcome {
        stdout: text("stdout"),
        stderr: text("stderr"),
        exit,
        timed_out,
    }
}

// ---------------------------------------------------------------------------
// Running a command
// ---------------------------------------------------------------------------

fn out_err(e: io::Error) -> ClientError {
    ClientError::Output(e)
}

fn write_stdout(bytes: &[u8]) -> Result<(), ClientError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(out_err)
}

fn write_stderr(bytes: &[u8]) -> Result<(), ClientError> {
    let mut err = io::stderr().lock();
    err.write_all(bytes)
        .and_then(|()| err.flush())
        .map_err(out_err)
}

/// The body as received, with a newline unless it already ends with one.
fn print_raw(body: &[u8]) -> Result<(), ClientError> {
    let mut bytes = body.to_vec();
    if bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    write_stdout(&bytes)
}

fn parse_json(body: &[u8]) -> Result<Value, ClientError> {
    serde_json::from_slice(body)
        .map_err(|e| ClientError::BadResponse(format!("answer is not JSON: {e}")))
}

/// `apply`: one PUT per file; reports each and returns the exit status.
fn run_apply(socket: &Path, files: &[PathBuf], json: bool) -> Result<i32, ClientError> {
    let mut failed = false;
    for file in files {
        let shown = file.display();
        let prepared = std::fs::read_to_string(file)
            .map_err(ApplyError::Read)
            .and_then(|text| apply_request(file, &text));
        let (name, req) = match prepared {
            Ok(p) => p,
            Err(e) => {
                write_stderr(format!("irisctl: {shown}: {e}\n").as_bytes())?;
                failed = true;
                continue;
            }
        };
        match exchange(socket, &req, None) {
            Ok((head, body)) => {
                if json {
                    print_raw(&body)?;
                } else {
                    let what = if head.status == 201 {
                        "created"
                    } else {
                        "replaced"
                    };
                    write_stdout(format!("{name}: {what}\n").as_bytes())?;
                }
            }
            Err(ClientError::Api { message, .. }) => {
                write_stderr(format!("irisctl: {shown}: {message}\n").as_bytes())?;
                failed = true;
            }
            // Transport trouble would fail every remaining file the same way.
            Err(e) => return Err(e),
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `logs -f`: copies the chunked stream to stdout as it arrives.
fn run_follow(socket: &Path, req: &Request) -> Result<i32, ClientError> {
    let (mut conn, head) = open(socket, req, None)?;
    if !head.is_success() {
        let body = conn.read_body_all(head.framing)?;
        return Err(ClientError::Api {
            message: error_message(&head, &body),
        });
    }
    match conn.read_body(head.framing, &mut |piece| write_stdout(piece)) {
        // The server ending the stream (shutdown, service deleted) is a normal end.
        Ok(()) | Err(ClientError::Closed) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sends the command's request and prints the answer; returns the exit status.
fn run_command(socket: &Path, inv: &Invocation) -> Result<i32, ClientError> {
    let cmd = &inv.command;
    if let Command::Apply { files } = cmd {
        return run_apply(socket, files, inv.json);
    }
    let Some(req) = request_for(cmd) else {
        return Ok(0);
    };
    if let Command::Logs { follow: true, .. } = cmd {
        return run_follow(socket, &req);
    }
    let (_, body) = exchange(socket, &req, read_timeout(cmd))?;
    if inv.json {
        print_raw(&body)?;
        return Ok(0);
    }
    let now = now_unix();
    let text = match cmd {
        Command::Logs { .. } => {
            write_stdout(&body)?;
            return Ok(0);
        }
        Command::Exec { .. } | Command::Run { .. } => {
            let outcome = exec_outcome(&parse_json(&body)?);
            write_stdout(outcome.stdout.as_bytes())?;
            write_stderr(outcome.stderr.as_bytes())?;
            if outcome.timed_out {
                write_stderr(b"irisctl: the command timed out\n")?;
            }
            return Ok(outcome.exit);
        }
        Command::List => render_table(&parse_json(&body)?, now),
        Command::Status { .. } => render_status(&parse_json(&body)?, now),
        Command::Start { name, .. } | Command::Stop { name } | Command::Restart { name } => {
            // Fall back to a plain line if the body is not a service object.
            let svc = serde_json::from_slice(&body).unwrap_or(Value::Null);
            render_action(name, &svc)
        }
        Command::Delete { name } => format!("{name}: deleted\n"),
        Command::Checkpoint | Command::Restore | Command::RestoreLast | Command::System => {
            render_report(&parse_json(&body)?)
        }
        Command::Poweroff => "iris-init: powering off\n".to_string(),
        Command::Reboot => "iris-init: rebooting\n".to_string(),
        Command::Help | Command::Version | Command::Apply { .. } => String::new(),
    };
    write_stdout(text.as_bytes())?;
    Ok(0)
}

fn real_main() -> i32 {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(a) => args.push(a),
            Err(bad) => {
                eprintln!(
                    "irisctl: argument {} is not valid UTF-8",
                    bad.to_string_lossy()
                );
                return EXIT_USAGE;
            }
        }
    }
    let inv = match parse_args(&args) {
        Ok(inv) => inv,
        Err(e) => {
            // Ignoring a failed write to stderr: nothing better can be done.
            let _ = write_stderr(format!("irisctl: {e}\n\n{USAGE}").as_bytes());
            return EXIT_USAGE;
        }
    };
    let printed = match inv.command {
        Command::Help => write_stdout(USAGE.as_bytes()),
        Command::Version => write_stdout(format!("irisctl {VERSION}\n").as_bytes()),
        _ => {
            let socket = resolve_socket(inv.socket.clone(), std::env::var_os("IRIS_SOCKET"));
            match run_command(&socket, &inv) {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
    };
    match printed {
        Ok(()) => 0,
        // A reader that went away (`irisctl logs -f web | head`) is not an error.
        Err(ClientError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = write_stderr(format!("irisctl: {e}\n").as_bytes());
            1
        }
    }
}

fn main() {
    std::process::exit(real_main());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn parse(s: &[&str]) -> Result<Invocation, UsageError> {
        parse_args(&argv(s))
    }

    fn command(s: &[&str]) -> Command {
        parse(s).unwrap().command
    }

    #[test]
    fn socket_before_and_json_after_the_subcommand() {
        let inv = parse(&["--socket", "/x.sock", "list", "--json"]).unwrap();
        assert_eq!(inv.socket, Some(PathBuf::from("/x.sock")));
        assert!(inv.json);
        assert_eq!(inv.command, Command::List);
        let inv = parse(&["--socket=/y.sock", "status", "web"]).unwrap();
        assert_eq!(inv.socket, Some(PathBuf::from("/y.sock")));
        assert!(!inv.json);
    }

    #[test]
    fn socket_after_the_subcommand_is_a_usage_error_that_says_where_it_goes() {
        let err = parse(&["list", "--socket", "/x"]).unwrap_err();
        assert!(err.0.contains("before the subcommand"), "{err}");
    }

    #[test]
    fn socket_resolution_prefers_flag_then_env_then_default() {
        assert_eq!(
            resolve_socket(Some("/a".into()), Some("/b".into())),
            PathBuf::from("/a")
        );
        assert_eq!(resolve_socket(None, Some("/b".into())), PathBuf::from("/b"));
        assert_eq!(
            resolve_socket(None, Some("".into())),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(resolve_socket(None, None), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn start_waits_unless_no_wait() {
        assert_eq!(
            command(&["start", "redis"]),
            Command::Start {
                name: "redis".into(),
                wait: true
            }
        );
        assert_eq!(
            command(&["start", "--no-wait", "redis"]),
            Command::Start {
                name: "redis".into(),
                wait: false
            }
        );
    }

    #[test]
    fn name_taking_commands_need_exactly_one_name() {
        assert!(parse(&["status"]).is_err());
        assert!(parse(&["stop", "a", "b"]).is_err());
        assert!(parse(&["list", "extra"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["start", "web", "--bogus"]).is_err());
        // `--` ends options, so a name that looks like one still works.
        assert_eq!(
            command(&["status", "--", "-odd"]),
            Command::Status {
                name: "-odd".into()
            }
        );
    }

    #[test]
    fn exec_takes_the_command_after_dashes_verbatim() {
        assert_eq!(
            command(&[
                "exec",
                "redis",
                "--timeout",
                "5",
                "--",
                "redis-cli",
                "--json",
                "ping"
            ]),
            Command::Exec {
                name: "redis".into(),
                timeout_secs: Some(5),
                cmd: argv(&["redis-cli", "--json", "ping"]),
            }
        );
        // Without `--`, the first word after the name starts the command.
        assert_eq!(
            command(&["exec", "redis", "ls", "-l"]),
            Command::Exec {
                name: "redis".into(),
                timeout_secs: None,
                cmd: argv(&["ls", "-l"]),
            }
        );
        let inv = parse(&["exec", "redis", "--json", "--", "true"]).unwrap();
        assert!(inv.json);
        assert!(parse(&["exec", "redis"]).is_err());
        assert!(parse(&["exec", "redis", "--"]).is_err());
        assert!(parse(&["exec", "--", "ls"]).is_err());
        assert!(parse(&["exec", "redis", "--timeout", "-1", "--", "ls"]).is_err());
    }

    #[test]
    fn run_collects_env_cwd_user_and_timeout() {
        let mut env = BTreeMap::new();
        env.insert("A".to_string(), "1=2".to_string());
        env.insert("B".to_string(), "".to_string());
        assert_eq!(
            command(&[
                "run",
                "--timeout-ms",
                "1500",
                "--env",
                "A=1=2",
                "-e",
                "B=",
                "--cwd=/srv/app",
                "--user",
                "nobody",
                "--",
                "id",
                "-u"
            ]),
            Command::Run {
                timeout_ms: Some(1500),
                env,
                working_dir: Some("/srv/app".into()),
                user: Some("nobody".into()),
                cmd: argv(&["id", "-u"]),
            }
        );
        assert!(parse(&["run", "--env", "NOEQUALS", "--", "true"]).is_err());
        assert!(parse(&["run", "--timeout-ms"]).is_err());
        assert!(parse(&["run"]).is_err());
    }

    #[test]
    fn logs_restore_apply_and_help() {
        assert_eq!(
            command(&["logs", "web", "-n", "20", "-f"]),
            Command::Logs {
                name: "web".into(),
                tail: Some(20),
                follow: true
            }
        );
        assert!(parse(&["logs", "web", "-n", "x"]).is_err());
        assert_eq!(command(&["restore"]), Command::Restore);
        assert_eq!(command(&["restore", "--last"]), Command::RestoreLast);
        assert_eq!(
            command(&["apply", "a.toml", "b/c.toml"]),
            Command::Apply {
                files: vec!["a.toml".into(), "b/c.toml".into()]
            }
        );
        assert!(parse(&["apply"]).is_err());
        assert_eq!(command(&["help"]), Command::Help);
        assert_eq!(command(&["--help"]), Command::Help);
        assert_eq!(command(&["stop", "--help"]), Command::Help);
        assert_eq!(command(&["--version"]), Command::Version);
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
            (&["poweroff"], "POST", "/v1/system/poweroff"),
            (&["reboot"], "POST", "/v1/system/reboot"),
        ];
        for (args, method, path) in cases {
            let req = request_for(&command(args)).unwrap();
            assert_eq!((req.method, req.path.as_str()), (method, path), "{args:?}");
            assert_eq!(req.body, None, "{args:?}");
        }
    }

    #[test]
    fn odd_names_cannot_break_the_request_line() {
        let req = request_for(&command(&["status", "a b/../c?x"])).unwrap();
        assert_eq!(req.path, "/v1/services/a%20b%2F..%2Fc%3Fx");
    }

    #[test]
    fn exec_and_run_bodies_omit_absent_fields() {
        let req = request_for(&command(&["exec", "redis", "--", "redis-cli", "ping"])).unwrap();
        assert_eq!(req.path, "/v1/services/redis/exec");
        assert_eq!(req.body, Some(json!({"cmd": ["redis-cli", "ping"]})));
        let req = request_for(&command(&["exec", "r", "--timeout", "10", "--", "x"])).unwrap();
        assert_eq!(req.body, Some(json!({"cmd": ["x"], "timeout_secs": 10})));

        let req = request_for(&command(&["run", "--", "echo", "hi"])).unwrap();
        assert_eq!((req.method, req.path.as_str()), ("POST", "/v1/exec"));
        assert_eq!(req.body, Some(json!({"cmd": ["echo", "hi"]})));
        let req = request_for(&command(&[
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
        ]))
        .unwrap();
        assert_eq!(
            req.body,
            Some(json!({
                "cmd": ["pwd"], "timeout_ms": 200, "env": {"K": "V"},
                "working_dir": "/srv", "user": "1000"
            }))
        );
    }

    #[test]
    fn apply_turns_a_drop_in_file_into_a_put() {
        let text = "cmd = \"redis-server\"\nargs = [\"--port\", \"6379\"]\n\
                    env = { REDIS_LOGLEVEL = \"warning\" }\nhealth_port = 6379\n";
        let (name, req) = apply_request(Path::new("/etc/init.d/redis.toml"), text).unwrap();
        assert_eq!(name, "redis");
        assert_eq!(
            (req.method, req.path.as_str()),
            ("PUT", "/v1/services/redis")
        );
        assert_eq!(
            req.body,
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
            Err(ApplyError::NoName)
        ));
        // Datetimes become plain strings rather than serde's marker object.
        let (_, req) = apply_request(Path::new("d.toml"), "at = 1979-05-27T07:32:00Z").unwrap();
        assert_eq!(req.body, Some(json!({"at": "1979-05-27T07:32:00Z"})));
        assert!(matches!(
            apply_request(Path::new("f.toml"), "x = nan"),
            Err(ApplyError::Float(_))
        ));
    }

    #[test]
    fn encoded_request_has_a_matching_content_length() {
        let req = Request {
            method: "PUT",
            path: "/v1/services/a".into(),
            body: Some(json!({"cmd": "é"})),
        };
        let bytes = encode_request(&req);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("PUT /v1/services/a HTTP/1.1\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Content-Type: application/json"));
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"cmd": "é"})
        );

        let get = encode_request(&Request::new("GET", "/v1/system".into()));
        let text = String::from_utf8(get).unwrap();
        assert!(text.contains("Content-Length: 0\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    /// A reader that hands out one byte per read, to exercise every split.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.get(self.1), buf.first_mut()) {
                (Some(b), Some(slot)) => {
                    *slot = *b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn read_response(raw: &[u8]) -> Result<(Head, Vec<u8>), ClientError> {
        let mut conn = Conn::new(Trickle(raw.to_vec(), 0), None);
        let head = conn.read_head()?;
        let body = conn.read_body_all(head.framing)?;
        Ok((head, body))
    }

    #[test]
    fn reads_content_length_chunked_and_close_delimited_bodies() {
        let (head, body) =
            read_response(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n{}\r\nextra").unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(body, b"{}\r\n");

        let (head, body) = read_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(body, b"hello!");

        let (_, body) = read_response(b"HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(body, b"until close");

        let (head, body) = read_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!((head.status, body.as_slice()), (404, &b"{}"[..]));
    }

    #[test]
    fn truncated_or_garbled_answers_are_errors() {
        assert!(matches!(
            read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Err(ClientError::Closed)
        ));
        assert!(matches!(
            read_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
            Err(ClientError::Closed)
        ));
        assert!(matches!(
            read_response(b"HTTP/1.1 20"),
            Err(ClientError::Closed)
        ));
        assert!(matches!(
            read_response(b"SMTP ready\r\n\r\n"),
            Err(ClientError::BadResponse(_))
        ));
        assert!(matches!(
            read_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ClientError::BadResponse(_))
        ));
    }

    #[test]
    fn chunked_decoder_gives_the_same_bytes_for_every_split() {
        let wire = b"4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::new();
            let used_a = dec.feed(a, &mut out).unwrap();
            let used_b = dec.feed(b, &mut out).unwrap();
            assert!(dec.is_done(), "split {split}");
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "split {split}");
            // Everything up to the end of the last chunk is consumed, the
            // bytes after it are left unread.
            let used = if used_a < a.len() {
                used_a
            } else {
                used_a + used_b
            };
            assert_eq!(used, wire.len() - b"NEXT".len(), "split {split}");
        }
    }

    #[test]
    fn chunked_decoder_rejects_garbage() {
        let mut out = Vec::new();
        assert!(matches!(
            ChunkedDecoder::new().feed(b"zz\r\n", &mut out),
            Err(ChunkError::BadSize(_))
        ));
        assert!(matches!(
            ChunkedDecoder::new().feed(b"\r\n", &mut out),
            Err(ChunkError::BadSize(_))
        ));
        assert_eq!(
            ChunkedDecoder::new().feed(b"2\r\nabX", &mut out),
            Err(ChunkError::MissingCrlf)
        );
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert_eq!(
            ChunkedDecoder::new().feed(&long, &mut out),
            Err(ChunkError::LineTooLong)
        );
    }

    #[test]
    fn error_message_prefers_json_message_then_raw_body() {
        let head = Head {
            status: 404,
            reason: "Not Found".into(),
            framing: Framing::Length(0),
        };
        let body = br#"{"error":"not_found","message":"no service named 'x'"}"#;
        assert_eq!(error_message(&head, body), "no service named 'x'");
        assert_eq!(error_message(&head, b"plain text\n"), "plain text");
        assert_eq!(error_message(&head, b""), "HTTP 404 Not Found");
        assert_eq!(
            error_message(&head, br#"{"error":"x"}"#),
            r#"{"error":"x"}"#
        );
    }

    #[test]
    fn table_aligns_columns_and_shows_dash_pid_and_errors() {
        let now = 1_000_000;
        let list = json!([
            {"name": "redis", "status": "running", "pid": 142, "restarts": 0,
             "source": "file", "started_at": now - 65},
            {"name": "app-server", "status": "failed", "pid": null, "restarts": 3,
             "source": "api", "error": "health port 3000 not open\nafter 60s"},
            {"name": "idle", "status": "stopped", "pid": null, "restarts": 0, "source": "api"}
        ]);
        let table = render_table(&list, now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        let header = lines.first().unwrap();
        assert!(header.starts_with("NAME        STATUS   PID  RESTARTS  SOURCE  UPTIME/ERROR"));
        assert_eq!(
            *lines.get(1).unwrap(),
            "redis       running  142  0         file    1m05s"
        );
        assert_eq!(
            *lines.get(2).unwrap(),
            "app-server  failed   -    3         api     health port 3000 not open after 60s"
        );
        assert_eq!(
            *lines.get(3).unwrap(),
            "idle        stopped  -    0         api     -"
        );
        // Every STATUS cell starts in the same column.
        let col = header.find("STATUS").unwrap();
        for line in &lines {
            assert!(line
                .get(col..)
                .unwrap()
                .starts_with(|c: char| c.is_alphabetic()));
        }
        assert_eq!(render_table(&json!([]), now).lines().count(), 1);
    }

    #[test]
    fn status_is_key_value_lines_with_the_seed_fields_first() {
        let svc = json!({"pid": 142, "name": "redis", "status": "running", "container": false,
                         "cmd": "redis-server", "args": ["--port", "6379"], "image": "",
                         "started_at": "1970-01-01T00:00:00Z"});
        let text = render_status(&svc, 3600);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.get(..3),
            Some(&["name: redis", "status: running", "pid: 142"][..])
        );
        assert!(lines.contains(&"args: [\"--port\",\"6379\"]"));
        assert!(lines.contains(&"image: -"));
        assert!(lines.contains(&"uptime: 1h00m"));
        assert!(lines.contains(&"container: false"));
    }

    #[test]
    fn action_lines_name_the_state_and_pid() {
        let svc = json!({"name": "redis", "status": "running", "pid": 142});
        assert_eq!(render_action("redis", &svc), "redis: running (pid 142)\n");
        let svc = json!({"name": "redis", "status": "stopped", "pid": null});
        assert_eq!(render_action("redis", &svc), "redis: stopped\n");
        assert_eq!(render_action("redis", &Value::Null), "redis: ok\n");
    }

    #[test]
    fn reports_list_names_and_explain_failures() {
        let report = json!({"started_services": ["a", "b"], "stopped_services": [],
                            "failed_services": [{"name": "c", "error": "no such user"}]});
        assert_eq!(
            render_report(&report),
            "started_services: a, b\nstopped_services: -\nfailed_services:\n  - c: no such user\n"
        );
        let system = json!({"zombies_reaped": 3, "pid": 1, "version": "0.1.0",
                            "uptime_secs": 125, "services": 2});
        assert_eq!(
            render_report(&system),
            "version: 0.1.0\npid: 1\nuptime_secs: 125 (2m05s)\nservices: 2\nzombies_reaped: 3\n"
        );
    }

    #[test]
    fn exec_exit_status_follows_the_command() {
        let o = exec_outcome(
            &json!({"stdout": "PONG\n", "stderr": "", "exit_code": 0, "timed_out": false}),
        );
        assert_eq!(
            (o.stdout.as_str(), o.exit, o.timed_out),
            ("PONG\n", 0, false)
        );
        assert_eq!(exec_outcome(&json!({"exit_code": 3})).exit, 3);
        assert_eq!(exec_outcome(&json!({"exit_code": -9})).exit, 137);
        assert_eq!(
            exec_outcome(&json!({"exit_code": null, "signal": 15})).exit,
            143
        );
        assert_eq!(exec_outcome(&json!({"exit_code": 1000})).exit, 1);
        let o = exec_outcome(&json!({"exit_code": null, "timed_out": true, "stderr": "x"}));
        assert_eq!((o.exit, o.timed_out, o.stderr.as_str()), (124, true, "x"));
    }

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-03-01T12:00:00+01:00"),
            Some(1_709_290_800)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T11:00:00.123456Z"),
            Some(1_709_290_800)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(185), "3m05s");
        assert_eq!(format_duration(7620), "2h07m");
        assert_eq!(format_duration(356_400), "4d03h");
        // started_at in milliseconds is recognised.
        let svc = json!({"started_at": 1_000_000_000_000u64});
        assert_eq!(uptime_of(&svc, 1_000_000_010).as_deref(), Some("10s"));
    }

    #[test]
    fn only_instant_requests_get_a_read_timeout() {
        assert!(read_timeout(&Command::List).is_some());
        assert!(read_timeout(&command(&["start", "web"])).is_none());
        assert!(read_timeout(&command(&["stop", "web"])).is_none());
        assert!(read_timeout(&command(&["exec", "web", "--", "sleep", "100"])).is_none());
        assert!(read_timeout(&command(&["logs", "web", "-f"])).is_none());
        assert!(read_timeout(&command(&["logs", "web"])).is_some());
    }
}

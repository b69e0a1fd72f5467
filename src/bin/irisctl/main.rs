//! `irisctl`, the command-line client of iris-init: parses the command line
//! ([`args`]), sends the command's request on the init's unix socket
//! ([`request`], [`http`]) and prints the answer as the API's JSON
//! (`--json`) or for humans ([`render`]); streams (`logs -f`, `events`,
//! `watch`) and the shell helpers live in their own modules.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod args;
mod clock;
mod complete;
mod events;
mod http;
mod logs;
mod render;
mod request;
mod style;
mod watch;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;

use crate::args::{resolve_socket, Cli, Cmd};
use crate::http::{exchange, CtlError};
use crate::request::{apply_request, read_timeout, request_for, InputError};

pub fn write_stdout(bytes: &[u8]) -> Result<(), CtlError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CtlError::Output)
}

pub fn write_stderr(bytes: &[u8]) -> Result<(), CtlError> {
    let mut err = io::stderr().lock();
    err.write_all(bytes)
        .and_then(|()| err.flush())
        .map_err(CtlError::Output)
}

/// The body as received, with a newline unless it already ends with one.
pub fn print_raw(body: &[u8]) -> Result<(), CtlError> {
    let mut bytes = body.to_vec();
    if bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    write_stdout(&bytes)
}

fn parse_json(body: &[u8]) -> Result<Value, CtlError> {
    serde_json::from_slice(body).map_err(|e| {
        CtlError::Http(iris_init::client::Error::BadResponse(format!(
            "answer is not JSON: {e}"
        )))
    })
}

/// `apply`: one PUT per file; reports each and returns the exit status.
fn run_apply(socket: &Path, files: &[PathBuf], json: bool) -> Result<i32, CtlError> {
    let mut failed = false;
    for file in files {
        let shown = file.display();
        let prepared = std::fs::read_to_string(file)
            .map_err(InputError::Read)
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
            Ok(resp) if json => print_raw(&resp.body)?,
            Ok(resp) => {
                let what = if resp.status == 201 {
                    "created"
                } else {
                    "replaced"
                };
                write_stdout(format!("{name}: {what}\n").as_bytes())?;
            }
            Err(CtlError::Api { message }) => {
                write_stderr(format!("irisctl: {shown}: {message}\n").as_bytes())?;
                failed = true;
            }
            // Transport trouble would fail every remaining file the same way.
            Err(e) => return Err(e),
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Sends a one-request command and prints the answer; returns the exit status.
fn run_simple(socket: &Path, cmd: &Cmd, json: bool) -> Result<i32, CtlError> {
    let Some(req) = request_for(cmd)? else {
        return Ok(0);
    };
    let body = exchange(socket, &req, read_timeout(cmd))?.body;
    if json {
        print_raw(&body)?;
        return Ok(0);
    }
    let now = clock::now_unix();
    let text = match cmd {
        Cmd::Logs { .. } | Cmd::Metrics => {
            write_stdout(&body)?;
            return Ok(0);
        }
        // The init serves it without indentation; people read it indented.
        Cmd::Openapi => render::pretty_json(&parse_json(&body)?),
        Cmd::Exec { .. } | Cmd::Run { .. } => {
            let outcome = render::exec_outcome(&parse_json(&body)?);
            write_stdout(outcome.stdout.as_bytes())?;
            write_stderr(outcome.stderr.as_bytes())?;
            if outcome.timed_out {
                write_stderr(b"irisctl: the command timed out\n")?;
            }
            return Ok(outcome.exit);
        }
        Cmd::List => render::render_table(&parse_json(&body)?, now),
        Cmd::Status { .. } => render::render_status(&parse_json(&body)?, now),
        Cmd::Start { name, .. } | Cmd::Stop { name } | Cmd::Restart { name } => {
            // Fall back to a plain line if the body is not a service object.
            let svc = serde_json::from_slice(&body).unwrap_or(Value::Null);
            render::render_action(name, &svc)
        }
        Cmd::Delete { name } => format!("{name}: deleted\n"),
        Cmd::Poweroff => "iris-init: powering off\n".to_string(),
        Cmd::Reboot => "iris-init: rebooting\n".to_string(),
        _ => render::render_report(&parse_json(&body)?),
    };
    write_stdout(text.as_bytes())?;
    Ok(0)
}

/// Runs the command; returns the exit status.
fn run(cli: &Cli) -> Result<i32, CtlError> {
    let socket = resolve_socket(cli.socket.clone(), std::env::var_os("IRIS_SOCKET"));
    let socket = socket.as_path();
    match &cli.command {
        Cmd::Apply { files } => run_apply(socket, files, cli.json),
        Cmd::Logs {
            names,
            tail,
            follow,
        } if *follow || names.len() > 1 => logs::run(socket, names, *tail, *follow),
        Cmd::Events { since, names } => events::run(socket, *since, names, cli.json),
        Cmd::Watch { names } => watch::run(socket, names),
        Cmd::Completions { shell } => write_stdout(complete::script(*shell).as_bytes()).map(|()| 0),
        Cmd::Man { dir } => complete::man(dir.as_deref()),
        Cmd::CompleteServices => complete::services(socket),
        cmd => run_simple(socket, cmd, cli.json),
    }
}

fn real_main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout (exit 0); usage errors to stderr
            // as a short usage line and a hint (exit 2). Ignoring a failed
            // write: nothing better can be done.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match run(&cli) {
        Ok(code) => code,
        // A reader that went away (`irisctl logs -f web | head`) is not an error.
        Err(CtlError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = write_stderr(format!("irisctl: {e}\n").as_bytes());
            1
        }
    }
}

fn main() {
    std::process::exit(real_main());
}

//! irisctl as a user meets it: help and usage errors, shell completion in
//! bash (interactive, in a pseudo-terminal) and fish, `logs -f` of several
//! services, `watch` and `events` against the real init, and their exact
//! rendering (and `metrics`/`restore`) against a server that plays canned
//! answers.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ctl(args: &[&str]) -> Output {
    Command::new(CTL).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Output collected by a reader thread, to wait for text without blocking.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Collected {
    fn reading(mut from: impl Read + Send + 'static) -> Collected {
        let c = Collected::default();
        let sink = c.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        c
    }

    fn text(&self) -> String {
        text(&self.0.lock().unwrap())
    }

    /// Waits until `f(all output so far)` holds.
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        poll(WAIT, what, || {
            let t = self.text();
            if f(&t) {
                Ok(t)
            } else {
                Err(format!("{t:?}"))
            }
        })
    }

    fn wait_contains(&self, needle: &str) -> String {
        self.wait_for(needle, |t| t.contains(needle))
    }
}

/// A program running on a pseudo-terminal: what it writes is collected,
/// what the test types goes to its input.
struct Pty {
    child: Child,
    master: std::fs::File,
    out: Collected,
}

impl Pty {
    fn spawn(cmd: &mut Command) -> Pty {
        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: 40,
                ws_col: 120,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )
        .unwrap();
        let slave: OwnedFd = pty.slave;
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // SAFETY: between fork and exec only async-signal-safe calls: a new
        // session, then the terminal (fd 0) as its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let out = Collected::reading(master.try_clone().unwrap());
        Pty { child, master, out }
    }

    fn type_text(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on a unix socket that answers each path with canned bytes;
/// `/v1/events` answers a chunked SSE head and then sends what the test
/// pushes, ending when the sender is dropped. Requests are recorded.
struct Fake {
    socket: std::path::PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
}

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

impl Fake {
    fn start(
        dir: &std::path::Path,
        canned: Vec<(&'static str, String)>,
    ) -> (Fake, mpsc::Sender<String>) {
        let socket = dir.join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let rx = Arc::new(Mutex::new(rx));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let request = read_request(&mut conn);
                seen.lock().unwrap().push(request.clone());
                let path = request.split(' ').nth(1).unwrap_or("").to_string();
                if path.starts_with("/v1/events") {
                    let rx = rx.clone();
                    std::thread::spawn(move || {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                        );
                        while let Ok(data) = rx.lock().unwrap().recv() {
                            if conn.write_all(&chunk(&data)).is_err() {
                                return;
                            }
                        }
                        let _ = conn.write_all(b"0\r\n\r\n");
                    });
                    continue;
                }
                let answer = canned
                    .iter()
                    .find(|(p, _)| path.starts_with(p))
                    .map(|(_, a)| a.clone())
                    .unwrap_or_else(|| {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into()
                    });
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        (Fake { socket, requests }, tx)
    }

    fn sock(&self) -> &str {
        self.socket.to_str().unwrap()
    }
}

/// A request's head and body, as text.
fn read_request(conn: &mut std::os::unix::net::UnixStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        buf.push(byte[0]);
    }
    let head = text(&buf);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    head + &text(&body)
}

fn answer(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn every_command_has_help_with_an_example() {
    let out = ctl(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 19, "{commands:?}");
    for c in [
        "list",
        "exec",
        "logs",
        "watch",
        "events",
        "metrics",
        "completions",
    ] {
        assert!(commands.contains(&c), "{c} missing from {help}");
    }
    for c in commands {
        let out = ctl(&[c, "--help"]);
        assert!(out.status.success(), "{c}");
        let help = text(&out.stdout);
        assert!(
            help.contains("Example"),
            "{c} --help has no example:\n{help}"
        );
        assert!(help.contains(&format!("  irisctl {c}")), "{c}:\n{help}");
    }
}

#[test]
fn usage_errors_are_short_and_suggest_the_command_meant() {
    let out = ctl(&["lst"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("'list'"), "{err}");
    assert!(err.contains("Usage: irisctl"), "{err}");
    assert!(err.contains("try '--help'"), "{err}");
    assert!(!err.contains("Commands:"), "the whole help: {err}");
    assert!(err.lines().count() <= 8, "{err}");
    assert!(out.stdout.is_empty());

    let out = ctl(&["start"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("<NAME>") && err.contains("Usage: irisctl start"),
        "{err}"
    );
    assert!(!err.contains("Commands:"), "{err}");

    let out = ctl(&["logs", "web", "--folow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--follow"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn global_options_go_on_either_side_and_iris_socket_works() {
    let t = TempDir::new("ctlglobal");
    let init = Init::start(t.path());
    init.put("a", r#"{"cmd":"sleep","args":["1000"]}"#);
    let sock = init.socket.to_str().unwrap();
    for args in [
        vec!["--socket", sock, "list", "--json"],
        vec!["list", "--socket", sock, "--json"],
        vec!["--json", "--socket", sock, "list"],
    ] {
        let out = ctl(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["name"], "a", "{args:?}");
    }
    let out = Command::new(CTL)
        .args(["status", "a"])
        .env("IRIS_SOCKET", sock)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("name: a\nstatus: stopped\n"));
    let out = ctl(&["--socket", sock, "status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"));
}

/// A bash with the completion script loaded, in a terminal, irisctl on PATH.
fn bash_with_completion(t: &TempDir) -> Pty {
    let bin = std::path::Path::new(CTL).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let rc = t.path().join("bashrc");
    std::fs::write(&rc, "source <(irisctl completions bash)\nPS1='ready> '\n").unwrap();
    let bash = Pty::spawn(
        Command::new("bash")
            .args(["--noprofile", "--rcfile"])
            .arg(&rc)
            .arg("-i")
            .env("PATH", path)
            .env("TERM", "dumb")
            .env("INPUTRC", "/dev/null")
            .env_remove("IRIS_SOCKET"),
    );
    bash.out.wait_contains("ready> ");
    bash
}

#[test]
fn bash_completes_commands_and_service_names_from_the_running_init() {
    let t = TempDir::new("ctlbash");
    let init = Init::start(t.path());
    init.put("alpha-web", r#"{"cmd":"sleep","args":["1000"]}"#);
    init.put("beta-db", r#"{"cmd":"sleep","args":["1000"]}"#);
    let sock = init.socket.to_str().unwrap().to_string();
    let mut bash = bash_with_completion(&t);
    bash.type_text("complete -p irisctl\n");
    bash.out.wait_contains("-F _irisctl_services irisctl");

    // A command: `wat<TAB>` becomes `watch`.
    bash.type_text("irisctl --socket /nonexistent wat");
    bash.type_text("\t");
    bash.out
        .wait_contains("irisctl --socket /nonexistent watch ");
    bash.type_text("\x15"); // ctrl-u: drop the line

    // A service name from the init the line names: `start al<TAB>`.
    bash.type_text(&format!("irisctl --socket {sock} start al\t"));
    bash.out.wait_contains("start alpha-web ");
    bash.type_text("\x15");

    // Both names listed on a double TAB after `logs -f`.
    bash.type_text(&format!("irisctl logs --socket {sock} -f \t\t"));
    bash.out.wait_for("both names", |t| {
        t.contains("alpha-web") && t.contains("beta-db")
    });
    bash.type_text("\x15");
    // The command itself still works after being completed.
    bash.type_text(&format!("irisctl --socket {sock} status be\t\n"));
    bash.out.wait_contains("name: beta-db");
}

#[test]
fn fish_completes_service_names_and_zsh_loads_the_script() {
    let t = TempDir::new("ctlfish");
    let init = Init::start(t.path());
    init.put("alpha", r#"{"cmd":"sleep","args":["1000"]}"#);
    init.put("beta", r#"{"cmd":"sleep","args":["1000"]}"#);
    let bin = std::path::Path::new(CTL).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let sock = init.socket.to_str().unwrap();
    let script = t.path().join("irisctl.fish");
    std::fs::write(&script, ctl(&["completions", "fish"]).stdout).unwrap();
    let out = Command::new("fish")
        .args(["--no-config", "-c"])
        .arg(format!(
            "source {}; complete -C 'irisctl --socket {sock} stop '; complete -C 'irisctl rest'",
            script.display()
        ))
        .env("PATH", &path)
        .output()
        .expect("fish (make setup installs it)");
    let got = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let words: Vec<&str> = got.lines().map(|l| l.split('\t').next().unwrap()).collect();
    for w in ["alpha", "beta", "restart", "restore"] {
        assert!(words.contains(&w), "{w} not offered: {got}");
    }

    let script = t.path().join("_irisctl");
    std::fs::write(&script, ctl(&["completions", "zsh"]).stdout).unwrap();
    // Loaded as zsh loads it, with `_describe` standing in for the menu.
    let out = Command::new("zsh")
        .args(["-f", "-c"])
        .arg(format!(
            "autoload -U compinit && compinit -u -D; source {s}; print -r -- $_comps[irisctl]; \
             _describe() {{ print -l -- ${{(P)${{@[-1]}}}} }}; \
             BUFFER='irisctl --socket {sock} start '; _irisctl_services",
            s = script.display()
        ))
        .env("PATH", &path)
        .output()
        .expect("zsh (make setup installs it)");
    let got = text(&out.stdout);
    assert!(out.status.success(), "{}{got}", text(&out.stderr));
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        ["_irisctl", "alpha", "beta"],
        "{got}"
    );
}

#[test]
fn logs_follow_several_services_with_their_names_in_front() {
    let t = TempDir::new("ctllogs");
    let init = Init::start(t.path());
    let go = t.path().join("go");
    for (name, word) in [("alpha", "a"), ("beta", "b")] {
        let script = format!(
            "echo {word}1; while [ ! -e {} ]; do sleep 0.02; done; echo {word}2; exec sleep 1000",
            go.display()
        );
        let def = serde_json::json!({"cmd": "sh", "args": ["-c", script]});
        assert_eq!(init.put(name, &def.to_string()).0, 201);
        assert_eq!(
            init.req("POST", &format!("/v1/services/{name}/start"), None)
                .0,
            200
        );
    }
    let sock = init.socket.to_str().unwrap();
    // Both lines are there before following starts.
    for name in ["alpha", "beta"] {
        init.wait_for(name, "first line logged", |v| {
            v["log_lines"].as_u64() >= Some(1)
        });
    }
    let out = ctl(&["--socket", sock, "logs", "alpha", "beta"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "alpha | a1\nbeta  | b1\n");

    let mut follow = Command::new(CTL)
        .args(["--socket", sock, "logs", "-f", "alpha", "beta"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Collected::reading(follow.stdout.take().unwrap());
    out.wait_for("first lines", |t| {
        t.contains("alpha | a1\n") && t.contains("beta  | b1\n")
    });
    std::fs::write(&go, "").unwrap();
    let all = out.wait_for("lines written while following", |t| {
        t.contains("alpha | a2\n") && t.contains("beta  | b2\n")
    });
    assert_eq!(all.lines().count(), 4, "{all}");
    // Deleting a service ends its stream; the other goes on.
    assert_eq!(init.req("DELETE", "/v1/services/alpha", None).0, 200);
    assert!(follow.try_wait().unwrap().is_none(), "still following beta");
    assert_eq!(init.req("DELETE", "/v1/services/beta", None).0, 200);
    let status = wait_child(&mut follow, Duration::from_secs(20)).expect("ends with the streams");
    assert!(status.success());

    let out = ctl(&["--socket", sock, "logs", "-f", "nope", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
}

const SNAPSHOT: &str = "id: 1\nevent: snapshot\ndata: {\"services\":[\
    {\"name\":\"db\",\"status\":\"running\",\"pid\":7,\"restarts\":0,\"exit_code\":null},\
    {\"name\":\"web\",\"status\":\"stopped\",\"pid\":null,\"restarts\":0}]}\n\n";
const WEB_STARTED: &str = "id: 2\nevent: service\ndata: {\"name\":\"web\",\"status\":\"running\",\
    \"pid\":42,\"exit_code\":null,\"restarts\":0,\"error\":null,\"reason\":\"started\"}\n\n";
const WEB_FAILED: &str = "id: 3\nevent: service\ndata: {\"name\":\"web\",\"status\":\"failed\",\
    \"pid\":null,\"exit_code\":1,\"restarts\":1,\"error\":\"exited with status 1\",\"reason\":\"failed\"}\n\n";

// A canned stream pins down the rendering of each kind of event.
#[test]
fn watch_redraws_a_live_table_in_a_terminal() {
    let t = TempDir::new("ctlwatch");
    let (fake, events) = Fake::start(t.path(), vec![]);
    let mut watch = Pty::spawn(
        Command::new(CTL)
            .args(["--socket", fake.sock(), "watch"])
            .env_remove("NO_COLOR"),
    );
    events.send(SNAPSHOT.into()).unwrap();
    watch.out.wait_contains("\x1b[32mrunning\x1b[0m");
    watch.out.wait_contains("2 services: 1 running, 1 stopped");
    events.send(WEB_STARTED.into()).unwrap();
    watch.out.wait_contains("2 services: 2 running");
    events.send(WEB_FAILED.into()).unwrap();
    let screen = watch.out.wait_contains("\x1b[31mfailed");
    assert!(screen.contains("exited with status 1"), "{screen:?}");
    // Redrawn in place: cursor home for every frame, the screen cleared once.
    assert!(screen.starts_with("\x1b[H\x1b[2J"), "{screen:?}");
    assert!(screen.matches("\x1b[H").count() >= 3, "{screen:?}");
    assert_eq!(screen.matches("\x1b[2J").count(), 1, "{screen:?}");
    drop(events);
    watch
        .out
        .wait_contains("iris-init closed the events stream");
    let status = wait_child(&mut watch.child, Duration::from_secs(20)).unwrap();
    assert!(status.success());
}

#[test]
fn watch_without_colour_and_piped() {
    let t = TempDir::new("ctlwatchnc");
    let (fake, events) = Fake::start(t.path(), vec![]);
    let watch = Pty::spawn(
        Command::new(CTL)
            .args(["--socket", fake.sock(), "watch"])
            .env("NO_COLOR", "1"),
    );
    events.send(SNAPSHOT.into()).unwrap();
    let screen = watch.out.wait_contains("web   stopped");
    assert!(
        !screen.contains("\x1b[3"),
        "colour despite NO_COLOR: {screen:?}"
    );
    assert!(screen.contains("\x1b[H"), "{screen:?}");
    drop(events);

    // Piped: one line per change, no escapes.
    let (fake, events) = Fake::start(&t.path().join("init.d"), vec![]);
    let mut piped = Command::new(CTL)
        .args(["--socket", fake.sock(), "watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(piped.stdout.take().unwrap()).lines();
    for e in [SNAPSHOT, WEB_STARTED, WEB_FAILED] {
        events.send(e.into()).unwrap();
    }
    drop(events);
    let lines: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(
        lines,
        [
            "db running pid 7",
            "web stopped",
            "web running pid 42 (started)",
            "web failed exit 1 restarts 1 (failed): exited with status 1",
        ]
    );
    assert!(piped.wait().unwrap().success());
}

#[test]
fn events_print_one_line_each_or_the_raw_json() {
    let t = TempDir::new("ctlevents");
    let (fake, events) = Fake::start(t.path(), vec![]);
    let mut human = Command::new(CTL)
        .args(["--socket", fake.sock(), "events", "--since", "0", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Collected::reading(human.stdout.take().unwrap());
    events
        .send(SNAPSHOT.to_string() + ": keep-alive\n\n")
        .unwrap();
    out.wait_contains("#1 snapshot: 2 services: db running, web stopped\n");
    events.send(WEB_FAILED.into()).unwrap();
    out.wait_contains("#3 web failed exit 1 restarts 1 (failed): exited with status 1\n");
    drop(events);
    assert!(wait_child(&mut human, Duration::from_secs(20))
        .unwrap()
        .success());
    assert_eq!(out.text().lines().count(), 2);
    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests[0].starts_with("GET /v1/events?since=0&services=web HTTP/1.1\r\n"),
        "{requests:?}"
    );

    let (fake, events) = Fake::start(&t.path().join("init.d"), vec![]);
    let json = Command::new(CTL)
        .args(["--socket", fake.sock(), "events", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    events.send(WEB_STARTED.into()).unwrap();
    drop(events);
    let out = json.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["reason"].as_str()),
        (Some("web"), Some("started"))
    );
}

/// The init serves its OpenAPI document without indentation; irisctl
/// prints it indented (the same JSON), and as served with --json.
#[test]
fn openapi_is_printed_indented() {
    let t = TempDir::new("ctlopenapi");
    let served = r#"{"openapi":"3.1.0","info":{"title":"iris-init API"}}"#;
    let (fake, _events) = Fake::start(
        t.path(),
        vec![("/v1/openapi.json", answer("application/json", served))],
    );
    let out = ctl(&["--socket", fake.sock(), "openapi"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("\n  \"info\": {\n"), "{printed}");
    let parsed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        parsed,
        serde_json::from_str::<serde_json::Value>(served).unwrap()
    );
    let out = ctl(&["--socket", fake.sock(), "--json", "openapi"]);
    assert_eq!(text(&out.stdout).trim_end(), served);
}

#[test]
fn metrics_are_printed_as_served_and_restore_sends_its_body() {
    let t = TempDir::new("ctlmetrics");
    let metrics = "# TYPE iris_services gauge\niris_services 2\n";
    let report =
        r#"{"started_services":[],"stopped_services":[],"failed_services":[],"generation":7}"#;
    let (fake, _events) = Fake::start(
        t.path(),
        vec![
            ("/v1/metrics", answer("text/plain; version=0.0.4", metrics)),
            ("/v1/restore", answer("application/json", report)),
        ],
    );
    let out = ctl(&["--socket", fake.sock(), "metrics"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), metrics);

    let seed = t.path().join("seed");
    std::fs::write(&seed, [7u8; 32]).unwrap();
    let out = ctl(&[
        "--socket",
        fake.sock(),
        "restore",
        "--time",
        "now",
        "--entropy-file",
        seed.to_str().unwrap(),
        "--generation",
        "7",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("generation: 7"),
        "{}",
        text(&out.stdout)
    );
    let requests = fake.requests.lock().unwrap().clone();
    let restore = requests
        .iter()
        .find(|r| r.starts_with("POST /v1/restore "))
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(restore.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body["entropy"],
        "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
    );
    assert_eq!(body["generation"], 7);
    let time = body["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.len() == 24, "{time}");
}

#[test]
fn man_pages_come_from_the_same_definition() {
    let out = ctl(&["man"]);
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH irisctl 1"),
        "{page}"
    );
    assert!(
        page.contains("watch") && page.contains("completions"),
        "{page}"
    );
    let t = TempDir::new("ctlman");
    let dir = t.path().join("man");
    let out = ctl(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let watch = std::fs::read_to_string(dir.join("irisctl-watch.1")).unwrap();
    assert!(watch.contains("irisctl watch web db"), "{watch}");
    assert!(dir.join("irisctl.1").exists() && !dir.join("irisctl-man.1").exists());
}

#[test]
fn events_follow_the_real_init_one_line_each() {
    let t = TempDir::new("ctlevreal");
    let mut init = Init::start(t.path());
    let sock = init.socket.to_str().unwrap().to_string();
    let mut human = Command::new(CTL)
        .args(["--socket", &sock, "events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Collected::reading(human.stdout.take().unwrap());
    out.wait_contains("snapshot: 0 services\n");
    init.put("web", r#"{"cmd":"sleep","args":["1000"]}"#);
    assert_eq!(init.req("POST", "/v1/services/web/start", None).0, 200);
    let pid = init.service("web")["pid"].as_i64().unwrap();
    let lines = out.wait_contains(&format!("web running pid {pid} (started)\n"));
    assert!(lines.contains(" web stopped (defined)\n"), "{lines}");

    // From the start, only `web`, as raw JSON: one object per line.
    let mut json = Command::new(CTL)
        .args(["--socket", &sock, "events", "--since", "0", "--json", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let raw = Collected::reading(json.stdout.take().unwrap());
    let text = raw.wait_for("web's started event", |t| t.contains("\"started\""));
    let reasons: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["reason"].as_str().map(String::from))
        .collect();
    assert_eq!(reasons, ["defined", "started"], "{text}");

    // The init shutting down ends the stream: irisctl exits 0.
    assert!(init.terminate().success());
    let status = wait_child(&mut human, Duration::from_secs(20)).unwrap();
    assert!(status.success());
    let all = out.text();
    assert!(all.contains("system: shutting_down ("), "{all}");
    assert!(all.contains("web stopped exit 143 (stopped)"), "{all}");
    assert!(
        all.trim_end().ends_with("system: halting (mode=poweroff)"),
        "{all}"
    );
    assert!(wait_child(&mut json, Duration::from_secs(20))
        .unwrap()
        .success());
}

#[test]
fn watch_draws_the_real_init_in_a_terminal() {
    let t = TempDir::new("ctlwatchreal");
    std::fs::write(
        t.path().join("init.d/db.toml"),
        "cmd = \"sleep\"\nargs = [\"1000\"]\n",
    )
    .unwrap();
    let mut init = Init::start(t.path());
    init.wait_status("db", "running");
    let sock = init.socket.to_str().unwrap().to_string();
    let mut watch = Pty::spawn(
        Command::new(CTL)
            .args(["--socket", &sock, "watch"])
            .env_remove("NO_COLOR"),
    );
    watch.out.wait_contains("1 service: 1 running");
    init.put(
        "web",
        r#"{"cmd":"sh","args":["-c","sleep 0.2; exit 4"],"restart":"never"}"#,
    );
    watch.out.wait_contains("2 services: 1 running, 1 stopped");
    init.req("POST", "/v1/services/web/start?wait=false", None);
    let screen = watch.out.wait_contains("\x1b[31mfailed");
    assert!(screen.contains("exited with code 4"), "{screen:?}");
    init.wait_status("web", "failed");
    assert_eq!(init.req("DELETE", "/v1/services/web", None).0, 200);
    watch.out.wait_contains("1 service: 1 running  (event #");
    assert!(init.terminate().success());
    watch
        .out
        .wait_contains("iris-init closed the events stream");
    let status = wait_child(&mut watch.child, Duration::from_secs(20)).unwrap();
    assert!(status.success());
}

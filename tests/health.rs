//! Readiness checks beyond a TCP port (http, exec, log, notify), liveness,
//! and oneshot services, against real processes.

mod common;
use common::*;
use serde_json::{json, Value};

fn put(init: &Init, name: &str, def: &Value) {
    let (s, v) = init.put(name, &def.to_string());
    assert!(s == 200 || s == 201, "PUT {name}: {s} {v}");
}

fn start(init: &Init, name: &str) -> (u16, Value) {
    init.req("POST", &format!("/v1/services/{name}/start"), None)
}

fn logs(init: &Init, name: &str) -> String {
    let (s, b) = init
        .client()
        .req_bytes("GET", &format!("/v1/services/{name}/logs"), None);
    assert_eq!(s, 200);
    String::from_utf8_lossy(&b).into_owned()
}

/// A python HTTP server on `port`: `/healthz` answers 503 to its first
/// `bad` requests, then 200; `/live` answers 200 until the file `sick`
/// exists (removed at start); every answer is printed before it is sent
/// (so it is in the log once the init has seen the answer).
fn http_app(port: u16, bad: u32, sick: &str) -> Value {
    let code = format!(
        r#"
import http.server, os
n = 0
try: os.remove({sick:?})
except FileNotFoundError: pass
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        if self.path == '/healthz':
            n += 1
            code = 503 if n <= {bad} else 200
        elif self.path == '/live':
            code = 500 if os.path.exists({sick:?}) else 200
        else:
            code = 404
        print('answered', self.path, code, flush=True)
        self.send_response(code)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()
"#
    );
    json!({"cmd": "python3", "args": ["-c", code]})
}

#[test]
fn http_check_waits_for_a_status_in_range() {
    let t = TempDir::new("http");
    let init = Init::start(t.path());
    let port = free_port();
    let sick = t.path().join("sick").display().to_string();
    let mut def = http_app(port, 3, &sick);
    def["health"] = json!({"http": {"port": port, "path": "/healthz"}, "interval_ms": 20});
    put(&init, "web", &def);
    let (s, v) = start(&init, "web");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running");
    let out = logs(&init, "web");
    let answers: Vec<&str> = out.lines().filter(|l| l.contains("/healthz")).collect();
    assert_eq!(
        answers.first().copied(),
        Some("answered /healthz 503"),
        "{out}"
    );
    assert_eq!(
        answers.iter().filter(|l| l.ends_with("503")).count(),
        3,
        "running only after the 503s: {out}"
    );
    assert!(answers.iter().any(|l| l.ends_with("200")), "{out}");
    let v = init.service("web");
    assert_eq!(v["health"]["http"]["path"], "/healthz");
    assert_eq!(v["health"]["http"]["status"], json!([200, 399]));
    assert!(v["health_result"].as_str().unwrap().contains("200"), "{v}");
    // irisctl status shows the check and its last result.
    let out = std::process::Command::new(CTL)
        .arg("--socket")
        .arg(&init.socket)
        .args(["status", "web"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let want =
        format!("check: GET http://127.0.0.1:{port}/healthz (200-399); last: answered 200\n");
    assert!(text.contains(&want), "{text}");
}

#[test]
fn http_check_that_never_passes_fails_the_start_and_kills() {
    let t = TempDir::new("http-fail");
    let init = Init::start(t.path());
    let port = free_port();
    let sick = t.path().join("sick").display().to_string();
    let mut def = http_app(port, 1_000_000, &sick);
    def["health"] = json!({
        "http": {"port": port, "path": "/healthz", "status": [200, 204]},
        "timeout_secs": 1, "interval_ms": 50
    });
    put(&init, "web", &def);
    let (s, v) = start(&init, "web");
    assert_eq!(s, 409, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("GET http://127.0.0.1:{port}/healthz")) && msg.contains("503"),
        "{msg}"
    );
    let v = init.service("web");
    assert_eq!(v["status"], "failed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server was killed before the service was marked failed"
    );
}

#[test]
fn exec_check_runs_in_the_service_context() {
    let t = TempDir::new("exec");
    let init = Init::start(t.path());
    let dir = t.path().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    let m = marker("exec");
    // The check finds the file relative to working_dir and through env.
    let def = json!({
        "cmd": "sh",
        "args": ["-c", format!("sleep 0.3; touch ready; exec sleep 1000 # {m}")],
        "working_dir": dir,
        "env": {"READY_FILE": "ready"},
        "health": {"exec": ["sh", "-c", "test -f \"$READY_FILE\""], "interval_ms": 20}
    });
    put(&init, "app", &def);
    let (s, v) = start(&init, "app");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running");
    assert!(
        dir.join("ready").exists(),
        "running only once the check passed"
    );
    assert!(init.service("app")["health_result"]
        .as_str()
        .unwrap()
        .contains("exited with code 0"));
}

#[test]
fn exec_check_timeout_names_the_command() {
    let t = TempDir::new("exec-fail");
    let init = Init::start(t.path());
    let def = json!({
        "cmd": "sleep", "args": ["1000"],
        "health": {"exec": ["sh", "-c", "exit 3"], "timeout_secs": 0.5, "interval_ms": 50}
    });
    put(&init, "app", &def);
    let (s, v) = start(&init, "app");
    assert_eq!(s, 409, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("exec sh -c exit 3") && msg.contains("code 3"),
        "{msg}"
    );
}

#[test]
fn log_check_waits_for_the_line() {
    let t = TempDir::new("log");
    let init = Init::start(t.path());
    let flag = t.path().join("said-it");
    let def = json!({
        "cmd": "sh",
        "args": ["-c", format!(
            "echo starting; sleep 0.3; printf 'LOG:  database system is ready '; \
             sleep 0.2; touch {}; echo 'to accept connections'; exec sleep 1000",
            flag.display()
        )],
        "health": {"log": "ready to accept connections"}
    });
    put(&init, "db", &def);
    let (s, v) = start(&init, "db");
    assert_eq!(s, 200, "{v}");
    assert!(
        flag.exists(),
        "running only once the whole line was written"
    );
    assert!(logs(&init, "db").contains("ready to accept connections"));
}

#[test]
fn notify_ready_and_status_text() {
    let t = TempDir::new("notify");
    let init = Init::start(t.path());
    let flag = t.path().join("sent-ready");
    let code = format!(
        r#"
import os, socket, time
addr = os.environ['NOTIFY_SOCKET']
if addr.startswith('@'): addr = '\0' + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'STATUS=warming up', addr)
time.sleep(0.3)
open({flag:?}, 'w').close()
s.sendto(b'STATUS=serving 42 requests\nREADY=1\n', addr)
time.sleep(1000)
"#,
        flag = flag.display().to_string()
    );
    put(
        &init,
        "svc",
        &json!({"cmd": "python3", "args": ["-c", code], "health": {"notify": true}}),
    );
    let (s, v) = start(&init, "svc");
    assert_eq!(s, 200, "{v}");
    assert!(flag.exists(), "running only after READY=1");
    assert_eq!(v["status_text"], "serving 42 requests");
}

#[test]
fn notify_from_a_shell_with_socat() {
    let t = TempDir::new("notify-socat");
    let init = Init::start(t.path());
    let script = "echo READY=1 | socat -u - UNIX-SENDTO:\"$NOTIFY_SOCKET\"; exec sleep 1000";
    put(
        &init,
        "sh",
        &json!({"cmd": "sh", "args": ["-c", script], "health": {"notify": true}}),
    );
    let (s, v) = start(&init, "sh");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running");
}

#[test]
fn liveness_failures_restart_the_service() {
    let t = TempDir::new("liveness");
    let init = Init::start(t.path());
    let port = free_port();
    let sick = t.path().join("sick");
    let mut def = http_app(port, 0, &sick.display().to_string());
    def["health"] = json!({"http": {"port": port, "path": "/healthz"}, "interval_ms": 20});
    def["liveness"] = json!({
        "http": {"port": port, "path": "/live"}, "interval_secs": 0.1, "failures": 2
    });
    put(&init, "web", &def);
    let (s, v) = start(&init, "web");
    assert_eq!(s, 200, "{v}");
    let pid = v["pid"].as_i64().unwrap();
    assert_eq!(v["liveness_failures"], 0);
    std::fs::write(&sick, "").unwrap();
    // The new process removes `sick` at start: it is healthy again.
    let v = init.wait_for("web", "a liveness restart", |v| {
        v["restarts"] == 1 && v["status"] == "running" && v["pid"].as_i64() != Some(pid)
    });
    assert!(v["liveness_failures"].as_u64().unwrap() >= 2, "{v}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("liveness") && err.contains("/live") && err.contains("500"),
        "{err}"
    );
    assert!(!alive(pid as i32), "the hung process is gone");
}

#[test]
fn exec_liveness_with_restart_never_leaves_it_failed() {
    let t = TempDir::new("liveness-never");
    let init = Init::start(t.path());
    let sick = t.path().join("sick");
    let m = marker("lnever");
    put(
        &init,
        "w",
        &json!({
            "cmd": "sh", "args": ["-c", format!("exec sleep 1000 # {m}")],
            "restart": "never",
            "liveness": {"exec": ["test", "!", "-e", sick], "interval_secs": 0.1, "failures": 1}
        }),
    );
    let (s, v) = start(&init, "w");
    assert_eq!(s, 200, "{v}");
    std::fs::write(&sick, "").unwrap();
    let v = init.wait_status("w", "failed");
    assert_eq!(v["restarts"], 0);
    assert!(
        v["error"].as_str().unwrap().contains("restart = never"),
        "{v}"
    );
    assert!(pids_with_cmdline(&m).is_empty());
}

#[test]
fn oneshot_runs_before_the_server_that_needs_it_once_per_boot() {
    let t = TempDir::new("oneshot");
    let init = Init::start(t.path());
    let runs = t.path().join("migrations-run");
    let migrated = t.path().join("migrated");
    put(
        &init,
        "migrate",
        &json!({
            "cmd": "sh",
            "args": ["-c", format!("sleep 0.3; echo run >> {0}; touch {1}", runs.display(), migrated.display())],
            "type": "oneshot"
        }),
    );
    // The server refuses to run on an unmigrated database.
    put(
        &init,
        "web",
        &json!({
            "cmd": "sh",
            "args": ["-c", format!("test -f {} || exit 9; exec sleep 1000", migrated.display())],
            "needs": ["migrate"]
        }),
    );
    let (s, v) = start(&init, "web");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running");
    let m = init.service("migrate");
    assert_eq!(
        (
            m["status"].clone(),
            m["exit_code"].clone(),
            m["type"].clone()
        ),
        (json!("stopped"), json!(0), json!("oneshot"))
    );
    let count = || std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(count(), 1);

    // A later start of the dependent does not run it again ...
    assert_eq!(init.req("POST", "/v1/services/web/stop", None).0, 200);
    assert_eq!(start(&init, "web").0, 200);
    assert_eq!(count(), 1);
    // ... an explicit start does, and answers once it exited 0.
    let (s, v) = start(&init, "migrate");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].clone(), v["exit_code"].clone()),
        (json!("stopped"), json!(0))
    );
    assert_eq!(count(), 2);
    let (s, _) = init.req("POST", "/v1/services/migrate/restart", None);
    assert_eq!(s, 200);
    assert_eq!(count(), 3);
    // A restore starts what is wanted up and not running: a oneshot done
    // in this boot counts as up.
    let (s, v) = init.req("POST", "/v1/restore", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(count(), 3, "{v}");
}

#[test]
fn tcp_liveness_notices_a_closed_port() {
    let t = TempDir::new("liveness-tcp");
    let init = Init::start(t.path());
    let port = free_port();
    // Listens, then closes its listener after a while but keeps running.
    let code = format!(
        "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('127.0.0.1',{port}))\ns.listen(8)\ntime.sleep(0.5)\ns.close()\ntime.sleep(1000)\n"
    );
    put(
        &init,
        "svc",
        &json!({
            "cmd": "python3", "args": ["-c", code], "health": {"tcp": port},
            "liveness": {"tcp": port, "interval_secs": 0.1, "failures": 3}
        }),
    );
    let (s, v) = start(&init, "svc");
    assert_eq!(s, 200, "{v}");
    let v = init.wait_for("svc", "a restart", |v| v["restarts"].as_u64() >= Some(1));
    assert!(v["liveness_failures"].as_u64().unwrap() >= 3, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("connection refused"),
        "{v}"
    );
}

#[test]
fn failed_oneshot_fails_its_start_and_its_dependents() {
    let t = TempDir::new("oneshot-fail");
    let init = Init::start(t.path());
    put(
        &init,
        "migrate",
        &json!({"cmd": "sh", "args": ["-c", "echo no database; exit 3"], "type": "oneshot"}),
    );
    put(
        &init,
        "web",
        &json!({"cmd": "sleep", "args": ["1000"], "needs": ["migrate"]}),
    );
    let (s, v) = start(&init, "migrate");
    assert_eq!(s, 409, "{v}");
    let v = init.service("migrate");
    assert_eq!(
        (v["status"].clone(), v["exit_code"].clone()),
        (json!("failed"), json!(3))
    );
    let (s, v) = start(&init, "web");
    assert!((400..500).contains(&s), "{s} {v}");
    assert!(v["message"].as_str().unwrap().contains("migrate"), "{v}");
    assert_eq!(init.service("web")["status"], "failed");
}

#[test]
fn bad_check_values_are_400_naming_the_field() {
    let t = TempDir::new("bad-checks");
    let init = Init::start(t.path());
    let cases = [
        (
            json!({"cmd": "x", "health_port": 80, "health": {"tcp": 80}}),
            "health_port",
        ),
        (
            json!({"cmd": "x", "health": {"http": {"port": 0}}}),
            "health.http.port",
        ),
        (
            json!({"cmd": "x", "health": {"http": {"port": 80, "status": [200, 600]}}}),
            "health.http.status",
        ),
        (
            json!({"cmd": "x", "health": {"htpp": {"port": 80}}}),
            "health.htpp",
        ),
        (
            json!({"cmd": "x", "health": {"tcp": 80, "exec": ["true"]}}),
            "more than one",
        ),
        (json!({"cmd": "x", "health": {}}), "health"),
        (json!({"cmd": "x", "health": {"exec": []}}), "health.exec"),
        (json!({"cmd": "x", "health": {"log": ""}}), "health.log"),
        (
            json!({"cmd": "x", "health": {"notify": "yes"}}),
            "health.notify",
        ),
        (
            json!({"cmd": "x", "health": {"tcp": 80, "timeout_secs": -1}}),
            "health.timeout_secs",
        ),
        (
            json!({"cmd": "x", "health": {"tcp": 80, "interval_ms": 0}}),
            "health.interval_ms",
        ),
        (
            json!({"cmd": "x", "liveness": {"log": "x"}}),
            "liveness.log",
        ),
        (
            json!({"cmd": "x", "liveness": {"tcp": 80, "failures": 0}}),
            "liveness.failures",
        ),
        (json!({"cmd": "x", "type": "forking"}), "type"),
        (
            json!({"cmd": "x", "type": "oneshot", "restart": "always"}),
            "restart",
        ),
        (
            json!({"cmd": "x", "type": "oneshot", "health": {"tcp": 80}}),
            "health",
        ),
    ];
    for (def, field) in cases {
        let (s, v) = init.put("bad", &def.to_string());
        assert_eq!(s, 400, "{def}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(field), "{def}: {msg}");
    }
    assert_eq!(
        init.req("GET", "/v1/services/bad", None).0,
        404,
        "nothing stored"
    );
}

#[test]
fn dropin_files_take_checks_and_oneshots() {
    let t = TempDir::new("dropin-checks");
    let d = t.path().join("init.d");
    let port = free_port();
    let sick = t.path().join("sick").display().to_string();
    let app = http_app(port, 2, &sick);
    let args = toml::Value::try_from(&app["args"]).unwrap();
    std::fs::write(
        d.join("migrate.toml"),
        format!(
            "cmd = \"sh\"\nargs = [\"-c\", \"touch {}/migrated\"]\ntype = \"oneshot\"\n",
            t.path().display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("web.toml"),
        format!(
            "cmd = \"python3\"\nargs = {args}\nneeds = [\"migrate\"]\n\n[health]\ninterval_ms = 20\nhttp = {{ port = {port}, path = \"/healthz\" }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("broken.toml"),
        "cmd = \"x\"\nhealth = { http = { port = 99999 } }\n",
    )
    .unwrap();
    let init = Init::start(t.path());
    init.wait_status("web", "running");
    assert!(t.path().join("migrated").exists());
    assert_eq!(init.service("migrate")["status"], "stopped");
    let b = init.wait_status("broken", "failed");
    assert!(
        b["error"].as_str().unwrap().contains("health.http.port"),
        "{b}"
    );
}

//! One-shot commands and service output, end to end.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// Sends `POST /v1/exec` of `sleep N` and returns once it runs; the answer
/// is left unread on the returned client.
fn exec_sleep_pending(init: &Init, n: u32) -> Client {
    let mut c = init.client();
    let body = json!({"cmd": ["sleep", n.to_string()]}).to_string();
    c.send_raw(
        format!(
            "POST /v1/exec HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    wait_until("the command to start", || {
        !pids_with_cmdline(&format!("sleep {n}")).is_empty()
    });
    c
}

/// Waits until no process runs `sleep N`.
fn wait_sleep_gone(n: u32, what: &str) {
    wait_until(what, || pids_with_cmdline(&format!("sleep {n}")).is_empty());
}

fn exec(init: &Init, body: Value) -> (u16, Value) {
    init.req("POST", "/v1/exec", Some(&body.to_string()))
}

#[test]
fn exec_returns_streams_and_exit_codes() {
    let t = TempDir::new("exec");
    let init = Init::start(t.path());
    let (s, v) = exec(
        &init,
        json!({"cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"]}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["stdout"].as_str(), v["stderr"].as_str()),
        (Some("out\n"), Some("err\n"))
    );
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["timed_out"], false);
    let (_, v) = exec(&init, json!({"cmd": ["sh", "-c", "kill -TERM $$"]}));
    assert_eq!(
        (v["exit_code"].as_i64(), v["signal"].as_i64()),
        (Some(143), Some(15))
    );
    let (_, v) = exec(&init, json!({"cmd": ["cat"], "stdin": "fed through stdin"}));
    assert_eq!(v["stdout"], "fed through stdin");
    let (_, v) = exec(
        &init,
        json!({"cmd": ["sh", "-c", "echo $FOO $(pwd) $(id -u)"], "env": {"FOO": "bar"}, "working_dir": "/usr", "user": "nobody"}),
    );
    assert_eq!(v["stdout"], "bar /usr 65534\n");
}

#[test]
fn exec_errors_are_4xx_with_reasons() {
    let t = TempDir::new("execerr");
    let init = Init::start(t.path());
    let (s, v) = exec(&init, json!({"cmd": ["no-such-command-xyz"]}));
    assert_eq!(s, 400, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("no-such-command-xyz"));
    let (s, v) = exec(&init, json!({"cmd": ["true"], "timeout_secs": 5}));
    assert_eq!(s, 400);
    assert!(
        v["message"].as_str().unwrap().contains("timeout_secs"),
        "{v}"
    );
    let (s, _) = exec(&init, json!({"cmd": []}));
    assert_eq!(s, 400);
    let (s, _) = init.req("POST", "/v1/exec", Some("{oops"));
    assert_eq!(s, 400);
    let (s, _) = init.req(
        "POST",
        "/v1/services/nope/exec",
        Some(r#"{"cmd":["true"]}"#),
    );
    assert_eq!(s, 404);
    init.put("svc", r#"{"cmd":"sleep","args":["1000"]}"#);
    let (s, v) = init.req(
        "POST",
        "/v1/services/svc/exec",
        Some(r#"{"cmd":["true"],"timeout_ms":5}"#),
    );
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("timeout_ms"), "{v}");
}

#[test]
fn exec_timeout_kills_the_whole_tree() {
    let t = TempDir::new("exectimeout");
    let init = Init::start(t.path());
    let n = 800_000 + std::process::id() % 1000;
    let (s, v) = exec(
        &init,
        json!({"cmd": ["sh", "-c", format!("sleep {n} & sleep {n}; echo never")], "timeout_ms": 300}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["signal"], 9);
    wait_sleep_gone(n, "no process left behind");
}

#[test]
fn exec_big_output_does_not_deadlock() {
    let t = TempDir::new("execbig");
    let init = Init::start(t.path());
    // 50 MiB on stdout and a little on stderr; the cap keeps 16 MiB.
    let (s, v) = exec(
        &init,
        json!({"cmd": ["sh", "-c", "head -c 52428800 /dev/zero | tr '\\0' x; echo done >&2"], "timeout_ms": 60000}),
    );
    assert_eq!(s, 200);
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["stderr"], "done\n");
    assert_eq!(v["stdout"].as_str().unwrap().len(), 16 << 20);
    assert_eq!(v["truncated"], true);
}

#[test]
fn exec_client_disconnect_kills_the_command() {
    let t = TempDir::new("execgone");
    let init = Init::start(t.path());
    let n = 810_000 + std::process::id() % 1000;
    let c = exec_sleep_pending(&init, n);
    drop(c);
    wait_sleep_gone(n, "command killed after the client left");
}

#[test]
fn service_exec_sees_service_env_and_dir() {
    let t = TempDir::new("svcexec");
    let init = Init::start(t.path());
    init.put(
        "svc",
        r#"{"cmd":"sleep","args":["1000"],"env":{"SVC_VAR":"hello"},"working_dir":"/usr"}"#,
    );
    init.req("POST", "/v1/services/svc/start", None);
    let (s, v) = init.req(
        "POST",
        "/v1/services/svc/exec",
        Some(r#"{"cmd":["sh","-c","echo $SVC_VAR $(pwd)"],"timeout_secs":10}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stdout"], "hello /usr\n");
}

#[test]
fn irisctl_run_and_exec_pass_streams_and_codes() {
    let t = TempDir::new("ctlrun");
    let init = Init::start(t.path());
    let out = std::process::Command::new(CTL)
        .arg("--socket")
        .arg(&init.socket)
        .args(["run", "--", "sh", "-c", "echo hi; echo oops >&2; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
}

#[test]
fn logs_capture_tail_and_follow() {
    let t = TempDir::new("logs");
    let init = Init::start(t.path());
    let trigger = t.path().join("go");
    let script = format!(
        "for i in 1 2 3 4 5; do echo line$i; done; echo err-line >&2; while [ ! -e {} ]; do sleep 0.02; done; echo after-follow; exec sleep 1000",
        trigger.display()
    );
    init.put(
        "talker",
        &json!({"cmd":"sh","args":["-c", script]}).to_string(),
    );
    init.req("POST", "/v1/services/talker/start", None);
    let all = poll(WAIT, "the service's last line", || {
        let (_, b) = init
            .client()
            .req_bytes("GET", "/v1/services/talker/logs", None);
        let text = String::from_utf8_lossy(&b).into_owned();
        if text.contains("err-line") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert_eq!(all, "line1\nline2\nline3\nline4\nline5\nerr-line\n");
    let (s, b) = init
        .client()
        .req_bytes("GET", "/v1/services/talker/logs?tail=2", None);
    assert_eq!(
        (s, String::from_utf8_lossy(&b).to_string()),
        (200, "line5\nerr-line\n".to_string())
    );

    // Follow: a line written after the request began arrives.
    let mut f = std::os::unix::net::UnixStream::connect(&init.socket).unwrap();
    f.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    f.write_all(b"GET /v1/services/talker/logs?tail=1&follow=true HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("err-line") {
        let n = f.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("Transfer-Encoding: chunked"));
    std::fs::write(&trigger, "").unwrap();
    while !String::from_utf8_lossy(&got).contains("after-follow") {
        let n = f.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn logs_rotate_at_the_cap() {
    let t = TempDir::new("rotate");
    let init = Init::start_with(t.path(), &[("IRIS_LOG_MAX_BYTES", "10000")]);
    init.put("noisy", r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 1000 ]; do echo line-$i-padding-padding; i=$((i+1)); done; exec sleep 1000"]}"#);
    init.req("POST", "/v1/services/noisy/start", None);
    let log = t.path().join("logs/noisy.log");
    poll(WAIT, "the last line as the log's tail", || {
        let (_, b) = init
            .client()
            .req_bytes("GET", "/v1/services/noisy/logs?tail=1", None);
        if b == b"line-999-padding-padding\n" {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&b).into_owned())
        }
    });
    assert!(std::fs::metadata(&log).unwrap().len() <= 10000);
    assert!(
        std::fs::metadata(t.path().join("logs/noisy.log.1"))
            .unwrap()
            .len()
            <= 10000
    );
    // Lines are whole across the rotation.
    let (_, b) = init
        .client()
        .req_bytes("GET", "/v1/services/noisy/logs?tail=300", None);
    let text = String::from_utf8_lossy(&b);
    assert_eq!(text.lines().count(), 300);
    assert!(
        text.lines()
            .all(|l| l.starts_with("line-") && l.ends_with("padding")),
        "{text}"
    );
}

#[test]
fn failed_start_answer_carries_exit_status_and_last_lines() {
    let t = TempDir::new("failout");
    let init = Init::start(t.path());
    let port = free_port();
    init.put("crashy", &format!(r#"{{"cmd":"sh","args":["-c","echo config file missing >&2; exit 4"],"health_port":{port}}}"#));
    let (s, v) = init.req("POST", "/v1/services/crashy/start", None);
    assert_eq!(s, 409, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("exited with code 4") && msg.contains("config file missing"),
        "{msg}"
    );
    let svc = init.service("crashy");
    assert!(
        svc["error"]
            .as_str()
            .unwrap()
            .contains("config file missing"),
        "{svc}"
    );
    assert_eq!(svc["exit_code"], 4);
}

/// Unmounts on drop.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_log_disk_drops_counted_output_and_never_blocks_the_service() {
    let t = TempDir::new("fulldisk");
    let logs = t.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&logs)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a small tmpfs (needs root)");
    let _m = Mount(logs.clone());
    let init = Init::start(t.path());
    let done = t.path().join("done");
    // 2 MiB of lines into a 64 KiB disk; then it says it got through.
    let script = format!(
        "i=0; while [ $i -lt 20000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; touch {}; exec sleep 1000",
        done.display()
    );
    init.put(
        "flood",
        &json!({"cmd": "sh", "args": ["-c", script]}).to_string(),
    );
    init.req("POST", "/v1/services/flood/start", None);
    wait_within(
        Duration::from_secs(30),
        "the service, not blocked by its output, to finish",
        || done.exists(),
    );
    let v = init.wait_for("flood", "drops counted", |v| {
        v["log_dropped_bytes"].as_u64().unwrap_or(0) > 1_000_000
    });
    assert_eq!(v["status"], "running");
    assert_eq!(init.req("GET", "/v1/system", None).0, 200);
}

#[test]
fn no_exec_outlives_the_init() {
    let t = TempDir::new("execexit");
    let mut init = Init::start(t.path());
    let n = 820_000 + std::process::id() % 1000;
    let _c = exec_sleep_pending(&init, n);
    assert!(init.terminate().success());
    wait_sleep_gone(n, "the command died with the init");
}

/// Found by the schema test: a valid exec body for a service whose user
/// or working directory does not exist was a 400, as if the request were
/// wrong. It is the service's definition: 409, as its start would be. A
/// command that does not exist stays the request's fault (400).
#[test]
fn service_exec_in_a_context_that_cannot_run_is_a_conflict() {
    let t = TempDir::new("exec-ctx");
    let init = Init::start(t.path());
    init.put("nouser", r#"{"cmd":"sleep","user":"no-such-user-iris"}"#);
    init.put(
        "nodir",
        r#"{"cmd":"sleep","working_dir":"/no/such/dir/iris"}"#,
    );
    init.put("fine", r#"{"cmd":"sleep"}"#);
    let body = r#"{"cmd":["true"]}"#;
    for (name, word) in [
        ("nouser", "no-such-user-iris"),
        ("nodir", "/no/such/dir/iris"),
    ] {
        let (s, v) = init.req("POST", &format!("/v1/services/{name}/exec"), Some(body));
        assert_eq!(
            (s, v["error"].as_str()),
            (409, Some("conflict")),
            "{name}: {v}"
        );
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(name) && m.contains(word), "{m}");
    }
    let (s, v) = init.req("POST", "/v1/services/fine/exec", Some(body));
    assert_eq!(s, 200, "{v}");
    let missing = r#"{"cmd":["no-such-cmd-iris"]}"#;
    let (s, v) = init.req("POST", "/v1/services/fine/exec", Some(missing));
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_definition")),
        "{v}"
    );
}

//! The HTTP API as a client sees it: errors, limits, hostile clients,
//! permissions, drop-in files.

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn bad_requests_get_clear_json_errors() {
    let t = TempDir::new("bad");
    let init = Init::start(t.path());
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("PUT", "/v1/services/a", Some("{not json"), 400, "JSON"),
        (
            "PUT",
            "/v1/services/a",
            Some(r#"{"cmd":"x","colour":"red"}"#),
            400,
            "colour",
        ),
        ("PUT", "/v1/services/a", Some(r#"{"cmd":""}"#), 400, "cmd"),
        (
            "PUT",
            "/v1/services/a",
            Some(r#"{"cmd":"x","health_port":0}"#),
            400,
            "health_port",
        ),
        (
            "PUT",
            "/v1/services/a",
            Some(r#"{"cmd":"x","stop_timeout_secs":-1}"#),
            400,
            "stop_timeout_secs",
        ),
        (
            "PUT",
            "/v1/services/.dot",
            Some(r#"{"cmd":"x"}"#),
            400,
            "name",
        ),
        (
            "PUT",
            "/v1/services/a%2F..",
            Some(r#"{"cmd":"x"}"#),
            400,
            "name",
        ),
        ("GET", "/v1/services/nope", None, 404, "nope"),
        ("POST", "/v1/services/nope/start", None, 404, "nope"),
        ("GET", "/v1/whatever", None, 404, "whatever"),
        ("DELETE", "/v1/services", None, 405, "allowed"),
        ("GET", "/v1/services/a/start", None, 405, "POST"),
    ];
    let mut c = init.client();
    for (i, (m, p, b, status, word)) in cases.iter().enumerate() {
        let (s, v) = c.req(m, p, *b);
        assert_eq!(s, *status, "case {i}: {m} {p}: {v}");
        assert!(v["error"].is_string(), "case {i}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(word), "case {i}: {msg}");
    }
    // Nothing was created by any of them.
    let (_, list) = c.req("GET", "/v1/services", None);
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn oversized_body_and_garbage_are_refused() {
    let t = TempDir::new("limits");
    let init = Init::start(t.path());
    let mut c = init.client();
    let head = format!(
        "PUT /v1/services/big HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    c.send_raw(head.as_bytes());
    let (s, _) = c.read_response();
    assert_eq!(s, 413, "refused before the body is sent");

    let mut c = init.client();
    c.send_raw(b"HELLO\x00\x01 garbage\r\n\r\n");
    let (s, b) = c.read_response();
    assert_eq!(s, 400);
    assert!(serde_json::from_slice::<serde_json::Value>(&b).unwrap()["message"].is_string());

    // The init is fine afterwards.
    assert_eq!(init.req("GET", "/v1/system", None).0, 200);
}

#[test]
fn half_sent_request_stalls_nobody_and_times_out() {
    let t = TempDir::new("slow");
    let init = Init::start(t.path());
    let mut slow = std::os::unix::net::UnixStream::connect(&init.socket).unwrap();
    slow.write_all(b"GET /v1/serv").unwrap();
    for _ in 0..20 {
        assert_eq!(init.req("GET", "/v1/services", None).0, 200);
    }
    // The others were served while the slow request was still open: it has
    // no answer yet (a loop stalled on it would have timed it out first).
    slow.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = slow.read(&mut byte);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow request was answered before the others: {early:?}"
    );
    slow.set_nonblocking(false).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = String::new();
    slow.read_to_string(&mut buf).unwrap();
    assert!(buf.starts_with("HTTP/1.1 408"), "{buf}");
}

#[test]
fn keep_alive_and_pipelining() {
    let t = TempDir::new("pipe");
    let init = Init::start(t.path());
    let mut c = init.client();
    c.send_raw(b"GET /v1/system HTTP/1.1\r\n\r\nGET /v1/services HTTP/1.1\r\n\r\n");
    let (s1, b1) = c.read_response();
    let (s2, b2) = c.read_response();
    assert_eq!((s1, s2), (200, 200));
    assert!(serde_json::from_slice::<serde_json::Value>(&b1).unwrap()["pid"].is_number());
    assert!(serde_json::from_slice::<serde_json::Value>(&b2)
        .unwrap()
        .is_array());
    for _ in 0..100 {
        assert_eq!(c.req("GET", "/v1/services", None).0, 200);
    }
}

#[test]
fn socket_is_private_and_non_root_peers_get_403() {
    let t = TempDir::new("perm");
    let init = Init::start(t.path());
    let mode = std::fs::metadata(&init.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Open it up so `nobody` can connect at all, then check SO_PEERCRED.
    std::fs::set_permissions(&init.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for d in [
        t.path().to_path_buf(),
        init.socket.parent().unwrap().to_path_buf(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = format!(
        "import os,socket\nos.setgid(65534)\nos.setuid(65534)\ns=socket.socket(socket.AF_UNIX)\ns.connect('{}')\ns.sendall(b'PUT /v1/services/evil HTTP/1.1\\r\\nContent-Length: 12\\r\\n\\r\\n{{\"cmd\":\"sh\"}}')\nprint(s.recv(4096).decode())\n",
        init.socket.display()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 403"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        init.req("GET", "/v1/services/evil", None).0,
        404,
        "nothing changed"
    );
}

#[test]
fn dropins_start_broken_ones_fail_alone() {
    let t = TempDir::new("dropin");
    let dir = t.path().join("init.d");
    std::fs::write(dir.join("web.toml"), "cmd = \"sleep\"\nargs = [\"1000\"]\n").unwrap();
    std::fs::write(
        dir.join("api.toml"),
        "cmd = \"sleep\"\nargs = [\"1000\"]\nneeds = [\"web\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("manual.toml"),
        "cmd = \"sleep\"\nargs = [\"1000\"]\nautostart = false\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.toml"), "cmd = \"sleep\"\nargs = [\n").unwrap();
    std::fs::write(dir.join("typo.toml"), "cmd = \"sleep\"\nhelth_port = 80\n").unwrap();
    std::fs::write(dir.join("rcS"), "#!/bin/sh\necho legacy\n").unwrap();
    let init = Init::start(t.path());
    init.wait_status("web", "running");
    init.wait_status("api", "running");
    assert_eq!(init.service("manual")["status"], "stopped");
    let b = init.service("broken");
    assert_eq!(b["status"], "failed");
    assert!(b["error"].as_str().unwrap().contains("broken.toml"), "{b}");
    assert!(init.service("typo")["error"]
        .as_str()
        .unwrap()
        .contains("helth_port"));
    assert_eq!(init.service("web")["source"], "file");
    let (_, list) = init.req("GET", "/v1/services", None);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["api", "broken", "manual", "typo", "web"],
        "sorted, no rcS"
    );
}

#[test]
fn system_reports_the_init() {
    let t = TempDir::new("sys");
    let init = Init::start(t.path());
    init.put("a", r#"{"cmd":"sleep","args":["1"]}"#);
    let (s, v) = init.req("GET", "/v1/system", None);
    assert_eq!(s, 200);
    assert_eq!(v["pid"].as_i64().unwrap() as i32, init.pid());
    assert_eq!(v["services"], 1);
    assert!(
        v["version"].is_string() && v["uptime_secs"].is_number() && v["zombies_reaped"].is_number()
    );
}

#[test]
fn irisctl_speaks_to_the_init() {
    let t = TempDir::new("ctl");
    let init = Init::start(t.path());
    let toml = t.path().join("svc.toml");
    std::fs::write(&toml, "cmd = \"sleep\"\nargs = [\"1000\"]\n").unwrap();
    let ctl = |args: &[&str]| {
        std::process::Command::new(CTL)
            .arg("--socket")
            .arg(&init.socket)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(ctl(&["apply", toml.to_str().unwrap()]).status.success());
    let out = ctl(&["start", "svc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["status"], "running");
    let out = ctl(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("svc") && text.contains("running"), "{text}");
    let out = ctl(&["start", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn a_client_that_half_closes_still_gets_its_answer() {
    let t = TempDir::new("halfclose");
    let init = Init::start(t.path());
    let mut s = std::os::unix::net::UnixStream::connect(&init.socket).unwrap();
    s.write_all(b"GET /v1/system HTTP/1.1\r\n\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    assert!(buf.contains("zombies_reaped"));
}

#[test]
fn expect_100_continue_is_answered() {
    let t = TempDir::new("continue");
    let init = Init::start(t.path());
    let body = r#"{"cmd":"sleep","args":["1"]}"#;
    let mut s = std::os::unix::net::UnixStream::connect(&init.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /v1/services/c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
fn poweroff_as_a_plain_supervisor_stops_everything_and_exits_0() {
    let t = TempDir::new("poweroff");
    let mut init = Init::start(t.path());
    init.put("a", r#"{"cmd":"sleep","args":["1000"]}"#);
    assert_eq!(init.req("POST", "/v1/services/a/start", None).0, 200);
    let pid = init.service("a")["pid"].as_i64().unwrap() as i32;
    let (s, v) = init.req("POST", "/v1/system/poweroff", None);
    assert_eq!(s, 202, "{v}");
    let mut child = init.child.take().unwrap();
    let status = wait_child(&mut child, Duration::from_secs(20)).expect("the init exits");
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid), "its service was stopped");
}

/// The API describes itself: the document in the repository, served as
/// JSON, OpenAPI 3.1, listing the routes the init serves (the router's
/// side of that is a unit test in src/api/routes.rs).
#[test]
fn openapi_document_is_served() {
    let t = TempDir::new("openapi");
    let init = Init::start(t.path());
    let mut s = std::os::unix::net::UnixStream::connect(&init.socket).unwrap();
    s.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = find(&raw, b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body = &raw[at + 4..];
    // The document as written, without its indentation.
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read("src/api/openapi.json").unwrap()).unwrap();
    assert_eq!(doc, written);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/v1/services/{name}", "/v1/exec", "/v1/openapi.json"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // irisctl links it: its help names the route, `irisctl openapi` prints it.
    let ctl = |args: &[&str]| {
        std::process::Command::new(CTL)
            .arg("--socket")
            .arg(&init.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let help = String::from_utf8(ctl(&["--help"]).stdout).unwrap();
    assert!(help.contains("GET /v1/openapi.json"), "{help}");
    let out = ctl(&["openapi"]);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(printed == doc, "irisctl openapi prints the served document");
    // Every served operation answers as documented, not 404 or 405.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if ops.get("get").is_some() && !path.contains('{') && path != "/v1/events" {
            let (status, _) = init.req("GET", path, None);
            assert_eq!(status, 200, "GET {path}");
        }
    }
}

//! Checkpoint and restore: the state file brings back exactly what was
//! running, survives crashes, and a bad file never stops the init.

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// SIGKILL the init and every process it left, as a VM reset would.
fn crash(init: &mut Init) {
    let (_, list) = init.req("GET", "/v1/services", None);
    let pids: Vec<i32> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    init.kill();
    for p in pids {
        unsafe { libc::kill(-p, libc::SIGKILL) };
    }
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e["name"].as_str().unwrap().to_string())
        })
        .collect();
    n.sort();
    n
}

#[test]
fn restart_brings_back_exactly_what_was_running() {
    let t = TempDir::new("restart");
    let dir = t.path().join("init.d");
    std::fs::write(dir.join("d1.toml"), "cmd = \"sleep\"\nargs = [\"1001\"]\n").unwrap();
    std::fs::write(dir.join("d2.toml"), "cmd = \"sleep\"\nargs = [\"1002\"]\n").unwrap();
    let mut init = Init::start(t.path());
    init.wait_status("d1", "running");
    init.wait_status("d2", "running");
    init.put("x", r#"{"cmd":"sleep","args":["1003"]}"#);
    init.put("y", r#"{"cmd":"sleep","args":["1004"]}"#);
    init.put("z", r#"{"cmd":"sleep","args":["1005"]}"#);
    assert_eq!(init.req("POST", "/v1/services/x/start", None).0, 200);
    assert_eq!(init.req("POST", "/v1/services/y/start", None).0, 200);
    assert_eq!(init.req("POST", "/v1/services/y/stop", None).0, 200);
    assert_eq!(init.req("POST", "/v1/services/d2/stop", None).0, 200);
    let (s, cp) = init.req("POST", "/v1/checkpoint", None);
    assert_eq!(s, 200);
    assert_eq!(names(&cp["running_services"]), ["d1", "x"]);
    crash(&mut init);

    let init = Init::start(t.path());
    let report = init.boot_report();
    assert_eq!(names(&report["started_services"]), ["d1", "x"], "{report}");
    assert!(report["failed_services"].as_array().unwrap().is_empty());
    assert!(report["timestamp"].is_string());
    assert_eq!(init.service("x")["status"], "running");
    assert_eq!(init.service("d1")["status"], "running");
    for n in ["y", "z", "d2"] {
        assert_eq!(init.service(n)["status"], "stopped", "{n}");
    }
    assert_eq!(
        init.service("y")["source"],
        "api",
        "API-defined services survive"
    );
    assert_eq!(init.service("z")["args"][0], "1005");
}

#[test]
fn graceful_shutdown_keeps_wanted_states_for_next_boot() {
    let t = TempDir::new("graceful");
    let mut init = Init::start(t.path());
    init.put("a", r#"{"cmd":"sleep","args":["1000"]}"#);
    init.req("POST", "/v1/services/a/start", None);
    assert!(init.terminate().success());
    let init = Init::start(t.path());
    init.wait_status("a", "running");
}

#[test]
fn crash_at_random_moments_leaves_a_valid_state_file() {
    let t = TempDir::new("crashsafe");
    let state = t.path().join("state/state.json");
    let mut seed: u64 = 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // The value each service had in the last acknowledged PUT.
    let mut acked: std::collections::HashMap<String, u64> = Default::default();
    for round in 0..50u64 {
        let mut init = Init::start(t.path());
        let sock = init.socket.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let base = acked.clone();
            std::thread::spawn(move || {
                let mut acked = base;
                let mut in_flight = None;
                // Each round begins with another service, so every one is
                // written even when a loaded machine acknowledges only one
                // PUT per round.
                let mut i = round;
                let Ok(stream) = std::os::unix::net::UnixStream::connect(&sock) else {
                    return (acked, in_flight);
                };
                drop(stream);
                let mut c = Client::connect(&sock);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let name = format!("s{}", i % 5);
                    let value = round * 1_000_000 + i;
                    in_flight = Some((name.clone(), value));
                    let body = format!(r#"{{"cmd":"sleep","args":["{value}"]}}"#);
                    let head = format!(
                        "PUT /v1/services/{name} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if std::io::Write::write_all(&mut c.stream, head.as_bytes()).is_err() {
                        break;
                    }
                    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        c.read_response()
                    }));
                    match ok {
                        Ok((s, _)) if s < 300 => {
                            acked.insert(name, value);
                            in_flight = None;
                        }
                        _ => break,
                    }
                    i += 1;
                }
                (acked, in_flight)
            })
        };
        std::thread::sleep(Duration::from_millis(rnd() % 60));
        init.kill();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (new_acked, in_flight) = writer.join().unwrap();
        let Ok(bytes) = std::fs::read(&state) else {
            // Killed before its first write: nothing may have been acknowledged.
            assert!(
                new_acked.is_empty(),
                "round {round}: acknowledged but no state file"
            );
            continue;
        };
        let parsed = iris_init::persist::state_file::parse(&bytes)
            .unwrap_or_else(|e| panic!("round {round}: state file invalid: {e}"));
        for (name, value) in &new_acked {
            let saved = parsed
                .services
                .get(name)
                .and_then(|s| s.definition.as_ref())
                .map(|d| d.args[0].clone());
            let ok = saved.as_deref() == Some(&value.to_string())
                || in_flight
                    .as_ref()
                    .is_some_and(|(n, v)| n == name && saved.as_deref() == Some(&v.to_string()));
            assert!(ok, "round {round}: {name} has {saved:?}, acknowledged {value}, in flight {in_flight:?}");
        }
        acked = new_acked;
        // Whatever was in flight and landed is the new truth.
        for (name, s) in &parsed.services {
            if let Some(d) = &s.definition {
                if let Ok(v) = d.args[0].parse::<u64>() {
                    acked.insert(name.clone(), v);
                }
            }
        }
    }
    assert!(acked.len() == 5, "definitions were written: {acked:?}");
}

#[test]
fn corrupt_state_files_are_reported_and_kept_aside() {
    let good = br#"{"version":1,"services":{"a":{"source":"api","definition":{"cmd":"sleep"},"wanted":"up","running":true}}}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"\x7fELF garbage \x00\x01".to_vec(), "JSON"),
        ("empty", Vec::new(), "JSON"),
        ("truncated", good[..good.len() / 2].to_vec(), "JSON"),
        (
            "future",
            br#"{"version":7,"services":{}}"#.to_vec(),
            "version 7",
        ),
    ];
    for (what, bytes, word) in cases {
        let t = TempDir::new(&format!("corrupt-{what}"));
        std::fs::write(
            t.path().join("init.d/web.toml"),
            "cmd = \"sleep\"\nargs = [\"1000\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(t.path().join("state")).unwrap();
        std::fs::write(t.path().join("state/state.json"), &bytes).unwrap();
        let init = Init::start(t.path());
        init.wait_status("web", "running");
        let (_, report) = init.req("GET", "/v1/restore", None);
        let err = report["state_file_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {report}"));
        assert!(err.contains(word), "{what}: {err}");
        let (_, sys) = init.req("GET", "/v1/system", None);
        assert!(
            sys["state_file_error"].as_str().unwrap().contains(word),
            "{what}"
        );
        let kept: Vec<_> = std::fs::read_dir(t.path().join("state"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-")
            })
            .collect();
        assert_eq!(kept.len(), 1, "{what}: kept aside");
        assert_eq!(
            std::fs::read(kept[0].path()).unwrap(),
            bytes,
            "{what}: kept intact"
        );
        // A fresh, valid file replaces it.
        let fresh = std::fs::read(t.path().join("state/state.json")).unwrap();
        assert!(
            iris_init::persist::state_file::parse(&fresh).is_ok(),
            "{what}"
        );
    }
}

#[test]
fn restore_lists_a_service_that_cannot_start_with_the_reason() {
    let t = TempDir::new("restorefail");
    let bin = t.path().join("my-daemon");
    std::fs::copy("/bin/sleep", &bin).unwrap();
    let mut init = Init::start(t.path());
    init.put(
        "d",
        &format!(r#"{{"cmd":"{}","args":["1000"]}}"#, bin.display()),
    );
    assert_eq!(init.req("POST", "/v1/services/d/start", None).0, 200);
    crash(&mut init);
    std::fs::remove_file(&bin).unwrap();
    let init = Init::start(t.path());
    let report = init.boot_report();
    let failed = &report["failed_services"][0];
    assert_eq!(failed["name"], "d", "{report}");
    assert!(
        failed["error"].as_str().unwrap().contains("not found"),
        "{report}"
    );
    // POST /v1/restore tries again and says the same.
    let (s, r) = init.req("POST", "/v1/restore", None);
    assert_eq!(s, 200);
    assert_eq!(r["failed_services"][0]["name"], "d", "{r}");
}

/// The state file once it says `name` is wanted `wanted`.
fn state_when(path: &std::path::Path, name: &str, wanted: &str) -> Vec<u8> {
    poll(
        WAIT,
        &format!("the state file to have {name} {wanted}"),
        || {
            let bytes = std::fs::read(path).unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if v["services"][name]["wanted"] == wanted {
                Ok(bytes)
            } else {
                Err(v.to_string())
            }
        },
    )
}

#[test]
fn post_restore_restarts_crashed_and_stops_unwanted() {
    let t = TempDir::new("postrestore");
    let state = paths(t.path()).2;
    let init = Init::start(t.path());
    init.put(
        "crashed",
        r#"{"cmd":"sh","args":["-c","sleep 0.2; exit 1"],"restart":"never"}"#,
    );
    init.put("ok", r#"{"cmd":"sleep","args":["1000"]}"#);
    let n = 800_000 + std::process::id() % 100_000;
    init.put("unwanted", &format!(r#"{{"cmd":"sleep","args":["{n}"]}}"#));
    assert_eq!(init.req("POST", "/v1/services/crashed/start", None).0, 200);
    assert_eq!(init.req("POST", "/v1/services/ok/start", None).0, 200);
    // A checkpoint from before `unwanted` was started (wanted down in it),
    // put back later as a restored disk would bring it.
    state_when(&state, "ok", "up");
    let checkpoint = state_when(&state, "unwanted", "down");
    let (s, v) = init.req("POST", "/v1/services/unwanted/start", None);
    assert_eq!((s, v["status"].as_str()), (200, Some("running")), "{v}");
    let pid = v["pid"].as_i64().unwrap() as i32;
    state_when(&state, "unwanted", "up");
    init.wait_status("crashed", "failed");
    let tmp = state.with_extension("put-back");
    std::fs::write(&tmp, &checkpoint).unwrap();
    std::fs::rename(&tmp, &state).unwrap();

    let (s, r) = init.req("POST", "/v1/restore", None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(names(&r["started_services"]), ["crashed"], "{r}");
    assert_eq!(names(&r["stopped_services"]), ["unwanted"], "{r}");
    assert!(r["failed_services"].as_array().unwrap().is_empty(), "{r}");
    let v = init.wait_status("unwanted", "stopped");
    assert_eq!(v["wanted"], "down", "{v}");
    assert!(!alive(pid), "the unwanted service's process is gone");
    assert!(pids_with_cmdline(&format!("sleep {n}")).is_empty());
    assert_eq!(init.service("ok")["status"], "running", "untouched");
    let (_, last) = init.req("GET", "/v1/restore", None);
    assert_eq!(last["trigger"], "api");
    assert_eq!(names(&last["stopped_services"]), ["unwanted"], "{last}");
}

#[test]
fn a_pause_does_not_fail_a_health_deadline() {
    let t = TempDir::new("pause");
    let init = Init::start(t.path());
    let port = free_port();
    // The port opens 6 s after start; the deadline is 3.5 s. The init is
    // frozen for 4 s of that (as a paused VM would be): its deadline moves.
    init.put(
        "slow",
        &format!(
            "{},\"health_port\":{port},\"health_timeout_secs\":3.5}}",
            listener_after(port, 6000)
        ),
    );
    assert_eq!(
        init.req("POST", "/v1/services/slow/start?wait=false", None)
            .0,
        202
    );
    // Freeze it for 4 s. Keep it frozen: the kernel continues stopped
    // members of a process group that becomes orphaned, and the test's
    // other inits exiting can do that.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        unsafe { libc::kill(init.pid(), libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(init.pid(), libc::SIGCONT) };
    let v = init.wait_for("slow", "settled", |v| {
        v["status"] == "running" || v["status"] == "failed"
    });
    assert_eq!(v["status"], "running", "{v}");
}

/// Found by the schema test (scripts/api-schema-test.sh): with nothing to
/// start or stop, `POST /v1/restore` never answered, and an init booted
/// without services never made its boot report.
#[test]
fn a_restore_with_nothing_to_do_answers() {
    let t = TempDir::new("empty-restore");
    let init = Init::start(t.path());
    let report = init.boot_report();
    assert!(report["started_services"].as_array().unwrap().is_empty());
    let (s, r) = init.req("POST", "/v1/restore", None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["trigger"], "api");
    assert!(r["started_services"].as_array().unwrap().is_empty());
    assert_eq!(init.req("GET", "/v1/restore", None).1["trigger"], "api");
}

//! Restore after a memory snapshot, against the plain supervisor: the
//! restore body, the generation, the kernel's reseed, `on_restore`, and
//! failures reported in `errors`. The clock is only ever set to the current
//! time here (CLOCK_REALTIME is the machine's); real steps are checked in
//! the VM (rootfs/vm-snapshot-test.py).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

fn generation_file(t: &TempDir) -> PathBuf {
    // A plain supervisor keeps it next to its socket (run/services.sock).
    t.path().join("run/iris/generation")
}

fn restore(init: &Init, body: Option<&str>) -> Value {
    let (s, r) = init.req("POST", "/v1/restore", body);
    assert_eq!(s, 200, "{r}");
    r
}

fn generation(init: &Init) -> Value {
    init.req("GET", "/v1/system", None).1["generation"].clone()
}

/// RFC 3339 of the current time, with milliseconds, in UTC or at an offset.
fn now_rfc3339(offset_min: i64) -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let local = d.as_secs() as i64 + offset_min * 60;
    let (days, rem) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let zone = if offset_min == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            offset_min.abs() / 60,
            offset_min.abs() % 60
        )
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut v))
        .unwrap();
    v
}

fn wait_file(path: &Path, what: &str, f: impl Fn(&str) -> bool) -> String {
    poll(WAIT, &format!("{what}: {}", path.display()), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if f(&text) {
            Ok(text)
        } else {
            Err(format!("{text:?}"))
        }
    })
}

#[test]
fn empty_body_restores_as_before_and_moves_the_generation_on() {
    let t = TempDir::new("snap-empty");
    let init = Init::start(t.path());
    assert_eq!(generation(&init), 0);
    assert_eq!(
        std::fs::read_to_string(generation_file(&t)).unwrap(),
        "0\n",
        "written at start"
    );
    init.put("a", r#"{"cmd":"sleep","args":["1000"]}"#);
    assert_eq!(init.req("POST", "/v1/services/a/start", None).0, 200);
    let pid = init.service("a")["pid"].clone();

    let r = restore(&init, None);
    for key in [
        "trigger",
        "timestamp",
        "started_services",
        "stopped_services",
        "failed_services",
        "state_file_error",
        "generation",
        "clock_step_ms",
        "reseeded",
        "restarted_services",
        "signalled_services",
        "errors",
    ] {
        assert!(r.get(key).is_some(), "no {key} in {r}");
    }
    assert_eq!(r["trigger"], "api");
    assert_eq!(r["generation"], 1);
    assert_eq!(
        r["clock_step_ms"], 0,
        "a plain supervisor leaves the clock alone"
    );
    assert_eq!(
        r["reseeded"], true,
        "root may reseed the kernel's generator"
    );
    assert_eq!(r["errors"], json!([]));
    assert_eq!(r["restarted_services"], json!([]));
    assert_eq!(r["signalled_services"], json!([]));
    assert_eq!(
        init.service("a")["pid"],
        pid,
        "on_restore keep is the default"
    );
    assert_eq!(init.service("a")["on_restore"], "keep");
    assert_eq!(generation(&init), 1);
    assert_eq!(std::fs::read_to_string(generation_file(&t)).unwrap(), "1\n");
    assert_eq!(init.req("GET", "/v1/restore", None).1, r, "the last report");

    assert_eq!(restore(&init, Some("{}"))["generation"], 2);
    assert_eq!(
        restore(&init, Some(r#"{"generation":10}"#))["generation"],
        10
    );
    assert_eq!(
        restore(&init, Some(r#"{"generation":null}"#))["generation"],
        11
    );
    assert_eq!(generation(&init), 11);
}

#[test]
fn the_generation_survives_a_restart_of_the_supervisor() {
    let t = TempDir::new("snap-gen");
    let mut init = Init::start(t.path());
    restore(&init, Some(r#"{"generation":41}"#));
    assert!(init.terminate().success());
    let init = Init::start(t.path());
    assert_eq!(generation(&init), 41);
    assert_eq!(restore(&init, None)["generation"], 42);
}

#[test]
fn host_entropy_is_added_and_the_generator_reseeded() {
    let t = TempDir::new("snap-entropy");
    let init = Init::start(t.path());
    for n in [32, 64, 512] {
        let body = format!(r#"{{"entropy":"{}"}}"#, base64(&random_bytes(n)));
        let r = restore(&init, Some(&body));
        assert_eq!(r["reseeded"], true, "{r}");
        assert_eq!(r["errors"], json!([]), "{r}");
    }
}

#[test]
fn host_time_sets_the_clock() {
    // Only ever the current time: the step is the request's own latency.
    let t = TempDir::new("snap-time");
    let init = Init::start(t.path());
    for offset in [0, 120, -330] {
        let time = now_rfc3339(offset);
        let r = restore(&init, Some(&format!(r#"{{"time":"{time}"}}"#)));
        assert_eq!(r["errors"], json!([]), "{time}: {r}");
        let step = r["clock_step_ms"].as_i64().unwrap();
        assert!(step.abs() < 1000, "{time}: stepped by {step} ms");
    }
}

#[test]
fn on_restore_restart_gives_a_new_process() {
    let t = TempDir::new("snap-restart");
    std::fs::write(
        t.path().join("init.d/fresh.toml"),
        "cmd = \"sleep\"\nargs = [\"1001\"]\non_restore = \"restart\"\n",
    )
    .unwrap();
    let init = Init::start(t.path());
    init.put(
        "kept",
        r#"{"cmd":"sleep","args":["1002"],"on_restore":"keep"}"#,
    );
    assert_eq!(init.req("POST", "/v1/services/kept/start", None).0, 200);
    let old = init.wait_status("fresh", "running")["pid"]
        .as_i64()
        .unwrap() as i32;
    let kept = init.service("kept")["pid"].clone();

    let r = restore(&init, None);
    assert_eq!(r["restarted_services"], json!(["fresh"]), "{r}");
    assert_eq!(r["started_services"], json!([]), "{r}");
    // The answer waited for the restart: it runs again, as a new process.
    let s = init.service("fresh");
    assert_eq!(s["status"], "running");
    assert_ne!(s["pid"].as_i64().unwrap() as i32, old);
    assert!(!alive(old), "the old process is gone");
    assert_eq!(init.service("kept")["pid"], kept);
    assert_eq!(s["restarts"], 0, "not a crash");
}

#[test]
fn on_restore_signal_reaches_the_process_group() {
    let t = TempDir::new("snap-signal");
    let d = t.path().display();
    // The whole group gets SIGHUP: sleep dies of it, wait returns, the
    // trap writes a line.
    let (init, v) = init_put(
        &t,
        "hup",
        &format!(
            r#"{{"cmd":"sh","args":["-c","trap 'echo hup >> {d}/hups' HUP; touch {d}/ready; while :; do sleep 1000 & wait; done"],"on_restore":"HUP"}}"#
        ),
    );
    assert_eq!(v["on_restore"], "SIGHUP", "shown by its full name");
    assert_eq!(init.req("POST", "/v1/services/hup/start", None).0, 200);
    wait_file(&t.path().join("ready"), "the trap is set", |_| true);
    let pid = init.service("hup")["pid"].clone();

    let r = restore(&init, None);
    assert_eq!(r["signalled_services"], json!(["hup"]), "{r}");
    assert_eq!(r["errors"], json!([]));
    wait_file(&t.path().join("hups"), "the signal is seen", |s| {
        s == "hup\n"
    });
    assert_eq!(init.service("hup")["pid"], pid, "the same process");
    assert_eq!(init.service("hup")["status"], "running");
}

fn init_put(t: &TempDir, name: &str, def: &str) -> (Init, Value) {
    let init = Init::start(t.path());
    let (s, v) = init.put(name, def);
    assert_eq!(s, 201, "{v}");
    (init, v)
}

#[test]
fn bad_bodies_are_refused_naming_the_field_and_change_nothing() {
    let t = TempDir::new("snap-bad");
    let init = Init::start(t.path());
    let e32 = base64(&[7u8; 32]);
    for (body, word) in [
        ("{", "invalid JSON"),
        ("[]", "object"),
        ("7", "object"),
        (r#"{"tme":"x"}"#, "tme"),
        (r#"{"time":"2026-12-05 16:50:40Z"}"#, "time"),
        (r#"{"time":"2026-12-05T16:50:40"}"#, "time"),
        (r#"{"time":1733417440}"#, "time"),
        (r#"{"entropy":"AAAA"}"#, "entropy"),
        (r#"{"entropy":"not base64!"}"#, "entropy"),
        (
            &format!(r#"{{"entropy":"{}"}}"#, base64(&[0u8; 513])),
            "entropy",
        ),
        (r#"{"generation":-1}"#, "generation"),
        (r#"{"generation":"7"}"#, "generation"),
        (
            &format!(r#"{{"entropy":"{e32}","generation":1.5}}"#),
            "generation",
        ),
    ] {
        let (s, v) = init.req("POST", "/v1/restore", Some(body));
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(word), "{body}: {v}");
    }
    assert_eq!(generation(&init), 0, "no restore ran");
    assert_eq!(init.req("GET", "/v1/restore", None).1["trigger"], "boot");

    let (s, v) = init.put("x", r#"{"cmd":"sleep","on_restore":"sometimes"}"#);
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("on_restore"), "{v}");
}

#[test]
fn a_failed_step_is_reported_and_the_restore_goes_on() {
    let t = TempDir::new("snap-fail");
    let init = Init::start(t.path());
    init.put(
        "a",
        r#"{"cmd":"sleep","args":["1000"],"on_restore":"restart"}"#,
    );
    assert_eq!(init.req("POST", "/v1/services/a/start", None).0, 200);
    // The generation file cannot be replaced: a directory is in its way.
    let f = generation_file(&t);
    std::fs::remove_file(&f).unwrap();
    std::fs::create_dir_all(f.join("blocker")).unwrap();

    let r = restore(&init, None);
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].as_str().unwrap().contains("generation"), "{r}");
    assert_eq!(r["generation"], 1, "counted all the same");
    assert_eq!(generation(&init), 1);
    assert_eq!(
        r["restarted_services"],
        json!(["a"]),
        "the services step ran"
    );
}

#[test]
fn boot_report_has_the_new_fields() {
    let t = TempDir::new("snap-boot");
    let init = Init::start(t.path());
    let r = init.boot_report();
    assert_eq!(r["generation"], 0);
    assert_eq!(r["clock_step_ms"], 0);
    assert_eq!(r["reseeded"], false, "nothing is reseeded at boot");
    assert_eq!(r["errors"], json!([]));
}

#[test]
fn irisctl_restore_sends_time_entropy_and_generation() {
    let t = TempDir::new("snap-ctl");
    let init = Init::start(t.path());
    let seed = t.path().join("seed.bin");
    std::fs::write(&seed, random_bytes(48)).unwrap();
    let out = std::process::Command::new(CTL)
        .arg("--socket")
        .arg(&init.socket)
        .args(["restore", "--time", "now", "--entropy-file"])
        .arg(&seed)
        .args(["--generation", "7", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["generation"], 7);
    assert_eq!(r["reseeded"], true);
    assert_eq!(r["errors"], json!([]), "{r}");
    assert!(r["clock_step_ms"].as_i64().unwrap().abs() < 1000, "{r}");
}

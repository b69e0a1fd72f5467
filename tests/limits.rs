//! Resource limits, usage and metrics as a client sees them: bad limits
//! are 400s, a limit the host cannot apply fails the start (409) before
//! the command runs, usage is in the service object, and `/v1/metrics`
//! is read by the Prometheus project's own text parser.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cgroup2 directory of a process (None without cgroup2).
fn cgroup_of(pid: i64) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4))?
    })?;
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new(mount).join(rel.trim().trim_start_matches('/')))
}

#[test]
fn bad_limits_are_400s_naming_the_field() {
    let t = TempDir::new("lim-bad");
    let init = Init::start(t.path());
    let cases = [
        (r#"{"memory_max":"lots"}"#, "limits.memory_max"),
        (r#"{"memory_max":"12X"}"#, "limits.memory_max"),
        (r#"{"memory_max":-5}"#, "limits.memory_max"),
        (r#"{"memory_high":1.5}"#, "limits.memory_high"),
        (r#"{"cpu_max":0}"#, "limits.cpu_max"),
        (r#"{"cpu_max":"1"}"#, "limits.cpu_max"),
        (r#"{"cpu_weight":0}"#, "limits.cpu_weight"),
        (r#"{"cpu_weight":20000}"#, "limits.cpu_weight"),
        (r#"{"pids_max":0}"#, "limits.pids_max"),
        (r#"{"pids_max":-1}"#, "limits.pids_max"),
        (r#"{"memory":"1G"}"#, "memory"),
        (r#""1G""#, "limits"),
    ];
    for (limits, word) in cases {
        let body = format!(r#"{{"cmd":"sleep","args":["1"],"limits":{limits}}}"#);
        let (s, v) = init.put("x", &body);
        assert_eq!(s, 400, "{limits}: {v}");
        assert_eq!(v["error"], "invalid_definition", "{limits}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(word), "{limits}: {msg}");
    }
    let (s, _) = init.req("GET", "/v1/services/x", None);
    assert_eq!(s, 404, "a rejected definition is not stored");

    // Good ones: sizes in powers of 1024, shown back as bytes.
    let (s, v) = init.put(
        "x",
        r#"{"cmd":"sleep","args":["1"],"limits":{"memory_max":"32M","memory_high":"1G","cpu_max":0.5,"cpu_weight":200,"pids_max":64}}"#,
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["limits"],
        serde_json::json!({"memory_max": 33554432u64, "memory_high": 1073741824u64,
                           "cpu_max": 0.5, "cpu_weight": 200, "pids_max": 64})
    );

    // A drop-in with a bad limit is a failed service naming the field.
    let dir = paths(t.path()).1;
    std::fs::write(
        dir.join("y.toml"),
        "cmd = \"sleep\"\n[limits]\nmemory_max = \"2T\"\n",
    )
    .unwrap();
    drop(init);
    let init = Init::start(t.path());
    let y = init.wait_status("y", "failed");
    let err = y["error"].as_str().unwrap_or_default();
    assert!(err.contains("limits.memory_max"), "{y}");
}

/// Every controller a limit can need, with one limit that needs it.
const ONE_LIMIT_EACH: [(&str, &str, &str, &str); 3] = [
    (
        "memory",
        r#"{"memory_max":"64M"}"#,
        "memory.max",
        "67108864",
    ),
    ("cpu", r#"{"cpu_max":0.5}"#, "cpu.max", "50000 100000"),
    ("pids", r#"{"pids_max":32}"#, "pids.max", "32"),
];

#[test]
fn a_limit_is_applied_before_the_command_runs_or_the_start_fails_naming_the_controller() {
    let t = TempDir::new("lim-409");
    let init = Init::start(t.path());
    for (controller, limits, file, value) in ONE_LIMIT_EACH {
        let name = format!("lim-{controller}");
        let ran = t.path().join(format!("{name}.ran"));
        let def = format!(
            r#"{{"cmd":"sh","args":["-c","touch {}; exec sleep 60"],"restart":"never","limits":{limits}}}"#,
            ran.display()
        );
        assert_eq!(init.put(&name, &def).0, 201);
        let (s, v) = init.req("POST", &format!("/v1/services/{name}/start"), None);
        if s == 200 {
            // The host lets the init apply it: the value is in the cgroup.
            let cg = cgroup_of(v["pid"].as_i64().unwrap()).unwrap();
            let got = std::fs::read_to_string(cg.join(file)).unwrap();
            assert_eq!(got.trim(), value, "{controller}: {}", cg.display());
            if controller == "memory" {
                let group = std::fs::read_to_string(cg.join("memory.oom.group")).unwrap();
                assert_eq!(group.trim(), "1");
            }
        } else {
            // It cannot: 409 naming the controller, and nothing ran.
            assert_eq!(s, 409, "{controller}: {v}");
            let msg = v["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains(&format!("{controller} controller")),
                "{controller}: {msg}"
            );
            assert!(
                !ran.exists(),
                "{controller}: the command ran without its limit"
            );
            let obj = init.service(&name);
            assert_eq!(obj["status"], "failed", "{obj}");
            assert!(obj["error"]
                .as_str()
                .unwrap_or_default()
                .contains(controller));
        }
    }
    // Without limits the same host runs a service.
    assert_eq!(init.put("plain", r#"{"cmd":"sleep","args":["60"]}"#).0, 201);
    let (s, v) = init.req("POST", "/v1/services/plain/start", None);
    assert_eq!(s, 200, "{v}");
}

#[test]
fn usage_shows_what_the_cgroup_counts() {
    let t = TempDir::new("lim-usage");
    let init = Init::start(t.path());
    // Burns a little CPU, then waits.
    let def = r#"{"cmd":"sh","args":["-c","i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 60"]}"#;
    assert_eq!(init.put("burn", def).0, 201);
    let (s, v) = init.req("POST", "/v1/services/burn/start", None);
    assert_eq!(s, 200, "{v}");
    let pid = v["pid"].as_i64().unwrap();
    let Some(cg) = cgroup_of(pid).filter(|c| c.ends_with("burn.service")) else {
        // No cgroup for the service: no usage either.
        assert!(init.service("burn").get("usage").is_none());
        return;
    };
    let v = init.wait_for("burn", "cpu_usec > 0", |v| {
        v["usage"]["cpu_usec"].as_u64().is_some_and(|u| u > 0)
    });
    let usage = &v["usage"];
    // A field is a number exactly when its controller's file is there.
    for (field, file) in [
        ("memory_bytes", "memory.current"),
        ("memory_peak_bytes", "memory.peak"),
        ("pids", "pids.current"),
    ] {
        let present = cg.join(file).exists();
        assert_eq!(
            usage[field].is_u64(),
            present,
            "{field} vs {}: {usage}",
            cg.join(file).display()
        );
        assert!(usage.get(field).is_some(), "{field} missing: {usage}");
    }
    if cg.join("pids.current").exists() {
        assert_eq!(usage["pids"], 1, "{usage}");
    }
    assert!(v["oom_kills"].is_u64(), "{v}");
    // A service that never ran has no cgroup, so no usage.
    assert_eq!(init.put("idle", r#"{"cmd":"sleep","args":["1"]}"#).0, 201);
    assert!(init.service("idle").get("usage").is_none_or(Value::is_null));
}

/// GET path, answering (status, content type, body).
fn get_raw(init: &Init, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&init.socket).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8(all).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The metrics text parsed by `prometheus_client` (PyPI): family name ->
/// {type, help, samples: [[name, labels, value]]}.
fn parse_with_prometheus_client(text: &str) -> Value {
    const PARSE: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "help": f.documentation,
                   "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs it and prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of family `family`'s sample `sample` with label service=`svc`.
fn sample(m: &Value, family: &str, sample: &str, svc: Option<&str>) -> Option<f64> {
    m[family]["samples"].as_array()?.iter().find_map(|s| {
        let labels = &s[1];
        let ok = s[0] == sample
            && match svc {
                Some(n) => labels["service"] == n,
                None => labels.as_object().is_some_and(|l| l.is_empty()),
            };
        ok.then(|| s[2].as_f64())?
    })
}

#[test]
fn metrics_are_prometheus_text_read_by_a_real_parser() {
    let t = TempDir::new("lim-metrics");
    let init = Init::start(t.path());
    assert_eq!(init.put("up", r#"{"cmd":"sleep","args":["60"]}"#).0, 201);
    assert_eq!(init.req("POST", "/v1/services/up/start", None).0, 200);
    assert_eq!(init.put("down", r#"{"cmd":"sleep","args":["60"]}"#).0, 201);
    // Crashes twice, then stays up: two restarts.
    let count = t.path().join("crashes");
    let crash = format!(
        r#"{{"cmd":"sh","args":["-c","echo x >> {0}; [ $(wc -l < {0}) -gt 2 ] && exec sleep 60; exit 3"],"restart":"on-failure"}}"#,
        count.display()
    );
    assert_eq!(init.put("crashy", &crash).0, 201);
    init.req("POST", "/v1/services/crashy/start?wait=false", None);
    init.wait_for("crashy", "two restarts and running", |v| {
        v["restarts"] == 2 && v["status"] == "running"
    });

    let (status, ctype, body) = get_raw(&init, "/v1/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        ctype.starts_with("text/plain; version=0.0.4"),
        "content type {ctype}"
    );
    let m = parse_with_prometheus_client(&body);

    let kinds = [
        ("iris_service_up", "gauge"),
        ("iris_service_restarts", "counter"),
        ("iris_service_oom_kills", "counter"),
        ("iris_service_memory_bytes", "gauge"),
        ("iris_service_cpu_seconds", "counter"),
        ("iris_zombies_reaped", "counter"),
        ("iris_services", "gauge"),
        ("iris_uptime_seconds", "gauge"),
    ];
    for (family, kind) in kinds {
        assert_eq!(m[family]["type"], kind, "{family}: {}", m[family]);
        assert!(m[family]["help"].as_str().is_some_and(|h| !h.is_empty()));
    }
    let up = |svc| sample(&m, "iris_service_up", "iris_service_up", Some(svc));
    assert_eq!(
        (up("up"), up("down"), up("crashy")),
        (Some(1.0), Some(0.0), Some(1.0))
    );
    let restarts = |svc| {
        sample(
            &m,
            "iris_service_restarts",
            "iris_service_restarts_total",
            Some(svc),
        )
    };
    assert_eq!((restarts("crashy"), restarts("up")), (Some(2.0), Some(0.0)));
    assert_eq!(
        sample(
            &m,
            "iris_service_oom_kills",
            "iris_service_oom_kills_total",
            Some("up")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "iris_services", "iris_services", None),
        Some(3.0)
    );
    let uptime = sample(&m, "iris_uptime_seconds", "iris_uptime_seconds", None).unwrap();
    assert!(uptime > 0.0, "{uptime}");
    assert!(sample(&m, "iris_zombies_reaped", "iris_zombies_reaped_total", None).is_some());
    // CPU time shows for a service that has a cgroup (every cgroup2 counts
    // it), and agrees with the service object.
    let obj = init.service("up");
    let cpu = sample(
        &m,
        "iris_service_cpu_seconds",
        "iris_service_cpu_seconds_total",
        Some("up"),
    );
    match obj["usage"]["cpu_usec"].as_u64() {
        Some(_) => assert!(cpu.is_some_and(|c| c >= 0.0), "{body}"),
        None => assert_eq!(cpu, None, "{body}"),
    }
    let mem = sample(
        &m,
        "iris_service_memory_bytes",
        "iris_service_memory_bytes",
        Some("up"),
    );
    assert_eq!(
        mem.is_some(),
        obj["usage"]["memory_bytes"].is_u64(),
        "{obj}"
    );

    // irisctl prints the same text.
    let out = Command::new(CTL)
        .args(["--socket"])
        .arg(&init.socket)
        .arg("metrics")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("iris_service_up{service=\"up\"} 1"), "{text}");
}

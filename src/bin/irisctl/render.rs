//! Human output of one answer: the `list` table, `status` lines, action
//! lines, reports (checkpoint, restore, system) and exec results with the
//! exit status they map to.

use serde_json::{Map, Value};

use crate::clock::{format_duration, uptime_of};

/// Exit status when an exec'd command timed out (as timeout(1) does).
pub const EXIT_TIMED_OUT: i32 = 124;

/// A scalar for a `key: value` line or a table cell; `-` for nothing.
/// A JSON document indented for reading, with a final newline.
pub fn pretty_json(v: &Value) -> String {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    text
}

pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One table cell: a single line.
pub fn cell(v: Option<&Value>) -> String {
    let text = v.map(scalar_text).unwrap_or_else(|| "-".into());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `irisctl list`: an aligned table of service objects.
pub fn render_table(list: &Value, now: i64) -> String {
    let Some(items) = list.as_array() else {
        return format!("{list}\n");
    };
    let mut rows: Vec<Vec<String>> = vec![[
        "NAME",
        "STATUS",
        "PID",
        "RESTARTS",
        "SOURCE",
        "UPTIME/ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for svc in items {
        let status = cell(svc.get("status"));
        let last = match status.as_str() {
            "failed" => cell(svc.get("error")),
            "running" => uptime_of(svc, now).unwrap_or_else(|| "-".into()),
            _ => "-".into(),
        };
        rows.push(vec![
            cell(svc.get("name")),
            status,
            cell(svc.get("pid")),
            cell(svc.get("restarts")),
            cell(svc.get("source")),
            last,
        ]);
    }
    let widths = column_widths(&rows);
    let mut out = String::new();
    for row in &rows {
        out.push_str(&aligned_line(row, &widths, &|_, padded| padded.to_string()));
        out.push('\n');
    }
    out
}

/// The widest cell of each column.
pub fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths = Vec::new();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            let n = c.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = n.max(*w),
                None => widths.push(n),
            }
        }
    }
    widths
}

/// One row with its cells padded to `widths` and two spaces between them;
/// the last cell is not padded. `decorate(column, padded cell)` may wrap a
/// cell (in colour) once it is padded, so the escapes do not count as width.
pub fn aligned_line(
    row: &[String],
    widths: &[usize],
    decorate: &dyn Fn(usize, &str) -> String,
) -> String {
    let mut line = String::new();
    for (i, c) in row.iter().enumerate() {
        if i + 1 == row.len() {
            line.push_str(&decorate(i, c));
        } else {
            let w = widths.get(i).copied().unwrap_or(0);
            line.push_str(&decorate(i, &format!("{c:<w$}")));
            line.push_str("  ");
        }
    }
    line.trim_end().to_string()
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
pub fn ordered_keys<'a>(obj: &'a Map<String, Value>, order: &[&str]) -> Vec<&'a str> {
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
pub fn render_status(svc: &Value, now: i64) -> String {
    let Some(obj) = svc.as_object() else {
        return format!("{svc}\n");
    };
    let mut out = String::new();
    for key in ordered_keys(obj, STATUS_ORDER) {
        let value = obj.get(key).map(scalar_text).unwrap_or_default();
        out.push_str(&format!("{key}: {value}\n"));
        if key == "status" {
            for line in check_lines(obj) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        if key == "started_at" && obj.get("status").and_then(Value::as_str) == Some("running") {
            if let Some(up) = uptime_of(svc, now) {
                out.push_str(&format!("uptime: {up}\n"));
            }
        }
    }
    out
}

/// The readiness and liveness checks in words, each with its last result:
/// `check: GET http://127.0.0.1:8080/healthz (200-399); last: answered 200`.
fn check_lines(obj: &Map<String, Value>) -> Vec<String> {
    use iris_init::core::checks::{parse_health, parse_liveness};
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    let mut lines = Vec::new();
    let ready = match (
        obj.get("health"),
        obj.get("health_port").and_then(Value::as_u64),
    ) {
        (Some(h), _) if h.is_object() => parse_health(h).ok().map(|h| h.check.to_string()),
        (_, Some(port)) => Some(format!("tcp port {port}")),
        _ => None,
    };
    if let Some(check) = ready {
        lines.push(format!("check: {check}; last: {}", text("health_result")));
    }
    if let Some(l) = obj.get("liveness").and_then(|l| parse_liveness(l).ok()) {
        let failed = obj.get("liveness_failures").map(scalar_text);
        lines.push(format!(
            "liveness check: {} every {}s, restart after {} failures in a row; last: {}; failed {} times in all",
            l.check,
            l.interval_secs,
            l.failures,
            text("liveness_result"),
            failed.unwrap_or_else(|| "0".into())
        ));
    }
    lines
}

/// start/stop/restart: `redis: running (pid 142)`.
pub fn render_action(name: &str, svc: &Value) -> String {
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
pub fn report_item(v: &Value) -> String {
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
pub fn render_report(v: &Value) -> String {
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
pub struct ExecOutcome {
    pub stdout: String,
    pub stderr: String,
    pub exit: i32,
    pub timed_out: bool,
}

/// Maps an exec answer to what irisctl prints and its exit status: the
/// command's own code, 128+N for a signal, 124 for a timeout.
pub fn exec_outcome(v: &Value) -> ExecOutcome {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn status_shows_each_check_and_its_last_result() {
        let svc = json!({"name": "web", "status": "running", "pid": 7,
            "health": {"http": {"port": 8080, "path": "/healthz", "status": [200, 399]}, "interval_ms": 250},
            "health_result": "answered 200",
            "liveness": {"exec": ["curl", "-f", "localhost"], "interval_secs": 10.0, "failures": 3},
            "liveness_result": "exited with code 7", "liveness_failures": 4});
        let text = render_status(&svc, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.get(2).copied(),
            Some("check: GET http://127.0.0.1:8080/healthz (200-399); last: answered 200")
        );
        assert_eq!(
            lines.get(3).copied(),
            Some("liveness check: exec curl -f localhost every 10s, restart after 3 failures in a row; last: exited with code 7; failed 4 times in all")
        );
        let redis = json!({"name": "redis", "status": "unknown", "health_port": 6379});
        assert!(render_status(&redis, 0).contains("check: tcp port 6379; last: -\n"));
        let plain = render_status(&json!({"name": "x", "status": "stopped"}), 0);
        assert!(!plain.contains("check:"));
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
}

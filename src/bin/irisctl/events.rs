//! `irisctl events`: the init's events stream (`GET /v1/events`, Server-Sent
//! Events) printed one event per line, for humans or as the raw JSON data.

use std::path::Path;

use iris_init::client::{self, SseEvent, SseParser};
use serde_json::Value;

use crate::http::{open, CtlError};
use crate::render::{render_report, scalar_text};
use crate::request::events_request;
use crate::write_stdout;

/// Streams events until the init closes the stream; returns the exit status.
pub fn run(
    socket: &Path,
    since: Option<u64>,
    names: &[String],
    json: bool,
) -> Result<i32, CtlError> {
    let (mut conn, head) = open(socket, &events_request(since, names), None)?;
    let mut parser = SseParser::new();
    let result = conn.read_body(head.framing, &mut |piece| {
        let mut out = String::new();
        for event in parser.feed(piece) {
            let line = if json {
                event.data.replace('\n', " ")
            } else {
                event_line(&event)
            };
            out.push_str(&line);
            out.push('\n');
        }
        write_stdout(out.as_bytes())
    });
    match result {
        // The init ending the stream (shutdown) is a normal end.
        Ok(()) | Err(CtlError::Http(client::Error::Closed)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// One event for humans: `#12 web running pid 142 (started)`.
pub fn event_line(event: &SseEvent) -> String {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    let text = match (event.event.as_str(), &data) {
        ("service", Value::Object(_)) => service_line(&data),
        ("snapshot", Value::Object(_)) => snapshot_line(&data),
        ("restore", Value::Object(_)) => {
            let report = render_report(&data);
            format!("restore: {}", report.trim_end().replace('\n', "; "))
        }
        ("system", Value::Object(o)) if o.len() == 1 && o.contains_key("state") => {
            format!(
                "system: {}",
                scalar_text(o.get("state").unwrap_or(&Value::Null))
            )
        }
        (kind, Value::Object(o)) => {
            let fields: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}={}", scalar_text(v)))
                .collect();
            format!("{kind}: {}", fields.join(" "))
        }
        (kind, _) => format!("{kind}: {}", event.data.replace('\n', " ")),
    };
    match &event.id {
        Some(id) => format!("#{id} {text}"),
        None => text,
    }
}

/// A service event or object in one line: `web failed exit 1 restarts 2
/// (failed): why`.
pub fn service_line(svc: &Value) -> String {
    let get = |k: &str| svc.get(k).filter(|v| !v.is_null());
    let text = |k: &str| get(k).map(scalar_text).unwrap_or_else(|| "-".into());
    let status = text("status");
    let mut line = format!("{} {status}", text("name"));
    if let Some(pid) = get("pid") {
        line.push_str(&format!(" pid {pid}"));
    }
    if let Some(code) = get("exit_code").filter(|_| status != "running") {
        line.push_str(&format!(" exit {code}"));
    }
    if let Some(n) = get("restarts").and_then(Value::as_u64).filter(|n| *n > 0) {
        line.push_str(&format!(" restarts {n}"));
    }
    if let Some(reason) = get("reason").and_then(Value::as_str) {
        line.push_str(&format!(" ({reason})"));
    }
    if let Some(err) = get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        let err: Vec<&str> = err.split_whitespace().collect();
        line.push_str(&format!(": {}", err.join(" ")));
    }
    line
}

/// `snapshot: 3 services: a running, b stopped, c failed`.
fn snapshot_line(data: &Value) -> String {
    let services = data
        .get("services")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let each: Vec<String> = services
        .iter()
        .map(|s| {
            let field = |k: &str| s.get(k).map(scalar_text).unwrap_or_else(|| "-".into());
            format!("{} {}", field("name"), field("status"))
        })
        .collect();
    let count = match services.len() {
        1 => "1 service".to_string(),
        n => format!("{n} services"),
    };
    if each.is_empty() {
        format!("snapshot: {count}")
    } else {
        format!("snapshot: {count}: {}", each.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream as the contract describes it, in odd pieces.
    pub const CANNED: &str = "id: 1\nevent: snapshot\n\
        data: {\"services\":[{\"name\":\"db\",\"status\":\"running\",\"pid\":7},{\"name\":\"web\",\"status\":\"stopped\",\"pid\":null}]}\n\n\
        : keep-alive\n\n\
        id: 2\nevent: service\n\
        data: {\"name\":\"web\",\"status\":\"running\",\"pid\":42,\"exit_code\":null,\"restarts\":0,\"error\":null,\"reason\":\"started\"}\n\n\
        id: 3\nevent: service\n\
        data: {\"name\":\"web\",\"status\":\"failed\",\"pid\":null,\"exit_code\":1,\"restarts\":2,\"error\":\"exited with\\nstatus 1\",\"reason\":\"failed\"}\n\n\
        id: 4\nevent: restore\n\
        data: {\"started_services\":[\"db\"],\"stopped_services\":[],\"failed_services\":[]}\n\n\
        id: 5\nevent: system\ndata: {\"state\":\"shutting_down\"}\n\n\
        event: gap\ndata: {\"missed\":10}\n\n";

    #[test]
    fn every_event_kind_reads_as_one_line() {
        let mut parser = SseParser::new();
        let mut lines = Vec::new();
        for piece in CANNED.as_bytes().chunks(7) {
            lines.extend(parser.feed(piece).iter().map(event_line));
        }
        assert_eq!(
            lines,
            [
                "#1 snapshot: 2 services: db running, web stopped",
                "#2 web running pid 42 (started)",
                "#3 web failed exit 1 restarts 2 (failed): exited with status 1",
                "#4 restore: started_services: db; stopped_services: -; failed_services: -",
                "#5 system: shutting_down",
                "gap: missed=10",
            ]
        );
    }
}

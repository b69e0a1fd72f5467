//! `irisctl watch`: a live table of services fed by the events stream
//! (`snapshot`, then `service` events). On a terminal the table is redrawn
//! in place (status in colour, memory and CPU refreshed while services
//! report `usage`); piped, it prints one line per change.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use iris_init::client::{self, BodyReader, Conn, Request, SseEvent, SseParser};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;

use crate::clock::{now_millis, since, started_at};
use crate::events::{event_line, service_line};
use crate::http::{exchange, open, CtlError};
use crate::render::{aligned_line, column_widths};
use crate::request::events_request;
use crate::style::{terminal_width, Style};
use crate::write_stdout;

/// How often a terminal view is redrawn while nothing happens (uptimes move).
const REDRAW: Duration = Duration::from_secs(1);
/// How often memory and CPU are fetched while services report usage.
const USAGE_EVERY_MS: i64 = 2000;

/// What the table shows of one service.
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    status: String,
    pid: Option<i64>,
    /// Unix seconds, while running.
    started: Option<i64>,
    restarts: u64,
    exit: Option<i64>,
    error: String,
    memory: Option<u64>,
    cpu_usec: Option<u64>,
    cpu_percent: Option<f64>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Row {
    fn from_object(svc: &Value) -> Row {
        let usage = |k: &str| {
            svc.get("usage")
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
        };
        let status = text(svc, "status");
        Row {
            started: started_at(svc).filter(|_| status == "running"),
            status,
            pid: svc.get("pid").and_then(Value::as_i64),
            restarts: svc.get("restarts").and_then(Value::as_u64).unwrap_or(0),
            exit: svc.get("exit_code").and_then(Value::as_i64),
            error: text(svc, "error"),
            memory: usage("memory_bytes"),
            cpu_usec: usage("cpu_usec"),
            cpu_percent: None,
        }
    }

    /// Takes a `service` event's fields; an uptime starts with a new run.
    fn update(&mut self, event: &Value, now: i64) {
        let status = text(event, "status");
        let pid = event.get("pid").and_then(Value::as_i64);
        if status != "running" {
            self.started = None;
        } else if self.status != "running" || self.pid != pid || self.started.is_none() {
            self.started = Some(now);
        }
        self.status = status;
        self.pid = pid;
        if let Some(n) = event.get("restarts").and_then(Value::as_u64) {
            self.restarts = n;
        }
        if let Some(code) = event.get("exit_code") {
            self.exit = code.as_i64();
        }
        self.error = text(event, "error");
    }

    fn cells(&self, name: &str, now: i64, usage: bool) -> Vec<String> {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let mut cells = vec![
            name.to_string(),
            or_dash(Some(self.status.clone()).filter(|s| !s.is_empty())),
            or_dash(self.pid.map(|p| p.to_string())),
            or_dash(self.started.map(|t| since(t, now))),
            self.restarts.to_string(),
            or_dash(self.exit.map(|c| c.to_string())),
        ];
        if usage {
            cells.push(or_dash(self.memory.map(human_bytes)));
            cells.push(or_dash(self.cpu_percent.map(|p| format!("{p:.1}%"))));
        }
        cells.push(self.error.split_whitespace().collect::<Vec<_>>().join(" "));
        cells
    }
}

/// `1.5M`: bytes in powers of 1024.
pub fn human_bytes(n: u64) -> String {
    let units = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    for unit in units {
        if value < 1024.0 || unit == "T" {
            return format!("{value:.1}{unit}");
        }
        value /= 1024.0;
    }
    format!("{n}B")
}

/// The services as the events told them, filtered to the names asked for.
#[derive(Debug, Default)]
pub struct Board {
    rows: BTreeMap<String, Row>,
    only: Vec<String>,
    last_id: Option<String>,
    usage_at_ms: Option<i64>,
}

impl Board {
    pub fn new(only: &[String]) -> Board {
        Board {
            only: only.to_vec(),
            ..Board::default()
        }
    }

    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }

    /// Applies one event; returns what a piped watch prints for it.
    pub fn apply(&mut self, event: &SseEvent, now: i64) -> Vec<String> {
        if event.id.is_some() {
            self.last_id.clone_from(&event.id);
        }
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match event.event.as_str() {
            "snapshot" => self.snapshot(&data),
            "service" => self.service(&data, now).into_iter().collect(),
            "system" | "restore" | "gap" => vec![event_line(event)],
            _ => Vec::new(),
        }
    }

    fn snapshot(&mut self, data: &Value) -> Vec<String> {
        self.rows.clear();
        let mut lines = Vec::new();
        let services = data.get("services").and_then(Value::as_array);
        for svc in services.into_iter().flatten() {
            let name = text(svc, "name");
            if !name.is_empty() && self.wanted(&name) {
                self.rows.insert(name, Row::from_object(svc));
                lines.push(service_line(svc));
            }
        }
        lines
    }

    fn service(&mut self, data: &Value, now: i64) -> Option<String> {
        let name = text(data, "name");
        if name.is_empty() || !self.wanted(&name) {
            return None;
        }
        if data.get("reason").and_then(Value::as_str) == Some("deleted") {
            self.rows.remove(&name);
        } else {
            self.rows.entry(name).or_default().update(data, now);
        }
        Some(service_line(data))
    }

    /// Takes memory and CPU from a `GET /v1/services` answer; CPU is the
    /// share of one core since the previous call.
    pub fn update_usage(&mut self, list: &Value, now_ms: i64) {
        let elapsed_ms = self.usage_at_ms.map(|t| now_ms - t).filter(|&ms| ms > 0);
        for svc in list.as_array().into_iter().flatten() {
            let Some(row) = self.rows.get_mut(&text(svc, "name")) else {
                continue;
            };
            let fresh = Row::from_object(svc);
            row.cpu_percent = match (fresh.cpu_usec, row.cpu_usec, elapsed_ms) {
                (Some(new), Some(old), Some(ms)) => {
                    Some(new.saturating_sub(old) as f64 / (ms as f64 * 1000.0) * 100.0)
                }
                _ => None,
            };
            row.memory = fresh.memory;
            row.cpu_usec = fresh.cpu_usec;
        }
        self.usage_at_ms = Some(now_ms);
    }

    pub fn has_usage(&self) -> bool {
        self.rows
            .values()
            .any(|r| r.memory.is_some() || r.cpu_usec.is_some())
    }

    /// The counts line: `3 services: 2 running, 1 failed  (event #12)`.
    fn summary(&self) -> String {
        let mut counts: Vec<String> = Vec::new();
        for status in ["running", "unknown", "failed", "stopped"] {
            let n = self.rows.values().filter(|r| r.status == status).count();
            if n > 0 {
                counts.push(format!("{n} {status}"));
            }
        }
        let mut line = match self.rows.len() {
            1 => "1 service".to_string(),
            n => format!("{n} services"),
        };
        if !counts.is_empty() {
            line.push_str(&format!(": {}", counts.join(", ")));
        }
        if let Some(id) = &self.last_id {
            line.push_str(&format!("  (event #{id})"));
        }
        line
    }

    /// The table, status in colour, each line cut to `width`.
    pub fn render(&self, now: i64, style: Style, width: Option<usize>) -> String {
        let usage = self.has_usage();
        let mut header = vec!["NAME", "STATUS", "PID", "UPTIME", "RESTARTS", "EXIT"];
        if usage {
            header.extend(["MEMORY", "CPU"]);
        }
        header.push("ERROR");
        let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        rows.extend(self.rows.iter().map(|(n, r)| r.cells(n, now, usage)));
        let widths = column_widths(&rows);
        let mut out = format!("{}\n", self.summary());
        for (i, row) in rows.iter_mut().enumerate() {
            if let Some(w) = width {
                fit_last_cell(row, &widths, w);
            }
            let status = row.get(1).map(|s| s.trim().to_string()).unwrap_or_default();
            let paint = |col: usize, cell: &str| match (col, i) {
                (1, 1..) => style.status(&status, cell),
                _ => cell.to_string(),
            };
            out.push_str(&aligned_line(row, &widths, &paint));
            out.push('\n');
        }
        out
    }
}

/// Shortens the last cell so the line fits `width` columns.
fn fit_last_cell(row: &mut [String], widths: &[usize], width: usize) {
    let fixed: usize = widths
        .iter()
        .take(row.len().saturating_sub(1))
        .map(|w| w + 2)
        .sum();
    let room = width.saturating_sub(fixed);
    if let Some(last) = row.last_mut() {
        if last.chars().count() > room {
            *last = last
                .chars()
                .take(room.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
    }
}

/// A redrawn screen: cursor home, each line cleared to its end, the rest
/// of the screen cleared; the first frame clears the whole screen first.
pub fn frame(text: &str, first: bool) -> String {
    let mut out = String::from(if first { "\x1b[H\x1b[2J" } else { "\x1b[H" });
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    out
}

/// The events connection and its parser.
struct Events {
    conn: Conn<UnixStream>,
    body: BodyReader,
    parser: SseParser,
}

impl Events {
    /// The next events; waits at most `wait` when given (`Some(empty)`
    /// then), `None` when the stream ended.
    fn next(&mut self, wait: Option<Duration>) -> Result<Option<Vec<SseEvent>>, CtlError> {
        if let Some(wait) = wait {
            if !readable(&self.conn, wait)? {
                return Ok(Some(Vec::new()));
            }
        }
        match self.conn.next_piece(&mut self.body) {
            Ok(Some(piece)) => Ok(Some(self.parser.feed(&piece))),
            Ok(None) | Err(client::Error::Closed) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn readable(conn: &Conn<UnixStream>, wait: Duration) -> Result<bool, CtlError> {
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(conn.stream().as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(CtlError::Http(client::Error::Receive(e.into()))),
    }
}

/// The view: a board printed as lines (piped) or drawn as a table (TTY).
struct View {
    board: Board,
    tty: bool,
    style: Style,
    drawn: bool,
    note: String,
}

impl View {
    fn take(&mut self, events: &[SseEvent]) -> Result<(), CtlError> {
        let now = now_millis() / 1000;
        let mut out = String::new();
        for event in events {
            for line in self.board.apply(event, now) {
                if self.tty {
                    if event.event != "snapshot" && event.event != "service" {
                        self.note = line;
                    }
                } else {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
        write_stdout(out.as_bytes())
    }

    fn draw(&mut self) -> Result<(), CtlError> {
        let mut text = self
            .board
            .render(now_millis() / 1000, self.style, terminal_width());
        if !self.note.is_empty() {
            text.push_str(&format!("\n{}\n", self.note));
        }
        let first = !self.drawn;
        self.drawn = true;
        write_stdout(frame(&text, first).as_bytes())
    }

    /// Refreshes memory and CPU; a failed fetch only leaves them as they were.
    fn refresh_usage(&mut self, socket: &Path, due_ms: &mut i64) {
        let now = now_millis();
        if !self.board.has_usage() || now < *due_ms {
            return;
        }
        *due_ms = now + USAGE_EVERY_MS;
        let req = Request::new("GET", "/v1/services");
        let answer = exchange(socket, &req, Some(Duration::from_secs(2)));
        if let Ok(list) = answer.map(|r| serde_json::from_slice(&r.body).unwrap_or_default()) {
            self.board.update_usage(&list, now);
        }
    }
}

/// Watches until the init closes the stream; returns the exit status.
pub fn run(socket: &Path, names: &[String]) -> Result<i32, CtlError> {
    let tty = std::io::stdout().is_terminal();
    let (mut conn, head) = open(socket, &events_request(None, names), None)?;
    let mut body = BodyReader::new(head.framing);
    let first = conn.buffered_piece(&mut body)?;
    let mut events = Events {
        conn,
        body,
        parser: SseParser::new(),
    };
    let mut view = View {
        board: Board::new(names),
        tty,
        style: Style::detect(),
        drawn: false,
        note: String::new(),
    };
    view.take(&events.parser.feed(&first))?;
    if tty {
        view.draw()?;
    }
    let mut usage_due = 0;
    let wait = tty.then_some(REDRAW);
    while let Some(batch) = events.next(wait)? {
        view.take(&batch)?;
        if tty {
            view.refresh_usage(socket, &mut usage_due);
            view.draw()?;
        }
    }
    if tty {
        view.note = "iris-init closed the events stream".into();
        view.draw()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, kind: &str, data: Value) -> SseEvent {
        SseEvent {
            id: Some(id.into()),
            event: kind.into(),
            data: data.to_string(),
        }
    }

    fn snapshot() -> SseEvent {
        event(
            "1",
            "snapshot",
            json!({"services": [
                {"name": "db", "status": "running", "pid": 7, "restarts": 0,
                 "started_at": "1970-01-01T00:00:00Z", "exit_code": null,
                 "usage": {"memory_bytes": 1_572_864, "cpu_usec": 1_000_000}},
                {"name": "web", "status": "stopped", "pid": null, "restarts": 0}
            ]}),
        )
    }

    #[test]
    fn a_snapshot_then_changes_make_the_table() {
        let mut board = Board::new(&[]);
        let lines = board.apply(&snapshot(), 100);
        assert_eq!(lines, ["db running pid 7", "web stopped"]);
        let change = json!({"name": "web", "status": "running", "pid": 42, "exit_code": null,
                            "restarts": 0, "error": null, "reason": "started"});
        assert_eq!(
            board.apply(&event("2", "service", change), 100),
            ["web running pid 42 (started)"]
        );
        let table = board.render(165, Style { color: false }, None);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "2 services: 2 running  (event #2)",
                "NAME  STATUS   PID  UPTIME  RESTARTS  EXIT  MEMORY  CPU  ERROR",
                "db    running  7    2m45s   0         -     1.5M    -",
                "web   running  42   1m05s   0         -     -       -",
            ]
        );
    }

    #[test]
    fn failures_deletions_and_filters() {
        let mut board = Board::new(&["web".to_string()]);
        assert_eq!(board.apply(&snapshot(), 0), ["web stopped"]);
        let failed = json!({"name": "web", "status": "failed", "pid": null, "exit_code": 3,
                            "restarts": 2, "error": "exited\nwith 3", "reason": "failed"});
        board.apply(&event("5", "service", failed), 10);
        let other = json!({"name": "db", "status": "stopped", "reason": "stopped"});
        assert!(board.apply(&event("6", "service", other), 10).is_empty());
        let table = board.render(20, Style { color: false }, None);
        assert!(
            table.contains("web   failed  -    -       2         3     exited with 3"),
            "{table}"
        );
        assert!(!table.contains("db"), "{table}");
        // Cut to the terminal's width.
        let narrow = board.render(20, Style { color: false }, Some(50));
        assert!(narrow.lines().all(|l| l.chars().count() <= 50), "{narrow}");
        assert!(narrow.contains("  exited…"), "{narrow}");
        let deleted = json!({"name": "web", "status": "stopped", "reason": "deleted"});
        board.apply(&event("7", "service", deleted), 30);
        assert!(!board
            .render(30, Style { color: false }, None)
            .contains("web "));
    }

    #[test]
    fn status_is_coloured_on_a_terminal_and_the_frame_redraws_in_place() {
        let mut board = Board::new(&[]);
        board.apply(&snapshot(), 0);
        let table = board.render(10, Style { color: true }, None);
        assert!(table.contains("\x1b[32mrunning\x1b[0m"), "{table:?}");
        // The header is not coloured, and a stopped service stays plain.
        assert!(table.contains("  STATUS  "), "{table:?}");
        assert!(table.contains("  stopped  "), "{table:?}");
        let first = frame("a\nb\n", true);
        assert_eq!(first, "\x1b[H\x1b[2Ja\x1b[K\nb\x1b[K\n\x1b[J");
        assert!(frame("a\n", false).starts_with("\x1b[Ha"));
    }

    #[test]
    fn cpu_is_the_share_of_a_core_between_two_fetches() {
        let mut board = Board::new(&[]);
        board.apply(&snapshot(), 0);
        let list =
            |cpu: u64| json!([{"name": "db", "usage": {"memory_bytes": 2048, "cpu_usec": cpu}}]);
        board.update_usage(&list(1_000_000), 10_000);
        board.update_usage(&list(1_500_000), 12_000);
        let table = board.render(10, Style { color: false }, None);
        assert!(table.contains("2.0K    25.0%"), "{table}");
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0G");
    }
}

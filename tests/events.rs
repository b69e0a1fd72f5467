//! `GET /v1/events` against the real init, read the way a browser's
//! `EventSource` reads it (the WHATWG parsing rules: `id`/`event`/`data`
//! fields, comment lines, a blank line dispatches, `lastEventId` carries
//! over), with a parser of its own rather than the crate's.

mod common;

use common::*;
use iris_init::client::ChunkedDecoder;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long a test waits for the next thing on a stream before it calls the
/// stream stuck (a hang guard, not a speed requirement).
const STUCK: Duration = Duration::from_secs(30);

// ----- an EventSource, as the HTML standard specifies it --------------------

/// One dispatched event: what `onmessage`/`addEventListener` would see.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    /// `event.lastEventId`.
    id: String,
    /// `event.type`.
    kind: String,
    /// `event.data`.
    data: String,
}

impl Ev {
    fn id(&self) -> u64 {
        self.id
            .parse()
            .unwrap_or_else(|_| panic!("id {:?}", self.id))
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
    fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_string()
    }
}

/// What the stream gave, in order.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Event(Ev),
    /// A comment line (EventSource ignores it; the tests count them).
    Comment(String),
    /// The server ended the stream or the connection.
    End,
}

/// The standard's stream parser: lines end with CRLF, LF or CR; a leading
/// BOM is dropped; the id buffer survives dispatch; an event with no data
/// is not dispatched.
#[derive(Default)]
struct SpecParser {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    data: String,
    event_type: String,
    last_event_id: String,
}

impl SpecParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue; // the LF of a CRLF
                }
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    let mut text = String::from_utf8_lossy(&line).into_owned();
                    if !self.started {
                        self.started = true;
                        if let Some(rest) = text.strip_prefix('\u{feff}') {
                            text = rest.to_string();
                        }
                    }
                    self.process_line(&text, &mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    fn process_line(&mut self, line: &str, out: &mut Vec<Item>) {
        if line.is_empty() {
            // Dispatch.
            if self.data.is_empty() {
                self.event_type.clear();
                return;
            }
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            let kind = std::mem::take(&mut self.event_type);
            out.push(Item::Event(Ev {
                id: self.last_event_id.clone(),
                kind: if kind.is_empty() {
                    "message".into()
                } else {
                    kind
                },
                data,
            }));
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(comment.to_string()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_string(),
            _ => {} // retry, unknown fields: nothing the tests need
        }
    }
}

#[test]
fn the_test_parser_follows_the_standard() {
    let mut p = SpecParser::default();
    let wire = "\u{feff}: hi\r\nid: 7\r\nevent: a\rdata: x\ndata:y\n\nevent: b\n\ndata: z\n\n";
    let mut items = Vec::new();
    for piece in wire.as_bytes().chunks(3) {
        items.extend(p.feed(piece));
    }
    let ev = |id: &str, kind: &str, data: &str| {
        Item::Event(Ev {
            id: id.into(),
            kind: kind.into(),
            data: data.into(),
        })
    };
    assert_eq!(
        items,
        [
            Item::Comment(" hi".into()),
            ev("7", "a", "x\ny"),
            // `event: b` with no data dispatches nothing; the id carries over.
            ev("7", "message", "z"),
        ]
    );
}

/// A connection to `GET /v1/events`: the response head, then every item
/// as a reader thread parses it.
struct EventSource {
    head: String,
    items: Receiver<Item>,
    stream: UnixStream,
    /// `lastEventId` as of the last event taken.
    last_event_id: String,
}

impl EventSource {
    fn open(init: &Init, query: &str, last_event_id: Option<&str>) -> EventSource {
        let mut stream = UnixStream::connect(&init.socket).unwrap();
        let mut req = format!(
            "GET /v1/events{query} HTTP/1.1\r\nHost: iris\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n"
        );
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        let (head, rest) = read_head(&mut stream);
        let (tx, items) = channel();
        let mut reader = stream.try_clone().unwrap();
        let chunked = header(&head, "transfer-encoding").as_deref() == Some("chunked");
        std::thread::spawn(move || {
            let mut parser = SpecParser::default();
            let mut chunks = ChunkedDecoder::new();
            let mut feed = |chunks: &mut ChunkedDecoder, bytes: &[u8]| -> bool {
                let mut body = Vec::new();
                if chunked {
                    if chunks.feed(bytes, &mut body).is_err() {
                        return false;
                    }
                } else {
                    body.extend_from_slice(bytes);
                }
                parser
                    .feed(&body)
                    .into_iter()
                    .all(|item| tx.send(item).is_ok())
            };
            let mut ok = feed(&mut chunks, &rest);
            let mut buf = vec![0u8; 64 * 1024];
            while ok && !chunks.is_done() {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => ok = feed(&mut chunks, &buf[..n]),
                }
            }
            let _ = tx.send(Item::End);
        });
        EventSource {
            head,
            items,
            stream,
            last_event_id: last_event_id.unwrap_or("").to_string(),
        }
    }

    fn next_item(&mut self) -> Item {
        match self.items.recv_timeout(STUCK) {
            Ok(item) => {
                if let Item::Event(e) = &item {
                    self.last_event_id.clone_from(&e.id);
                }
                item
            }
            Err(RecvTimeoutError::Disconnected) => Item::End,
            Err(RecvTimeoutError::Timeout) => panic!("nothing on the events stream for {STUCK:?}"),
        }
    }

    /// The next event, comments skipped.
    fn next(&mut self) -> Ev {
        loop {
            match self.next_item() {
                Item::Event(e) => return e,
                Item::Comment(_) => continue,
                Item::End => panic!("the events stream ended"),
            }
        }
    }

    /// Events up to and including the first that `f` accepts.
    fn until(&mut self, f: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        let mut out = Vec::new();
        loop {
            let e = self.next();
            let done = f(&e);
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// The `service` events of `name` up to and including `reason`.
    fn until_reason(&mut self, name: &str, reason: &str) -> Vec<Ev> {
        self.until(|e| e.kind == "service" && e.json()["name"] == name && e.reason() == reason)
    }
}

impl Drop for EventSource {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn read_head(stream: &mut UnixStream) -> (String, Vec<u8>) {
    stream.set_read_timeout(Some(STUCK)).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            stream.set_read_timeout(None).unwrap();
            return (head, buf[end + 4..].to_vec());
        }
        let n = stream.read(&mut byte).expect("the response head");
        assert!(n > 0, "closed before the head: {buf:?}");
        buf.extend_from_slice(&byte[..n]);
    }
}

/// A header's value (names are case-insensitive).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// (name, reason, status) of service events: the order they tell.
fn story(events: &[Ev]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e.kind == "service")
        .map(|e| {
            let v = e.json();
            (
                v["name"].as_str().unwrap_or("").to_string(),
                e.reason(),
                v["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn step(name: &str, reason: &str, status: &str) -> (String, String, String) {
    (name.into(), reason.into(), status.into())
}

/// Ids grow by one from `after`.
fn assert_consecutive(after: u64, events: &[Ev]) {
    let ids: Vec<u64> = events.iter().map(Ev::id).collect();
    let want: Vec<u64> = (after + 1..=after + events.len() as u64).collect();
    assert_eq!(ids, want, "{events:#?}");
}

fn ok(init: &Init, method: &str, path: &str) -> Value {
    let (s, v) = init.req(method, path, None);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn kill9(pid: i64) {
    // SAFETY: kill(2) with a pid the test read from the init.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

// ----- the tests --------------------------------------------------------------

#[test]
fn a_stream_of_server_sent_events_that_starts_with_a_snapshot() {
    let t = TempDir::new("ev-head");
    std::fs::write(
        t.path().join("init.d/web.toml"),
        "cmd = \"sleep\"\nargs = [\"1000\"]\n",
    )
    .unwrap();
    let init = Init::start(t.path());
    let web = init.wait_status("web", "running");

    let mut es = EventSource::open(&init, "", None);
    assert!(es.head.starts_with("HTTP/1.1 200 "), "{}", es.head);
    let ctype = header(&es.head, "content-type").unwrap_or_default();
    assert!(ctype.starts_with("text/event-stream"), "{}", es.head);
    assert_eq!(
        header(&es.head, "cache-control").as_deref(),
        Some("no-cache")
    );
    assert_eq!(header(&es.head, "content-length"), None, "{}", es.head);
    assert_eq!(
        header(&es.head, "transfer-encoding").as_deref(),
        Some("chunked")
    );

    let snap = es.next();
    assert_eq!(snap.kind, "snapshot");
    let services = snap.json()["services"].clone();
    assert_eq!(services.as_array().map(Vec::len), Some(1), "{services}");
    // Whole service objects, as GET /v1/services gives them.
    assert_eq!(services[0]["name"], "web");
    assert_eq!(services[0]["cmd"], "sleep");
    assert_eq!(services[0]["status"], "running");
    assert_eq!(services[0]["pid"], web["pid"]);

    // From the start of the run: the init came up, loaded the drop-in,
    // started it and reported its boot restore, in that order.
    let mut all = EventSource::open(&init, "?since=0", None);
    assert_eq!(all.next().kind, "snapshot");
    let boot = all.until(|e| e.kind == "restore");
    assert_consecutive(0, &boot);
    assert_eq!(boot[0].kind, "system");
    assert_eq!(boot[0].json()["state"], "ready");
    assert_eq!(
        story(&boot),
        [
            step("web", "defined", "stopped"),
            step("web", "started", "running")
        ]
    );
    let report = boot.last().unwrap().json();
    assert_eq!(report["started_services"], json!(["web"]), "{report}");
    assert_eq!(report, ok(&init, "GET", "/v1/restore"));
    // The snapshot of a fresh connection is numbered with the newest event.
    assert_eq!(snap.id(), boot.last().unwrap().id());
}

#[test]
fn a_service_life_is_told_in_order_with_ids_that_grow_by_one() {
    let t = TempDir::new("ev-life");
    let init = Init::start(t.path());
    let mut es = EventSource::open(&init, "", None);
    let snap = es.next();
    assert_eq!(snap.json(), json!({"services": []}));

    init.put("web", r#"{"cmd":"sleep","args":["1000"]}"#);
    ok(&init, "POST", "/v1/services/web/start");
    let mut seen = es.until_reason("web", "started");
    let pid = seen.last().unwrap().json()["pid"].as_i64().unwrap();
    assert_eq!(Some(pid), init.service("web")["pid"].as_i64());

    // A crash under on-failure: it exited, restarts, runs again.
    kill9(pid);
    seen.extend(es.until_reason("web", "started"));
    let exited = &seen[2].json();
    assert_eq!(exited["exit_code"], 137, "{exited}");
    assert_eq!(exited["pid"], Value::Null);
    let restarting = &seen[3].json();
    assert_eq!(restarting["restarts"], 1, "{restarting}");
    let again = seen.last().unwrap().json();
    assert_ne!(again["pid"].as_i64(), Some(pid));
    assert_eq!(again["status"], "running");

    // Stopped on request.
    ok(&init, "POST", "/v1/services/web/stop");
    seen.extend(es.until_reason("web", "stopped"));

    // Exits 3 under `never`: failed, with the reason in `error`.
    init.put(
        "crash",
        r#"{"cmd":"sh","args":["-c","exit 3"],"restart":"never"}"#,
    );
    init.req("POST", "/v1/services/crash/start?wait=false", None);
    seen.extend(es.until_reason("crash", "failed"));
    let failed = seen.last().unwrap().json();
    assert_eq!(failed["exit_code"], 3, "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("3"), "{failed}");

    // Cannot start at all.
    init.put("ghost", r#"{"cmd":"/nonexistent/ghost"}"#);
    init.req("POST", "/v1/services/ghost/start", None);
    seen.extend(es.until_reason("ghost", "failed"));
    let failed = seen.last().unwrap().json();
    assert!(
        failed["error"].as_str().unwrap().contains("not found"),
        "{failed}"
    );

    // With a health check: started while unknown, ready once it accepts.
    let port = free_port();
    init.put(
        "api",
        &format!("{},\"health_port\":{port}}}", listener_after(port, 200)),
    );
    init.req("POST", "/v1/services/api/start?wait=false", None);
    seen.extend(es.until_reason("api", "ready"));

    ok(&init, "DELETE", "/v1/services/web");
    seen.extend(es.until_reason("web", "deleted"));

    assert_consecutive(snap.id(), &seen);
    assert_eq!(
        story(&seen),
        [
            step("web", "defined", "stopped"),
            step("web", "started", "running"),
            step("web", "exited", "unknown"),
            step("web", "restarting", "unknown"),
            step("web", "started", "running"),
            step("web", "exited", "unknown"),
            step("web", "stopped", "stopped"),
            step("crash", "defined", "stopped"),
            step("crash", "started", "running"),
            step("crash", "exited", "unknown"),
            step("crash", "failed", "failed"),
            step("ghost", "defined", "stopped"),
            step("ghost", "failed", "failed"),
            step("api", "defined", "stopped"),
            step("api", "started", "unknown"),
            step("api", "ready", "running"),
            step("web", "deleted", "stopped"),
        ]
    );
    // Every service event has exactly the contract's fields.
    for e in &seen {
        let v = e.json();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "error",
                "exit_code",
                "name",
                "pid",
                "reason",
                "restarts",
                "status"
            ],
            "{v}"
        );
    }
}

#[test]
fn a_liveness_restart_is_told_with_its_reason() {
    let t = TempDir::new("ev-live");
    let init = Init::start(t.path());
    let mut es = EventSource::open(&init, "?services=w", None);
    let snap = es.next();
    init.put(
        "w",
        r#"{"cmd":"sleep","args":["1000"],
            "liveness":{"exec":["false"],"interval_secs":0.2,"failures":2}}"#,
    );
    ok(&init, "POST", "/v1/services/w/start");
    let first = es.until_reason("w", "started");
    let pid = first.last().unwrap().json()["pid"].clone();
    let mut seen = first;
    seen.extend(es.until_reason("w", "liveness"));
    let liveness = seen.last().unwrap().json();
    assert_eq!(liveness["pid"], pid, "announced while it is being stopped");
    assert_eq!(liveness["status"], "unknown");
    assert!(
        liveness["error"].as_str().unwrap().contains("liveness"),
        "{liveness}"
    );
    seen.extend(es.until_reason("w", "started"));
    assert_consecutive(snap.id(), &seen);
    assert_eq!(
        story(&seen),
        [
            step("w", "defined", "stopped"),
            step("w", "started", "running"),
            step("w", "liveness", "unknown"),
            step("w", "exited", "unknown"),
            step("w", "restarting", "unknown"),
            step("w", "started", "running"),
        ]
    );
}

#[test]
fn reconnecting_with_last_event_id_gets_exactly_what_was_missed() {
    let t = TempDir::new("ev-resume");
    let init = Init::start(t.path());
    // A witness that stays connected the whole time.
    let mut witness = EventSource::open(&init, "", None);
    witness.next();
    let mut es = EventSource::open(&init, "", None);
    es.next();

    init.put("a", r#"{"cmd":"sleep","args":["1000"]}"#);
    ok(&init, "POST", "/v1/services/a/start");
    es.until_reason("a", "started");
    let left_at = es.last_event_id.clone();
    drop(es);

    // Missed while away.
    ok(&init, "POST", "/v1/services/a/restart");
    ok(&init, "POST", "/v1/services/a/stop");
    init.put("b", r#"{"cmd":"sleep","args":["1000"]}"#);
    let everything = witness.until_reason("b", "defined");
    let missed: Vec<Ev> = everything
        .into_iter()
        .filter(|e| e.id() > left_at.parse().unwrap())
        .collect();
    assert_eq!(
        story(&missed),
        [
            step("a", "exited", "unknown"),
            step("a", "restarting", "unknown"),
            step("a", "started", "running"),
            step("a", "exited", "unknown"),
            step("a", "stopped", "stopped"),
            step("b", "defined", "stopped"),
        ]
    );

    // What a browser does: the same URL, with the id it saw last (or the
    // id in the query, for clients that cannot set headers).
    let mut missed = missed;
    for (i, (query, header)) in [
        (String::new(), Some(left_at.as_str())),
        (format!("?since={left_at}"), None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut back = EventSource::open(&init, &query, header);
        let snap = back.next();
        assert_eq!(snap.kind, "snapshot");
        assert_eq!(
            snap.id, left_at,
            "the snapshot stands where the client left off"
        );
        // The snapshot is the state now; the replay tells how it came about.
        let names = |list: &Value| -> Vec<String> {
            let list = list.as_array().unwrap().iter();
            list.map(|s| s["name"].as_str().unwrap().to_string())
                .collect()
        };
        let list = ok(&init, "GET", "/v1/services");
        assert_eq!(names(&snap.json()["services"]), names(&list));
        let replay: Vec<Ev> = (0..missed.len()).map(|_| back.next()).collect();
        assert_eq!(
            replay, missed,
            "the replay is the missed events, byte for byte"
        );
        // Then live: the next change reaches it and the witness alike.
        init.put(&format!("c{i}"), r#"{"cmd":"true"}"#);
        let live = back.next();
        assert_eq!(live, witness.next());
        assert_eq!(live.reason(), "defined");
        assert_eq!(back.last_event_id, live.id);
        missed.push(live);
    }
}

#[test]
fn an_id_older_than_the_buffer_gets_a_gap_before_the_snapshot() {
    let t = TempDir::new("ev-gap");
    let init = Init::start_with(t.path(), &[("IRIS_EVENTS_RING", "8")]);
    for i in 0..20 {
        init.put("x", &format!(r#"{{"cmd":"sleep","args":["{i}"]}}"#));
    }
    let mut now = EventSource::open(&init, "", None);
    let last = now.next().id();
    assert!(last >= 20, "{last}");

    let mut es = EventSource::open(&init, "?since=1", None);
    let gap = es.next();
    assert_eq!(gap.kind, "gap");
    assert_eq!(gap.json()["since"], 1);
    assert_eq!(gap.json()["oldest"], last - 7, "the ring keeps 8");
    let snap = es.next();
    assert_eq!(snap.kind, "snapshot");
    assert_eq!(snap.json()["services"][0]["args"], json!(["19"]));
    init.put("y", r#"{"cmd":"true"}"#);
    let live = es.next();
    assert_eq!((live.id(), live.reason()), (last + 1, "defined".into()));

    // Right before the oldest id kept (the ring now holds the 8 up to
    // last + 1): nothing is lost, all 8 replay.
    let mut edge = EventSource::open(&init, "", Some(&(last - 7).to_string()));
    assert_eq!(edge.next().kind, "snapshot");
    let replay: Vec<u64> = (0..8).map(|_| edge.next().id()).collect();
    assert_eq!(replay, ((last - 6)..=(last + 1)).collect::<Vec<_>>());

    // An id this init never gave (an earlier boot's): a gap too.
    let mut future = EventSource::open(&init, "?since=999999", None);
    assert_eq!(future.next().kind, "gap");
    assert_eq!(future.next().kind, "snapshot");

    // A bad id is a 400 that names the parameter.
    let (s, v) = init.req("GET", "/v1/events?since=soon", None);
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("since"), "{v}");
}

#[test]
fn the_services_filter_keeps_only_those_services() {
    let t = TempDir::new("ev-filter");
    let init = Init::start(t.path());
    init.put("a", r#"{"cmd":"sleep","args":["1000"]}"#);
    init.put("b", r#"{"cmd":"sleep","args":["1000"]}"#);
    let mut only_a = EventSource::open(&init, "?services=a,zzz", None);
    let snap = only_a.next().json();
    assert_eq!(snap["services"].as_array().unwrap().len(), 1, "{snap}");
    assert_eq!(snap["services"][0]["name"], "a");
    ok(&init, "POST", "/v1/services/b/start");
    ok(&init, "POST", "/v1/services/a/start");
    let started = only_a.next();
    assert_eq!(
        (started.json()["name"].as_str(), started.reason().as_str()),
        (Some("a"), "started")
    );
    // Events that are about no one service pass: a restore report.
    ok(&init, "POST", "/v1/restore");
    let restore = only_a.next();
    assert_eq!(restore.kind, "restore");
    assert_eq!(restore.json(), ok(&init, "GET", "/v1/restore"));

    let (s, v) = init.req("GET", "/v1/events?services=a,../x", None);
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("services"), "{v}");
}

#[test]
fn a_quiet_stream_gets_heartbeat_comments_and_an_idle_init_then_sleeps() {
    let t = TempDir::new("ev-beat");
    let init = Init::start_with(t.path(), &[("IRIS_EVENTS_HEARTBEAT_MS", "200")]);
    let mut es = EventSource::open(&init, "", None);
    assert_eq!(es.next().kind, "snapshot");
    for _ in 0..3 {
        assert!(matches!(es.next_item(), Item::Comment(_)));
    }
    drop(es);
    // Once nobody listens the heartbeat timer goes away: no wake-ups.
    wait_until("no events client left", || {
        init.system()["event_clients"] == 0
    });
    assert_idle(init.pid(), Duration::from_millis(300));
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_slows_no_one() {
    let t = TempDir::new("ev-slow");
    let init = Init::start(t.path());
    // Connects and asks, then never reads.
    let mut stuck = UnixStream::connect(&init.socket).unwrap();
    stuck
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: iris\r\n\r\n")
        .unwrap();
    let mut reader = EventSource::open(&init, "", None);
    let first = reader.next().id();
    let clients = || ok(&init, "GET", "/v1/system")["event_clients"].clone();
    assert_eq!(clients(), 2);

    // Big events: a start that fails quotes its (long) command.
    let long = format!("no-such-program-{}", "x".repeat(200_000));
    init.put("big", &json!({"cmd": long}).to_string());
    let mut failures = 0;
    while clients() == 2 {
        let (s, _) = init.req("POST", "/v1/services/big/start", None);
        assert!((400..500).contains(&s));
        failures += 1;
        assert!(failures < 10_000, "the stuck client was never cut off");
    }
    assert_eq!(clients(), 1);
    // The reader got every event, in order, and still gets new ones.
    let got = reader.until(|e| {
        e.reason() == "failed" && {
            let n = e.id() - first;
            n == 1 + failures // `defined`, then one `failed` per start
        }
    });
    assert_consecutive(first, &got);
    init.put("after", r#"{"cmd":"true"}"#);
    assert_eq!(reader.next().json()["name"], "after");
    // The stuck client's stream ends: what was sent, then end of file.
    stuck.set_read_timeout(Some(STUCK)).unwrap();
    let mut all = Vec::new();
    stuck
        .read_to_end(&mut all)
        .expect("end of file, not a hang");
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &all[..all.len().min(64)]
    );
}

#[test]
fn a_shutdown_is_announced_and_ends_the_stream() {
    let t = TempDir::new("ev-down");
    let mut init = Init::start(t.path());
    init.put("web", r#"{"cmd":"sleep","args":["1000"]}"#);
    ok(&init, "POST", "/v1/services/web/start");
    let mut es = EventSource::open(&init, "", None);
    let snap = es.next();
    // SAFETY: kill(2) on the init this test started.
    unsafe { libc::kill(init.pid(), libc::SIGTERM) };
    let mut seen = Vec::new();
    loop {
        match es.next_item() {
            Item::Event(e) => seen.push(e),
            Item::Comment(_) => {}
            Item::End => break,
        }
    }
    assert!(init.terminate().success());
    assert_consecutive(snap.id(), &seen);
    assert_eq!(seen[0].kind, "system");
    assert_eq!(seen[0].json()["state"], "shutting_down");
    assert_eq!(
        story(&seen),
        [
            step("web", "exited", "unknown"),
            step("web", "stopped", "stopped")
        ]
    );
    let last = seen.last().unwrap();
    assert_eq!(last.kind, "system");
    assert_eq!(last.json()["state"], "halting");
}

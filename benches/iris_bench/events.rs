//! The events stream's figures: how soon a client hears that a service
//! died, and what the init pays to tell 20 clients about a crash loop.

use super::{fig, kill, median, ms, names, now_ns, pct, Bench, Client, Cpu, R};
use iris_init::client::{BodyReader, Conn, Request, SseParser};
use serde_json::{json, Value};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Services SIGKILLed once each for the latency figure.
const KILLED: usize = 100;
/// Event clients connected during the crash loop, and services in it.
const CLIENTS: usize = 20;
const LOOPING: usize = 10;
const LOOP_WINDOW: Duration = Duration::from_secs(5);

/// One `service` event as a client received it: name, reason, pid, and
/// when it was parsed (CLOCK_REALTIME ns).
type Heard = (String, String, Option<i64>, i64);

/// A client of `GET /v1/events` on its own thread: what it hears goes to
/// the channel, how many events to the counter.
struct Listener {
    stream: UnixStream,
    thread: thread::JoinHandle<()>,
}

impl Listener {
    /// Hangs up and waits for the thread.
    fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = self.thread.join();
    }
}

fn listen(
    socket: &Path,
    count: Arc<AtomicU64>,
    tx: Option<std::sync::mpsc::Sender<Heard>>,
) -> R<Listener> {
    let mut conn = Conn::connect(socket, None).map_err(|e| e.to_string())?;
    let stream = conn.stream().try_clone().map_err(|e| e.to_string())?;
    let req = Request::new("GET", "/v1/events");
    let head = conn.open(&req).map_err(|e| e.to_string())?;
    if head.status != 200 {
        return Err(format!("GET /v1/events: {}", head.status));
    }
    let thread = thread::spawn(move || {
        let mut body = BodyReader::new(head.framing);
        let mut parser = SseParser::new();
        while let Ok(Some(piece)) = conn.next_piece(&mut body) {
            let at = now_ns();
            for e in parser.feed(&piece) {
                count.fetch_add(1, Ordering::Relaxed);
                let Some(tx) = &tx else { continue };
                if e.event != "service" {
                    continue;
                }
                let v: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
                let _ = tx.send((text("name"), text("reason"), v["pid"].as_i64(), at));
            }
        }
    });
    Ok(Listener { stream, thread })
}

/// Waits for `name`'s event with `reason`; returns when it was heard.
fn heard(rx: &Receiver<Heard>, name: &str, reason: &str) -> R<(Option<i64>, i64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, r, pid, at) = rx
            .recv_timeout(left)
            .map_err(|_| format!("no `{reason}` event for {name} within 10 s"))?;
        if n == name && r == reason {
            return Ok((pid, at));
        }
    }
}

/// SIGKILL to the `exited` event at a connected client, once for each of
/// `KILLED` services (each killed once, so no restart backoff is involved).
pub(super) fn exit_to_event(b: &mut Bench) -> R<()> {
    let svc = names("evkill", KILLED);
    let defs: Vec<(String, String)> = svc.iter().map(|n| (n.clone(), b.idle_def(0))).collect();
    b.put_all(&defs)?;
    b.post_all(&svc, "start")?;
    let (tx, rx) = channel();
    let count = Arc::new(AtomicU64::new(0));
    let reader = listen(&b.init.socket, count, Some(tx))?;
    let mut c = b.init.client()?;
    let mut lat = Vec::new();
    for n in &svc {
        let v = c.ok("GET", &format!("/v1/services/{n}"), None)?;
        let pid = v["pid"].as_i64().ok_or(format!("{n} has no pid: {v}"))?;
        let t0 = now_ns();
        kill(pid as i32, libc::SIGKILL);
        let (_, at) = heard(&rx, n, "exited")?;
        lat.push((at - t0) as f64 / 1e6);
        heard(&rx, n, "started")?;
    }
    fig(
        "exit_to_event",
        ms(median(&lat)),
        "ms",
        &format!(
            "median of {KILLED} services each SIGKILLed once: kill() to the `exited` event parsed \
             by a connected GET /v1/events client; p99 {} ms, max {} ms",
            ms(pct(&lat, 0.99)),
            ms(super::max(&lat))
        ),
    );
    for n in &svc {
        c.ok("DELETE", &format!("/v1/services/{n}"), None)?;
    }
    reader.close();
    Ok(())
}

/// The init's CPU over `LOOP_WINDOW` while `LOOPING` services crash and
/// restart (`restart: always`, a command that exits at once), first with
/// no event client, then with `CLIENTS` connected.
pub(super) fn crash_loop_cpu(b: &mut Bench) -> R<()> {
    let without = crash_loop(b, "evloop-a", 0)?;
    let with = crash_loop(b, "evloop-b", CLIENTS)?;
    fig(
        "crash_loop_cpu_20_clients",
        ms(with.cpu_ms),
        "ms",
        &format!(
            "the init's CPU time over {} s while {LOOPING} services crash-loop (restart: always, \
             exit at once; backoff as configured) with {CLIENTS} event clients connected: \
             {} restarts, {} events read by the slowest client by the end ({} in all); the same loop with no \
             client: {} ms CPU, {} restarts; {}",
            LOOP_WINDOW.as_secs(),
            with.restarts,
            with.per_client,
            with.per_client * CLIENTS as u64,
            ms(without.cpu_ms),
            without.restarts,
            with.detail
        ),
    );
    Ok(())
}

struct Loop {
    cpu_ms: f64,
    restarts: u64,
    per_client: u64,
    detail: String,
}

fn crash_loop(b: &mut Bench, kind: &str, clients: usize) -> R<Loop> {
    let svc = names(kind, LOOPING);
    let def = json!({"cmd": "true", "restart": "always"}).to_string();
    let defs: Vec<(String, String)> = svc.iter().map(|n| (n.clone(), def.clone())).collect();
    b.put_all(&defs)?;
    let counts: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for count in &counts {
        readers.push(listen(&b.init.socket, count.clone(), None)?);
    }
    let mut c = b.init.client()?;
    let total = |c: &mut Client| -> R<u64> {
        let list = c.ok("GET", "/v1/services", None)?;
        Ok(list
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|s| s["name"].as_str().is_some_and(|n| n.contains(kind)))
                    .map(|s| s["restarts"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0))
    };
    let sent0: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let cpu0 = Cpu::of(b.init.pid)?;
    for n in &svc {
        c.ok("POST", &format!("/v1/services/{n}/start?wait=false"), None)?;
    }
    thread::sleep(LOOP_WINDOW);
    let cpu1 = Cpu::of(b.init.pid)?;
    // What each client had read by the end of the window.
    let per_client = counts
        .iter()
        .zip(&sent0)
        .map(|(c, s)| c.load(Ordering::Relaxed) - s)
        .min()
        .unwrap_or(0);
    let restarts = total(&mut c)?;
    for n in &svc {
        c.ok("DELETE", &format!("/v1/services/{n}"), None)?;
    }
    for r in readers {
        r.close();
    }
    Ok(Loop {
        cpu_ms: cpu1.ms_since(&cpu0),
        restarts,
        per_client,
        detail: cpu1.describe_since(&cpu0),
    })
}

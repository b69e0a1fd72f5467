//! Watching health ports: while any service waits for its port, one scan
//! of the listening sockets every few milliseconds serves them all, and a
//! port seen listening is confirmed with one non-blocking connect. A
//! confirmed port becomes an `Input::Ready` for the supervisor. The port
//! of an `http` check is watched the same way, without the connect: once it
//! listens, the check runner sends its first `GET`.

use crate::core::supervisor::Input;
use crate::health::scan::{self, ListenScanner};
use crate::io::{Io, Owner, TimerKey};
use mio::{Interest, Token};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How often listening sockets are listed while some service waits for its
/// health port. One netlink dump covers every waiting service.
pub(crate) const SCAN_INTERVAL: Duration = Duration::from_millis(3);
const MAX_SCAN_INTERVAL: Duration = Duration::from_millis(20);

struct PortWatch {
    gen: u64,
    port: u16,
    /// Only tell that the port listens (an `http` check takes over from
    /// there): no confirming connect.
    listen_only: bool,
    probe: Option<Token>,
    /// Confirming connects made so far: they alternate between 127.0.0.1
    /// and ::1, so a service listening on one of them only is found.
    tries: u32,
}

struct Probe {
    name: String,
    gen: u64,
    stream: mio::net::TcpStream,
}

pub(crate) struct HealthWatcher {
    ports: HashMap<String, PortWatch>,
    probes: HashMap<Token, Probe>,
    scanner: Option<ListenScanner>,
    scheduled: bool,
    last_scan: Instant,
    /// Listen-only watches whose port was seen listening, until taken.
    heard: Vec<(String, u64)>,
}

impl HealthWatcher {
    pub(crate) fn new() -> HealthWatcher {
        let scanner = match ListenScanner::new() {
            Ok(s) => Some(s),
            Err(e) => {
                crate::warn!("netlink sock_diag unavailable ({e}); reading /proc/net/tcp instead");
                None
            }
        };
        HealthWatcher {
            ports: HashMap::new(),
            probes: HashMap::new(),
            scanner,
            scheduled: false,
            last_scan: Instant::now(),
            heard: Vec::new(),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.ports.is_empty()
    }

    /// Forgets a timer that fired or went stale.
    pub(crate) fn timer_gone(&mut self) {
        self.scheduled = false;
    }

    /// Tell `Ready { name, gen }` once `port` accepts on loopback.
    pub(crate) fn watch(&mut self, io: &mut Io, name: String, gen: u64, port: u16, now: Instant) {
        self.add(io, name, gen, port, false, now);
    }

    /// Tell (through `take_listening`) once `port` listens on loopback.
    pub(crate) fn watch_listen(
        &mut self,
        io: &mut Io,
        name: String,
        gen: u64,
        port: u16,
        now: Instant,
    ) {
        self.add(io, name, gen, port, true, now);
    }

    /// Listen-only watches whose port listens now; each is told once.
    pub(crate) fn take_listening(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.heard)
    }

    fn add(
        &mut self,
        io: &mut Io,
        name: String,
        gen: u64,
        port: u16,
        listen_only: bool,
        now: Instant,
    ) {
        let w = PortWatch {
            gen,
            port,
            listen_only,
            probe: None,
            tries: 0,
        };
        if let Some(old) = self.ports.insert(name, w) {
            self.drop_probe(io, old.probe);
        }
        // One scan serves every port watched in this iteration.
        if !self.scheduled {
            self.scheduled = true;
            io.schedule(now, TimerKey::PortScan);
        }
    }

    /// The service settled or is gone: its port no longer matters.
    pub(crate) fn forget(&mut self, io: &mut Io, name: &str) {
        if let Some(w) = self.ports.remove(name) {
            self.drop_probe(io, w.probe);
        }
    }

    /// The burst hook: a scan now unless one ran within the interval.
    pub(crate) fn scan_if_due(&mut self, io: &mut Io) -> Vec<Input> {
        if self.ports.is_empty() || self.last_scan.elapsed() < SCAN_INTERVAL {
            return Vec::new();
        }
        self.scan(io, Instant::now())
    }

    pub(crate) fn scan(&mut self, io: &mut Io, now: Instant) -> Vec<Input> {
        let mut ready = Vec::new();
        if self.ports.is_empty() {
            return ready;
        }
        let t0 = Instant::now();
        let open = self.listening(t0);
        let heard: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, w)| w.listen_only && open.contains(&w.port))
            .map(|(n, _)| n.clone())
            .collect();
        for name in heard {
            if let Some(w) = self.ports.remove(&name) {
                self.heard.push((name, w.gen));
            }
        }
        let found: Vec<(String, u64, u16, bool)> = self
            .ports
            .iter_mut()
            .filter(|(_, w)| w.probe.is_none() && open.contains(&w.port))
            .map(|(n, w)| {
                w.tries += 1;
                (n.clone(), w.gen, w.port, w.tries % 2 == 0)
            })
            .collect();
        for (name, gen, port, ipv6) in found {
            // Listening is not proof: confirm with one real connect. On
            // loopback it has usually completed by the time connect()
            // returns; only a slow one waits for its event.
            match scan::start_connect_on(port, ipv6) {
                Ok(stream) if matches!(scan::connect_outcome(&stream), Ok(true)) => {
                    self.ports.remove(&name);
                    ready.push(Input::Ready { name, gen });
                }
                Ok(mut stream) => {
                    let Ok(token) = io.register(&mut stream, Interest::WRITABLE, Owner::Probe)
                    else {
                        continue;
                    };
                    if let Some(w) = self.ports.get_mut(&name) {
                        w.probe = Some(token);
                    }
                    self.probes.insert(token, Probe { name, gen, stream });
                }
                Err(e) => crate::debug!("connect to port {port} failed: {e}"),
            }
        }
        if !self.ports.is_empty() && !self.scheduled {
            // A slow scan (/proc/net/tcp on a host with many connections)
            // runs less often, up to a cap that keeps readiness prompt.
            let interval = (t0.elapsed() * 4).clamp(SCAN_INTERVAL, MAX_SCAN_INTERVAL);
            self.scheduled = true;
            io.schedule(now + interval, TimerKey::PortScan);
        }
        ready
    }

    /// Every listening TCP port now.
    fn listening(&mut self, t0: Instant) -> HashSet<u16> {
        let mut open = HashSet::new();
        self.last_scan = t0;
        let scanned = match &mut self.scanner {
            Some(s) => s.scan(&mut open),
            None => scan::scan_procfs(&mut open),
        };
        if let Err(e) = scanned {
            // A kernel without inet_diag answers ENOENT: read /proc instead.
            crate::warn!("listening-socket scan failed ({e}); reading /proc/net/tcp from now on");
            self.scanner = None;
            let _ = scan::scan_procfs(&mut open);
        }
        open
    }

    /// A slow confirming connect finished.
    pub(crate) fn on_probe(&mut self, io: &mut Io, token: Token) -> Option<Input> {
        let mut p = self.probes.remove(&token)?;
        io.deregister(&mut p.stream, token);
        let ok = matches!(scan::connect_outcome(&p.stream), Ok(true));
        let w = self.ports.get_mut(&p.name).filter(|w| w.gen == p.gen)?;
        if !ok {
            w.probe = None; // try again at the next scan
            return None;
        }
        self.ports.remove(&p.name);
        Some(Input::Ready {
            name: p.name,
            gen: p.gen,
        })
    }

    fn drop_probe(&mut self, io: &mut Io, token: Option<Token>) {
        if let Some(t) = token {
            if let Some(mut p) = self.probes.remove(&t) {
                io.deregister(&mut p.stream, t);
            }
        }
    }
}

//! The event loop: one thread, one `mio::Poll`. It owns every fd (the API
//! listener and connections, the signal pipe, health probes), turns kernel
//! events into supervisor events, and carries out the actions the
//! supervisor returns. Nothing here blocks: every wait is a timer or a
//! readiness event.

use crate::api::conn::{Conn, ConnState, MAX_CONNS};
use crate::config::Config;
use crate::core::supervisor::{Action, Outcome, Pid, Supervisor, Timer};
use crate::health::scan::{self, ListenScanner};
use crate::persist::report::RestoreTracker;
use crate::persist::state_file;
use crate::pid1::HaltMode;
use crate::proc::cgroup::Cgroups;
use crate::proc::reaper;
use crate::timers::Timers;
use libc::{SIGCHLD, SIGHUP, SIGINT, SIGPWR, SIGTERM, SIGUSR1, SIGUSR2};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid as NixPid;
use signal_hook_mio::v1_0::Signals;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

const SIGNALS: Token = Token(0);
const LISTENER: Token = Token(1);

/// How often listening sockets are listed while some service waits for its
/// health port. One netlink dump covers every waiting service.
const PORT_SCAN_INTERVAL: Duration = Duration::from_millis(3);
const MAX_SCAN_INTERVAL: Duration = Duration::from_millis(20);
/// How long a stopped tree may take to disappear after SIGKILL before the
/// init gives up waiting (a process stuck in the kernel, say).
const TREE_GIVE_UP: Duration = Duration::from_secs(5);
/// Within a long batch of events, answers go out at least this often.
const ANSWER_EVERY: Duration = Duration::from_millis(10);
/// Orphans a second whose service is looked up (see `reap`).
const ATTRIBUTION_RATE: f64 = 1000.0;
/// A poll that returns this much later than its timeout was a pause.
const PAUSE_SLACK: Duration = Duration::from_millis(1500);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    Service(Timer),
    PortScan,
    TreeCheck,
    ConnSweep,
    Exec(u64),
}

/// Who reads or writes a pipe registered with the poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PipeOwner {
    /// A service's stdout+stderr.
    Log(String),
    /// An exec's stdout (`err: false`) or stderr.
    ExecOut {
        id: u64,
        err: bool,
    },
    ExecIn {
        id: u64,
    },
    /// The error pipe of a service's child not yet seen to exec.
    Spawn {
        pid: Pid,
    },
}

/// An answer deferred until a service settles.
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    pub token: Token,
    pub name: String,
    pub kind: WaitKind,
    pub keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitKind {
    Start,
    Stop,
    Delete,
}

struct PortWatch {
    gen: u64,
    port: u16,
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

struct TreeWatch {
    name: String,
    gen: u64,
    pgid: Pid,
    since: Instant,
}

pub(crate) struct Stats {
    pub started: Instant,
    pub zombies_reaped: u64,
    pub pid1: bool,
    pub state_writes: u64,
    pub last_state_write_us: u64,
    /// Orphans reaped, by the service whose cgroup they died in.
    pub orphans_by_service: HashMap<String, u64>,
    /// OOM kills of each service's cgroup before its current run.
    pub oom_base: HashMap<String, u64>,
}

pub struct Init {
    pub(crate) cfg: Config,
    poll: Poll,
    listener: UnixListener,
    signals: Signals,
    pub(crate) conns: HashMap<Token, Conn>,
    probes: HashMap<Token, Probe>,
    pub(crate) pipes: HashMap<Token, PipeOwner>,
    /// Services' children forked but not yet seen to exec, by pid.
    pub(crate) pending_starts: HashMap<Pid, crate::proc::launcher::PendingStart>,
    /// When a burst of spawns last looked for pending children that exec'd.
    pending_checked: Instant,
    /// Connections with answers to write once the state file is written.
    flush_pending: Vec<Token>,
    /// When the loop last checked the clock (see `notice_pause`).
    last_tick: Instant,
    /// Orphan attributions left, and when the budget was last refilled.
    attribution: (f64, Instant),
    pub(crate) logs: crate::output::logs::Logs,
    pub(crate) execs: crate::output::exec::Execs,
    pub(crate) containers: crate::containers::driver::Containers,
    next_token: usize,
    pub(crate) sup: Supervisor,
    timers: Timers<TimerKey>,
    pub(crate) waiters: Vec<Waiter>,
    ports: HashMap<String, PortWatch>,
    scanner: Option<ListenScanner>,
    scan_scheduled: bool,
    last_scan: Instant,
    trees: Vec<TreeWatch>,
    tree_check_scheduled: bool,
    pub(crate) cgroups: Option<Cgroups>,
    pub(crate) stats: Stats,
    pub(crate) dirty: bool,
    pub(crate) halt: Option<HaltMode>,
    shutdown_done: bool,
    sweep_at: Option<Instant>,
    pub(crate) restore: RestoreTracker,
    /// Why the state file could not be used at start, if it could not.
    pub(crate) state_error: Option<String>,
    /// Set when the init must stop reading its API (shutdown finished).
    finished: bool,
}

/// Creates `path`'s parent directory if it is missing.
fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::fs::create_dir_all(p),
        _ => Ok(()),
    }
}

/// Binds the API socket with mode 0600 from the start (umask), replacing a
/// stale socket file but never one another live init is serving.
fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    ensure_parent(path)?;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is serving {}", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl Init {
    /// Sets up the socket, signals and directories. Errors here are fatal
    /// start-up errors (the caller halts cleanly as PID 1).
    pub fn new(cfg: Config, pid1: bool) -> Result<Init, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let mut signals =
            Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGPWR, SIGHUP, SIGUSR1, SIGUSR2])
                .map_err(|e| format!("cannot set up signal handling: {e}"))?;
        let mut listener = bind_socket(&cfg.socket)
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.socket.display()))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| format!("cannot register signals: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| format!("cannot register listener: {e}"))?;
        for dir in [&cfg.log_dir] {
            if let Err(e) = std::fs::create_dir_all(dir) {
                crate::warn!("unable to create {}: {e}", dir.display());
            }
        }
        if let Err(e) = ensure_parent(&cfg.state_file) {
            crate::warn!("unable to create the state file's directory: {e}");
        }
        if !pid1 {
            // Orphans of services come to us, not to the real PID 1.
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            if rc != 0 {
                crate::warn!(
                    "unable to become a child subreaper: {}",
                    io::Error::last_os_error()
                );
            }
        }
        raise_fd_limit();
        // A plain supervisor keeps its services' cgroups in a subtree named
        // after its socket: stable across its own restarts, distinct from
        // any other instance's.
        let instance = (!pid1).then(|| {
            format!(
                "iris-{:016x}",
                fnv1a(cfg.socket.as_os_str().as_encoded_bytes())
            )
        });
        let cgroups = Cgroups::detect(instance.as_deref());
        match &cgroups {
            Some(c) => crate::info!("service cgroups under {}", c.base().display()),
            None => crate::info!("no writable cgroup2 hierarchy: process groups only"),
        }
        let scanner = match ListenScanner::new() {
            Ok(s) => Some(s),
            Err(e) => {
                crate::warn!("netlink sock_diag unavailable ({e}); reading /proc/net/tcp instead");
                None
            }
        };
        let logs = crate::output::logs::Logs::new(&cfg.log_dir);
        let containers = crate::containers::driver::Containers::new(&cfg);
        Ok(Init {
            cfg,
            poll,
            listener,
            signals,
            conns: HashMap::new(),
            probes: HashMap::new(),
            pipes: HashMap::new(),
            pending_starts: HashMap::new(),
            pending_checked: Instant::now(),
            flush_pending: Vec::new(),
            last_tick: Instant::now(),
            attribution: (ATTRIBUTION_RATE, Instant::now()),
            logs,
            execs: crate::output::exec::Execs::default(),
            containers,
            next_token: 2,
            sup: Supervisor::new(),
            timers: Timers::default(),
            waiters: Vec::new(),
            ports: HashMap::new(),
            scanner,
            scan_scheduled: false,
            last_scan: Instant::now(),
            trees: Vec::new(),
            tree_check_scheduled: false,
            cgroups,
            stats: Stats {
                started: Instant::now(),
                zombies_reaped: 0,
                pid1,
                state_writes: 0,
                last_state_write_us: 0,
                orphans_by_service: HashMap::new(),
                oom_base: HashMap::new(),
            },
            dirty: false,
            halt: None,
            shutdown_done: false,
            sweep_at: None,
            restore: RestoreTracker::default(),
            state_error: None,
            finished: false,
        })
    }

    /// Loads drop-ins and the state file, starts what should run, then
    /// serves until an orderly shutdown has stopped every service.
    pub fn run(mut self) -> HaltMode {
        let now = Instant::now();
        crate::persist::boot::load_and_start(&mut self, now);
        self.run_actions(now);
        self.write_state_if_dirty();
        let mut events = Events::with_capacity(256);
        while !self.finished {
            // The checks tile the whole iteration: work done since the
            // timers ran, the poll itself, and the event handling.
            self.notice_pause(Some(Duration::ZERO));
            self.discard_stale_timers();
            let timeout = if self.logs.backlog.is_empty() {
                self.timers.next_timeout(Instant::now())
            } else {
                Some(Duration::ZERO) // output still waits in a pipe
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.notice_pause(timeout);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    crate::error!("poll failed: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let batch: Vec<(Token, bool, bool, bool)> = events
                .iter()
                .map(|e| {
                    (
                        e.token(),
                        e.is_readable(),
                        e.is_writable(),
                        e.is_read_closed() || e.is_error(),
                    )
                })
                .collect();
            let mut answered_at = Instant::now();
            for (token, readable, writable, closed) in batch {
                self.guarded(|init| init.on_event(token, readable, writable, closed));
                // A long batch (a burst of starts) still answers as it goes:
                // state written first, as at the end of an iteration.
                if answered_at.elapsed() >= ANSWER_EVERY {
                    self.write_state_and_answer();
                    answered_at = Instant::now();
                }
            }
            self.guarded(crate::output::logs::read_backlog);
            self.notice_pause(Some(Duration::ZERO));
            let now = Instant::now();
            for key in self.timers.pop_due(now) {
                self.guarded(|init| init.on_timer(key, now));
            }
            self.guarded(|init| init.run_actions(Instant::now()));
            self.write_state_and_answer();
        }
        self.write_state_if_dirty();
        crate::output::exec::kill_all(&mut self);
        crate::containers::driver::abandon_tasks(&mut self);
        if let Some(cg) = &self.cgroups {
            cg.cleanup();
        }
        self.halt.unwrap_or(HaltMode::PowerOff)
    }

    /// Time that passed far beyond what the loop waited for or worked on
    /// means the VM (or the init) was paused: the monotonic clock jumped.
    /// Deadlines move by the lost time, so no backoff, health deadline or
    /// stop timeout fires because of the pause. Checked after each poll
    /// (`asked` is its timeout; None means it could sleep forever), and
    /// before and after the rest of each iteration (`asked` zero), so a
    /// pause is seen wherever it hits.
    fn notice_pause(&mut self, asked: Option<Duration>) {
        let now = Instant::now();
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let Some(asked) = asked else {
            return; // an endless wait: nothing was pending
        };
        if gap > asked + PAUSE_SLACK {
            let lost = gap - asked;
            crate::warn!(
                "the clock jumped {:.1}s (paused?); moving deadlines by as much",
                lost.as_secs_f64()
            );
            self.timers.shift(lost);
        }
    }

    /// Timers are cancelled lazily; dropping the stale ones at the head
    /// before sleeping means a cancelled timer never wakes the init (an
    /// idle init makes no wake-ups at all).
    fn discard_stale_timers(&mut self) {
        while let Some(key) = self.timers.peek() {
            let stale = match key {
                TimerKey::Service(t) => self.sup.get(&t.name).is_none_or(|s| s.gen != t.gen),
                TimerKey::PortScan => self.ports.is_empty(),
                TimerKey::TreeCheck => self.trees.is_empty(),
                TimerKey::ConnSweep => self.conns.values().all(|c| c.deadline.is_none()),
                TimerKey::Exec(id) => !self.execs.has(*id),
            };
            if !stale {
                return;
            }
            match key {
                TimerKey::PortScan => self.scan_scheduled = false,
                TimerKey::TreeCheck => self.tree_check_scheduled = false,
                TimerKey::ConnSweep => self.sweep_at = None,
                _ => {}
            }
            self.timers.discard_first();
        }
    }

    /// Runs one handler; a panic in it is logged and the loop goes on
    /// (PID 1 must never die).
    fn guarded(&mut self, f: impl FnOnce(&mut Init)) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            crate::error!("recovered from a panic in an event handler: {msg}");
        }
    }

    fn on_event(&mut self, token: Token, readable: bool, writable: bool, closed: bool) {
        match token {
            SIGNALS => self.on_signals(),
            LISTENER => self.accept_all(),
            t if self.conns.contains_key(&t) => self.on_conn_event(t, readable, writable, closed),
            t if self.probes.contains_key(&t) => self.on_probe_event(t),
            t if self.pipes.contains_key(&t) => self.on_pipe_event(t),
            _ => {} // a closed source: tokens are never reused
        }
    }

    fn on_pipe_event(&mut self, token: Token) {
        match self.pipes.get(&token).cloned() {
            Some(PipeOwner::Log(name)) => crate::output::logs::on_readable(self, &name),
            Some(PipeOwner::ExecOut { id, err }) => crate::output::exec::on_output(self, id, err),
            Some(PipeOwner::ExecIn { id }) => crate::output::exec::on_input(self, id),
            Some(PipeOwner::Spawn { pid }) => crate::proc::launcher::on_spawn_pipe(self, pid),
            None => {}
        }
    }

    // ----- signals and reaping -------------------------------------------

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        let mut child = false;
        for sig in pending {
            match sig {
                SIGCHLD => child = true,
                SIGTERM | SIGPWR => self.begin_shutdown(HaltMode::PowerOff, "signal"),
                SIGINT if self.stats.pid1 => self.begin_shutdown(HaltMode::Reboot, "ctrl-alt-del"),
                SIGINT => self.begin_shutdown(HaltMode::PowerOff, "SIGINT"),
                // busybox halt/poweroff signal PID 1 with these.
                SIGUSR1 | SIGUSR2 if self.stats.pid1 => {
                    self.begin_shutdown(HaltMode::PowerOff, "halt")
                }
                SIGHUP => crate::info!("SIGHUP ignored"),
                _ => {}
            }
        }
        if child {
            self.reap();
        }
    }

    pub(crate) fn reap(&mut self) {
        let now = Instant::now();
        let mut exited = Vec::new();
        let mut owners: Vec<(Pid, String)> = Vec::new();
        // Reading /proc/PID/cgroup costs about as much as the rest of a
        // reap (on a hybrid host it lists every v1 hierarchy), so in an
        // orphan storm only ATTRIBUTION_RATE a second are attributed.
        let elapsed = now
            .saturating_duration_since(self.attribution.1)
            .as_secs_f64();
        self.attribution = (
            (self.attribution.0 + elapsed * ATTRIBUTION_RATE).min(ATTRIBUTION_RATE),
            now,
        );
        {
            let sup = &self.sup;
            let cgroups = self.cgroups.as_ref();
            let budget = &mut self.attribution.0;
            let pending = &self.pending_starts;
            reaper::reap_all(&mut exited, &mut |pid| {
                // An orphan is attributed to the service whose cgroup it
                // died in (read while it is still a zombie).
                if *budget >= 1.0 && sup.owner_of(pid).is_none() && !pending.contains_key(&pid) {
                    *budget -= 1.0;
                    if let Some(owner) = cgroups.and_then(|c| c.owner_of_pid(pid)) {
                        owners.push((pid, owner));
                    }
                }
            });
        }
        for (pid, status) in exited {
            // A child that died before its exec was noticed: its error
            // pipe says whether it ever ran the service's program.
            if self.pending_starts.contains_key(&pid)
                && !crate::proc::launcher::on_pending_exit(self, pid)
            {
                continue;
            }
            if let Some(name) = self.sup.owner_of(pid).map(str::to_string) {
                crate::info!("service '{name}' (pid {pid}) {}", status.describe());
                // Its last words reach the log before its exit is acted on.
                crate::output::logs::drain(self, &name);
                crate::containers::driver::on_main_exit(self, &name, pid);
            }
            if self.sup.on_exit(pid, status, now) {
                continue;
            }
            if crate::output::exec::on_exit(self, pid, status) {
                continue;
            }
            if crate::containers::driver::on_exit(self, pid, status) {
                continue;
            }
            self.stats.zombies_reaped += 1;
            if let Some((_, owner)) = owners.iter().find(|(p, _)| *p == pid) {
                *self
                    .stats
                    .orphans_by_service
                    .entry(owner.clone())
                    .or_insert(0) += 1;
            }
        }
        // A reaped orphan may have been the last process of a stopping tree.
        self.check_trees(now);
        self.run_actions(now);
    }

    pub(crate) fn begin_shutdown(&mut self, mode: HaltMode, why: &str) {
        if self.halt.is_some() {
            crate::info!("shutdown already in progress; ignoring {why}");
            return;
        }
        crate::info!("shutdown ({mode:?}) requested by {why}: stopping services");
        self.halt = Some(mode);
        self.sup.shutdown(Instant::now());
        self.run_actions(Instant::now());
    }

    // ----- actions -------------------------------------------------------

    pub(crate) fn run_actions(&mut self, now: Instant) {
        loop {
            let actions = self.sup.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.run_action(a, now);
            }
        }
        if !self.pending_starts.is_empty() {
            crate::proc::launcher::cancel_stale(self);
        }
    }

    fn run_action(&mut self, action: Action, now: Instant) {
        match action {
            Action::Spawn { name, gen } => {
                // oom_killed speaks of this run: remember the count so far.
                if let Some(n) = self.cgroups.as_ref().and_then(|cg| cg.oom_kills(&name)) {
                    self.stats.oom_base.insert(name.clone(), n);
                }
                // None: a container, whose preparation answers later.
                if let Some(result) = crate::proc::launcher::spawn_service(self, &name, gen) {
                    if let Err(e) = &result {
                        crate::warn!("unable to start '{name}': {e}");
                    }
                    self.sup.on_spawned(&name, gen, result, now);
                }
                // A burst of spawns can take a while: take in the children
                // of the burst that have exec'd meanwhile (their EOF events
                // would wait for the end of the batch) and keep scanning
                // ports in between, so early services are not kept waiting.
                if !self.pending_starts.is_empty()
                    && self.pending_checked.elapsed() >= PORT_SCAN_INTERVAL
                {
                    self.pending_checked = Instant::now();
                    crate::proc::launcher::collect_exec_d(self);
                }
                if !self.ports.is_empty() && self.last_scan.elapsed() >= PORT_SCAN_INTERVAL {
                    self.scan_ports(Instant::now());
                }
            }
            Action::WatchPort { name, gen, port } => {
                if let Some(old) = self.ports.insert(
                    name,
                    PortWatch {
                        gen,
                        port,
                        probe: None,
                        tries: 0,
                    },
                ) {
                    self.drop_probe(old.probe);
                }
                // One scan serves every port watched in this iteration.
                if !self.scan_scheduled {
                    self.scan_scheduled = true;
                    self.timers.schedule(now, TimerKey::PortScan);
                }
            }
            Action::Terminate { name, pgid } => {
                crate::info!("stopping '{name}'");
                if !crate::proc::launcher::on_terminate(self, &name) {
                    // One SIGTERM per process: its cgroup holds the whole tree
                    // (daemonized children too); the process group is the
                    // fallback without cgroups. Sending both would deliver
                    // it twice, and a handler could run twice.
                    let members = self
                        .cgroups
                        .as_ref()
                        .map(|cg| cg.pids(&name))
                        .unwrap_or_default();
                    if members.is_empty() {
                        let _ = killpg(NixPid::from_raw(pgid), Signal::SIGTERM);
                    } else {
                        for pid in members {
                            let _ = kill(NixPid::from_raw(pid), Signal::SIGTERM);
                        }
                    }
                }
            }
            Action::KillTree { name, pgid } => {
                if !crate::proc::launcher::on_kill(self, &name) {
                    let _ = killpg(NixPid::from_raw(pgid), Signal::SIGKILL);
                    if let Some(cg) = &self.cgroups {
                        cg.kill_all(&name);
                    }
                }
            }
            Action::WatchTree { name, gen, pgid } => {
                self.trees.retain(|t| t.name != name);
                self.trees.push(TreeWatch {
                    name,
                    gen,
                    pgid,
                    since: now,
                });
                self.check_trees(now);
            }
            Action::Schedule { at, timer } => self.timers.schedule(at, TimerKey::Service(timer)),
            Action::Settled { name, outcome } => {
                let outcome = self.explain_failure(&name, outcome);
                if let Some(w) = self.ports.remove(&name) {
                    self.drop_probe(w.probe);
                }
                crate::api::on_settled(self, &name, &outcome);
                self.restore.on_settled(&name, &outcome);
                if let Some(report) = self.restore.take_finished() {
                    crate::api::answer_restore(self, report);
                }
                if outcome == Outcome::Stopped {
                    crate::info!("stopped '{name}'");
                }
            }
            Action::Persist => self.dirty = true,
            // Checks beyond a TCP port are wired in once the loop's new
            // structure lands.
            Action::WatchCheck { .. } | Action::Probe { .. } => {}
            Action::Removed { name } => {
                self.ports.remove(&name);
                if let Some(cg) = &self.cgroups {
                    cg.remove(&name);
                }
                crate::proc::launcher::on_removed(self, &name);
            }
            Action::ShutdownComplete => {
                crate::info!("all services stopped");
                self.shutdown_done = true;
                self.finished = true;
            }
        }
    }

    fn on_timer(&mut self, key: TimerKey, now: Instant) {
        match key {
            TimerKey::Service(t) => self.sup.on_timer(&t, now),
            TimerKey::PortScan => {
                self.scan_scheduled = false;
                self.scan_ports(now);
            }
            TimerKey::TreeCheck => {
                self.tree_check_scheduled = false;
                self.check_trees(now);
            }
            TimerKey::ConnSweep => {
                self.sweep_at = None;
                self.sweep_conns(now);
            }
            TimerKey::Exec(id) => crate::output::exec::on_timeout(self, id),
        }
        self.run_actions(now);
    }

    /// A service that died or missed its health deadline: its error and
    /// the answer carry its last lines of output, so nobody needs a second
    /// call to see why.
    fn explain_failure(&mut self, name: &str, outcome: Outcome) -> Outcome {
        let Outcome::Failed(msg) = &outcome else {
            return outcome;
        };
        let own = ["exited with code", "killed by signal", "did not accept"];
        if !own.iter().any(|w| msg.contains(w)) {
            return outcome;
        }
        match crate::output::logs::excerpt(self, name, 5) {
            Some(lines) => {
                let full = format!("{msg}; last output:\n{lines}");
                self.sup.set_error(name, full.clone());
                Outcome::Failed(full)
            }
            None => outcome,
        }
    }

    // ----- health ports --------------------------------------------------

    fn scan_ports(&mut self, now: Instant) {
        if self.ports.is_empty() {
            return;
        }
        let mut open = HashSet::new();
        let t0 = Instant::now();
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
        let ready: Vec<(String, u64, u16, bool)> = self
            .ports
            .iter_mut()
            .filter(|(_, w)| w.probe.is_none() && open.contains(&w.port))
            .map(|(n, w)| {
                w.tries += 1;
                (n.clone(), w.gen, w.port, w.tries % 2 == 0)
            })
            .collect();
        for (name, gen, port, ipv6) in ready {
            // Listening is not proof: confirm with one real connect. On
            // loopback it has usually completed by the time connect()
            // returns; only a slow one waits for its event.
            match scan::start_connect_on(port, ipv6) {
                Ok(stream) if matches!(scan::connect_outcome(&stream), Ok(true)) => {
                    self.ports.remove(&name);
                    self.sup.on_ready(&name, gen, now);
                }
                Ok(mut stream) => {
                    let token = self.new_token();
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::WRITABLE)
                        .is_ok()
                    {
                        self.probes.insert(
                            token,
                            Probe {
                                name: name.clone(),
                                gen,
                                stream,
                            },
                        );
                        if let Some(w) = self.ports.get_mut(&name) {
                            w.probe = Some(token);
                        }
                    }
                }
                Err(e) => crate::debug!("connect to port {port} failed: {e}"),
            }
        }
        if !self.ports.is_empty() && !self.scan_scheduled {
            // A slow scan (/proc/net/tcp on a host with many connections)
            // runs less often, up to a cap that keeps readiness prompt.
            let interval = (t0.elapsed() * 4).clamp(PORT_SCAN_INTERVAL, MAX_SCAN_INTERVAL);
            self.scan_scheduled = true;
            self.timers.schedule(now + interval, TimerKey::PortScan);
        }
    }

    fn on_probe_event(&mut self, token: Token) {
        let Some(mut p) = self.probes.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut p.stream);
        let ok = matches!(scan::connect_outcome(&p.stream), Ok(true));
        let current = self.ports.get(&p.name).is_some_and(|w| w.gen == p.gen);
        if !current {
            return;
        }
        if ok {
            self.ports.remove(&p.name);
            let now = Instant::now();
            self.sup.on_ready(&p.name, p.gen, now);
            self.run_actions(now);
        } else if let Some(w) = self.ports.get_mut(&p.name) {
            w.probe = None; // try again at the next scan
        }
    }

    fn drop_probe(&mut self, token: Option<Token>) {
        if let Some(mut p) = token.and_then(|t| self.probes.remove(&t)) {
            let _ = self.poll.registry().deregister(&mut p.stream);
        }
    }

    // ----- process trees -------------------------------------------------

    fn tree_gone(&self, t: &TreeWatch) -> bool {
        // A container's runtime may still be deleting it.
        if !crate::containers::driver::tree_gone(self, &t.name) {
            return false;
        }
        if let Some(cg) = &self.cgroups {
            if !cg.is_empty(&t.name) {
                return false;
            }
        }
        // kill(-pgid, 0) fails with ESRCH once no process is left in the
        // group (zombies included, so reaped orphans count as gone).
        t.pgid <= 0 || kill(NixPid::from_raw(-t.pgid), None).is_err()
    }

    fn check_trees(&mut self, now: Instant) {
        if self.trees.is_empty() {
            return;
        }
        let mut done = Vec::new();
        let mut keep = Vec::new();
        for t in std::mem::take(&mut self.trees) {
            if self.tree_gone(&t) {
                done.push(t);
            } else if now.saturating_duration_since(t.since) > TREE_GIVE_UP {
                crate::warn!(
                    "processes of '{}' survive SIGKILL; giving up waiting",
                    t.name
                );
                done.push(t);
            } else {
                // Keep killing: a forker may have raced the first SIGKILL.
                let _ = killpg(NixPid::from_raw(t.pgid), Signal::SIGKILL);
                if let Some(cg) = &self.cgroups {
                    cg.kill_all(&t.name);
                }
                keep.push(t);
            }
        }
        self.trees = keep;
        for t in done {
            self.sup.on_tree_empty(&t.name, t.gen, now);
        }
        if !self.trees.is_empty() && !self.tree_check_scheduled {
            self.tree_check_scheduled = true;
            self.timers
                .schedule(now + Duration::from_millis(5), TimerKey::TreeCheck);
        }
    }

    // ----- connections ---------------------------------------------------

    pub(crate) fn new_token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1).max(2);
        t
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_conn(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the rest in the backlog.
                    crate::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: UnixStream) {
        let now = Instant::now();
        if self.conns.len() >= MAX_CONNS {
            let err = crate::api::error::ApiError::Unavailable("too many connections".into());
            let _ = io::Write::write(&mut stream, &err.to_response(false).to_bytes());
            return;
        }
        let trusted = peer_is_trusted(&stream);
        let token = self.new_token();
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            return;
        }
        let conn = Conn::new(stream, trusted, now);
        self.conns.insert(token, conn);
        self.arm_sweep(now + crate::api::conn::IDLE_TIMEOUT);
    }

    fn on_conn_event(&mut self, token: Token, readable: bool, writable: bool, closed: bool) {
        if readable || closed {
            self.read_conn(token);
            crate::api::process_conn(self, token);
            if self.conns.get(&token).is_some_and(|c| c.peer_closed) {
                self.on_peer_closed(token);
                return;
            }
        }
        if writable {
            self.flush_conn(token);
        }
    }

    /// Reads what the client sent, no more than one maximal request ahead
    /// (a client that floods is held back by its own socket buffer).
    pub(crate) fn read_conn(&mut self, token: Token) {
        let limit = crate::api::http::MAX_HEAD_BYTES + crate::api::http::MAX_BODY_BYTES + 1;
        if let Some(conn) = self.conns.get_mut(&token) {
            if let crate::api::conn::ReadResult::Closed = conn.read_available(limit) {
                conn.peer_closed = true;
            }
        }
    }

    /// The client closed its side. A request still waiting (a start, an
    /// exec, a follow) is abandoned: the start goes on, the exec is killed.
    /// Answers already made are written first (a client that half-closes
    /// after sending, like `nc`, still gets them).
    fn on_peer_closed(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match conn.state {
            ConnState::Awaiting | ConnState::Streaming => self.close_conn(token),
            _ => {
                conn.state = ConnState::Closing;
                self.flush_later(token);
            }
        }
    }

    /// Queues a flush for the end of this loop iteration.
    pub(crate) fn flush_later(&mut self, token: Token) {
        if !self.flush_pending.contains(&token) {
            self.flush_pending.push(token);
        }
    }

    /// Writes pending output; closes the connection when done with it.
    pub(crate) fn flush_conn(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.flush().is_err() {
            self.close_conn(token);
            return;
        }
        if conn.wants_close() {
            self.close_conn(token);
            return;
        }
        let want_write = !conn.wbuf.is_empty();
        if want_write != conn.writable_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, interest)
                .is_ok()
            {
                conn.writable_interest = want_write;
            }
        }
    }

    pub(crate) fn close_conn(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.waiters.retain(|w| w.token != token);
        self.restore.forget_waiter(token);
        crate::output::exec::on_conn_closed(self, token);
        crate::output::logs::forget_follower(self, token);
        crate::proc::launcher::on_conn_closed(self, token);
    }

    pub(crate) fn arm_sweep(&mut self, at: Instant) {
        if self.sweep_at.is_none_or(|s| at < s) {
            self.sweep_at = Some(at);
            self.timers.schedule(at, TimerKey::ConnSweep);
        }
    }

    /// Closes idle keep-alive connections and answers 408 to requests that
    /// did not arrive whole in time.
    fn sweep_conns(&mut self, now: Instant) {
        let expired: Vec<(Token, ConnState)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(t, c)| (*t, c.state))
            .collect();
        for (token, state) in expired {
            if state == ConnState::Reading {
                let resp = crate::api::error::ApiError::TooSlow.to_response(false);
                if let Some(c) = self.conns.get_mut(&token) {
                    c.rbuf.clear();
                    c.wbuf.extend_from_slice(&resp.to_bytes());
                    c.state = ConnState::Closing;
                    c.deadline = Some(now + Duration::from_secs(5));
                }
                self.flush_conn(token);
            } else {
                self.close_conn(token);
            }
        }
        if let Some(next) = self.conns.values().filter_map(|c| c.deadline).min() {
            self.arm_sweep(next);
        }
    }

    // ----- state file ----------------------------------------------------

    /// The state file first, then the answers that depend on it.
    fn write_state_and_answer(&mut self) {
        self.write_state_if_dirty();
        for token in std::mem::take(&mut self.flush_pending) {
            self.flush_conn(token);
        }
    }

    fn write_state_if_dirty(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        if let Err(e) = self.write_state() {
            crate::error!(
                "unable to write the state file {}: {e}",
                self.cfg.state_file.display()
            );
            self.dirty = true; // retried at the next change
        }
    }

    pub(crate) fn write_state(&mut self) -> io::Result<()> {
        let t0 = Instant::now();
        let snapshot = crate::persist::boot::snapshot(&self.sup);
        state_file::write_atomic(&self.cfg.state_file, &state_file::encode(&snapshot))?;
        self.stats.state_writes += 1;
        self.stats.last_state_write_us = t0.elapsed().as_micros() as u64;
        Ok(())
    }
}

impl Init {
    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    pub(crate) fn schedule(&mut self, at: Instant, key: TimerKey) {
        self.timers.schedule(at, key);
    }
}

/// FNV-1a: a stable short name for a path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Root, or the init's own uid, may use the API (`SO_PEERCRED`).
fn peer_is_trusted(stream: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

/// Many connections and service pipes need more than the default 1024 fds.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(1 << 20), hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_handler_does_not_end_the_loop() {
        let dir = std::env::temp_dir().join(format!("iris-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = Config {
            socket: dir.join("s.sock"),
            services_dir: dir.join("init.d"),
            state_file: dir.join("state.json"),
            log_dir: dir.join("logs"),
        };
        let mut init = Init::new(cfg, false).unwrap();
        let mut after = false;
        init.guarded(|_| panic!("boom in a handler"));
        init.guarded(|i| {
            // The init is still whole: the supervisor takes requests.
            let def = crate::core::definition::Definition::from_json(br#"{"cmd":"true"}"#).unwrap();
            i.sup
                .upsert(
                    "ok",
                    def,
                    crate::core::supervisor::Source::Api,
                    Instant::now(),
                )
                .unwrap();
            after = true;
        });
        assert!(after && init.sup.get("ok").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

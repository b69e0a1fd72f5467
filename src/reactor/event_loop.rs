//! The loop itself: the `Reactor` (every subsystem's owner), its set-up,
//! the poll loop with its pause detection and panic guard, events routed
//! by token owner, timers, and the state file written before answers.

use super::reaping::Reaping;
use crate::api::event_hub::{EventHub, Settings};
use crate::api::handlers::View;
use crate::api::server::{ensure_parent, ApiServer};
use crate::config::Config;
use crate::containers::driver::Containers;
use crate::core::supervisor::{Input, Supervisor};
use crate::health::runner::CheckRunner;
use crate::health::watcher::HealthWatcher;
use crate::io::{Io, Owner, TimerKey};
use crate::output::exec::Execs;
use crate::output::logs::Logs;
use crate::persist::report::RestoreTracker;
use crate::persist::state_file;
use crate::pid1::HaltMode;
use crate::proc::cgroup::Cgroups;
use crate::proc::launcher::Launcher;
use crate::proc::trees::TreeWatcher;
use crate::resume::resumer::Resumer;
use crate::resume::steps::Resumed;
use crate::signals::InitSignals;
use crate::stats::Stats;
use mio::{Events, Token};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Within a long batch of events, answers go out at least this often.
const ANSWER_EVERY: Duration = Duration::from_millis(10);
/// How soon the init's own log is offered again to a console that did not
/// take all of it.
const CONSOLE_RETRY: Duration = Duration::from_millis(100);
/// How long start-up waits for a previous run's leftovers to die.
const LEFTOVER_PATIENCE: Duration = Duration::from_secs(5);
/// How long the exit waits for cgroups still busy with dying processes.
const CLEANUP_PATIENCE: Duration = Duration::from_secs(1);
/// A poll that returns this much later than its timeout was a pause.
const PAUSE_SLACK: Duration = Duration::from_millis(1500);

/// The init at run time: the supervisor, every subsystem, and the loop's
/// I/O handle they borrow.
pub struct Reactor {
    pub(super) cfg: Config,
    pub(super) io: Io,
    pub(super) signals: InitSignals,
    pub(super) api: ApiServer,
    pub(super) sup: Supervisor,
    pub(super) launcher: Launcher,
    pub(super) trees: TreeWatcher,
    pub(super) health: HealthWatcher,
    pub(super) checks: CheckRunner,
    pub(super) logs: Logs,
    pub(super) execs: Execs,
    pub(super) containers: Containers,
    pub(super) cgroups: Option<Cgroups>,
    pub(super) stats: Stats,
    pub(super) restore: RestoreTracker,
    /// The VM generation and what a restore does before the services.
    pub(super) resumer: Resumer,
    /// The events stream: its ring and its clients.
    pub(super) events: EventHub,
    /// Why the state file could not be used at start, if it could not.
    pub(super) state_error: Option<String>,
    /// The state file is behind the supervisor.
    pub(super) dirty: bool,
    pub(super) halt: Option<HaltMode>,
    /// Set when the init must stop reading its API (shutdown finished).
    pub(super) finished: bool,
    /// When the loop last checked the clock (see `notice_pause`).
    last_tick: Instant,
    pub(super) reaping: Reaping,
    /// Services whose cgroup this init has started a process in (an older
    /// empty one was replaced first: `Cgroups::renew`).
    pub(super) cgroups_used: std::collections::HashSet<String>,
}

impl Reactor {
    /// Sets up the socket, signals and directories. Errors here are fatal
    /// start-up errors (the caller halts cleanly as PID 1).
    pub fn new(cfg: Config, pid1: bool) -> Result<Reactor, String> {
        let mut io = Io::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let signals =
            InitSignals::new(&mut io).map_err(|e| format!("cannot set up signal handling: {e}"))?;
        let api = ApiServer::bind(&cfg.socket, &mut io)
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.socket.display()))?;
        if let Err(e) = std::fs::create_dir_all(&cfg.log_dir) {
            crate::warn!("unable to create {}: {e}", cfg.log_dir.display());
        }
        if let Err(e) = ensure_parent(&cfg.state_file) {
            crate::warn!("unable to create the state file's directory: {e}");
        }
        if !pid1 {
            become_subreaper();
        }
        raise_fd_limit(pid1);
        let mut resumer = Resumer::new(pid1, &cfg.socket);
        resumer.watch_vmgenid(&mut io);
        let cgroups = Cgroups::detect(instance_name(&cfg, pid1).as_deref());
        match &cgroups {
            Some(c) => {
                crate::info!("service cgroups under {}", c.base().display());
                // A plain supervisor killed before (kill -9) left its
                // services running: end them before starting them again.
                let left = c.empty_leftovers(LEFTOVER_PATIENCE);
                if !left.is_empty() {
                    crate::warn!(
                        "killed what a previous run left of {} services: {}",
                        left.len(),
                        left.join(", ")
                    );
                }
            }
            None => crate::info!("no writable cgroup2 hierarchy: process groups only"),
        }
        let notify_dir = notify_dir(&cfg, pid1);
        let trees = TreeWatcher::new(&mut io, cgroups.as_ref());
        Ok(Reactor {
            logs: Logs::new(&cfg.log_dir),
            containers: Containers::new(&cfg),
            cfg,
            io,
            signals,
            api,
            sup: Supervisor::new(),
            launcher: Launcher::default(),
            trees,
            health: HealthWatcher::new(),
            checks: CheckRunner::new(notify_dir),
            execs: Execs::default(),
            cgroups,
            stats: Stats::new(pid1),
            restore: RestoreTracker::default(),
            resumer,
            events: EventHub::new(Settings::from_env(&|k| std::env::var(k).ok())),
            state_error: None,
            dirty: false,
            halt: None,
            finished: false,
            last_tick: Instant::now(),
            reaping: Reaping::new(Instant::now()),
            cgroups_used: std::collections::HashSet::new(),
        })
    }

    /// Loads drop-ins and the state file, starts what should run, then
    /// serves until an orderly shutdown has stopped every service.
    pub fn run(mut self) -> HaltMode {
        let now = Instant::now();
        let me =
            serde_json::json!({"pid": std::process::id(), "version": env!("CARGO_PKG_VERSION")});
        self.publish_system("ready", me);
        self.state_error =
            crate::persist::boot::boot(&self.cfg, &mut self.sup, &mut self.restore, now);
        self.containers.collect_garbage(&self.sup);
        self.restore.resumed(Resumed {
            generation: self.resumer.generation(),
            ..Resumed::default()
        });
        self.route(now);
        // No answer waits on these two writes; a failure is logged.
        let _ = self.write_state_if_dirty();
        let mut events = Events::with_capacity(256);
        while !self.finished {
            self.turn(&mut events);
        }
        let _ = self.write_state_if_dirty();
        self.execs.kill_all();
        self.containers.abandon_tasks();
        // A plain supervisor leaves no cgroup behind (its services are
        // stopped; the execs just killed get a moment to be gone).
        if let Some(cg) = &self.cgroups {
            cg.cleanup(CLEANUP_PATIENCE);
        }
        self.halt.unwrap_or(HaltMode::PowerOff)
    }

    /// One iteration: wait, handle the events, the timers that are due, and
    /// the waits answered meanwhile; then the state file, then the answers.
    pub(super) fn turn(&mut self, events: &mut Events) {
        // The checks tile the whole iteration: work done since the
        // timers ran, the poll itself, and the event handling.
        self.notice_pause(Some(Duration::ZERO));
        self.discard_stale_timers();
        self.launcher.new_turn();
        let timeout = if self.logs.has_backlog() || self.api.has_resumable() {
            // Output still waits in a pipe, or requests behind answers.
            Some(Duration::ZERO)
        } else {
            let next = self.io.timers().next_timeout(Instant::now());
            if crate::console::pending_bytes() > 0 {
                // The init's own log waits for a slow console: try again soon.
                Some(next.map_or(CONSOLE_RETRY, |t| t.min(CONSOLE_RETRY)))
            } else {
                next
            }
        };
        let polled = self.io.poll(events, timeout);
        self.notice_pause(timeout);
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                crate::error!("poll failed: {e}; retrying");
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        let batch: Vec<(Token, bool, bool)> = events
            .iter()
            .map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                (e.token(), e.is_readable() || closed, e.is_writable())
            })
            .collect();
        let mut answered_at = Instant::now();
        for (token, readable, writable) in batch {
            self.guarded(|r| r.on_event(token, readable, writable));
            // A long batch (a burst of starts) still answers as it goes:
            // state written first, as at the end of an iteration.
            if answered_at.elapsed() >= ANSWER_EVERY {
                self.write_state_and_answer();
                answered_at = Instant::now();
            }
        }
        self.guarded(|r| r.logs.read_backlog());
        self.notice_pause(Some(Duration::ZERO));
        let now = Instant::now();
        let due = self.io.timers().pop_due(now);
        for key in due {
            self.guarded(|r| r.on_timer(key, now));
        }
        self.guarded(|r| r.route(Instant::now()));
        self.write_state_and_answer();
        crate::console::flush();
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
            self.io.timers().shift(lost);
            self.publish_resumed(lost);
        }
    }

    /// Timers are cancelled lazily; dropping the stale ones at the head
    /// before sleeping means a cancelled timer never wakes the init (an
    /// idle init makes no wake-ups at all).
    fn discard_stale_timers(&mut self) {
        while let Some(key) = self.io.timers().peek().cloned() {
            let stale = match &key {
                TimerKey::Service(t) => self.sup.get(&t.name).is_none_or(|s| s.gen != t.gen),
                TimerKey::PortScan => self.health.is_idle(),
                TimerKey::TreeCheck(seq) => self.trees.is_idle() || !self.trees.has_timer(*seq),
                TimerKey::ConnSweep => self.api.sweep_is_stale(),
                TimerKey::Exec(id) => !self.execs.has(*id),
                TimerKey::Check(id) => !self.checks.has_timer(*id),
                TimerKey::Reap => !self.reaping.held,
                TimerKey::Heartbeat => self.events.is_idle(),
            };
            if !stale {
                return;
            }
            match key {
                TimerKey::PortScan => self.health.timer_gone(),
                TimerKey::TreeCheck(seq) => self.trees.timer_gone(seq),
                TimerKey::Heartbeat => self.events.timer_gone(),
                _ => {}
            }
            self.io.timers().discard_first();
        }
    }

    /// Runs one handler and routes what it caused; a panic in it is logged
    /// and the loop goes on (PID 1 must never die).
    pub(super) fn guarded(&mut self, f: impl FnOnce(&mut Reactor)) {
        let handled = catch_unwind(AssertUnwindSafe(|| {
            f(self);
            self.route(Instant::now());
        }));
        if let Err(p) = handled {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            crate::error!("recovered from a panic in an event handler: {msg}");
        }
    }

    /// One readiness event, routed by who owns its token.
    fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        let Some(owner) = self.io.owner(token).cloned() else {
            return; // a closed source: tokens are never reused
        };
        let io = &mut self.io;
        match owner {
            Owner::Signals => self.on_signals(),
            Owner::ChildExit => self.on_child_signal(Instant::now()),
            Owner::Listener => self.api.accept_all(io),
            Owner::Conn => self.on_conn_event(token, readable, writable),
            Owner::Probe => {
                if let Some(input) = self.health.on_probe(io, token) {
                    self.feed(input);
                }
            }
            Owner::Log(name) => self.logs.on_readable(&name),
            Owner::Check => self.checks.on_event(io, token, Instant::now()),
            Owner::Notify(name) => self.checks.on_notify(io, &name, Instant::now()),
            Owner::ExecOut { id, err } => self.execs.on_output(io, id, err),
            Owner::ExecIn { id } => self.execs.on_input(io, id),
            Owner::TreeEvents => {
                self.trees.drain_events();
                self.check_trees(Instant::now());
            }
            Owner::Spawn { pid } => {
                if let Some(input) = self.launcher.on_pipe(io, &self.sup, pid) {
                    self.feed(input);
                }
            }
            Owner::Uevents => {
                if self.resumer.on_uevents() {
                    self.restore_after_vmgenid();
                }
            }
        }
    }

    fn on_timer(&mut self, key: TimerKey, now: Instant) {
        match key {
            TimerKey::Service(t) => self.feed(Input::Timer(t)),
            TimerKey::PortScan => {
                self.health.timer_gone();
                for input in self.health.scan(&mut self.io, now) {
                    self.feed(input);
                }
            }
            TimerKey::TreeCheck(seq) => {
                self.trees.timer_gone(seq);
                self.check_trees(now);
            }
            TimerKey::ConnSweep => self.api.sweep(&mut self.io, now),
            TimerKey::Exec(id) => self.execs.on_timeout(id),
            TimerKey::Check(id) => self.checks.on_timer(&mut self.io, id, now),
            TimerKey::Reap => self.on_reap_timer(now),
            TimerKey::Heartbeat => self.heartbeat(now),
        }
    }

    /// What the API handlers may read.
    pub(super) fn view(&self) -> View<'_> {
        View {
            sup: &self.sup,
            logs: &self.logs,
            containers: &self.containers,
            cgroups: self.cgroups.as_ref(),
            stats: &self.stats,
            last_restore: self.restore.last(),
            state_file: &self.cfg.state_file,
            state_error: self.state_error.as_deref(),
            connections: self.api.connections(),
            shutting_down: self.halt.is_some(),
            generation: self.resumer.generation(),
            event_clients: self.events.listeners(),
            last_event_id: self.events.last_id(),
        }
    }

    // ----- state file ----------------------------------------------------

    /// The waits answered meanwhile go on with their pipelined requests;
    /// then the state file, then the answers that depend on it.
    pub(super) fn write_state_and_answer(&mut self) {
        self.guarded(|r| r.resume_answered());
        let durable = self.write_state_if_dirty();
        self.api.flush_deferred(
            &mut self.io,
            durable.as_ref().map(|_| ()).map_err(String::as_str),
        );
    }

    /// Ok when the state file holds the supervisor's state (now or already).
    fn write_state_if_dirty(&mut self) -> Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        self.write_state().map_err(|e| {
            let why = format!(
                "unable to write the state file {}: {e}",
                self.cfg.state_file.display()
            );
            crate::error!("{why}");
            self.dirty = true; // retried at the next iteration
            why
        })
    }

    pub(super) fn write_state(&mut self) -> io::Result<()> {
        let t0 = Instant::now();
        let snapshot = crate::persist::boot::snapshot(&self.sup);
        state_file::write_atomic(&self.cfg.state_file, &state_file::encode(&snapshot))?;
        self.stats.state_writes += 1;
        self.stats.last_state_write_us = t0.elapsed().as_micros() as u64;
        Ok(())
    }
}

/// A plain supervisor's cgroups live in a subtree named after its socket:
/// stable across its own restarts, distinct from any other instance's.
fn instance_name(cfg: &Config, pid1: bool) -> Option<String> {
    (!pid1).then(|| {
        format!(
            "iris-{:016x}",
            fnv1a(cfg.socket.as_os_str().as_encoded_bytes())
        )
    })
}

/// Where services' notify sockets go: `/run/iris/notify` as PID 1, next
/// to the API socket as a plain supervisor.
fn notify_dir(cfg: &Config, pid1: bool) -> std::path::PathBuf {
    if pid1 {
        return std::path::PathBuf::from("/run/iris/notify");
    }
    let mut dir = cfg.socket.clone().into_os_string();
    dir.push(".notify");
    dir.into()
}

/// Orphans of services come to us, not to the real PID 1.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        crate::warn!(
            "unable to become a child subreaper: {}",
            io::Error::last_os_error()
        );
    }
}

/// FNV-1a: a stable short name for a path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Many connections and service pipes need more than the default 1024 fds.
/// As PID 1 the kernel's hard limit (4096) is raised too, to `nr_open`.
fn raise_fd_limit(pid1: bool) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const MOST: u64 = 1 << 20;
    if pid1 {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(MOST)
            .min(MOST);
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, nr_open, nr_open) {
            crate::warn!("unable to raise the limit of open files to {nr_open}: {e}");
        }
    }
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(MOST), hard);
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
        let mut r = Reactor::new(cfg, false).unwrap();
        let mut after = false;
        r.guarded(|_| panic!("boom in a handler"));
        r.guarded(|r| {
            // The init is still whole: the supervisor takes requests.
            let def = crate::core::definition::Definition::from_json(br#"{"cmd":"true"}"#).unwrap();
            r.sup
                .upsert(
                    "ok",
                    def,
                    crate::core::supervisor::Source::Api,
                    Instant::now(),
                )
                .unwrap();
            after = true;
        });
        assert!(after && r.sup.get("ok").is_some());
        if let Some(cg) = &r.cgroups {
            cg.cleanup(Duration::ZERO);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Checks beyond a TCP port, run for the supervisor: readiness waits
//! (`http`, `exec`, `log`, `notify`) and liveness probes (`http`, `exec`,
//! `tcp`). It owns the attempts in flight, their timers and the services'
//! notify sockets. The reactor starts exec attempts through `Execs` (asked
//! with `take_exec_requests`), and brings log-line matches and ports seen
//! listening; results go back as supervisor inputs (`take_inputs`).

use crate::core::checks::{Check, ATTEMPT_TIMEOUT};
use crate::core::supervisor::{ExitStatus, Input};
use crate::health::http::{self, Answer, HttpProbe, Step};
use crate::health::notify::{Notice, NotifySocket};
use crate::io::{Io, Owner, TimerKey};
use mio::{Interest, Token};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Ready,
    Live,
}

/// An exec attempt for the reactor to start in the service's context;
/// answer with `exec_started` or `exec_failed`.
#[derive(Debug)]
pub(crate) struct ExecRequest {
    pub attempt: u64,
    pub name: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// A service waiting for its readiness check.
struct Wait {
    gen: u64,
    check: Check,
    interval: Duration,
    /// An attempt is in flight.
    busy: bool,
}

struct Attempt {
    name: String,
    gen: u64,
    purpose: Purpose,
    timeout: Duration,
    /// For `http` and `tcp`: the probe and its token. `exec` attempts are
    /// the reactor's (`by_exec`).
    http: Option<(HttpProbe, Token, (u16, u16))>,
}

impl Attempt {
    fn new(name: &str, gen: u64, purpose: Purpose, timeout: Duration) -> Attempt {
        Attempt {
            name: name.to_string(),
            gen,
            purpose,
            timeout,
            http: None,
        }
    }
}

enum TimerFor {
    /// An `http`/`tcp` attempt took too long.
    Timeout(u64),
    /// Time for the next readiness attempt of a service.
    Next { name: String, gen: u64 },
}

pub(crate) struct CheckRunner {
    waits: HashMap<String, Wait>,
    attempts: HashMap<u64, Attempt>,
    by_token: HashMap<Token, u64>,
    /// Exec id -> attempt.
    by_exec: HashMap<u64, u64>,
    timers: HashMap<u64, TimerFor>,
    notify: HashMap<String, (NotifySocket, Token)>,
    notify_dir: PathBuf,
    /// Services whose log line or `READY=1` came (since their last spawn)
    /// before their wait began.
    early: HashSet<String>,
    next_id: u64,
    inputs: Vec<Input>,
    exec_requests: Vec<ExecRequest>,
    /// Exec attempts no longer wanted, for the reactor to kill.
    abandoned: Vec<u64>,
}

impl CheckRunner {
    /// `notify_dir`: where notify sockets are bound.
    pub(crate) fn new(notify_dir: PathBuf) -> CheckRunner {
        CheckRunner {
            waits: HashMap::new(),
            attempts: HashMap::new(),
            by_token: HashMap::new(),
            by_exec: HashMap::new(),
            timers: HashMap::new(),
            notify: HashMap::new(),
            notify_dir,
            early: HashSet::new(),
            next_id: 0,
            inputs: Vec::new(),
            exec_requests: Vec::new(),
            abandoned: Vec::new(),
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn schedule(&mut self, io: &mut Io, at: Instant, what: TimerFor) {
        let id = self.new_id();
        self.timers.insert(id, what);
        io.schedule(at, TimerKey::Check(id));
    }

    /// Whether a `TimerKey::Check` is still wanted.
    pub(crate) fn has_timer(&self, id: u64) -> bool {
        self.timers.contains_key(&id)
    }

    pub(crate) fn take_inputs(&mut self) -> Vec<Input> {
        std::mem::take(&mut self.inputs)
    }

    pub(crate) fn take_exec_requests(&mut self) -> Vec<ExecRequest> {
        std::mem::take(&mut self.exec_requests)
    }

    /// Exec attempts whose wait ended: kill them.
    pub(crate) fn take_abandoned(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.abandoned)
    }

    // ----- spawns and notify sockets -----------------------------------

    /// A run of `name` is about to be spawned: what an earlier run said is
    /// forgotten, and a `notify` service gets its socket. Returns the
    /// `NOTIFY_SOCKET` value for its environment. `uid`: who may send;
    /// `shared_fs`: false for a container (an abstract socket then).
    pub(crate) fn on_spawn(
        &mut self,
        io: &mut Io,
        name: &str,
        check: Option<&Check>,
        uid: Option<u32>,
        shared_fs: bool,
    ) -> Result<Option<String>, String> {
        self.early.remove(name);
        if check != Some(&Check::Notify) {
            self.drop_notify(io, name);
            return Ok(None);
        }
        let abstract_wanted = !shared_fs;
        if let Some((ns, _)) = self.notify.get(name) {
            // A container sees only an abstract socket; a plain service
            // any (the path may have been too long).
            if !abstract_wanted || ns.env_value().starts_with('@') {
                return Ok(Some(ns.env_value().to_string()));
            }
        }
        self.drop_notify(io, name);
        let bound = if abstract_wanted {
            NotifySocket::bind_abstract(name)
        } else {
            NotifySocket::bind(&self.notify_dir, name, uid)
        };
        let mut ns = bound.map_err(|e| format!("cannot create its notify socket: {e}"))?;
        let token = io
            .register(
                ns.source(),
                Interest::READABLE,
                Owner::Notify(name.to_string()),
            )
            .map_err(|e| format!("cannot watch its notify socket: {e}"))?;
        let env = ns.env_value().to_string();
        self.notify.insert(name.to_string(), (ns, token));
        Ok(Some(env))
    }

    fn drop_notify(&mut self, io: &mut Io, name: &str) {
        if let Some((mut ns, token)) = self.notify.remove(name) {
            io.deregister(ns.source(), token);
        }
    }

    /// The notify socket of `name` is readable.
    pub(crate) fn on_notify(&mut self, io: &mut Io, name: &str, now: Instant) {
        let Some((ns, _)) = self.notify.get_mut(name) else {
            return;
        };
        for notice in ns.read_all() {
            match notice {
                Notice::Ready => self.signalled(io, name, "notify", now),
                Notice::Status(text) => self.inputs.push(Input::StatusText {
                    name: name.to_string(),
                    text,
                }),
                Notice::MainPid(pid) => {
                    crate::debug!("'{name}' sent MAINPID={pid}: ignored (the init keeps its own)")
                }
            }
        }
    }

    /// A line of `name`'s output contained its `log` check's text.
    pub(crate) fn on_log_match(&mut self, io: &mut Io, name: &str, now: Instant) {
        self.signalled(io, name, "log", now);
    }

    /// A `log` or `notify` signal: ready if its wait runs, else kept.
    fn signalled(&mut self, io: &mut Io, name: &str, kind: &str, now: Instant) {
        match self.waits.get(name).filter(|w| w.check.kind() == kind) {
            Some(w) => {
                let gen = w.gen;
                self.finish_ready(io, name, gen, Ok(signal_words(kind)), now);
            }
            None => {
                self.early.insert(name.to_string());
            }
        }
    }

    // ----- readiness -----------------------------------------------------

    /// `Action::WatchCheck`: tell `Ready` once `check` passes. An `http`
    /// check makes its first attempt once its port listens
    /// (`on_listening`).
    pub(crate) fn watch(
        &mut self,
        io: &mut Io,
        name: &str,
        gen: u64,
        check: Check,
        interval: Duration,
        now: Instant,
    ) {
        self.forget_wait(io, name);
        let kind = check.kind();
        self.waits.insert(
            name.to_string(),
            Wait {
                gen,
                check,
                interval,
                busy: false,
            },
        );
        match kind {
            "exec" => self.attempt_ready(io, name, now),
            "log" | "notify" if self.early.remove(name) => {
                self.finish_ready(io, name, gen, Ok(signal_words(kind)), now);
            }
            _ => {}
        }
    }

    /// The port of an `http` readiness check listens now.
    pub(crate) fn on_listening(&mut self, io: &mut Io, name: &str, gen: u64, now: Instant) {
        if self
            .waits
            .get(name)
            .is_some_and(|w| w.gen == gen && !w.busy)
        {
            self.attempt_ready(io, name, now);
        }
    }

    fn attempt_ready(&mut self, io: &mut Io, name: &str, now: Instant) {
        let Some(w) = self.waits.get_mut(name) else {
            return;
        };
        w.busy = true;
        let (gen, check) = (w.gen, w.check.clone());
        let a = Attempt::new(name, gen, Purpose::Ready, ATTEMPT_TIMEOUT);
        self.attempt(io, a, &check, now);
    }

    /// A readiness attempt ended: pass, or try again after the interval.
    fn finish_ready(
        &mut self,
        io: &mut Io,
        name: &str,
        gen: u64,
        verdict: Result<String, String>,
        now: Instant,
    ) {
        let Some(w) = self.waits.get_mut(name).filter(|w| w.gen == gen) else {
            return;
        };
        let (Ok(text) | Err(text)) = verdict.clone();
        self.inputs.push(Input::CheckResult {
            name: name.to_string(),
            gen,
            result: text,
        });
        if verdict.is_ok() {
            self.waits.remove(name);
            self.inputs.push(Input::Ready {
                name: name.to_string(),
                gen,
            });
            return;
        }
        w.busy = false;
        let at = crate::core::bounds::deadline(now, w.interval);
        self.schedule(
            io,
            at,
            TimerFor::Next {
                name: name.to_string(),
                gen,
            },
        );
    }

    /// The service settled or is gone: its readiness wait ends.
    pub(crate) fn forget_wait(&mut self, io: &mut Io, name: &str) {
        if self.waits.remove(name).is_some() {
            self.drop_attempts(io, |a| a.name == name && a.purpose == Purpose::Ready);
        }
    }

    /// The service was deleted: everything of it goes.
    pub(crate) fn forget(&mut self, io: &mut Io, name: &str) {
        self.early.remove(name);
        self.drop_notify(io, name);
        self.waits.remove(name);
        self.drop_attempts(io, |a| a.name == name);
    }

    fn drop_attempts(&mut self, io: &mut Io, which: impl Fn(&Attempt) -> bool) {
        let ids: Vec<u64> = self
            .attempts
            .iter()
            .filter(|(_, a)| which(a))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.drop_attempt(io, *id);
        }
        let execs: Vec<u64> = self
            .by_exec
            .iter()
            .filter(|(_, att)| ids.contains(att))
            .map(|(exec, _)| *exec)
            .collect();
        for e in execs {
            self.by_exec.remove(&e);
            self.abandoned.push(e);
        }
    }

    fn drop_attempt(&mut self, io: &mut Io, id: u64) {
        if let Some(Attempt {
            http: Some((mut probe, token, _)),
            ..
        }) = self.attempts.remove(&id)
        {
            io.deregister(probe.stream(), token);
            self.by_token.remove(&token);
        }
    }

    // ----- liveness ----------------------------------------------------

    /// `Action::Probe`: one liveness check, answered with `Input::Liveness`.
    pub(crate) fn probe(
        &mut self,
        io: &mut Io,
        name: &str,
        gen: u64,
        check: &Check,
        timeout: Duration,
        now: Instant,
    ) {
        let a = Attempt::new(name, gen, Purpose::Live, timeout);
        self.attempt(io, a, check, now);
    }

    // ----- attempts ----------------------------------------------------

    /// Starts one attempt of `check` for `a` (whose `http` is None).
    fn attempt(&mut self, io: &mut Io, a: Attempt, check: &Check, now: Instant) {
        let id = self.new_id();
        let (name, timeout) = (a.name.clone(), a.timeout);
        self.attempts.insert(id, a);
        let started = match check {
            Check::Http(h) => HttpProbe::start(h.port, &h.path).map(|p| (p, h.status)),
            Check::Tcp(port) => HttpProbe::connect(*port).map(|p| (p, (0, 0))),
            Check::Exec(argv) => {
                self.exec_requests.push(ExecRequest {
                    attempt: id,
                    name,
                    argv: argv.clone(),
                    timeout,
                });
                return;
            }
            Check::Log(_) | Check::Notify => {
                self.attempts.remove(&id);
                return;
            }
        };
        let (mut probe, range) = match started {
            Ok(p) => p,
            Err(answer) => return self.complete(io, id, http_verdict(&answer, (0, 0)), now),
        };
        match io.register(probe.stream(), http::INTEREST, Owner::Check) {
            Ok(token) => {
                self.by_token.insert(token, id);
                if let Some(a) = self.attempts.get_mut(&id) {
                    a.http = Some((probe, token, range));
                }
                self.schedule(
                    io,
                    crate::core::bounds::deadline(now, timeout),
                    TimerFor::Timeout(id),
                );
            }
            Err(e) => self.complete(
                io,
                id,
                Err(format!("cannot watch the connection: {e}")),
                now,
            ),
        }
    }

    /// An event on an `http`/`tcp` attempt's connection.
    pub(crate) fn on_event(&mut self, io: &mut Io, token: Token, now: Instant) {
        let Some(id) = self.by_token.get(&token).copied() else {
            return;
        };
        let Some((probe, _, range)) = self.attempts.get_mut(&id).and_then(|a| a.http.as_mut())
        else {
            return;
        };
        let range = *range;
        match probe.on_event() {
            Step::Wait => {}
            Step::Reconnect(mut old) => {
                io.deregister(&mut old, token);
                self.by_token.remove(&token);
                match io.register(probe.stream(), http::INTEREST, Owner::Check) {
                    Ok(t) => {
                        self.by_token.insert(t, id);
                        if let Some((_, tok, _)) =
                            self.attempts.get_mut(&id).and_then(|a| a.http.as_mut())
                        {
                            *tok = t;
                        }
                    }
                    Err(e) => {
                        self.drop_attempt_keep(io, id);
                        self.complete(
                            io,
                            id,
                            Err(format!("cannot watch the connection: {e}")),
                            now,
                        )
                    }
                }
            }
            Step::Done(answer) => {
                let verdict = http_verdict(&answer, range);
                self.drop_attempt_keep(io, id);
                self.complete(io, id, verdict, now);
            }
        }
    }

    /// Deregisters an attempt's connection, keeping the attempt for
    /// `complete`.
    fn drop_attempt_keep(&mut self, io: &mut Io, id: u64) {
        if let Some(a) = self.attempts.get_mut(&id) {
            if let Some((mut probe, token, _)) = a.http.take() {
                io.deregister(probe.stream(), token);
                self.by_token.remove(&token);
            }
        }
    }

    pub(crate) fn on_timer(&mut self, io: &mut Io, id: u64, now: Instant) {
        match self.timers.remove(&id) {
            Some(TimerFor::Timeout(att)) => {
                let Some(secs) = self.attempts.get(&att).map(|a| a.timeout.as_secs_f64()) else {
                    return;
                };
                self.drop_attempt_keep(io, att);
                self.complete(io, att, Err(format!("no answer within {secs}s")), now);
            }
            Some(TimerFor::Next { name, gen })
                if self
                    .waits
                    .get(&name)
                    .is_some_and(|w| w.gen == gen && !w.busy) =>
            {
                self.attempt_ready(io, &name, now);
            }
            _ => {}
        }
    }

    /// The reactor started an exec attempt.
    pub(crate) fn exec_started(&mut self, attempt: u64, exec: u64) {
        self.by_exec.insert(exec, attempt);
    }

    /// The reactor could not start an exec attempt.
    pub(crate) fn exec_failed(&mut self, io: &mut Io, attempt: u64, why: String, now: Instant) {
        self.complete(io, attempt, Err(why), now);
    }

    /// Whether an exec is one of this runner's attempts.
    pub(crate) fn owns_exec(&self, exec: u64) -> bool {
        self.by_exec.contains_key(&exec)
    }

    /// An exec attempt ended.
    pub(crate) fn exec_done(&mut self, io: &mut Io, exec: u64, end: ExecEnd, now: Instant) {
        if let Some(att) = self.by_exec.remove(&exec) {
            let timeout = self
                .attempts
                .get(&att)
                .map(|a| a.timeout)
                .unwrap_or_default();
            self.complete(io, att, end.verdict(timeout), now);
        }
    }

    /// An attempt ended: its verdict goes where its purpose says.
    fn complete(&mut self, io: &mut Io, id: u64, verdict: Result<String, String>, now: Instant) {
        let Some(a) = self.attempts.remove(&id) else {
            return;
        };
        match a.purpose {
            Purpose::Ready => self.finish_ready(io, &a.name, a.gen, verdict, now),
            Purpose::Live => self.inputs.push(Input::Liveness {
                name: a.name,
                gen: a.gen,
                result: verdict,
            }),
        }
    }
}

/// What a passing `log` or `notify` check says.
fn signal_words(kind: &str) -> String {
    match kind {
        "log" => "the line was logged".into(),
        _ => "READY=1 received".into(),
    }
}

/// How an exec attempt ended.
pub(crate) struct ExecEnd<'a> {
    pub status: ExitStatus,
    pub timed_out: bool,
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
}

impl ExecEnd<'_> {
    /// "exited with code 0", or why not with its last line of output.
    fn verdict(&self, timeout: Duration) -> Result<String, String> {
        if self.timed_out {
            return Err(format!("did not exit within {}s", timeout.as_secs_f64()));
        }
        let words = self.status.describe();
        if self.status.is_clean() {
            return Ok(words);
        }
        match last_line(self.stderr).or_else(|| last_line(self.stdout)) {
            Some(line) => Err(format!("{words}: {line}")),
            None => Err(words),
        }
    }
}

/// The last non-empty line of some output, at most 200 bytes of it.
fn last_line(out: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(line.get(..end).unwrap_or_default().to_string())
}

/// An `http` answer against the passing range; `tcp` passes on connect.
fn http_verdict(answer: &Answer, (lo, hi): (u16, u16)) -> Result<String, String> {
    match answer {
        Answer::Status(s) if (lo..=hi).contains(s) => Ok(answer.describe()),
        Answer::Connected => Ok(answer.describe()),
        _ => Err(answer.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_verdicts_say_why() {
        let end = |status, timed_out, stderr: &'static [u8]| {
            ExecEnd {
                status,
                timed_out,
                stdout: b"",
                stderr,
            }
            .verdict(Duration::from_secs(10))
        };
        assert_eq!(
            end(ExitStatus::Code(0), false, b""),
            Ok("exited with code 0".into())
        );
        assert_eq!(
            end(
                ExitStatus::Code(2),
                false,
                b"127.0.0.1:5432 - no response\n\n"
            ),
            Err("exited with code 2: 127.0.0.1:5432 - no response".into())
        );
        assert_eq!(
            end(ExitStatus::Signal(9), true, b""),
            Err("did not exit within 10s".into())
        );
    }

    #[test]
    fn http_answers_against_the_range() {
        assert_eq!(
            http_verdict(&Answer::Status(204), (200, 299)),
            Ok("answered 204".into())
        );
        assert_eq!(
            http_verdict(&Answer::Status(302), (200, 299)),
            Err("answered 302".into())
        );
        assert!(http_verdict(&Answer::Failed("connection refused".into()), (200, 399)).is_err());
        assert!(http_verdict(&Answer::Connected, (0, 0)).is_ok());
    }
}

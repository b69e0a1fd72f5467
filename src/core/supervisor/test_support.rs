//! Fixtures shared by the supervisor's tests: a supervisor with services
//! defined, answers to its actions, and readers of the actions it queued.

use super::{Action, ExitStatus, Outcome, Pid, Source, Supervisor, Timer, TimerKind};
use crate::core::definition::Definition;
use std::time::Instant;

pub(super) fn def(json: &str) -> Definition {
    Definition::from_json(json.as_bytes()).unwrap()
}

/// A supervisor holding `defs` (name, JSON definition), nothing started.
pub(super) fn sup_with(defs: &[(&str, &str)]) -> (Supervisor, Instant) {
    let now = Instant::now();
    let mut s = Supervisor::new();
    for (n, d) in defs {
        s.upsert(n, def(d), Source::Api, now).unwrap();
    }
    s.take_actions();
    (s, now)
}

/// The names of the services `actions` asks to spawn, in order.
pub(super) fn spawns(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn gen_of(s: &Supervisor, name: &str) -> u64 {
    s.get(name).unwrap().gen
}

pub(super) fn status(s: &Supervisor, name: &str) -> &'static str {
    s.get(name).unwrap().status_word()
}

/// Spawns `name` as `pid` (answering its Spawn action).
pub(super) fn spawned(s: &mut Supervisor, name: &str, pid: Pid, now: Instant) {
    let g = gen_of(s, name);
    s.on_spawned(name, g, Ok(pid), now);
}

/// Starts `name` and spawns it as `pid`, its actions taken.
pub(super) fn run(s: &mut Supervisor, name: &str, pid: Pid, now: Instant) {
    s.start(name).unwrap();
    s.take_actions();
    spawned(s, name, pid, now);
    s.take_actions();
}

/// No process of `name`'s tree is left (answering its WatchTree action).
pub(super) fn tree_empty(s: &mut Supervisor, name: &str, now: Instant) {
    let g = gen_of(s, name);
    s.on_tree_empty(name, g, now);
}

/// The main process `pid` of `name` exits with `status` and its tree
/// empties. Returns what `on_exit` said: whether it was a service's.
pub(super) fn exit_tree(
    s: &mut Supervisor,
    name: &str,
    pid: Pid,
    status: ExitStatus,
    now: Instant,
) -> bool {
    let owned = s.on_exit(pid, status, now);
    tree_empty(s, name, now);
    owned
}

/// The first timer of `kind` that `actions` schedules, and when.
pub(super) fn timer_of(actions: &[Action], kind: TimerKind) -> Option<(Instant, Timer)> {
    actions.iter().find_map(|a| match a {
        Action::Schedule { at, timer } if timer.kind == kind => Some((*at, timer.clone())),
        _ => None,
    })
}

/// How `name` settled in `actions`, if it did.
pub(super) fn settled(actions: &[Action], name: &str) -> Option<Outcome> {
    actions.iter().find_map(|a| match a {
        Action::Settled { name: n, outcome } if n == name => Some(outcome.clone()),
        _ => None,
    })
}

/// (name, reason, status) of each announced change, in order.
pub(super) fn changes(actions: &[Action]) -> Vec<(String, &'static str, &'static str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Changed(c) => Some((c.name.clone(), c.reason.word(), c.status)),
            _ => None,
        })
        .collect()
}

/// One expected change, as `changes` lists them.
pub(super) fn ch(
    name: &str,
    reason: &'static str,
    status: &'static str,
) -> (String, &'static str, &'static str) {
    (name.to_string(), reason, status)
}

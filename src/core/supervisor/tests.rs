//! State-machine tests: inputs in, actions out, no processes.

use super::*;
use crate::core::definition::{Definition, RestartPolicy};

fn def(json: &str) -> Definition {
    Definition::from_json(json.as_bytes()).unwrap()
}

fn sup_with(defs: &[(&str, &str)]) -> (Supervisor, Instant) {
    let now = Instant::now();
    let mut s = Supervisor::new();
    for (n, d) in defs {
        s.upsert(n, def(d), Source::Api, now).unwrap();
    }
    s.take_actions();
    (s, now)
}

fn spawns(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn gen_of(s: &Supervisor, name: &str) -> u64 {
    s.get(name).unwrap().gen
}

fn status(s: &Supervisor, name: &str) -> &'static str {
    s.get(name).unwrap().status_word()
}

/// Spawns `name` as `pid` (answering its Spawn action).
fn spawned(s: &mut Supervisor, name: &str, pid: Pid, now: Instant) {
    let g = gen_of(s, name);
    s.on_spawned(name, g, Ok(pid), now);
}

#[test]
fn plain_service_runs_at_spawn_and_settles() {
    let (mut s, now) = sup_with(&[("web", r#"{"cmd":"sleep"}"#)]);
    assert_eq!(s.start("web"), Ok(Progress::Pending));
    let a = s.take_actions();
    assert_eq!(spawns(&a), ["web"]);
    assert!(a.contains(&Action::Persist), "wanted state persisted");
    assert_eq!(status(&s, "web"), "unknown");
    spawned(&mut s, "web", 10, now);
    assert_eq!(status(&s, "web"), "running");
    assert!(s.take_actions().contains(&Action::Settled {
        name: "web".into(),
        outcome: Outcome::Running
    }));
    assert_eq!(
        s.start("web"),
        Ok(Progress::Done),
        "start of running is a no-op"
    );
    assert!(spawns(&s.take_actions()).is_empty());
}

#[test]
fn needs_start_in_order_each_after_its_need_is_ready() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db","health_port":5432}"#),
        ("cache", r#"{"cmd":"c","needs":["db"],"health_port":6379}"#),
        ("app", r#"{"cmd":"a","needs":["cache"]}"#),
    ]);
    s.start("app").unwrap();
    assert_eq!(
        spawns(&s.take_actions()),
        ["db"],
        "only the deepest need spawns first"
    );
    spawned(&mut s, "db", 1, now);
    let a = s.take_actions();
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::WatchPort { port: 5432, .. })));
    assert!(spawns(&a).is_empty(), "cache waits for db's port");
    assert_eq!(status(&s, "db"), "unknown");
    s.on_ready("db", gen_of(&s, "db"), now);
    assert_eq!(spawns(&s.take_actions()), ["cache"]);
    spawned(&mut s, "cache", 2, now);
    s.take_actions();
    s.on_ready("cache", gen_of(&s, "cache"), now);
    assert_eq!(spawns(&s.take_actions()), ["app"]);
    spawned(&mut s, "app", 3, now);
    for n in ["db", "cache", "app"] {
        assert_eq!(status(&s, n), "running", "{n}");
        assert_eq!(s.get(n).unwrap().wanted, Wanted::Up, "{n}");
    }
}

#[test]
fn failed_need_fails_dependent_with_its_name() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db"}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
    ]);
    s.start("app").unwrap();
    s.take_actions();
    let g = gen_of(&s, "db");
    s.on_spawned(
        "db",
        g,
        Err(StartError::Spawn("cmd 'db' not found on PATH".into())),
        now,
    );
    assert_eq!(status(&s, "db"), "failed");
    assert_eq!(status(&s, "app"), "failed");
    let err = s.get("app").unwrap().error.clone().unwrap();
    assert!(
        err.contains("need 'db' failed") && err.contains("not found"),
        "{err}"
    );
    let a = s.take_actions();
    assert!(a.iter().any(
        |a| matches!(a, Action::Settled { name, outcome: Outcome::Failed(_) } if name == "app")
    ));
}

#[test]
fn missing_need_and_cycle_are_errors_not_hangs() {
    let (mut s, _) = sup_with(&[("app", r#"{"cmd":"a","needs":["ghost"]}"#)]);
    let e = s.start("app").unwrap_err();
    assert!(e.to_string().contains("'ghost'"), "{e}");
    assert_eq!(status(&s, "app"), "failed");

    let (mut s, now) = sup_with(&[("a", r#"{"cmd":"a","needs":["b"]}"#)]);
    let e = s
        .upsert("b", def(r#"{"cmd":"b","needs":["a"]}"#), Source::Api, now)
        .unwrap_err();
    assert!(
        matches!(e, SupError::Conflict(ref m) if m.contains("cycle")),
        "{e:?}"
    );
    assert!(s.get("b").is_none(), "a cyclic definition is not stored");
    let e = s
        .upsert(
            "self",
            def(r#"{"cmd":"b","needs":["self"]}"#),
            Source::Api,
            now,
        )
        .unwrap_err();
    assert!(matches!(e, SupError::Conflict(_)));
}

#[test]
fn health_timeout_kills_before_failing() {
    let (mut s, now) = sup_with(&[(
        "db",
        r#"{"cmd":"db","health_port":1234,"health_timeout_secs":2}"#,
    )]);
    s.start("db").unwrap();
    s.take_actions();
    spawned(&mut s, "db", 7, now);
    let a = s.take_actions();
    let timer = a
        .iter()
        .find_map(|a| match a {
            Action::Schedule { at, timer } if timer.kind == TimerKind::HealthDeadline => {
                Some((*at, timer.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(timer.0, now + Duration::from_secs(2));
    s.on_timer(&timer.1, timer.0);
    let a = s.take_actions();
    assert!(a.contains(&Action::KillTree {
        name: "db".into(),
        pgid: 7
    }));
    assert_eq!(
        status(&s, "db"),
        "unknown",
        "not failed while processes may live"
    );
    assert!(s.on_exit(7, ExitStatus::Signal(9), timer.0));
    let a = s.take_actions();
    let g = a
        .iter()
        .find_map(|a| match a {
            Action::WatchTree { gen, .. } => Some(*gen),
            _ => None,
        })
        .unwrap();
    s.on_tree_empty("db", g, timer.0);
    assert_eq!(status(&s, "db"), "failed");
    assert!(s
        .get("db")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("did not accept"));
}

#[test]
fn stale_timer_is_ignored() {
    let (mut s, now) = sup_with(&[("db", r#"{"cmd":"db","health_port":1234}"#)]);
    s.start("db").unwrap();
    spawned(&mut s, "db", 7, now);
    let a = s.take_actions();
    let t = a
        .iter()
        .find_map(|a| match a {
            Action::Schedule { timer, .. } => Some(timer.clone()),
            _ => None,
        })
        .unwrap();
    s.on_ready("db", t.gen, now);
    s.on_timer(&t, now + Duration::from_secs(100));
    assert_eq!(status(&s, "db"), "running");
}

fn run(s: &mut Supervisor, name: &str, pid: Pid, now: Instant) {
    s.start(name).unwrap();
    s.take_actions();
    spawned(s, name, pid, now);
    s.take_actions();
}

fn tree_empty(s: &mut Supervisor, name: &str, now: Instant) {
    let g = gen_of(s, name);
    s.on_tree_empty(name, g, now);
}

#[test]
fn stop_escalates_to_sigkill_after_timeout() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w","stop_timeout_secs":3}"#)]);
    run(&mut s, "w", 5, now);
    assert_eq!(s.stop("w", now), Ok(Progress::Pending));
    let a = s.take_actions();
    assert!(a.contains(&Action::Terminate {
        name: "w".into(),
        pgid: 5
    }));
    let t = a
        .iter()
        .find_map(|a| match a {
            Action::Schedule { at, timer } if timer.kind == TimerKind::StopKill => {
                Some((*at, timer.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(t.0, now + Duration::from_secs(3));
    assert_eq!(s.get("w").unwrap().wanted, Wanted::Down);
    s.on_timer(&t.1, t.0);
    assert!(s.take_actions().contains(&Action::KillTree {
        name: "w".into(),
        pgid: 5
    }));
    s.on_exit(5, ExitStatus::Signal(9), t.0);
    s.take_actions();
    assert_eq!(status(&s, "w"), "unknown", "waits for the tree");
    tree_empty(&mut s, "w", t.0);
    assert_eq!(status(&s, "w"), "stopped");
    assert!(s.take_actions().contains(&Action::Settled {
        name: "w".into(),
        outcome: Outcome::Stopped
    }));
    assert_eq!(
        s.stop("w", now),
        Ok(Progress::Done),
        "stop of stopped is done"
    );
}

#[test]
fn crash_restarts_with_backoff_and_counts() {
    let (mut s, t0) = sup_with(&[("w", r#"{"cmd":"w"}"#)]);
    run(&mut s, "w", 5, t0);
    // First crash: immediate restart.
    assert!(s.on_exit(5, ExitStatus::Signal(9), t0));
    s.take_actions();
    tree_empty(&mut s, "w", t0);
    assert_eq!(spawns(&s.take_actions()), ["w"], "first retry is immediate");
    assert_eq!(s.get("w").unwrap().restarts, 1);
    spawned(&mut s, "w", 6, t0);
    s.take_actions();
    // Second quick crash: 100 ms backoff.
    s.on_exit(6, ExitStatus::Code(3), t0);
    s.take_actions();
    tree_empty(&mut s, "w", t0);
    let a = s.take_actions();
    assert!(spawns(&a).is_empty());
    let (at, timer) = a
        .iter()
        .find_map(|a| match a {
            Action::Schedule { at, timer } if timer.kind == TimerKind::RestartAfter => {
                Some((*at, timer.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(at, t0 + Duration::from_millis(100));
    assert_eq!(status(&s, "w"), "unknown");
    assert_eq!(s.get("w").unwrap().exit_code, Some(3));
    s.on_timer(&timer, at);
    assert_eq!(spawns(&s.take_actions()), ["w"]);
    assert_eq!(s.get("w").unwrap().restarts, 2);
    // A long stable run resets the backoff.
    spawned(&mut s, "w", 7, at);
    s.take_actions();
    let later = at + Duration::from_secs(60);
    s.on_exit(7, ExitStatus::Code(1), later);
    s.take_actions();
    tree_empty(&mut s, "w", later);
    assert_eq!(
        spawns(&s.take_actions()),
        ["w"],
        "fast again after a stable run"
    );
}

#[test]
fn restart_policies() {
    let cases = [
        (
            RestartPolicy::OnFailure,
            ExitStatus::Code(0),
            "stopped",
            false,
        ),
        (
            RestartPolicy::OnFailure,
            ExitStatus::Code(1),
            "unknown",
            true,
        ),
        (RestartPolicy::Always, ExitStatus::Code(0), "unknown", true),
        (RestartPolicy::Never, ExitStatus::Code(1), "failed", false),
        (RestartPolicy::Never, ExitStatus::Code(0), "stopped", false),
        (
            RestartPolicy::Never,
            ExitStatus::Signal(11),
            "failed",
            false,
        ),
    ];
    for (i, (policy, exit, word, restarts)) in cases.into_iter().enumerate() {
        let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#)]);
        let mut d = s.get("w").unwrap().def.clone();
        d.restart = policy;
        s.upsert("w", d, Source::Api, now).unwrap();
        run(&mut s, "w", 9, now);
        s.on_exit(9, exit, now);
        s.take_actions();
        tree_empty(&mut s, "w", now);
        let a = s.take_actions();
        assert_eq!(!spawns(&a).is_empty(), restarts, "case {i}");
        if !restarts {
            assert_eq!(status(&s, "w"), word, "case {i}");
        }
    }
}

#[test]
fn death_before_health_fails_with_exit_status() {
    let (mut s, now) = sup_with(&[("db", r#"{"cmd":"db","health_port":99}"#)]);
    s.start("db").unwrap();
    spawned(&mut s, "db", 4, now);
    s.take_actions();
    s.on_exit(4, ExitStatus::Code(2), now);
    s.take_actions();
    tree_empty(&mut s, "db", now);
    assert_eq!(status(&s, "db"), "failed");
    let e = s.get("db").unwrap().error.clone().unwrap();
    assert!(
        e.contains("exited with code 2") && e.contains("port 99"),
        "{e}"
    );
    assert_eq!(s.get("db").unwrap().exit_code, Some(2));
}

#[test]
fn unknown_pid_is_an_orphan() {
    let (mut s, now) = sup_with(&[]);
    assert!(!s.on_exit(4242, ExitStatus::Code(0), now));
}

#[test]
fn restart_of_running_stops_then_starts() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#)]);
    run(&mut s, "w", 5, now);
    assert_eq!(s.restart("w", now), Ok(Progress::Pending));
    assert!(s.take_actions().contains(&Action::Terminate {
        name: "w".into(),
        pgid: 5
    }));
    s.on_exit(5, ExitStatus::Signal(15), now);
    s.take_actions();
    tree_empty(&mut s, "w", now);
    assert_eq!(spawns(&s.take_actions()), ["w"]);
    assert_eq!(
        s.get("w").unwrap().restarts,
        0,
        "a requested restart is not a crash"
    );
}

#[test]
fn delete_stops_then_removes() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#), ("idle", r#"{"cmd":"x"}"#)]);
    run(&mut s, "w", 5, now);
    assert_eq!(s.delete("w", now), Ok(Progress::Pending));
    assert!(s.get("w").is_some());
    s.on_exit(5, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "w", now);
    assert!(s.get("w").is_none());
    assert!(s.take_actions().contains(&Action::Settled {
        name: "w".into(),
        outcome: Outcome::Deleted
    }));
    assert_eq!(s.delete("idle", now), Ok(Progress::Done));
    assert_eq!(
        s.delete("idle", now),
        Err(SupError::NotFound("idle".into()))
    );
}

#[test]
fn start_during_stop_restarts_after() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#)]);
    run(&mut s, "w", 5, now);
    s.stop("w", now).unwrap();
    assert_eq!(s.start("w"), Ok(Progress::Pending));
    s.take_actions();
    s.on_exit(5, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "w", now);
    assert_eq!(spawns(&s.take_actions()), ["w"]);
}

#[test]
fn stop_while_waiting_for_needs_settles_stopped() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db","health_port":5}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
    ]);
    s.start("app").unwrap();
    s.take_actions();
    assert_eq!(s.stop("app", now), Ok(Progress::Done));
    assert_eq!(status(&s, "app"), "stopped");
    spawned(&mut s, "db", 3, now);
    s.on_ready("db", gen_of(&s, "db"), now);
    assert!(
        spawns(&s.take_actions()).is_empty(),
        "stopped app stays stopped"
    );
}

#[test]
fn shutdown_stops_dependents_first_and_keeps_wanted() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db"}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
    ]);
    s.start("app").unwrap();
    s.take_actions();
    spawned(&mut s, "db", 1, now);
    s.take_actions();
    spawned(&mut s, "app", 2, now);
    s.take_actions();
    s.shutdown(now);
    let a = s.take_actions();
    let terms: Vec<&Action> = a
        .iter()
        .filter(|a| matches!(a, Action::Terminate { .. }))
        .collect();
    assert_eq!(
        terms,
        [&Action::Terminate {
            name: "app".into(),
            pgid: 2
        }],
        "db waits for app"
    );
    s.on_exit(2, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "app", now);
    let a = s.take_actions();
    assert!(a.contains(&Action::Terminate {
        name: "db".into(),
        pgid: 1
    }));
    assert!(spawns(&a).is_empty(), "no restart during shutdown");
    s.on_exit(1, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "db", now);
    assert!(s.take_actions().contains(&Action::ShutdownComplete));
    assert_eq!(s.get("db").unwrap().wanted, Wanted::Up, "wanted state kept");
    assert!(s.start("db").is_err(), "no starts during shutdown");
}

#[test]
fn shutdown_with_nothing_running_completes_at_once() {
    let (mut s, now) = sup_with(&[("x", r#"{"cmd":"x"}"#)]);
    s.shutdown(now);
    assert!(s.take_actions().contains(&Action::ShutdownComplete));
}

#[test]
fn changed_definition_restarts_running_service() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#)]);
    run(&mut s, "w", 5, now);
    assert_eq!(
        s.upsert("w", def(r#"{"cmd":"w"}"#), Source::Api, now),
        Ok(false)
    );
    assert!(
        !s.take_actions()
            .iter()
            .any(|a| matches!(a, Action::Terminate { .. })),
        "same definition: no restart"
    );
    s.upsert("w", def(r#"{"cmd":"w","args":["x"]}"#), Source::Api, now)
        .unwrap();
    assert!(s
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::Terminate { .. })));
}

#[test]
fn broken_dropin_is_failed_and_cannot_start() {
    let (mut s, _) = sup_with(&[("app", r#"{"cmd":"a","needs":["bad"]}"#)]);
    s.add_broken("bad", "bad.toml: expected `=`".into());
    assert_eq!(status(&s, "bad"), "failed");
    assert!(matches!(s.start("bad"), Err(SupError::Failed(m)) if m.contains("expected")));
    assert!(matches!(s.start("app"), Err(SupError::Failed(m)) if m.contains("'bad'")));
}

/// (name, reason, status) of each announced change, in order.
fn changes(actions: &[Action]) -> Vec<(String, &'static str, &'static str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Changed(c) => Some((c.name.clone(), c.reason.word(), c.status)),
            _ => None,
        })
        .collect()
}

fn ch(
    name: &str,
    reason: &'static str,
    status: &'static str,
) -> (String, &'static str, &'static str) {
    (name.to_string(), reason, status)
}

#[test]
fn each_change_is_announced_once_in_order_with_its_fields_then() {
    let now = Instant::now();
    let mut s = Supervisor::new();
    let mut all = Vec::new();
    s.upsert("web", def(r#"{"cmd":"sleep"}"#), Source::Api, now)
        .unwrap();
    s.start("web").unwrap();
    spawned(&mut s, "web", 5, now);
    all.extend(s.take_actions());
    // A crash under on-failure: exited, restarting, started again.
    s.on_exit(5, ExitStatus::Signal(9), now);
    let exited = s.take_actions();
    let Some(Action::Changed(c)) = exited.iter().find(|a| matches!(a, Action::Changed(_))) else {
        panic!("no change announced: {exited:?}");
    };
    assert_eq!((c.pid, c.exit_code, c.restarts), (None, Some(137), 0));
    all.extend(exited);
    tree_empty(&mut s, "web", now);
    let restarting = s.take_actions();
    let Some(Action::Changed(c)) = restarting.iter().find(|a| matches!(a, Action::Changed(_)))
    else {
        panic!("no change announced: {restarting:?}");
    };
    assert_eq!(c.restarts, 1);
    all.extend(restarting);
    spawned(&mut s, "web", 6, now);
    s.stop("web", now).unwrap();
    all.extend(s.take_actions());
    s.on_exit(6, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "web", now);
    // A stop of a stopped service changes nothing: no announcement.
    s.stop("web", now).unwrap();
    s.delete("web", now).unwrap();
    all.extend(s.take_actions());
    assert_eq!(
        changes(&all),
        [
            ch("web", "defined", "stopped"),
            ch("web", "started", "running"),
            ch("web", "exited", "unknown"),
            ch("web", "restarting", "unknown"),
            ch("web", "started", "running"),
            ch("web", "exited", "unknown"),
            ch("web", "stopped", "stopped"),
            ch("web", "deleted", "stopped"),
        ]
    );
}

#[test]
fn health_checked_start_is_started_then_ready_and_a_restart_says_so() {
    let (mut s, now) = sup_with(&[("db", r#"{"cmd":"db","health_port":5432}"#)]);
    s.start("db").unwrap();
    spawned(&mut s, "db", 7, now);
    let g = gen_of(&s, "db");
    s.on_ready("db", g, now);
    s.restart("db", now).unwrap();
    s.on_exit(7, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "db", now);
    let a = s.take_actions();
    assert_eq!(
        changes(&a),
        [
            ch("db", "started", "unknown"),
            ch("db", "ready", "running"),
            ch("db", "exited", "unknown"),
            ch("db", "restarting", "unknown"),
        ]
    );
    let started = a.iter().find_map(|a| match a {
        Action::Changed(c) if c.reason == Reason::Started => Some(c.pid),
        _ => None,
    });
    assert_eq!(started, Some(Some(7)), "started carries the pid");
    // The restart announcement comes before the spawn it leads to.
    let restarting = a
        .iter()
        .position(|a| matches!(a, Action::Changed(c) if c.reason == Reason::Restarting));
    let respawn = a.iter().rposition(|a| matches!(a, Action::Spawn { .. }));
    assert!(restarting < respawn, "{a:?}");
}

#[test]
fn a_failure_is_announced_before_the_failures_it_causes() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db"}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
    ]);
    s.start("app").unwrap();
    let g = gen_of(&s, "db");
    s.on_spawned("db", g, Err(StartError::Spawn("not found".into())), now);
    let a = s.take_actions();
    assert_eq!(
        changes(&a),
        [ch("db", "failed", "failed"), ch("app", "failed", "failed")]
    );
    // The failure's settled answer comes first, so the reactor can add the
    // last lines of output to the error before the event is made.
    let settled = a
        .iter()
        .position(|a| matches!(a, Action::Settled { name, .. } if name == "db"));
    let changed = a
        .iter()
        .position(|a| matches!(a, Action::Changed(c) if c.name == "db"));
    assert!(settled < changed, "{a:?}");
    assert_eq!(
        a.iter().find_map(|a| match a {
            Action::Changed(c) if c.name == "db" => c.error.clone(),
            _ => None,
        }),
        Some("not found".to_string())
    );
}

#[test]
fn a_broken_dropin_and_a_replaced_definition_are_announced() {
    let (mut s, now) = sup_with(&[("web", r#"{"cmd":"sleep"}"#)]);
    s.add_broken("bad", "bad.toml: expected `=`".into());
    s.start("web").unwrap();
    spawned(&mut s, "web", 3, now);
    s.take_actions();
    s.upsert(
        "web",
        def(r#"{"cmd":"sleep","args":["2"]}"#),
        Source::Api,
        now,
    )
    .unwrap();
    s.on_exit(3, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "web", now);
    spawned(&mut s, "web", 4, now);
    let a = s.take_actions();
    assert_eq!(
        changes(&a),
        [
            ch("web", "defined", "running"),
            ch("web", "exited", "unknown"),
            ch("web", "restarting", "unknown"),
            ch("web", "started", "running"),
        ]
    );
    let (mut s, _) = sup_with(&[]);
    s.add_broken("bad", "bad.toml: expected `=`".into());
    assert_eq!(changes(&s.take_actions()), [ch("bad", "failed", "failed")]);
}

#[test]
fn an_oom_kill_is_a_crash_whose_error_says_so() {
    let (mut s, now) = sup_with(&[
        ("hog", r#"{"cmd":"h","limits":{"memory_max":"32M"}}"#),
        ("keep", r#"{"cmd":"k","restart":"never"}"#),
    ]);
    // Under on-failure it restarts, and the error says why, also once it
    // runs again.
    run(&mut s, "hog", 5, now);
    s.handle(
        Input::OomKilled {
            pid: 5,
            status: ExitStatus::Signal(9),
        },
        now,
    );
    s.take_actions();
    tree_empty(&mut s, "hog", now);
    assert_eq!(spawns(&s.take_actions()), ["hog"]);
    assert_eq!(s.get("hog").unwrap().restarts, 1);
    spawned(&mut s, "hog", 6, now);
    let hog = s.get("hog").unwrap();
    assert_eq!(hog.status_word(), "running");
    assert_eq!(
        hog.error.as_deref(),
        Some("killed by the OOM killer (killed by signal 9, memory_max 32M); restarted")
    );
    // A plain crash after that clears it once it runs again.
    s.on_exit(6, ExitStatus::Code(1), now);
    s.take_actions();
    tree_empty(&mut s, "hog", now);
    let timer = s.take_actions().into_iter().find_map(|a| match a {
        Action::Schedule { timer, .. } if timer.kind == TimerKind::RestartAfter => Some(timer),
        _ => None,
    });
    s.on_timer(&timer.unwrap(), now);
    s.take_actions();
    spawned(&mut s, "hog", 7, now);
    assert_eq!(status(&s, "hog"), "running");
    assert_eq!(s.get("hog").unwrap().error, None);

    // Under never it fails with that cause.
    run(&mut s, "keep", 8, now);
    s.handle(
        Input::OomKilled {
            pid: 8,
            status: ExitStatus::Signal(9),
        },
        now,
    );
    s.take_actions();
    tree_empty(&mut s, "keep", now);
    let a = s.take_actions();
    let failure = a.iter().find_map(|a| match a {
        Action::Settled {
            outcome: Outcome::Failed(f),
            ..
        } => Some(f.clone()),
        _ => None,
    });
    let cause = failure.map(|f| f.cause);
    assert_eq!(
        cause,
        Some(Cause::OomKilled {
            status: ExitStatus::Signal(9),
            memory_max: None
        })
    );
    assert_eq!(status(&s, "keep"), "failed");
    assert!(s
        .get("keep")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("OOM killer"));
}

#[test]
fn an_exit_by_the_oom_killer_is_announced_as_oom() {
    let (mut s, now) = sup_with(&[("web", r#"{"cmd":"sleep"}"#)]);
    run(&mut s, "web", 5, now);
    let status = ExitStatus::Signal(9);
    s.handle(Input::OomKilled { pid: 5, status }, now);
    assert_eq!(changes(&s.take_actions()), [ch("web", "oom", "unknown")]);
    tree_empty(&mut s, "web", now);
    assert_eq!(
        changes(&s.take_actions()),
        [ch("web", "restarting", "unknown")]
    );
}

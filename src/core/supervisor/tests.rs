//! State-machine tests: inputs in, actions out, no processes.

use super::test_support::*;
use super::*;
use crate::core::bounds;
use crate::core::definition::RestartPolicy;
use std::time::Duration;

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
    let timer = timer_of(&a, TimerKind::HealthDeadline).unwrap();
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
    let t = timer_of(&a, TimerKind::StopKill).unwrap();
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
    let (at, timer) = timer_of(&a, TimerKind::RestartAfter).unwrap();
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
    exit_tree(&mut s, "w", 5, ExitStatus::Signal(15), now);
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
    exit_tree(&mut s, "w", 5, ExitStatus::Signal(15), now);
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
    exit_tree(&mut s, "app", 2, ExitStatus::Signal(15), now);
    let a = s.take_actions();
    assert!(a.contains(&Action::Terminate {
        name: "db".into(),
        pgid: 1
    }));
    assert!(spawns(&a).is_empty(), "no restart during shutdown");
    exit_tree(&mut s, "db", 1, ExitStatus::Signal(15), now);
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
    exit_tree(&mut s, "web", 6, ExitStatus::Signal(15), now);
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
    exit_tree(&mut s, "db", 7, ExitStatus::Signal(15), now);
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
    exit_tree(&mut s, "web", 3, ExitStatus::Signal(15), now);
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
fn huge_timeouts_never_overflow_a_deadline() {
    // Values an older state file may hold: validation refuses them now, and
    // the supervisor clamps them anyway instead of panicking mid-stop.
    let now = Instant::now();
    let mut s = Supervisor::new();
    let mut d = def(r#"{"cmd":"w","health_port":80}"#);
    d.stop_timeout_secs = 1e19;
    d.health_timeout_secs = 1e19;
    s.upsert("w", d, Source::Api, now).unwrap();
    s.start("w").unwrap();
    s.take_actions();
    spawned(&mut s, "w", 10, now);
    let health_at = s.take_actions().iter().find_map(|a| match a {
        Action::Schedule { at, .. } => Some(*at),
        _ => None,
    });
    let max_health = Duration::from_secs_f64(bounds::MAX_HEALTH_TIMEOUT_SECS);
    assert_eq!(health_at, Some(now + max_health));
    s.stop("w", now).unwrap();
    let a = s.take_actions();
    assert!(a.contains(&Action::Terminate {
        name: "w".into(),
        pgid: 10
    }));
    let max_stop = Duration::from_secs_f64(bounds::MAX_STOP_TIMEOUT_SECS);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Schedule { at, .. } if *at == now + max_stop)));
    s.rearm(now);
}

#[test]
fn number_of_services_is_limited() {
    let now = Instant::now();
    let mut s = Supervisor::new();
    for i in 0..bounds::MAX_SERVICES {
        s.upsert(&format!("s{i}"), def(r#"{"cmd":"x"}"#), Source::Api, now)
            .unwrap();
    }
    let e = s
        .upsert("one-more", def(r#"{"cmd":"x"}"#), Source::Api, now)
        .unwrap_err();
    assert!(
        matches!(&e, SupError::Conflict(m) if m.contains("at most 1024 services")),
        "{e:?}"
    );
    assert!(!s.add_broken("broken", "bad file".into()));
    assert_eq!(s.len(), bounds::MAX_SERVICES);
    // Replacing an existing one is still fine; after a delete there is room.
    assert_eq!(
        s.upsert("s0", def(r#"{"cmd":"y"}"#), Source::Api, now),
        Ok(false)
    );
    s.delete("s1", now).unwrap();
    assert_eq!(
        s.upsert("one-more", def(r#"{"cmd":"x"}"#), Source::Api, now),
        Ok(true)
    );
}

#[test]
fn needs_depth_is_limited_and_nothing_is_lost() {
    let now = Instant::now();
    let mut s = Supervisor::new();
    // c0 needs c1 ... needs c63: a chain of 64, defined leaf first.
    for i in (0..bounds::MAX_NEEDS_DEPTH).rev() {
        let needs = if i + 1 < bounds::MAX_NEEDS_DEPTH {
            format!(r#","needs":["c{}"]"#, i + 1)
        } else {
            String::new()
        };
        s.upsert(
            &format!("c{i}"),
            def(&format!(r#"{{"cmd":"x"{needs}}}"#)),
            Source::Api,
            now,
        )
        .unwrap();
    }
    // One more on top, or one more below the bottom (closing through a
    // formerly missing need), is refused and changes nothing.
    let e = s
        .upsert(
            "top",
            def(r#"{"cmd":"x","needs":["c0"]}"#),
            Source::Api,
            now,
        )
        .unwrap_err();
    assert!(
        matches!(&e, SupError::Conflict(m) if m.contains("65 services")),
        "{e:?}"
    );
    s.upsert(
        "c63",
        def(r#"{"cmd":"x","needs":["below"]}"#),
        Source::Api,
        now,
    )
    .unwrap();
    let e = s
        .upsert("below", def(r#"{"cmd":"x"}"#), Source::Api, now)
        .unwrap_err();
    assert!(matches!(&e, SupError::Conflict(m) if m.contains("at most 64")));
    assert!(s.get("top").is_none() && s.get("below").is_none());
    assert_eq!(s.len(), bounds::MAX_NEEDS_DEPTH);
    s.upsert("c63", def(r#"{"cmd":"x"}"#), Source::Api, now)
        .unwrap();
    s.take_actions();
    assert_eq!(s.start("c0"), Ok(Progress::Pending));
    assert_eq!(spawns(&s.take_actions()), ["c63"], "the deepest need first");
}

#[test]
fn a_late_spawn_of_a_deleted_or_restarted_service_is_killed_and_changes_nothing() {
    let (mut s, now) = sup_with(&[("c", r#"{"cmd":"c"}"#)]);
    s.start("c").unwrap();
    let old_gen = gen_of(&s, "c");
    s.take_actions();
    // Deleted while it was being spawned, then defined and started again.
    s.delete("c", now).unwrap();
    s.upsert("c", def(r#"{"cmd":"c"}"#), Source::Api, now)
        .unwrap();
    s.start("c").unwrap();
    s.take_actions();
    let new_gen = gen_of(&s, "c");
    s.on_spawned("c", old_gen, Ok(100), now);
    assert_eq!(
        s.take_actions(),
        [Action::KillTree {
            name: "c".into(),
            pgid: 100
        }],
        "the old run's process is killed"
    );
    assert_eq!(
        s.get("c").unwrap().phase,
        Phase::Spawning,
        "the new run waits on"
    );
    assert!(
        !s.on_exit(100, ExitStatus::Signal(9), now),
        "an orphan's exit"
    );
    s.on_spawned("c", new_gen, Ok(102), now);
    assert_eq!(status(&s, "c"), "running");
}

#[test]
fn shutdown_completes_when_a_waiting_dependent_frees_its_need() {
    // app waits for db, whose spawn is in flight (a container pull, say).
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db"}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
    ]);
    s.start("app").unwrap();
    let db_gen = gen_of(&s, "db");
    s.take_actions();
    s.shutdown(now);
    // app stops at once, and then nothing needs db: it must stop too.
    let a = s.take_actions();
    assert!(a.contains(&Action::ShutdownComplete), "{a:?}");
    // Its late spawn is killed, not run behind the shutdown's back.
    s.on_spawned("db", db_gen, Ok(50), now);
    assert_eq!(
        s.take_actions(),
        [Action::KillTree {
            name: "db".into(),
            pgid: 50
        }]
    );
    assert_eq!(status(&s, "db"), "stopped");
}

#[test]
fn a_waiting_service_redefined_with_other_needs_does_not_wait_for_ever() {
    let (mut s, now) = sup_with(&[
        ("slow", r#"{"cmd":"s","health_port":9}"#),
        ("fast", r#"{"cmd":"f"}"#),
        ("app", r#"{"cmd":"a","needs":["slow"]}"#),
    ]);
    s.start("app").unwrap();
    s.take_actions();
    // While app waits for slow, its needs become fast only.
    s.upsert(
        "app",
        def(r#"{"cmd":"a","needs":["fast"]}"#),
        Source::Api,
        now,
    )
    .unwrap();
    assert_eq!(spawns(&s.take_actions()), ["fast"], "the new need starts");
    spawned(&mut s, "fast", 20, now);
    assert_eq!(spawns(&s.take_actions()), ["app"]);
    spawned(&mut s, "app", 21, now);
    assert_eq!(status(&s, "app"), "running");
}

#[test]
fn a_start_refused_while_stopping_keeps_the_process_tracked() {
    let (mut s, now) = sup_with(&[("a", r#"{"cmd":"a"}"#)]);
    s.start("a").unwrap();
    s.take_actions();
    spawned(&mut s, "a", 30, now);
    s.stop("a", now).unwrap();
    // Redefined with a missing need while SIGTERM is pending: the start
    // is refused, and the stop still follows its process to the end.
    s.upsert(
        "a",
        def(r#"{"cmd":"a","needs":["ghost"]}"#),
        Source::Api,
        now,
    )
    .unwrap();
    s.take_actions();
    assert!(s.start("a").is_err());
    assert!(matches!(s.get("a").unwrap().phase, Phase::Stopping { .. }));
    assert!(s.on_exit(30, ExitStatus::Signal(15), now));
    let watch = s.take_actions().into_iter().find_map(|a| match a {
        Action::WatchTree { gen, .. } => Some(gen),
        _ => None,
    });
    s.on_tree_empty("a", watch.unwrap(), now);
    assert_eq!(status(&s, "a"), "stopped");
    // A delete now has no process to forget.
    assert_eq!(s.delete("a", now), Ok(Progress::Done));
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
    let (_, timer) = timer_of(&s.take_actions(), TimerKind::RestartAfter).unwrap();
    s.on_timer(&timer, now);
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

// ----- tests added for mutants that survived (see `make mutants`) -----

#[test]
fn accessors_tell_the_truth() {
    let (mut s, now) = sup_with(&[]);
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    s.upsert("a", def(r#"{"cmd":"a"}"#), Source::Api, now)
        .unwrap();
    s.upsert("b", def(r#"{"cmd":"b"}"#), Source::File, now)
        .unwrap();
    assert!(!s.is_empty());
    assert_eq!(s.len(), 2);
    let names: Vec<&str> = s.services().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    run(&mut s, "a", 41, now);
    assert_eq!(s.owner_of(41), Some("a"));
    assert_eq!(s.owner_of(42), None);
    s.set_wanted("b", Wanted::Up);
    assert_eq!(s.get("b").unwrap().wanted, Wanted::Up);
    assert!(!s.is_shutting_down());
    s.shutdown(now);
    assert!(s.is_shutting_down());
}

/// After a restore from a snapshot, pending waits start over from `now`.
#[test]
fn rearm_restarts_every_pending_wait_from_now() {
    let (mut s, t0) = sup_with(&[
        (
            "web",
            r#"{"cmd":"w","health_port":8080,"health_timeout_secs":5}"#,
        ),
        ("slow", r#"{"cmd":"s","stop_timeout_secs":7}"#),
        ("crashy", r#"{"cmd":"c"}"#),
        ("idle", r#"{"cmd":"i"}"#),
    ]);
    s.start("web").unwrap();
    spawned(&mut s, "web", 1, t0);
    run(&mut s, "slow", 2, t0);
    s.stop("slow", t0).unwrap();
    // Two quick crashes: the second restart waits (backoff).
    run(&mut s, "crashy", 3, t0);
    s.on_exit(3, ExitStatus::Code(1), t0);
    tree_empty(&mut s, "crashy", t0);
    spawned(&mut s, "crashy", 4, t0);
    s.on_exit(4, ExitStatus::Code(1), t0);
    tree_empty(&mut s, "crashy", t0);
    assert_eq!(s.get("crashy").unwrap().phase, Phase::BackingOff);
    s.take_actions();

    let now = t0 + Duration::from_secs(1000);
    s.rearm(now);
    let a = s.take_actions();
    let at = |name: &str, kind: TimerKind| {
        a.iter().find_map(|a| match a {
            Action::Schedule { at, timer } if timer.name == name && timer.kind == kind => {
                assert_eq!(timer.gen, gen_of(&s, name), "{name}: current gen");
                Some(*at)
            }
            _ => None,
        })
    };
    assert_eq!(
        at("web", TimerKind::HealthDeadline),
        Some(now + Duration::from_secs(5))
    );
    assert!(a.contains(&Action::WatchPort {
        name: "web".into(),
        gen: gen_of(&s, "web"),
        port: 8080
    }));
    assert_eq!(
        at("slow", TimerKind::StopKill),
        Some(now + Duration::from_secs(7))
    );
    assert_eq!(at("crashy", TimerKind::RestartAfter), Some(now));
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::Schedule { timer, .. } if timer.name == "idle")),
        "{a:?}"
    );
    // The old timers are stale now, the new ones act.
    let t = Timer {
        name: "web".into(),
        gen: gen_of(&s, "web"),
        kind: TimerKind::HealthDeadline,
    };
    s.on_timer(&t, now + Duration::from_secs(5));
    assert_eq!(status(&s, "web"), "unknown");
    assert!(s
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::KillTree { pgid: 1, .. })));
}

#[test]
fn a_need_stopped_under_a_crashed_service_fails_its_restart() {
    let (mut s, now) = app_running_on_stopped_db();
    assert_eq!(status(&s, "app"), "running", "only db was stopped");
    s.take_actions();
    exit_tree(&mut s, "app", 2, ExitStatus::Code(3), now);
    assert_eq!(status(&s, "app"), "failed");
    assert_eq!(
        s.get("app").unwrap().error.as_deref(),
        Some("need 'db' is stopped")
    );
    assert!(spawns(&s.take_actions()).is_empty());
}

#[test]
fn stop_during_a_delete_still_deletes_and_stop_during_a_restart_wins() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#), ("r", r#"{"cmd":"r"}"#)]);
    run(&mut s, "w", 5, now);
    s.delete("w", now).unwrap();
    assert_eq!(s.stop("w", now), Ok(Progress::Pending));
    exit_tree(&mut s, "w", 5, ExitStatus::Signal(15), now);
    assert!(s.get("w").is_none(), "the delete is not undone by a stop");

    run(&mut s, "r", 6, now);
    s.restart("r", now).unwrap();
    s.stop("r", now).unwrap();
    s.take_actions();
    exit_tree(&mut s, "r", 6, ExitStatus::Signal(15), now);
    assert_eq!(status(&s, "r"), "stopped");
    assert!(spawns(&s.take_actions()).is_empty(), "the later stop wins");
}

#[test]
fn restart_during_a_delete_does_not_bring_it_back() {
    let (mut s, now) = sup_with(&[("w", r#"{"cmd":"w"}"#)]);
    run(&mut s, "w", 5, now);
    s.delete("w", now).unwrap();
    assert_eq!(s.restart("w", now), Ok(Progress::Pending));
    exit_tree(&mut s, "w", 5, ExitStatus::Signal(15), now);
    assert!(s.get("w").is_none());
    assert!(spawns(&s.take_actions()).is_empty());
}

#[test]
fn stop_of_a_failed_service_makes_it_stopped_except_during_shutdown() {
    let (mut s, now) = sup_with(&[
        ("bad", r#"{"cmd":"b","restart":"never"}"#),
        ("bad2", r#"{"cmd":"b","restart":"never"}"#),
    ]);
    for (name, pid) in [("bad", 1), ("bad2", 2)] {
        run(&mut s, name, pid, now);
        s.on_exit(pid, ExitStatus::Code(1), now);
        tree_empty(&mut s, name, now);
        assert_eq!(status(&s, name), "failed");
    }
    assert_eq!(s.stop("bad", now), Ok(Progress::Done));
    assert_eq!(status(&s, "bad"), "stopped");
    s.shutdown(now);
    assert_eq!(s.stop("bad2", now), Ok(Progress::Done));
    assert_eq!(status(&s, "bad2"), "failed", "the failure stays visible");
}

#[test]
fn shutdown_stops_services_still_waiting_or_spawning() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db","health_port":5}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
        ("solo", r#"{"cmd":"s"}"#),
    ]);
    s.start("app").unwrap();
    s.start("solo").unwrap();
    spawned(&mut s, "db", 1, now);
    s.take_actions();
    assert_eq!(status(&s, "app"), "unknown", "waits for db's port");
    s.shutdown(now);
    assert_eq!(status(&s, "app"), "stopped");
    assert_eq!(status(&s, "solo"), "stopped", "its spawn is dropped");
    exit_tree(&mut s, "db", 1, ExitStatus::Signal(15), now);
    assert!(s.take_actions().contains(&Action::ShutdownComplete));

    // Nothing but a service being spawned: the shutdown completes at once.
    let (mut s, now) = sup_with(&[("solo", r#"{"cmd":"s"}"#)]);
    s.start("solo").unwrap();
    s.take_actions();
    s.shutdown(now);
    assert_eq!(status(&s, "solo"), "stopped");
    assert!(s.take_actions().contains(&Action::ShutdownComplete));
}

#[test]
fn no_restart_of_any_kind_once_shutdown_began() {
    let (mut s, now) = sup_with(&[("r", r#"{"cmd":"r"}"#), ("c", r#"{"cmd":"c"}"#)]);
    run(&mut s, "r", 1, now);
    run(&mut s, "c", 2, now);
    // A requested restart, and a crash whose tree is still being drained.
    s.restart("r", now).unwrap();
    s.on_exit(2, ExitStatus::Code(1), now);
    s.take_actions();
    s.shutdown(now);
    exit_tree(&mut s, "r", 1, ExitStatus::Signal(15), now);
    tree_empty(&mut s, "c", now);
    let a = s.take_actions();
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert!(
        !a.iter().any(|a| matches!(a, Action::Schedule { .. })),
        "{a:?}"
    );
    assert_eq!(status(&s, "r"), "stopped");
    assert_eq!(status(&s, "c"), "stopped");
    assert!(a.contains(&Action::ShutdownComplete));
}

#[test]
fn deleting_one_service_keeps_the_others_and_fails_its_waiting_dependents() {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db","health_port":5}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
        ("other", r#"{"cmd":"o","needs":["x"]}"#),
        ("x", r#"{"cmd":"x","health_port":6}"#),
        ("web", r#"{"cmd":"w"}"#),
        ("old", r#"{"cmd":"o"}"#),
    ]);
    run(&mut s, "web", 9, now);
    s.delete("old", now).unwrap();
    assert_eq!(s.owner_of(9), Some("web"), "web's pid is still known");
    assert!(s.on_exit(9, ExitStatus::Code(1), now));

    s.start("app").unwrap();
    s.start("other").unwrap();
    spawned(&mut s, "db", 1, now);
    spawned(&mut s, "x", 2, now);
    s.take_actions();
    s.delete("db", now).unwrap();
    exit_tree(&mut s, "db", 1, ExitStatus::Signal(15), now);
    assert!(s.get("db").is_none());
    assert_eq!(status(&s, "app"), "failed");
    assert_eq!(
        s.get("app").unwrap().error.as_deref(),
        Some("need 'db' is not defined")
    );
    assert_eq!(status(&s, "other"), "unknown", "still waits for x");
}

/// Restart is stop then start, and a start brings up the needs: a need
/// stopped meanwhile starts again before the service does.
#[test]
fn restart_starts_a_stopped_need_as_start_would() {
    let (mut s, now) = app_running_on_stopped_db();
    s.take_actions();
    assert_eq!(s.restart("app", now), Ok(Progress::Pending));
    assert_eq!(s.get("db").unwrap().wanted, Wanted::Up);
    assert_eq!(spawns(&s.take_actions()), ["db"]);
    exit_tree(&mut s, "app", 2, ExitStatus::Signal(15), now);
    assert_eq!(status(&s, "app"), "unknown", "waits for db");
    spawned(&mut s, "db", 3, now);
    assert_eq!(spawns(&s.take_actions()), ["app"]);
    spawned(&mut s, "app", 4, now);
    assert_eq!(status(&s, "app"), "running");
    assert_eq!(status(&s, "db"), "running");
}

#[test]
fn exit_statuses_follow_the_shell_convention() {
    assert_eq!(ExitStatus::Code(3).code(), 3);
    assert_eq!(ExitStatus::Signal(9).code(), 137);
    assert_eq!(ExitStatus::Signal(15).code(), 143);
    assert_eq!(ExitStatus::Signal(9).describe(), "killed by signal 9");
    assert_eq!(ExitStatus::Code(3).describe(), "exited with code 3");
    assert!(ExitStatus::Code(0).is_clean());
    assert!(!ExitStatus::Signal(15).is_clean());
}

/// `app` (pid 2) running, its need `db` (pid 1) stopped under it.
fn app_running_on_stopped_db() -> (Supervisor, Instant) {
    let (mut s, now) = sup_with(&[
        ("db", r#"{"cmd":"db"}"#),
        ("app", r#"{"cmd":"a","needs":["db"]}"#),
    ]);
    s.start("app").unwrap();
    spawned(&mut s, "db", 1, now);
    spawned(&mut s, "app", 2, now);
    s.stop("db", now).unwrap();
    exit_tree(&mut s, "db", 1, ExitStatus::Signal(15), now);
    (s, now)
}

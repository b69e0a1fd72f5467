//! State-machine tests of checks and oneshots: inputs in, actions out.

use super::test_support::*;
use super::*;
use crate::core::checks::Check;

/// The process of `name` (pid) exits with `code` and its tree empties.
fn exits(s: &mut Supervisor, name: &str, pid: Pid, code: i32, now: Instant) -> Vec<Action> {
    assert!(exit_tree(s, name, pid, ExitStatus::Code(code), now));
    s.take_actions()
}

#[test]
fn http_readiness_is_watched_with_its_interval_and_deadline() {
    let (mut s, now) = sup_with(&[(
        "web",
        r#"{"cmd":"w","health":{"http":{"port":8080,"path":"/healthz"},"interval_ms":50,"timeout_secs":5}}"#,
    )]);
    s.start("web").unwrap();
    s.take_actions();
    spawned(&mut s, "web", 3, now);
    let a = s.take_actions();
    let g = gen_of(&s, "web");
    let Some(Action::WatchCheck {
        check: Check::Http(h),
        interval,
        gen,
        ..
    }) = a.iter().find(|a| matches!(a, Action::WatchCheck { .. }))
    else {
        panic!("no WatchCheck in {a:?}")
    };
    assert_eq!((h.port, h.path.as_str(), *gen), (8080, "/healthz", g));
    assert_eq!(*interval, Duration::from_millis(50));
    let (at, _) = timer_of(&a, TimerKind::HealthDeadline).unwrap();
    assert_eq!(at, now + Duration::from_secs(5));
    assert_eq!(status(&s, "web"), "unknown");
    s.note_readiness("web", g, "answered 503".into());
    s.on_ready("web", g, now);
    assert_eq!(status(&s, "web"), "running");
}

#[test]
fn health_tcp_is_the_port_watch_and_health_port_still_works() {
    for body in [
        r#"{"cmd":"r","health":{"tcp":6379}}"#,
        r#"{"cmd":"r","health_port":6379}"#,
    ] {
        let (mut s, now) = sup_with(&[("r", body)]);
        s.start("r").unwrap();
        s.take_actions();
        spawned(&mut s, "r", 3, now);
        let a = s.take_actions();
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::WatchPort { port: 6379, .. })),
            "{body}: {a:?}"
        );
    }
}

#[test]
fn missed_deadline_names_the_check_and_its_last_result() {
    let (mut s, now) = sup_with(&[(
        "web",
        r#"{"cmd":"w","health":{"http":{"port":8080},"timeout_secs":2}}"#,
    )]);
    s.start("web").unwrap();
    spawned(&mut s, "web", 3, now);
    let a = s.take_actions();
    let (at, t) = timer_of(&a, TimerKind::HealthDeadline).unwrap();
    s.note_readiness("web", t.gen, "answered 503".into());
    s.on_timer(&t, at);
    assert!(s.take_actions().contains(&Action::KillTree {
        name: "web".into(),
        pgid: 3
    }));
    exits(&mut s, "web", 3, 137, at);
    assert_eq!(status(&s, "web"), "failed");
    let e = s.get("web").unwrap().error.clone().unwrap();
    assert!(
        e.contains("GET http://127.0.0.1:8080/")
            && e.contains("within 2s")
            && e.contains("answered 503"),
        "{e}"
    );
}

#[test]
fn health_timeout_secs_still_applies_when_health_has_no_timeout() {
    let (mut s, now) = sup_with(&[(
        "x",
        r#"{"cmd":"x","health":{"log":"ready"},"health_timeout_secs":7}"#,
    )]);
    s.start("x").unwrap();
    spawned(&mut s, "x", 3, now);
    let (at, _) = timer_of(&s.take_actions(), TimerKind::HealthDeadline).unwrap();
    assert_eq!(at, now + Duration::from_secs(7));
}

#[test]
fn exit_before_ready_says_which_check() {
    let (mut s, now) = sup_with(&[("n", r#"{"cmd":"n","health":{"notify":true}}"#)]);
    s.start("n").unwrap();
    spawned(&mut s, "n", 3, now);
    s.take_actions();
    exits(&mut s, "n", 3, 1, now);
    let e = s.get("n").unwrap().error.clone().unwrap();
    assert!(
        e.contains("exited with code 1") && e.contains("READY=1"),
        "{e}"
    );
}

#[test]
fn oneshot_completes_and_its_start_settles_completed() {
    let (mut s, now) = sup_with(&[("m", r#"{"cmd":"migrate","type":"oneshot"}"#)]);
    assert_eq!(s.start("m"), Ok(Progress::Pending));
    s.take_actions();
    spawned(&mut s, "m", 4, now);
    let a = s.take_actions();
    assert!(
        !a.iter().any(|a| matches!(a, Action::Schedule { .. })),
        "no health deadline for a oneshot: {a:?}"
    );
    assert_eq!(status(&s, "m"), "unknown", "running to completion");
    let a = exits(&mut s, "m", 4, 0, now);
    assert_eq!(settled(&a, "m"), Some(Outcome::Completed));
    let m = s.get("m").unwrap();
    assert_eq!((m.status_word(), m.exit_code), ("stopped", Some(0)));
    assert!(m.completed && m.error.is_none());
    assert!(spawns(&a).is_empty(), "a oneshot is not restarted");
}

#[test]
fn failed_oneshot_is_failed_and_not_restarted() {
    let (mut s, now) = sup_with(&[("m", r#"{"cmd":"migrate","type":"oneshot"}"#)]);
    s.start("m").unwrap();
    spawned(&mut s, "m", 4, now);
    s.take_actions();
    let a = exits(&mut s, "m", 4, 3, now);
    assert!(
        matches!(settled(&a, "m"), Some(Outcome::Failed(e)) if e.to_string().contains("exited with code 3"))
    );
    assert_eq!(status(&s, "m"), "failed");
    assert!(spawns(&a).is_empty());
    assert_eq!(s.get("m").unwrap().restarts, 0);
}

#[test]
fn dependent_of_a_oneshot_waits_for_its_clean_exit() {
    let (mut s, now) = sup_with(&[
        ("migrate", r#"{"cmd":"m","type":"oneshot"}"#),
        ("web", r#"{"cmd":"w","needs":["migrate"]}"#),
    ]);
    s.start("web").unwrap();
    assert_eq!(spawns(&s.take_actions()), ["migrate"]);
    spawned(&mut s, "migrate", 4, now);
    assert!(
        spawns(&s.take_actions()).is_empty(),
        "web waits for the exit"
    );
    let a = exits(&mut s, "migrate", 4, 0, now);
    assert_eq!(spawns(&a), ["web"]);
    spawned(&mut s, "web", 5, now);
    assert_eq!(status(&s, "web"), "running");
}

#[test]
fn dependent_of_a_failed_oneshot_fails_naming_it() {
    let (mut s, now) = sup_with(&[
        ("migrate", r#"{"cmd":"m","type":"oneshot"}"#),
        ("web", r#"{"cmd":"w","needs":["migrate"]}"#),
    ]);
    s.start("web").unwrap();
    s.take_actions();
    spawned(&mut s, "migrate", 4, now);
    let a = exits(&mut s, "migrate", 4, 2, now);
    assert!(spawns(&a).is_empty());
    assert_eq!(status(&s, "web"), "failed");
    let e = s.get("web").unwrap().error.clone().unwrap();
    assert!(e.contains("need 'migrate' failed"), "{e}");
}

#[test]
fn completed_oneshot_is_not_rerun_for_a_dependent_but_is_on_explicit_start() {
    let (mut s, now) = sup_with(&[
        ("migrate", r#"{"cmd":"m","type":"oneshot"}"#),
        ("web", r#"{"cmd":"w","needs":["migrate"]}"#),
    ]);
    s.start("migrate").unwrap();
    spawned(&mut s, "migrate", 4, now);
    exits(&mut s, "migrate", 4, 0, now);
    assert_eq!(s.start("web"), Ok(Progress::Pending));
    assert_eq!(spawns(&s.take_actions()), ["web"], "migrate not run again");
    spawned(&mut s, "web", 5, now);
    s.stop("web", now).unwrap();
    exits(&mut s, "web", 5, 0, now);
    s.start("web").unwrap();
    assert_eq!(
        spawns(&s.take_actions()),
        ["web"],
        "still done in this boot"
    );

    assert_eq!(s.start("migrate"), Ok(Progress::Pending));
    assert_eq!(
        spawns(&s.take_actions()),
        ["migrate"],
        "explicit start runs it"
    );
    assert!(!s.get("migrate").unwrap().completed);
    spawned(&mut s, "migrate", 6, now);
    exits(&mut s, "migrate", 6, 0, now);
    assert_eq!(s.restart("migrate", now), Ok(Progress::Pending));
    assert_eq!(
        spawns(&s.take_actions()),
        ["migrate"],
        "restart runs it too"
    );
}

#[test]
fn changed_oneshot_definition_runs_again_for_a_dependent() {
    let (mut s, now) = sup_with(&[
        ("migrate", r#"{"cmd":"m","type":"oneshot"}"#),
        ("web", r#"{"cmd":"w","needs":["migrate"]}"#),
    ]);
    s.start("migrate").unwrap();
    spawned(&mut s, "migrate", 4, now);
    exits(&mut s, "migrate", 4, 0, now);
    s.upsert(
        "migrate",
        def(r#"{"cmd":"m2","type":"oneshot"}"#),
        Source::Api,
        now,
    )
    .unwrap();
    s.start("web").unwrap();
    assert_eq!(spawns(&s.take_actions()), ["migrate"]);
}

/// A running service with a liveness check; returns the first tick.
fn live(json: &str) -> (Supervisor, Instant, Timer) {
    let (mut s, now) = sup_with(&[("w", json)]);
    s.start("w").unwrap();
    spawned(&mut s, "w", 5, now);
    let a = s.take_actions();
    assert_eq!(status(&s, "w"), "running");
    let (at, t) = timer_of(&a, TimerKind::Liveness).expect("a liveness tick");
    assert_eq!(at, now + Duration::from_secs(2));
    (s, now, t)
}

/// The liveness tick fires and its probe answers `result`; returns the
/// actions that followed.
fn tick(s: &mut Supervisor, t: &Timer, result: Result<&str, &str>, now: Instant) -> Vec<Action> {
    s.on_timer(t, now);
    let a = s.take_actions();
    let Some(Action::Probe { gen, timeout, .. }) =
        a.iter().find(|a| matches!(a, Action::Probe { .. }))
    else {
        panic!("no probe in {a:?}");
    };
    assert_eq!(*timeout, Duration::from_secs(2));
    let r = result.map(str::to_string).map_err(str::to_string);
    s.on_liveness("w", *gen, r, now);
    s.take_actions()
}

const LIVE: &str =
    r#"{"cmd":"w","liveness":{"http":{"port":80,"path":"/live"},"interval_secs":2,"failures":3}}"#;

#[test]
fn liveness_failures_in_a_row_restart_the_service() {
    let (mut s, now, mut t) = live(LIVE);
    for round in 1..=2 {
        let a = tick(&mut s, &t, Err("answered 500"), now);
        assert_eq!(s.get("w").unwrap().liveness_failures, round);
        t = timer_of(&a, TimerKind::Liveness).expect("next tick").1;
    }
    // A pass in between starts the count over.
    let a = tick(&mut s, &t, Ok("answered 200"), now);
    t = timer_of(&a, TimerKind::Liveness).unwrap().1;
    for _ in 0..2 {
        let a = tick(&mut s, &t, Err("answered 500"), now);
        t = timer_of(&a, TimerKind::Liveness).unwrap().1;
    }
    assert_eq!(status(&s, "w"), "running");
    let a = tick(&mut s, &t, Err("connection refused"), now);
    assert!(a.contains(&Action::Terminate {
        name: "w".into(),
        pgid: 5
    }));
    let svc = s.get("w").unwrap();
    assert_eq!(svc.liveness_failures, 5);
    let e = svc.error.clone().unwrap();
    assert!(
        e.contains("liveness") && e.contains("3 times") && e.contains("connection refused"),
        "{e}"
    );
    let a = exits(&mut s, "w", 5, 143, now);
    assert_eq!(spawns(&a), ["w"]);
    assert_eq!(s.get("w").unwrap().restarts, 1);
    spawned(&mut s, "w", 6, now);
    let svc = s.get("w").unwrap();
    assert_eq!(svc.status_word(), "running");
    assert!(
        svc.error.as_deref().unwrap_or("").contains("liveness"),
        "error still says why it was restarted"
    );
    assert_eq!(svc.liveness_failures, 5, "counted in total");
}

#[test]
fn liveness_under_restart_never_stops_it_as_failed() {
    let json = LIVE.replace(r#""cmd":"w","#, r#""cmd":"w","restart":"never","#);
    let (mut s, now, mut t) = live(&json);
    for _ in 0..2 {
        let a = tick(&mut s, &t, Err("timed out"), now);
        t = timer_of(&a, TimerKind::Liveness).unwrap().1;
    }
    tick(&mut s, &t, Err("timed out"), now);
    let a = exits(&mut s, "w", 5, 143, now);
    assert!(spawns(&a).is_empty());
    assert_eq!(status(&s, "w"), "failed");
    assert!(s
        .get("w")
        .unwrap()
        .error
        .clone()
        .unwrap()
        .contains("restart = never"));
}

#[test]
fn stale_liveness_results_are_ignored() {
    let (mut s, now, t) = live(LIVE);
    s.on_timer(&t, now);
    s.take_actions();
    s.restart("w", now).unwrap();
    s.take_actions();
    for _ in 0..5 {
        s.on_liveness("w", t.gen, Err("late".into()), now);
    }
    assert_eq!(s.get("w").unwrap().liveness_failures, 0);
}

#[test]
fn status_text_is_kept() {
    let (mut s, _) = sup_with(&[("n", r#"{"cmd":"n","health":{"notify":true}}"#)]);
    s.set_status_text("n", "Processing requests".into());
    assert_eq!(
        s.get("n").unwrap().status_text.as_deref(),
        Some("Processing requests")
    );
}

/// The reasons of the changes announced in `actions`, in order.
fn reasons(actions: &[Action]) -> Vec<&'static str> {
    changes(actions).into_iter().map(|(_, r, _)| r).collect()
}

#[test]
fn a_liveness_restart_and_a_completed_oneshot_are_announced() {
    let json = LIVE.replace(r#""failures":3"#, r#""failures":1"#);
    let (mut s, now, t) = live(&json);
    let a = tick(&mut s, &t, Err("connection refused"), now);
    let Some(Action::Changed(c)) = a.iter().find(|a| matches!(a, Action::Changed(_))) else {
        panic!("no change in {a:?}");
    };
    assert_eq!(
        (c.reason, c.status, c.pid),
        (Reason::Liveness, "unknown", Some(5))
    );
    assert!(
        c.error.as_deref().unwrap_or("").contains("liveness"),
        "{c:?}"
    );
    let mut a = exits(&mut s, "w", 5, 143, now);
    spawned(&mut s, "w", 6, now);
    a.extend(s.take_actions());
    assert_eq!(reasons(&a), ["exited", "restarting", "started"]);

    let (mut s, now) = sup_with(&[("m", r#"{"cmd":"migrate","type":"oneshot"}"#)]);
    s.start("m").unwrap();
    spawned(&mut s, "m", 4, now);
    let mut a = s.take_actions();
    a.extend(exits(&mut s, "m", 4, 0, now));
    assert_eq!(reasons(&a), ["started", "exited", "stopped"]);
}

//! Restore reports: which services a restore (at boot, `POST /v1/restore`,
//! or a new VM generation ID) started, stopped, restarted, signalled or
//! could not start, and what its clock, entropy and generation steps did.
//! A report is complete once every service it started or restarted is
//! `running` or `failed`.

use crate::core::supervisor::Outcome;
use crate::resume::steps::Resumed;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::SystemTime;

#[derive(Default)]
pub(crate) struct RestoreTracker {
    current: Option<Run>,
    /// The last finished report (`GET /v1/restore`).
    last: Option<Value>,
}

struct Run {
    trigger: &'static str,
    at: SystemTime,
    pending: BTreeSet<String>,
    started: Vec<String>,
    stopped: Vec<String>,
    failed: Vec<(String, String)>,
    state_file_error: Option<String>,
    resumed: Resumed,
    /// Restarted by `on_restore` and not yet running again.
    restarting: BTreeSet<String>,
    restarted: Vec<String>,
    signalled: Vec<String>,
}

impl RestoreTracker {
    /// A new restore replaces one still running (whose waiters then wait
    /// for the new one's report).
    pub fn begin(&mut self, trigger: &'static str, state_file_error: Option<String>) {
        self.current = Some(Run {
            trigger,
            at: SystemTime::now(),
            pending: BTreeSet::new(),
            started: Vec::new(),
            stopped: Vec::new(),
            failed: Vec::new(),
            state_file_error,
            resumed: Resumed::default(),
            restarting: BTreeSet::new(),
            restarted: Vec::new(),
            signalled: Vec::new(),
        });
    }

    /// What the steps before the services did (at boot: the generation only).
    pub fn resumed(&mut self, done: Resumed) {
        if let Some(r) = &mut self.current {
            r.resumed = done;
        }
    }

    /// `on_restore = "restart"`: listed at once, waited for until it runs.
    pub fn restarting(&mut self, name: &str) {
        if let Some(r) = &mut self.current {
            r.restarted.push(name.to_string());
            r.restarting.insert(name.to_string());
        }
    }

    /// `on_restore` named a signal and it was sent.
    pub fn signalled(&mut self, name: &str) {
        if let Some(r) = &mut self.current {
            r.signalled.push(name.to_string());
        }
    }

    /// A step that failed: in the report's `errors`, never silent.
    pub fn error(&mut self, msg: String) {
        if let Some(r) = &mut self.current {
            r.resumed.errors.push(msg);
        }
    }

    /// The last finished report (`GET /v1/restore`).
    pub fn last(&self) -> Option<&Value> {
        self.last.as_ref()
    }

    pub fn expect_start(&mut self, name: &str) {
        if let Some(r) = &mut self.current {
            r.pending.insert(name.to_string());
        }
    }

    pub fn started_already(&mut self, name: &str) {
        if let Some(r) = &mut self.current {
            r.started.push(name.to_string());
        }
    }

    pub fn stopped(&mut self, name: &str) {
        if let Some(r) = &mut self.current {
            r.stopped.push(name.to_string());
        }
    }

    pub fn failed(&mut self, name: &str, why: String) {
        if let Some(r) = &mut self.current {
            r.pending.remove(name);
            r.failed.push((name.to_string(), why));
        }
    }

    pub fn on_settled(&mut self, name: &str, outcome: &Outcome) {
        let Some(r) = &mut self.current else {
            return;
        };
        if r.restarting.remove(name) {
            // Listed as restarted already; a restart that failed is a failure too.
            if let Outcome::Failed(why) = outcome {
                r.failed.push((name.to_string(), why.to_string()));
            }
            return;
        }
        if !r.pending.remove(name) {
            return;
        }
        match outcome {
            Outcome::Running | Outcome::Completed => r.started.push(name.to_string()),
            Outcome::Failed(why) => r.failed.push((name.to_string(), why.to_string())),
            Outcome::Stopped => r
                .failed
                .push((name.to_string(), "stopped before it was running".into())),
            Outcome::Deleted => r
                .failed
                .push((name.to_string(), "deleted before it was running".into())),
        }
    }

    /// The report, once nothing is pending any more.
    pub fn take_finished(&mut self) -> Option<Value> {
        let done = |r: &Run| r.pending.is_empty() && r.restarting.is_empty();
        if self.current.as_ref().is_some_and(done) {
            let r = self.current.take()?;
            let report = json!({
                "trigger": r.trigger,
                "timestamp": crate::api::model::rfc3339(r.at),
                "started_services": r.started,
                "stopped_services": r.stopped,
                "failed_services": r.failed.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>(),
                "state_file_error": r.state_file_error,
                "generation": r.resumed.generation,
                "clock_step_ms": r.resumed.clock_step_ms,
                "reseeded": r.resumed.reseeded,
                "restarted_services": r.restarted,
                "signalled_services": r.signalled,
                "errors": r.resumed.errors,
            });
            self.last = Some(report.clone());
            return Some(report);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::supervisor::{Cause, StartError};

    #[test]
    fn report_waits_for_every_start() {
        let mut t = RestoreTracker::default();
        t.begin("boot", None);
        t.expect_start("a");
        t.expect_start("b");
        t.stopped("c");
        assert!(t.take_finished().is_none());
        t.on_settled("a", &Outcome::Running);
        t.on_settled("zzz", &Outcome::Running);
        assert!(t.take_finished().is_none());
        t.on_settled(
            "b",
            &Outcome::Failed(
                Cause::Start(StartError::Spawn("cmd 'x' not found on PATH".into())).into(),
            ),
        );
        let report = t.take_finished().unwrap();
        assert_eq!(report["started_services"], json!(["a"]));
        assert_eq!(report["stopped_services"], json!(["c"]));
        assert_eq!(report["failed_services"][0]["name"], "b");
        assert!(report["failed_services"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not found"));
        assert_eq!(t.last(), Some(&report));
        assert!(t.take_finished().is_none(), "reported once");
    }

    #[test]
    fn restarts_signals_and_steps_in_the_report() {
        let mut t = RestoreTracker::default();
        t.begin("api", None);
        t.resumed(Resumed {
            generation: 3,
            clock_step_ms: -1500,
            reseeded: true,
            errors: vec!["cannot read the RTC: EIO".into()],
        });
        t.restarting("r1");
        t.restarting("r2");
        t.signalled("s");
        t.error("cannot send SIGHUP to 'x': ESRCH".into());
        assert!(t.take_finished().is_none(), "waits for the restarts");
        t.on_settled("r1", &Outcome::Running);
        t.on_settled(
            "r2",
            &Outcome::Failed(Cause::Start(StartError::Spawn("gone".into())).into()),
        );
        let report = t.take_finished().unwrap();
        assert_eq!(report["generation"], 3);
        assert_eq!(report["clock_step_ms"], -1500);
        assert_eq!(report["reseeded"], true);
        assert_eq!(report["restarted_services"], json!(["r1", "r2"]));
        assert_eq!(report["signalled_services"], json!(["s"]));
        assert_eq!(report["started_services"], json!([]));
        assert_eq!(report["failed_services"][0]["name"], "r2");
        assert_eq!(
            report["errors"],
            json!([
                "cannot read the RTC: EIO",
                "cannot send SIGHUP to 'x': ESRCH"
            ])
        );
    }
}

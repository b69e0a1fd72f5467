//! Bringing the services back: drop-in files and the state file at start,
//! and applying wanted states (the boot restore and `POST /v1/restore`).
//! Works on the supervisor and the restore report; the reactor carries out
//! the actions that follow.

use crate::config::Config;
use crate::core::definition::OnRestore;
use crate::core::supervisor::{Phase, Pid, Progress, Source, Supervisor, Wanted};
use crate::persist::report::RestoreTracker;
use crate::persist::state_file::{self, Loaded, SavedService, StateFile};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Instant;

/// At start: the state file first (what the user wanted), then drop-ins
/// (their files win for their own definitions), then start what is wanted
/// up. Returns why the state file could not be used, if it could not.
pub(crate) fn boot(
    cfg: &Config,
    sup: &mut Supervisor,
    restore: &mut RestoreTracker,
    now: Instant,
) -> Option<String> {
    let (saved, error) = match state_file::load(&cfg.state_file) {
        Loaded::Missing => {
            crate::info!("no state file at {}: first boot", cfg.state_file.display());
            (None, None)
        }
        Loaded::Ok(s) => (Some(s), None),
        Loaded::Corrupt { error, kept_as } => {
            let kept = kept_as
                .map(|p| format!("kept as {}", p.display()))
                .unwrap_or_else(|| "could not be moved aside".into());
            let msg = format!(
                "state file {} is unusable: {error} ({kept})",
                cfg.state_file.display()
            );
            crate::error!("{msg}; starting as on a first boot");
            (None, Some(msg))
        }
    };
    let mut rejected = Rejected::default();
    for (name, def) in crate::dropin::load_dir(&cfg.services_dir) {
        match def {
            Ok(def) => {
                if let Err(e) = sup.upsert(&name, def, Source::File, now) {
                    crate::error!("drop-in '{name}': {e}");
                    if !sup.add_broken(&name, e.to_string()) {
                        rejected.note(&name, &e);
                    }
                }
            }
            Err(e) => {
                crate::error!("drop-in '{name}' is broken: {e}");
                if !sup.add_broken(&name, e.clone()) {
                    rejected.note(&name, &"over the limit of services");
                }
            }
        }
    }
    if let Some(s) = &saved {
        for (name, svc) in &s.services {
            if svc.source != Source::Api || sup.get(name).is_some() {
                continue;
            }
            if let Some(def) = &svc.definition {
                if let Err(e) = sup.upsert(name, def.clone(), Source::Api, now) {
                    rejected.note(name, &e);
                }
            }
        }
    }
    let error = error.or_else(|| rejected.report(&cfg.state_file, saved.is_some()));
    let names: Vec<String> = sup.services().map(|s| s.name.clone()).collect();
    for name in names {
        let saved_wanted = saved
            .as_ref()
            .and_then(|s| s.services.get(&name))
            .map(|s| s.wanted);
        let wanted = saved_wanted.unwrap_or_else(|| match sup.get(&name) {
            Some(s) if s.source == Source::File && s.def.autostart && s.broken.is_none() => {
                Wanted::Up
            }
            _ => Wanted::Down,
        });
        sup.set_wanted(&name, wanted);
    }
    apply(sup, restore, "boot", error.clone(), now);
    error
}

/// Definitions the init could not take at start (over a limit, a cycle):
/// the first few are logged one by one, all are counted, and the state
/// file they came from is kept aside before it is rewritten without them.
#[derive(Default)]
struct Rejected {
    count: usize,
    first: Option<String>,
}

impl Rejected {
    const SHOWN: usize = 10;

    fn note(&mut self, name: &str, why: &dyn std::fmt::Display) {
        self.count += 1;
        if self.count <= Self::SHOWN {
            crate::error!("service '{name}' not loaded: {why}");
        }
        self.first.get_or_insert_with(|| format!("'{name}': {why}"));
    }

    /// The problem for the restore report and `GET /v1/system`, if any.
    fn report(&self, state_file: &Path, from_state_file: bool) -> Option<String> {
        let first = self.first.as_ref()?;
        if self.count > Self::SHOWN {
            crate::error!(
                "... and {} more services not loaded",
                self.count - Self::SHOWN
            );
        }
        let mut msg = format!(
            "{} services could not be loaded (first {first})",
            self.count
        );
        if from_state_file {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let kept =
                std::path::PathBuf::from(format!("{}.rejected-{stamp}", state_file.display()));
            if std::fs::copy(state_file, &kept).is_ok() {
                msg.push_str(&format!("; the state file was kept as {}", kept.display()));
            }
        }
        crate::error!("{msg}");
        Some(msg)
    }
}

/// Starts every service wanted up that is not running (a crashed one
/// included) and stops every one wanted down that runs.
pub(crate) fn apply(
    sup: &mut Supervisor,
    restore: &mut RestoreTracker,
    trigger: &'static str,
    error: Option<String>,
    now: Instant,
) {
    restore.begin(trigger, error);
    // After a memory snapshot, waits restart from now.
    sup.rearm(now);
    let plan: Vec<(String, Wanted, bool, bool)> = sup
        .services()
        .map(|s| {
            (
                s.name.clone(),
                s.wanted,
                // A oneshot done in this boot counts as up: not run again.
                matches!(s.phase, Phase::Running { .. }) || s.completed,
                s.phase.is_active(),
            )
        })
        .collect();
    for (name, wanted, running, active) in plan {
        match wanted {
            Wanted::Up if running => {}
            Wanted::Up => match sup.start(&name) {
                Ok(Progress::Done) => restore.started_already(&name),
                Ok(Progress::Pending) => restore.expect_start(&name),
                Err(e) => restore.failed(&name, e.to_string()),
            },
            Wanted::Down if active => {
                if sup.stop(&name, now).is_ok() {
                    restore.stopped(&name);
                }
            }
            Wanted::Down => {}
        }
    }
}

/// A signal `on_restore` asks for, for the reactor to send: to the process
/// group of a plain service, to the runtime of a container (which passes
/// it on to the container's process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreSignal {
    pub name: String,
    pub signal: Signal,
    pub pid: Pid,
    pub pgid: Pid,
    pub container: bool,
}

/// The second half of a restore's service step: every service still
/// running from before the restore gets its `on_restore`. Restarts go to
/// the supervisor (the report waits for them); signals are returned.
pub(crate) fn on_restore(
    sup: &mut Supervisor,
    restore: &mut RestoreTracker,
    now: Instant,
) -> Vec<RestoreSignal> {
    let running: Vec<(String, OnRestore, Pid, Option<Pid>, bool)> = sup
        .services()
        .filter_map(|s| match s.phase {
            Phase::Running { pid, .. } => Some((
                s.name.clone(),
                s.def.on_restore,
                pid,
                s.pgid,
                s.def.container,
            )),
            _ => None,
        })
        .collect();
    let mut signals = Vec::new();
    for (name, policy, pid, pgid, container) in running {
        match policy {
            OnRestore::Keep => {}
            OnRestore::Restart => match sup.restart(&name, now) {
                Ok(_) => restore.restarting(&name),
                Err(e) => restore.error(format!("cannot restart '{name}': {e}")),
            },
            OnRestore::Signal(signal) => signals.push(RestoreSignal {
                name,
                signal,
                pid,
                pgid: pgid.unwrap_or(pid),
                container,
            }),
        }
    }
    signals
}

/// What the state file records now.
pub(crate) fn snapshot(sup: &Supervisor) -> StateFile {
    let services = sup
        .services()
        .map(|s| {
            (
                s.name.clone(),
                SavedService {
                    source: s.source,
                    definition: (s.source == Source::Api).then(|| s.def.clone()),
                    wanted: s.wanted,
                    running: matches!(s.phase, Phase::Running { .. }),
                },
            )
        })
        .collect();
    StateFile {
        version: state_file::VERSION,
        services,
    }
}

/// Re-reads the state file for `POST /v1/restore`: definitions that are
/// missing come back, wanted states are taken from it. Returns the problem
/// with the file, if any (then the live wanted states are used).
pub(crate) fn reload_wanted(path: &Path, sup: &mut Supervisor, now: Instant) -> Option<String> {
    match state_file::load(path) {
        Loaded::Ok(s) => {
            for (name, svc) in &s.services {
                if sup.get(name).is_none() {
                    if let (Source::Api, Some(def)) = (svc.source, &svc.definition) {
                        let _ = sup.upsert(name, def.clone(), Source::Api, now);
                    }
                }
                sup.set_wanted(name, svc.wanted);
            }
            None
        }
        Loaded::Missing => None,
        Loaded::Corrupt { error, kept_as } => Some(format!(
            "state file unusable: {error}{}",
            kept_as
                .map(|p| format!(" (kept as {})", p.display()))
                .unwrap_or_default()
        )),
    }
}

/// The line a boot test reads: how long from the init's start (and from the
/// kernel's) until every autostart service settled.
pub(crate) fn log_ready(started: Instant, report: &serde_json::Value) {
    let count = |k: &str| report[k].as_array().map(Vec::len).unwrap_or(0);
    let since_kernel = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    crate::info!(
        "boot complete: {} services running, {} failed, {} ms after init start (kernel uptime {} s)",
        count("started_services"),
        count("failed_services"),
        started.elapsed().as_millis(),
        since_kernel
    );
}

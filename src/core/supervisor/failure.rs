//! Why a service failed: typed causes, and the one place they become the
//! words users read (the service's `error`, a failed start's answer, the
//! restore report).

use super::exit::ExitStatus;
use crate::core::checks::Check;
use std::fmt;

/// Why a spawn did not give a process.
#[derive(Clone, Debug, PartialEq)]
pub enum StartError {
    /// The program could not be run: unknown user, not found, not
    /// executable, a set-up step in the child.
    Spawn(String),
    /// The init could not prepare it: its log pipe, a container step.
    Prepare(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn(m) | StartError::Prepare(m) => f.write_str(m),
        }
    }
}

/// Why a service is `failed`.
#[derive(Clone, Debug, PartialEq)]
pub enum Cause {
    /// Its process could not be started.
    Start(StartError),
    /// Its main process exited before its health port accepted.
    ExitedBeforeReady { status: ExitStatus, port: u16 },
    /// Its health port did not accept within the deadline.
    HealthTimeout { port: u16, secs: f64 },
    /// Its main process exited before its readiness check (not `tcp`)
    /// passed.
    ExitedBeforeCheck { status: ExitStatus, check: Check },
    /// Its readiness check (not `tcp`) did not pass within the deadline;
    /// `last` is the last attempt's result.
    CheckTimeout {
        check: Check,
        secs: f64,
        last: Option<String>,
    },
    /// Its liveness check failed `times` times in a row and its restart
    /// policy is `never`.
    Liveness {
        check: Check,
        times: u32,
        last: String,
    },
    /// It exited while running, and its restart policy keeps it down.
    Exited(ExitStatus),
    /// The kernel's OOM killer ended it (its cgroup counted the kill),
    /// at its `memory_max` when it has one.
    OomKilled {
        status: ExitStatus,
        memory_max: Option<u64>,
    },
    /// Its needs cannot be ordered (a cycle, or a need that is not defined).
    Needs(String),
    /// A need is not defined (any more).
    NeedMissing(String),
    /// A need failed.
    NeedFailed { need: String, error: String },
    /// A need is stopped.
    NeedStopped(String),
    /// A need's drop-in file is broken.
    NeedBroken { need: String, error: String },
}

impl Cause {
    /// Whether the service's last lines of output tell why.
    pub fn shows_output(&self) -> bool {
        matches!(
            self,
            Cause::ExitedBeforeReady { .. }
                | Cause::HealthTimeout { .. }
                | Cause::ExitedBeforeCheck { .. }
                | Cause::CheckTimeout { .. }
                | Cause::Exited(_)
                | Cause::OomKilled { .. }
        )
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Start(e) => e.fmt(f),
            Cause::ExitedBeforeReady { status, port } => write!(
                f,
                "{} before port {port} accepted a connection",
                status.describe()
            ),
            Cause::HealthTimeout { port, secs } => write!(
                f,
                "health port {port} did not accept a connection within {secs}s"
            ),
            Cause::ExitedBeforeCheck { status, check } => write!(
                f,
                "{} before its health check passed ({check})",
                status.describe()
            ),
            Cause::CheckTimeout { check, secs, last } => {
                write!(f, "health check ({check}) did not pass within {secs}s")?;
                match last {
                    Some(l) => write!(f, "; last result: {l}"),
                    None => Ok(()),
                }
            }
            Cause::Liveness { check, times, last } => write!(
                f,
                "{}; not restarted (restart = never)",
                liveness_words(check, *times, last)
            ),
            Cause::Exited(status) => f.write_str(&status.describe()),
            Cause::OomKilled { status, memory_max } => {
                write!(f, "killed by the OOM killer ({}", status.describe())?;
                match memory_max {
                    Some(bytes) => write!(f, ", memory_max {})", size_words(*bytes)),
                    None => f.write_str(")"),
                }
            }
            Cause::Needs(m) => f.write_str(m),
            Cause::NeedMissing(need) => write!(f, "need '{need}' is not defined"),
            Cause::NeedFailed { need, error } => write!(f, "need '{need}' failed: {error}"),
            Cause::NeedStopped(need) => write!(f, "need '{need}' is stopped"),
            Cause::NeedBroken { need, error } => write!(f, "need '{need}' cannot start: {error}"),
        }
    }
}

/// Why liveness ended a run: "liveness check (...) failed 3 times in a row:
/// answered 500".
pub fn liveness_words(check: &Check, times: u32, last: &str) -> String {
    let plural = if times == 1 { "" } else { "s" };
    format!("liveness check ({check}) failed {times} time{plural} in a row: {last}")
}

/// Bytes as the definition may write them: `32M` when exact, else bytes.
fn size_words(bytes: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// A failure as reported: its cause, and the service's last lines of
/// output when they tell why (the reactor reads them from the log).
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub cause: Cause,
    pub last_output: Option<String>,
}

impl From<Cause> for Failure {
    fn from(cause: Cause) -> Failure {
        Failure {
            cause,
            last_output: None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cause.fmt(f)?;
        match &self.last_output {
            Some(lines) => write!(f, "; last output:\n{lines}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_as_before_and_only_exits_show_output() {
        let early = Cause::ExitedBeforeReady {
            status: ExitStatus::Code(3),
            port: 8080,
        };
        assert_eq!(
            early.to_string(),
            "exited with code 3 before port 8080 accepted a connection"
        );
        let slow = Cause::HealthTimeout {
            port: 80,
            secs: 1.5,
        };
        assert_eq!(
            slow.to_string(),
            "health port 80 did not accept a connection within 1.5s"
        );
        assert!(early.shows_output() && slow.shows_output());
        assert!(Cause::Exited(ExitStatus::Signal(9)).shows_output());
        let oom = Cause::OomKilled {
            status: ExitStatus::Signal(9),
            memory_max: Some(32 << 20),
        };
        assert_eq!(
            oom.to_string(),
            "killed by the OOM killer (killed by signal 9, memory_max 32M)"
        );
        assert!(oom.shows_output());
        let no_limit = Cause::OomKilled {
            status: ExitStatus::Signal(9),
            memory_max: None,
        };
        assert_eq!(
            no_limit.to_string(),
            "killed by the OOM killer (killed by signal 9)"
        );
        assert_eq!(size_words(1000), "1000 bytes");
        assert_eq!(size_words(3 << 30), "3G");
        let spawn = Cause::Start(StartError::Spawn("cmd 'x' not found on PATH".into()));
        assert!(!spawn.shows_output());
        assert!(!Cause::NeedStopped("db".into()).shows_output());
        let f = Failure {
            cause: Cause::Exited(ExitStatus::Code(1)),
            last_output: Some("boom".into()),
        };
        assert_eq!(f.to_string(), "exited with code 1; last output:\nboom");
        assert_eq!(
            Failure::from(spawn).to_string(),
            "cmd 'x' not found on PATH"
        );
    }
}

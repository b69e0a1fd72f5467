//! How a process ended, and the words for it.

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
    pub fn is_clean(self) -> bool {
        self == ExitStatus::Code(0)
    }
    pub fn describe(self) -> String {
        match self {
            ExitStatus::Code(c) => format!("exited with code {c}"),
            ExitStatus::Signal(s) => format!("killed by signal {s}"),
        }
    }
}

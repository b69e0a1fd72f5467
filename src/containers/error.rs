//! What goes wrong in a container step: `ContainerError`, and one line
//! from a failed tool's stderr for the service's `error` text.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum ContainerError {
    /// The image reference cannot be parsed.
    BadReference { reference: String, reason: String },
    /// The image is not in the store (pull it first).
    NotPulled { image: String },
    /// The stored image is unreadable or malformed.
    BadImage { image: String, reason: String },
    /// Neither the service nor the image gives a command to run.
    NoCommand { image: String },
    /// The command is not an executable file in the image.
    CommandNotFound { cmd: String, image: String },
    /// `user` names a user or group the image does not know.
    UnknownUser { user: String, reason: String },
    /// `working_dir` is not an absolute path.
    BadWorkingDir { dir: String },
    /// `exec` without a command.
    EmptyExec,
    /// The store directory cannot be used with skopeo's `oci:` transport.
    BadStoreDir { path: PathBuf },
    /// A bundle's `config.json` is missing or malformed.
    BadBundle { path: PathBuf, reason: String },
    /// A file operation failed.
    Io {
        what: String,
        path: PathBuf,
        err: io::Error,
    },
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::BadReference { reference, reason } => {
                write!(f, "bad image reference {reference:?}: {reason}")
            }
            ContainerError::NotPulled { image } => write!(f, "image {image} is not pulled"),
            ContainerError::BadImage { image, reason } => {
                write!(f, "image {image} is unusable: {reason}")
            }
            ContainerError::CommandNotFound { cmd, image } => {
                write!(f, "cmd '{cmd}' not found in image {image}")
            }
            ContainerError::NoCommand { image } => write!(
                f,
                "no command: the service has no cmd and image {image} has no entrypoint or cmd"
            ),
            ContainerError::UnknownUser { user, reason } => {
                write!(f, "user {user:?}: {reason}")
            }
            ContainerError::BadWorkingDir { dir } => {
                write!(f, "working_dir {dir:?} must be an absolute path")
            }
            ContainerError::EmptyExec => write!(f, "exec needs a command"),
            ContainerError::BadStoreDir { path } => write!(
                f,
                "image store {} must be an absolute path without ':'",
                path.display()
            ),
            ContainerError::BadBundle { path, reason } => {
                write!(f, "bundle {}: {reason}", path.display())
            }
            ContainerError::Io { what, path, err } => {
                write!(f, "{what} {}: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for ContainerError {}

pub(crate) fn io_err(what: &str, path: &Path, err: io::Error) -> ContainerError {
    ContainerError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        err,
    }
}

/// One line saying why a tool (skopeo, umoci, runc, crun) failed, from its
/// stderr: the `msg="..."` of a logrus line, else the last non-empty line.
pub fn tool_error_summary(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.contains("level=fatal") || l.contains("level=error"))
        .or_else(|| stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("");
    let text = match line.find("msg=\"") {
        Some(i) => unquote_logfmt(line.get(i + 5..).unwrap_or("")),
        None => line.trim_start_matches(['⨯', ' ']).to_string(),
    };
    let mut out: String = text.chars().take(400).collect();
    if out.is_empty() {
        out = "no error message".to_string();
    }
    out
}

fn unquote_logfmt(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push(' '),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// The service's `error` text for a failed pull: names the image and the
/// cause skopeo gave.
pub fn pull_failure_message(image: &str, stderr: &str) -> String {
    format!(
        "pulling image {image} failed: {}",
        tool_error_summary(stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_errors_become_one_line() {
        let skopeo = "Getting image source signatures\ntime=\"2026-11-29T00:47:20Z\" level=fatal msg=\"initializing source docker://127.0.0.1:1/busybox:1: pinging container registry 127.0.0.1:1: Get \\\"http://127.0.0.1:1/v2/\\\": dial tcp 127.0.0.1:1: connect: connection refused\"\n";
        assert_eq!(
            pull_failure_message("127.0.0.1:1/busybox:1", skopeo),
            "pulling image 127.0.0.1:1/busybox:1 failed: initializing source docker://127.0.0.1:1/busybox:1: pinging container registry 127.0.0.1:1: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert_eq!(
            tool_error_summary(
                "executable file `x` not found in $PATH: No such file or directory\n"
            ),
            "executable file `x` not found in $PATH: No such file or directory"
        );
        assert_eq!(
            tool_error_summary(
                "   ⨯ create runtime bundle: config.json already exists in bundle\n"
            ),
            "create runtime bundle: config.json already exists in bundle"
        );
        assert_eq!(tool_error_summary(""), "no error message");
    }
}

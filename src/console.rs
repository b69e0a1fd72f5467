//! One-line log messages on stderr (the console when PID 1), written
//! without ever blocking the loop.
//!
//! Each line is formatted first and written with a single `write(2)`, so lines
//! from the init never interleave with each other. The write is non-blocking:
//! a console whose output is stopped (ctrl-S, a serial port nobody drains)
//! or a pipe nobody reads must not freeze PID 1. What cannot be written at
//! once waits in a small buffer (whole lines, flushed before the next line
//! and by [`flush`]); what does not fit there is dropped and counted
//! ([`dropped_lines`]). Logging never takes the init down.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// Bytes of log lines held while the console does not take them.
pub const PENDING_MAX: usize = 64 * 1024;

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Sets the level from `IRIS_LOG` (`error`, `warn`, `info`, `debug`).
pub fn init_from_env() {
    let level = match std::env::var("IRIS_LOG").as_deref() {
        Ok("error") => Level::Error,
        Ok("warn") => Level::Warn,
        Ok("debug") => Level::Debug,
        _ => Level::Info,
    };
    LEVEL.store(level as u8, Ordering::Relaxed);
    attach();
}

/// Sets the level (tests that drive the supervisor hard keep it quiet).
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// (Re)opens the log's own descriptor for whatever fd 2 is now: call it
/// again after fd 2 was replaced (PID 1 puts the console there).
pub fn attach() {
    let sink = Sink::for_stderr();
    if let Ok(mut guard) = SINK.try_lock() {
        let pending = guard.take().map(|s| s.pending).unwrap_or_default();
        let mut sink = sink;
        sink.pending = pending;
        *guard = Some(sink);
    }
}

/// Lines dropped because the console did not take them in time.
pub fn dropped_lines() -> u64 {
    DROPPED_LINES.load(Ordering::Relaxed)
}

/// Bytes waiting for the console.
pub fn pending_bytes() -> usize {
    SINK.try_lock()
        .ok()
        .and_then(|g| g.as_ref().map(|s| s.pending.len()))
        .unwrap_or(0)
}

/// Writes what waits, as far as the console takes it now. Cheap when
/// nothing waits; the loop calls it once per iteration.
pub fn flush() {
    if let Ok(mut guard) = SINK.try_lock() {
        if let Some(sink) = guard.as_mut() {
            sink.flush();
        }
    }
}

pub fn write_line(level: Level, args: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let word = match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    let line = format!("iris-init: {word}: {args}\n");
    // try_lock: a line logged while a line is being written (a panic in
    // the middle, say) is dropped rather than deadlocking.
    let Ok(mut guard) = SINK.try_lock() else {
        DROPPED_LINES.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let sink = guard.get_or_insert_with(Sink::for_stderr);
    if !sink.push(line.as_bytes()) {
        DROPPED_LINES.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a line reaches fd 2's file.
enum Out {
    /// fd 2 itself: a regular file (never flow-controlled) or nothing.
    Stderr,
    /// Our own non-blocking open file description of the same pipe or tty,
    /// so fd 2's flags (shared with whoever started us) stay untouched.
    Own(OwnedFd),
    /// A socket: `send` with `MSG_DONTWAIT`.
    Socket(OwnedFd),
}

pub struct Sink {
    out: Out,
    pending: Vec<u8>,
}

impl Sink {
    fn for_stderr() -> Sink {
        Sink {
            out: Out::for_fd(2),
            pending: Vec::new(),
        }
    }

    /// A sink writing to `fd` (which it now owns), non-blocking.
    pub fn for_owned(fd: OwnedFd) -> Sink {
        let _ = set_nonblocking(fd.as_raw_fd());
        Sink {
            out: Out::Own(fd),
            pending: Vec::new(),
        }
    }

    /// Queues one whole line after what waits and writes what it can.
    /// False when the line did not fit and was dropped.
    pub fn push(&mut self, line: &[u8]) -> bool {
        self.flush();
        if self.pending.len().saturating_add(line.len()) > PENDING_MAX {
            return false;
        }
        if self.pending.is_empty() {
            let n = self.out.write(line);
            self.pending
                .extend_from_slice(line.get(n..).unwrap_or_default());
        } else {
            self.pending.extend_from_slice(line);
        }
        true
    }

    pub fn flush(&mut self) {
        while !self.pending.is_empty() {
            let n = self.out.write(&self.pending);
            if n == 0 {
                return;
            }
            self.pending.drain(..n.min(self.pending.len()));
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Out {
    fn for_fd(fd: RawFd) -> Out {
        let Ok(st) = nix::sys::stat::fstat(fd) else {
            return Out::Stderr;
        };
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFSOCK {
            return match nix::unistd::dup(fd) {
                // SAFETY: dup returned a new descriptor that nothing else owns.
                Ok(d) => Out::Socket(unsafe { OwnedFd::from_raw_fd(d) }),
                Err(_) => Out::Stderr,
            };
        }
        if kind != libc::S_IFIFO && kind != libc::S_IFCHR {
            return Out::Stderr;
        }
        // A new open file description of the same pipe or terminal, with
        // O_NONBLOCK of its own.
        let flags = nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOCTTY;
        let path = format!("/proc/self/fd/{fd}");
        if let Ok(d) = nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty()) {
            // SAFETY: open returned a new descriptor that nothing else owns.
            return Out::Own(unsafe { OwnedFd::from_raw_fd(d) });
        }
        // No /proc yet (PID 1 before its mounts): a duplicate, non-blocking.
        // That flag is shared with fd 2, which as PID 1 is ours alone.
        match nix::unistd::dup(fd) {
            Ok(d) => {
                // SAFETY: dup returned a new descriptor that nothing else owns.
                let owned = unsafe { OwnedFd::from_raw_fd(d) };
                let _ = set_nonblocking(owned.as_raw_fd());
                Out::Own(owned)
            }
            Err(_) => Out::Stderr,
        }
    }

    /// Writes what the file takes now; 0 when it takes nothing (full,
    /// stopped, closed).
    fn write(&self, bytes: &[u8]) -> usize {
        let r = match self {
            Out::Stderr => {
                // SAFETY: fd 2 stays open for the life of the process (or
                // the write fails with EBADF, which is fine).
                nix::unistd::write(unsafe { BorrowedFd::borrow_raw(2) }, bytes)
            }
            Out::Own(fd) => nix::unistd::write(fd, bytes),
            Out::Socket(fd) => nix::sys::socket::send(
                fd.as_raw_fd(),
                bytes,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ),
        };
        r.unwrap_or(0)
    }
}

fn set_nonblocking(fd: RawFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::console::write_line($crate::console::Level::Error, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::console::write_line($crate::console::Level::Warn, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::console::write_line($crate::console::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::console::write_line($crate::console::Level::Debug, format_args!($($t)*)) } }

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_full_pipe_never_blocks_and_lines_stay_whole() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut sink = Sink::for_owned(w);
        let line = |i: usize| format!("iris-init: info: line {i:06} {}\n", "x".repeat(200));
        // Far more than the pipe (64 KiB) and the buffer (64 KiB) hold.
        let (mut kept, mut dropped) = (0, 0);
        for i in 0..2000 {
            if sink.push(line(i).as_bytes()) {
                kept += 1;
            } else {
                dropped += 1;
            }
        }
        assert!(dropped > 0 && kept > 0, "kept {kept}, dropped {dropped}");
        assert!(sink.pending() <= PENDING_MAX);
        // A reader comes: everything kept arrives, in order, as whole lines.
        let mut reader = std::fs::File::from(r);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while sink.pending() > 0 || got.is_empty() {
            let n = reader.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            sink.flush();
        }
        drop(sink);
        reader.read_to_end(&mut got).unwrap();
        let text = String::from_utf8(got).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), kept);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(format!("{l}\n"), line(i), "line {i} whole and in order");
        }
    }

    #[test]
    fn a_closed_reader_is_not_an_error() {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut sink = Sink::for_owned(w);
        // EPIPE (SIGPIPE is ignored by the Rust runtime): kept, then dropped.
        let _ = sink.push(b"iris-init: info: nobody listens\n");
        sink.flush();
    }
}

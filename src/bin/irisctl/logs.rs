//! `logs -f` and `logs` of several services: one service is copied as it
//! is; several get each line prefixed with the service's name (as `docker
//! compose logs` does), and followed ones are read at once over one
//! connection each, multiplexed with poll(2).

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use iris_init::client::{self, BodyReader, Conn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::http::{exchange, open, CtlError};
use crate::request::{logs_request, QUICK_TIMEOUT};
use crate::style::{Style, NAME_COLORS};
use crate::write_stdout;

/// Turns a service's output into whole lines behind its prefix.
#[derive(Debug)]
pub struct Prefixer {
    prefix: Vec<u8>,
    partial: Vec<u8>,
}

impl Prefixer {
    pub fn new(prefix: String) -> Prefixer {
        Prefixer {
            prefix: prefix.into_bytes(),
            partial: Vec::new(),
        }
    }

    /// The complete lines in what has arrived so far, each prefixed; a
    /// line without its newline yet waits for the next piece.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(bytes);
        let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_nl + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        let mut out = Vec::with_capacity(done.len() + self.prefix.len() * 4);
        for line in done.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(line);
        }
        out
    }

    /// The last line when the output ended without a newline.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        self.partial.push(b'\n');
        let rest = std::mem::take(&mut self.partial);
        self.feed(&rest)
    }
}

/// `name | ` for each service, the names padded to the longest, each in
/// its colour on a terminal.
pub fn prefixes(names: &[String], style: Style) -> Vec<String> {
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    names
        .iter()
        .zip(NAME_COLORS.iter().cycle())
        .map(|(name, color)| format!("{} | ", style.paint(color, &format!("{name:<width$}"))))
        .collect()
}

/// `logs` with `-f` or several names; returns the exit status.
pub fn run(
    socket: &Path,
    names: &[String],
    tail: Option<u64>,
    follow: bool,
) -> Result<i32, CtlError> {
    let result = match names {
        [name] => follow_one(socket, name, tail),
        _ if follow => follow_many(socket, names, tail),
        _ => print_many(socket, names, tail),
    };
    match result {
        // The server ending a followed stream (shutdown, service deleted) is a normal end.
        Ok(()) | Err(CtlError::Http(client::Error::Closed)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// One service followed: its output as it comes.
fn follow_one(socket: &Path, name: &str, tail: Option<u64>) -> Result<(), CtlError> {
    let (mut conn, head) = open(socket, &logs_request(name, tail, true), None)?;
    conn.read_body(head.framing, &mut |piece| write_stdout(piece))
}

/// Several services without `-f`: each one's lines in turn.
fn print_many(socket: &Path, names: &[String], tail: Option<u64>) -> Result<(), CtlError> {
    for (name, prefix) in names.iter().zip(prefixes(names, Style::detect())) {
        let body = exchange(
            socket,
            &logs_request(name, tail, false),
            Some(QUICK_TIMEOUT),
        )?
        .body;
        let mut lines = Prefixer::new(prefix);
        let mut out = lines.feed(&body);
        out.extend(lines.finish());
        write_stdout(&out)?;
    }
    Ok(())
}

/// One followed service among several.
struct Follow {
    conn: Conn<UnixStream>,
    body: BodyReader,
    lines: Prefixer,
    done: bool,
}

impl Follow {
    /// Prints what one read brought; marks the stream done at its end.
    fn step(&mut self) -> Result<(), CtlError> {
        let out = match self.conn.next_piece(&mut self.body) {
            Ok(Some(piece)) => self.lines.feed(&piece),
            Ok(None) | Err(client::Error::Closed) => {
                self.done = true;
                self.lines.finish()
            }
            Err(e) => return Err(e.into()),
        };
        write_stdout(&out)
    }
}

/// Several services followed at once: every stream is opened first (so an
/// unknown name fails before anything is printed), then polled.
fn follow_many(socket: &Path, names: &[String], tail: Option<u64>) -> Result<(), CtlError> {
    let mut streams = Vec::new();
    for (name, prefix) in names.iter().zip(prefixes(names, Style::detect())) {
        let (mut conn, head) =
            open(socket, &logs_request(name, tail, true), None).map_err(|e| match e {
                CtlError::Api { message } => CtlError::Api {
                    message: format!("{name}: {message}"),
                },
                e => e,
            })?;
        let mut body = BodyReader::new(head.framing);
        let mut lines = Prefixer::new(prefix);
        write_stdout(&lines.feed(&conn.buffered_piece(&mut body)?))?;
        let done = body.is_done();
        streams.push(Follow {
            conn,
            body,
            lines,
            done,
        });
    }
    while !streams.is_empty() {
        let ready = wait_readable(&streams)?;
        for (stream, ready) in streams.iter_mut().zip(ready) {
            if ready {
                stream.step()?;
            }
        }
        streams.retain(|s| !s.done);
    }
    Ok(())
}

/// Blocks until at least one stream has something to read (or ended).
fn wait_readable(streams: &[Follow]) -> Result<Vec<bool>, CtlError> {
    let mut fds: Vec<PollFd> = streams
        .iter()
        .map(|s| PollFd::new(s.conn.stream().as_fd(), PollFlags::POLLIN))
        .collect();
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(CtlError::Http(client::Error::Receive(e.into()))),
        }
    }
    Ok(fds
        .iter()
        .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_get_their_prefix_only_once_whole() {
        let mut p = Prefixer::new("web | ".into());
        assert_eq!(p.feed(b"one\ntw"), b"web | one\n");
        assert_eq!(p.feed(b"o\nthree\nfo"), b"web | two\nweb | three\n");
        assert_eq!(p.feed(b"ur"), b"");
        assert_eq!(p.finish(), b"web | four\n");
        assert_eq!(p.finish(), b"");
    }

    #[test]
    fn prefixes_are_padded_to_the_longest_name() {
        let names = ["web".to_string(), "database".to_string()];
        let plain = prefixes(&names, Style { color: false });
        assert_eq!(plain, ["web      | ", "database | "]);
        let colored = prefixes(&names, Style { color: true });
        assert_eq!(colored.first().unwrap(), "\x1b[36mweb     \x1b[0m | ");
    }
}

//! Service output: one pipe per service (kept across restarts, so no line
//! is lost between two runs), read by the loop as it fills, written to
//! `LOG_DIR/NAME.log` with size-capped rotation, and streamed to followers.
//! A service never blocks on its output beyond the pipe's own buffer.

use crate::api::conn::{ConnState, MAX_PENDING_OUTPUT};
use crate::api::error::ApiError;
use crate::api::http::{self, Request, Response};
use crate::api::Reply;
use crate::reactor::{Init, PipeOwner};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest line kept whole; a longer one is split into lines of this size.
const MAX_LINE: usize = 64 * 1024;
/// Most bytes read from one pipe per turn of the loop, so a flooding
/// service cannot hold up the API (the rest is read on the next turn).
const READ_BUDGET: usize = 256 << 10;

pub struct ServiceLog {
    read: File,
    /// The write end, handed (duplicated) to every run of the service.
    write: OwnedFd,
    token: Token,
    path: PathBuf,
    file: Option<File>,
    size: u64,
    partial: Vec<u8>,
    pub dropped_bytes: u64,
    pub lines: u64,
    followers: Vec<Token>,
}

pub struct Logs {
    by_service: HashMap<String, ServiceLog>,
    /// Services whose pipe still holds output after a turn's budget.
    pub backlog: Vec<String>,
    dir: PathBuf,
    /// Rotate when the current file reaches this size (one older kept).
    max_bytes: u64,
}

impl Logs {
    pub fn new(dir: &Path) -> Logs {
        let max_bytes = std::env::var("IRIS_LOG_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|v| *v >= 1024)
            .unwrap_or(8 << 20);
        Logs {
            by_service: HashMap::new(),
            backlog: Vec::new(),
            dir: dir.to_path_buf(),
            max_bytes,
        }
    }

    pub fn get(&self, name: &str) -> Option<&ServiceLog> {
        self.by_service.get(name)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
}

fn pipe() -> io::Result<(File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(io::Error::from)?;
    // Only our read end is non-blocking; the service's write end blocks as
    // a normal stdout would.
    nix::fcntl::fcntl(
        w.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(io::Error::from)?;
    Ok((File::from(r), w))
}

/// stdout and stderr for a new run of `name`: its log pipe's write end.
pub fn writer_for(init: &mut Init, name: &str) -> io::Result<(OwnedFd, OwnedFd)> {
    if !init.logs.by_service.contains_key(name) {
        std::fs::create_dir_all(&init.logs.dir)?;
        let (read, write) = pipe()?;
        let token = init.new_token();
        init.registry()
            .register(&mut SourceFd(&read.as_raw_fd()), token, Interest::READABLE)?;
        init.pipes.insert(token, PipeOwner::Log(name.to_string()));
        let path = init.logs.path(name);
        let log = ServiceLog {
            read,
            write,
            token,
            path,
            file: None,
            size: 0,
            partial: Vec::new(),
            dropped_bytes: 0,
            lines: 0,
            followers: Vec::new(),
        };
        init.logs.by_service.insert(name.to_string(), log);
    }
    let log = init
        .logs
        .by_service
        .get(name)
        .ok_or_else(|| io::Error::other("log pipe vanished"))?;
    Ok((log.write.try_clone()?, log.write.try_clone()?))
}

/// The pipe of `name` is readable. Reads up to the budget; a pipe with
/// more left goes on the backlog the loop reads on its next turn (mio is
/// edge-triggered: no new event would come for bytes already there).
pub fn on_readable(init: &mut Init, name: &str) {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if total >= READ_BUDGET {
            if !init.logs.backlog.iter().any(|n| n == name) {
                init.logs.backlog.push(name.to_string());
            }
            return;
        }
        let Some(log) = init.logs.by_service.get_mut(name) else {
            return;
        };
        match log.read.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                total += n;
                ingest(init, name, buf.get(..n).unwrap_or_default());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return, // WouldBlock: drained
        }
    }
}

/// Pipes left with unread output by the budget: read a share of each.
pub fn read_backlog(init: &mut Init) {
    for name in std::mem::take(&mut init.logs.backlog) {
        on_readable(init, &name);
    }
}

/// Newlines in `data`, in byte-sized chunks the compiler vectorizes.
fn count_newlines(data: &[u8]) -> u64 {
    data.chunks(255)
        .map(|c| u64::from(c.iter().map(|b| u8::from(*b == b'\n')).sum::<u8>()))
        .sum()
}

/// Reads whatever the service wrote so far (before reporting its exit).
pub fn drain(init: &mut Init, name: &str) {
    on_readable(init, name);
}

/// A line the init itself adds to a service's log (a container's image
/// pull, say), after whatever the service wrote before it.
pub fn append(init: &mut Init, name: &str, line: &str) {
    if !init.logs.by_service.contains_key(name) && writer_for(init, name).is_err() {
        return;
    }
    drain(init, name);
    let mut bytes = line.as_bytes().to_vec();
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    ingest(init, name, &bytes);
}

fn ingest(init: &mut Init, name: &str, chunk: &[u8]) {
    let max_bytes = init.logs.max_bytes;
    let Some(log) = init.logs.by_service.get_mut(name) else {
        return;
    };
    // Whole lines are written; the unfinished last one waits in `partial`.
    let mut joined = std::mem::take(&mut log.partial);
    let data: &[u8] = if joined.is_empty() {
        chunk
    } else {
        joined.extend_from_slice(chunk);
        &joined
    };
    let cut = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (complete, mut tail) = data.split_at(cut);
    let mut split = Vec::new();
    while tail.len() >= MAX_LINE {
        // A very long line is split, not lost.
        let (line, rest) = tail.split_at(MAX_LINE);
        split.extend_from_slice(line);
        split.push(b'\n');
        tail = rest;
    }
    log.partial = tail.to_vec();
    for part in [complete, split.as_slice()] {
        if !part.is_empty() {
            log.lines += count_newlines(part);
            write_file(log, part, max_bytes);
        }
    }
    if log.followers.is_empty() || (complete.is_empty() && split.is_empty()) {
        return;
    }
    let followers = log.followers.clone();
    let mut data = http::chunk(complete);
    data.extend_from_slice(&http::chunk(&split));
    for t in followers {
        push_to_follower(init, t, &data);
    }
}

fn open_current(log: &mut ServiceLog) -> bool {
    if log.file.is_some() {
        return true;
    }
    match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(&log.path)
    {
        Ok(f) => {
            log.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            log.file = Some(f);
            true
        }
        Err(e) => {
            crate::warn!("unable to open {}: {e}", log.path.display());
            false
        }
    }
}

/// Counts output that could not be kept, and says so in the init's log the
/// first time (the service's own log is what failed).
fn note_dropped(log: &mut ServiceLog, bytes: usize) {
    if log.dropped_bytes == 0 {
        crate::warn!("dropping output of {}: cannot write it", log.path.display());
    }
    log.dropped_bytes += bytes as u64;
}

/// Keeps the current file and one older (`NAME.log.1`).
fn rotate(log: &mut ServiceLog) {
    // Renaming onto an existing file makes ext4 flush the new one to disk
    // inside rename(); removing the old one first keeps the loop fast.
    let older = log.path.with_extension("log.1");
    let _ = std::fs::remove_file(&older);
    let _ = std::fs::rename(&log.path, older);
    log.file = None;
    log.size = 0;
}

/// Appends whole lines, rotating at line boundaries so that no file grows
/// past the cap (unless one line alone is longer).
fn write_file(log: &mut ServiceLog, data: &[u8], max_bytes: u64) {
    let mut rest = data;
    while !rest.is_empty() {
        if !open_current(log) {
            note_dropped(log, rest.len());
            return;
        }
        let room = usize::try_from(max_bytes.saturating_sub(log.size)).unwrap_or(usize::MAX);
        let cut = if rest.len() <= room {
            rest.len()
        } else {
            match rest
                .get(..room)
                .and_then(|r| r.iter().rposition(|b| *b == b'\n'))
            {
                Some(i) => i + 1,
                None if log.size > 0 => {
                    rotate(log);
                    continue;
                }
                None => rest
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            }
        };
        let (now, later) = rest.split_at(cut);
        if let Some(f) = &mut log.file {
            match f.write_all(now) {
                Ok(()) => log.size += now.len() as u64,
                Err(_) => note_dropped(log, now.len()),
            }
        }
        rest = later;
        if !rest.is_empty() {
            rotate(log);
        }
    }
}

fn push_to_follower(init: &mut Init, token: Token, data: &[u8]) {
    let Some(conn) = init.conns.get_mut(&token) else {
        return;
    };
    if conn.wbuf.len() + data.len() > MAX_PENDING_OUTPUT {
        // A follower that does not read is cut off rather than buffered
        // without bound.
        init.close_conn(token);
        return;
    }
    conn.wbuf.extend_from_slice(data);
    init.flush_conn(token);
}

/// The service was deleted: close its pipe and end every follow stream.
pub fn on_removed(init: &mut Init, name: &str) {
    drain(init, name);
    let Some(log) = init.logs.by_service.remove(name) else {
        return;
    };
    let _ = init
        .registry()
        .deregister(&mut SourceFd(&log.read.as_raw_fd()));
    init.pipes.remove(&log.token);
    for t in log.followers {
        if let Some(conn) = init.conns.get_mut(&t) {
            conn.wbuf.extend_from_slice(http::last_chunk());
            conn.state = ConnState::Closing;
        }
        init.flush_conn(t);
    }
}

pub fn forget_follower(init: &mut Init, token: Token) {
    for log in init.logs.by_service.values_mut() {
        log.followers.retain(|t| *t != token);
    }
}

/// The last `n` lines the service wrote (both log files), for error
/// messages and `tail=N`.
pub fn tail(init: &Init, name: &str, n: usize) -> Vec<u8> {
    let path = init.logs.path(name);
    let mut text = read_tail(&path, n);
    if count_lines(&text) < n {
        let older = read_tail(&path.with_extension("log.1"), n);
        let mut joined = older;
        joined.extend_from_slice(&text);
        text = joined;
    }
    last_lines(&text, n).to_vec()
}

fn count_lines(text: &[u8]) -> usize {
    text.iter().filter(|b| **b == b'\n').count()
}

/// The end of a file holding at least `n` lines (or all of it).
fn read_tail(path: &Path, n: usize) -> Vec<u8> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut block: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(block);
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        if start == 0 || count_lines(&buf) > n {
            return buf;
        }
        block = block.saturating_mul(4);
    }
}

/// The last `n` lines of `text` (a final line without newline counts).
pub fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let search_end = if text.last() == Some(&b'\n') {
        text.len().saturating_sub(1)
    } else {
        text.len()
    };
    let mut count = 0;
    for i in (0..search_end).rev() {
        if text.get(i) == Some(&b'\n') {
            count += 1;
            if count == n {
                return text.get(i + 1..).unwrap_or_default();
            }
        }
    }
    text
}

/// A short excerpt of the last lines, for error messages.
pub fn excerpt(init: &mut Init, name: &str, n: usize) -> Option<String> {
    drain(init, name);
    let t = tail(init, name, n);
    let s = String::from_utf8_lossy(&t).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

pub(crate) fn handle(
    init: &mut Init,
    token: Token,
    name: &str,
    tail_n: Option<usize>,
    follow: bool,
    req: &Request,
) -> Result<Reply, ApiError> {
    if init.sup.get(name).is_none() {
        return Err(ApiError::NotFound(name.to_string()));
    }
    drain(init, name);
    let body = match tail_n {
        Some(n) => tail(init, name, n),
        None => {
            let path = init.logs.path(name);
            let mut all = std::fs::read(path.with_extension("log.1")).unwrap_or_default();
            all.extend(std::fs::read(&path).unwrap_or_default());
            all
        }
    };
    if !follow {
        let mut r = Response::text(200, body);
        r.keep_alive = req.keep_alive;
        return Ok(Reply::Now(r));
    }
    // Make sure the pipe exists, so lines from the next run reach us too.
    if let Err(e) = writer_for(init, name) {
        return Err(ApiError::Internal(format!(
            "cannot open the log of '{name}': {e}"
        )));
    }
    let Some(conn) = init.conns.get_mut(&token) else {
        return Ok(Reply::Deferred);
    };
    conn.wbuf
        .extend_from_slice(&http::chunked_head(200, "text/plain"));
    if !body.is_empty() {
        conn.wbuf.extend_from_slice(&http::chunk(&body));
    }
    conn.state = ConnState::Streaming;
    conn.deadline = None;
    if let Some(log) = init.logs.by_service.get_mut(name) {
        log.followers.push(token);
    }
    init.flush_conn(token);
    Ok(Reply::Deferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_counted_across_chunk_edges() {
        let mut data = vec![b'x'; 1000];
        for i in (0..1000).step_by(7) {
            data[i] = b'\n';
        }
        let expect = data.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(count_newlines(&data), expect);
        assert_eq!(
            count_newlines(&[b'\n'; 600]),
            600,
            "no overflow of a byte counter"
        );
    }

    #[test]
    fn last_lines_exact() {
        let t = b"a\nb\nc\n";
        assert_eq!(last_lines(t, 2), b"b\nc\n");
        assert_eq!(last_lines(t, 3), t);
        assert_eq!(last_lines(t, 9), t);
        assert_eq!(last_lines(t, 0), b"");
        assert_eq!(last_lines(b"a\nb", 1), b"b");
        assert_eq!(last_lines(b"", 4), b"");
    }
}

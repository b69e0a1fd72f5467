//! Service output: one pipe per service (kept across restarts, so no line
//! is lost between two runs), read by the loop as it fills, written to
//! `LOG_DIR/NAME.log` with size-capped rotation, and handed to followers
//! (as `StreamOut`s: what a follower's connection does with them is the
//! API's business). A service never blocks on its output beyond the
//! pipe's own buffer.

use crate::health::logline::LineMatch;
use crate::io::{Io, Owner};
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

/// Output for a follower (identified by its connection's token).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamOut {
    /// Whole lines the service wrote.
    Data { to: Token, bytes: Vec<u8> },
    /// The service was deleted: the stream ends.
    End { to: Token },
}

pub(crate) struct ServiceLog {
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

pub(crate) struct Logs {
    by_service: HashMap<String, ServiceLog>,
    /// Services whose pipe still holds output after a turn's budget.
    backlog: Vec<String>,
    /// Output for followers, in order, until the reactor takes it.
    out: Vec<StreamOut>,
    dir: PathBuf,
    /// Rotate when the current file reaches this size (one older kept).
    max_bytes: u64,
    /// `log` readiness checks: the text each service's output is watched
    /// for (empty when no service has one: then nothing is scanned).
    line_watch: HashMap<String, LineMatch>,
    /// Services whose watched text appeared in a line, until taken.
    matched: Vec<String>,
    /// The buffer pipes are read into.
    read_buf: Vec<u8>,
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
            out: Vec::new(),
            dir: dir.to_path_buf(),
            max_bytes,
            line_watch: HashMap::new(),
            matched: Vec::new(),
            read_buf: Vec::new(),
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

impl Logs {
    /// stdout and stderr for a new run of `name`: its log pipe's write end.
    pub(crate) fn writer_for(&mut self, io: &mut Io, name: &str) -> io::Result<(OwnedFd, OwnedFd)> {
        if !self.by_service.contains_key(name) {
            std::fs::create_dir_all(&self.dir)?;
            let (read, write) = pipe()?;
            let token = io.register(
                &mut SourceFd(&read.as_raw_fd()),
                Interest::READABLE,
                Owner::Log(name.to_string()),
            )?;
            let log = ServiceLog {
                read,
                write,
                token,
                path: self.path(name),
                file: None,
                size: 0,
                partial: Vec::new(),
                dropped_bytes: 0,
                lines: 0,
                followers: Vec::new(),
            };
            self.by_service.insert(name.to_string(), log);
        }
        let log = self
            .by_service
            .get(name)
            .ok_or_else(|| io::Error::other("log pipe vanished"))?;
        Ok((log.write.try_clone()?, log.write.try_clone()?))
    }

    /// The pipe of `name` is readable. Reads up to the budget; a pipe with
    /// more left goes on the backlog the loop reads on its next turn (mio is
    /// edge-triggered: no new event would come for bytes already there).
    pub(crate) fn on_readable(&mut self, name: &str) {
        let mut total = 0;
        // One buffer for every read (taken, so `ingest` can borrow self).
        let mut buf = std::mem::take(&mut self.read_buf);
        buf.resize(64 * 1024, 0);
        self.read_chunks(name, &mut buf, &mut total);
        self.read_buf = buf;
    }

    fn read_chunks(&mut self, name: &str, buf: &mut [u8], total: &mut usize) {
        loop {
            if *total >= READ_BUDGET {
                if !self.backlog.iter().any(|n| n == name) {
                    self.backlog.push(name.to_string());
                }
                return;
            }
            let Some(log) = self.by_service.get_mut(name) else {
                return;
            };
            match log.read.read(buf) {
                Ok(0) => return,
                Ok(n) => {
                    *total += n;
                    self.ingest(name, buf.get(..n).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock: drained
            }
        }
    }

    /// Some pipe still holds output the budget left unread.
    pub(crate) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Pipes left with unread output by the budget: read a share of each.
    pub(crate) fn read_backlog(&mut self) {
        for name in std::mem::take(&mut self.backlog) {
            self.on_readable(&name);
        }
    }

    /// Reads whatever the service wrote so far (before reporting its exit).
    pub(crate) fn drain(&mut self, name: &str) {
        self.on_readable(name);
    }

    /// A line the init itself adds to a service's log (a container's image
    /// pull, say), after whatever the service wrote before it.
    pub(crate) fn append(&mut self, io: &mut Io, name: &str, line: &str) {
        if !self.by_service.contains_key(name) && self.writer_for(io, name).is_err() {
            return;
        }
        self.drain(name);
        let mut bytes = line.as_bytes().to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        self.ingest(name, &bytes);
    }

    /// Watches the lines `name` writes from now on for `text` (None: no
    /// more); a match is told once through `take_matches`.
    pub(crate) fn watch_line(&mut self, name: &str, text: Option<&str>) {
        match text {
            Some(t) => {
                self.line_watch.insert(name.to_string(), LineMatch::new(t));
            }
            None => {
                self.line_watch.remove(name);
            }
        }
    }

    /// Services whose watched text appeared since the last call.
    pub(crate) fn take_matches(&mut self) -> Vec<String> {
        std::mem::take(&mut self.matched)
    }

    /// Complete lines of `name` for its `log` check.
    fn scan_lines(&mut self, name: &str, lines: &[u8]) {
        if let Some(m) = self.line_watch.get_mut(name) {
            if m.feed(lines) {
                self.line_watch.remove(name);
                self.matched.push(name.to_string());
            }
        }
    }

    fn ingest(&mut self, name: &str, chunk: &[u8]) {
        let max_bytes = self.max_bytes;
        let Some(log) = self.by_service.get_mut(name) else {
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
        let cut = last_newline(data).map_or(0, |i| i + 1);
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
        let followed = !log.followers.is_empty();
        if !self.line_watch.is_empty() {
            self.scan_lines(name, complete);
            self.scan_lines(name, &split);
        }
        if !followed || (complete.is_empty() && split.is_empty()) {
            return;
        }
        let mut bytes = complete.to_vec();
        bytes.extend_from_slice(&split);
        let Some(log) = self.by_service.get(name) else {
            return;
        };
        for t in &log.followers {
            self.out.push(StreamOut::Data {
                to: *t,
                bytes: bytes.clone(),
            });
        }
    }

    /// Output for followers since the last call, in order.
    pub(crate) fn take_output(&mut self) -> Vec<StreamOut> {
        std::mem::take(&mut self.out)
    }

    /// The service was deleted: close its pipe and end every follow stream.
    pub(crate) fn on_removed(&mut self, io: &mut Io, name: &str) {
        self.drain(name);
        let Some(log) = self.by_service.remove(name) else {
            return;
        };
        io.deregister(&mut SourceFd(&log.read.as_raw_fd()), log.token);
        for t in log.followers {
            self.out.push(StreamOut::End { to: t });
        }
    }

    /// `follower` gets every line `name` writes from now on (the pipe is
    /// made now, so lines from the service's next run reach it too).
    pub(crate) fn follow(&mut self, io: &mut Io, name: &str, follower: Token) -> io::Result<()> {
        self.writer_for(io, name)?;
        if let Some(log) = self.by_service.get_mut(name) {
            log.followers.push(follower);
        }
        Ok(())
    }

    pub(crate) fn forget_follower(&mut self, follower: Token) {
        for log in self.by_service.values_mut() {
            log.followers.retain(|t| *t != follower);
        }
    }

    /// The last `n` lines the service wrote (both log files), for error
    /// messages and `tail=N`.
    pub(crate) fn tail(&self, name: &str, n: usize) -> Vec<u8> {
        let path = self.path(name);
        let mut text = read_tail(&path, n);
        if count_lines(&text) < n {
            let older = read_tail(&path.with_extension("log.1"), n);
            let mut joined = older;
            joined.extend_from_slice(&text);
            text = joined;
        }
        last_lines(&text, n).to_vec()
    }

    /// Both log files, the older first.
    pub(crate) fn read_all(&self, name: &str) -> Vec<u8> {
        let path = self.path(name);
        let mut all = std::fs::read(path.with_extension("log.1")).unwrap_or_default();
        all.extend(std::fs::read(&path).unwrap_or_default());
        all
    }

    /// A short excerpt of the last lines, for error messages.
    pub(crate) fn excerpt(&mut self, name: &str, n: usize) -> Option<String> {
        self.drain(name);
        let t = self.tail(name, n);
        let s = String::from_utf8_lossy(&t).trim_end().to_string();
        (!s.is_empty()).then_some(s)
    }
}

/// Newlines in `data`, eight bytes at a time: the release profile
/// optimizes for size, which leaves a byte loop unvectorized (a log flood
/// then cost the init twice the CPU per MB).
fn count_newlines(data: &[u8]) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    // The high bit of each byte of the result is set exactly for the bytes
    // of `w` that are newlines (no carries cross bytes: each byte's low
    // seven bits plus 0x7f stay below 0x100).
    let newline_bits = |w: u64| {
        let x = w ^ NEWLINES;
        !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
    };
    let mut blocks = data.chunks_exact(32);
    let mut count = 0u64;
    for block in blocks.by_ref() {
        let p = block.as_ptr().cast::<u64>();
        // SAFETY: `block` has 32 bytes: four u64 reads (unaligned) in it.
        let (a, b, c, d) = unsafe {
            (
                p.read_unaligned(),
                p.add(1).read_unaligned(),
                p.add(2).read_unaligned(),
                p.add(3).read_unaligned(),
            )
        };
        count += u64::from(
            newline_bits(a).count_ones()
                + newline_bits(b).count_ones()
                + newline_bits(c).count_ones()
                + newline_bits(d).count_ones(),
        );
    }
    count + blocks.remainder().iter().filter(|b| **b == b'\n').count() as u64
}

/// Index of the last newline in `data`.
fn last_newline(data: &[u8]) -> Option<usize> {
    // SAFETY: memrchr reads `data.len()` bytes from its start, all in the
    // slice; the result is null or a pointer into it.
    let found = unsafe { libc::memrchr(data.as_ptr().cast(), i32::from(b'\n'), data.len()) };
    (!found.is_null()).then(|| found as usize - data.as_ptr() as usize)
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
        // Every byte value next to a newline, at every offset in a block:
        // no byte is taken for a newline, none is missed.
        for offset in 0..40 {
            for other in 0..=255u8 {
                let mut data = vec![other; 72];
                data[offset] = b'\n';
                let expect = data.iter().filter(|b| **b == b'\n').count() as u64;
                assert_eq!(count_newlines(&data), expect, "{offset} {other}");
            }
        }
        assert_eq!(last_newline(b"a\nb\nc"), Some(3));
        assert_eq!(last_newline(b"abc"), None);
        assert_eq!(last_newline(b""), None);
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

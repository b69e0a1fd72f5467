//! One API connection: its buffers, where it is in the request cycle, its
//! deadline, and whether its peer may change anything.

use super::http::Response;
use mio::net::UnixStream;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Keep-alive connections idle this long are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request must arrive whole within this time from its first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections; more get a canned 503.
pub const MAX_CONNS: usize = 512;
/// A follower (logs follow) with this much unsent output is cut off.
pub const MAX_PENDING_OUTPUT: usize = 4 << 20;
/// A connection with this much unsent output is not read (nor its buffered
/// requests parsed) until its client has taken most of it: a client that
/// pipelines requests and never reads holds at most this plus one answer.
pub const MAX_UNSENT_ANSWERS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Between requests.
    Idle,
    /// Part of a request has arrived.
    Reading,
    /// A request waits for a deferred answer; nothing else is parsed until
    /// it is written (HTTP/1.1 answers in order).
    Awaiting,
    /// A streamed (chunked) answer is being sent.
    Streaming,
    /// Answers are held until the state file is written (`queued`); the
    /// requests pipelined behind them wait, so answers stay in order.
    Holding,
    /// Answer written, then close.
    Closing,
}

pub struct Conn {
    pub stream: UnixStream,
    pub rbuf: Vec<u8>,
    pub wbuf: Vec<u8>,
    /// Answers held until the state file is written (see `Response::durable`)
    /// and the answers behind them, in order.
    pub queued: Vec<Response>,
    pub state: ConnState,
    /// Root (or our own uid): may use the API. Others get 403.
    pub trusted: bool,
    pub deadline: Option<Instant>,
    pub writable_interest: bool,
    pub peer_closed: bool,
    /// `100 Continue` was sent for the request being read.
    pub continue_sent: bool,
    /// Reading stopped because too many answers wait unsent.
    pub held_back: bool,
}

pub enum ReadResult {
    /// Bytes were read (maybe zero before WouldBlock).
    Open,
    /// The peer closed its side (EOF) or the socket failed.
    Closed,
}

impl Conn {
    pub fn new(stream: UnixStream, trusted: bool, now: Instant) -> Conn {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            queued: Vec::new(),
            state: ConnState::Idle,
            trusted,
            deadline: Some(now + IDLE_TIMEOUT),
            writable_interest: false,
            peer_closed: false,
            continue_sent: false,
            held_back: false,
        }
    }

    /// Too much output waits for the client (see `MAX_UNSENT_ANSWERS`).
    pub fn backed_up(&self) -> bool {
        let queued: usize = self.queued.iter().map(|r| r.body.len()).sum();
        self.wbuf.len().saturating_add(queued) >= MAX_UNSENT_ANSWERS
    }

    /// Reads until the socket would block, at most `limit` buffered bytes
    /// (the rest stays in the kernel until the buffer is drained).
    pub fn read_available(&mut self, limit: usize) -> ReadResult {
        let mut chunk = [0u8; 16 * 1024];
        while self.rbuf.len() < limit {
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadResult::Closed,
                Ok(n) => self
                    .rbuf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadResult::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadResult::Closed,
            }
        }
        ReadResult::Open
    }

    /// Writes what it can. Err means the connection is dead.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.wbuf.len() {
            match self
                .stream
                .write(self.wbuf.get(written..).unwrap_or_default())
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.wbuf.clear();
                    return Err(e);
                }
            }
        }
        self.wbuf.drain(..written);
        Ok(())
    }

    pub fn wants_close(&self) -> bool {
        self.state == ConnState::Closing && self.wbuf.is_empty() && self.queued.is_empty()
    }
}

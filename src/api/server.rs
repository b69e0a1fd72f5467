//! The API server: the listening socket and its connections. It accepts,
//! reads and parses requests, writes answers (deferred ones after the
//! state file, at the end of a loop iteration), streams, sweeps idle and
//! slow connections, and keeps the waiting connections. What a request
//! means is not its business: the reactor hands requests to `handlers`.

use super::conn::{self, Conn, ConnState, ReadResult, MAX_CONNS, MAX_PENDING_OUTPUT};
use super::error::ApiError;
use super::http::{self, Request, Response};
use super::pending::{Answer, Await, Pending, Pendings};
use crate::io::{Io, Owner, TimerKey};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Token};
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) struct ApiServer {
    listener: UnixListener,
    /// An open descriptor kept in reserve: when `accept` fails for want of
    /// descriptors, it is closed for a moment so the client can be told
    /// (503) instead of waiting in the backlog for ever.
    spare: Option<std::fs::File>,
    conns: HashMap<Token, Conn>,
    pending: Pendings,
    /// Connections with answers to write once the state file is written.
    flush_pending: Vec<Token>,
    /// Connections answered late: requests pipelined behind the answered
    /// one are taken up at the end of the loop iteration.
    resume: Vec<Token>,
    /// Waits whose client went away, for their owners to drop.
    abandoned: Vec<Pending>,
    sweep_at: Option<Instant>,
}

/// Creates `path`'s parent directory if it is missing.
pub(crate) fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::fs::create_dir_all(p),
        _ => Ok(()),
    }
}

/// Binds the API socket with mode 0600 from the start (umask), replacing a
/// stale socket file but never one another live init is serving.
fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    ensure_parent(path)?;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is serving {}", path.display()),
        ));
    }
    remove_stale_socket(path)?;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Removes what a previous run left at `path`, a socket nobody serves;
/// anything else there (a file, a directory, a link) is refused, never
/// deleted: `--socket` pointing at the wrong path must not destroy it.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(m) => {
            let what = if m.is_dir() {
                "a directory"
            } else if m.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file that is not a socket"
            };
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is {what}; refusing to replace it", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// EMFILE (this process) or ENFILE (the system) from `accept`.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// A descriptor to hold in reserve (see `ApiServer::spare`).
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null")
        .or_else(|_| std::fs::File::open("/"))
        .ok()
}

/// Root, or the init's own uid, may use the API (`SO_PEERCRED`).
fn peer_is_trusted(stream: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

impl ApiServer {
    /// Listens on `path`.
    pub(crate) fn bind(path: &Path, io: &mut Io) -> io::Result<ApiServer> {
        let mut listener = bind_socket(path)?;
        io.register(&mut listener, Interest::READABLE, Owner::Listener)?;
        Ok(ApiServer::with_listener(listener))
    }

    fn with_listener(listener: UnixListener) -> ApiServer {
        ApiServer {
            listener,
            spare: spare_fd(),
            conns: HashMap::new(),
            pending: Pendings::default(),
            flush_pending: Vec::new(),
            resume: Vec::new(),
            abandoned: Vec::new(),
            sweep_at: None,
        }
    }

    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn accept_all(&mut self, io: &mut Io) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_conn(io, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_fds(&e) && self.spare.is_some() => {
                    // Out of descriptors: free the spare one to take the
                    // client, tell it, and keep the spare again. Every
                    // waiting client gets its answer; the API recovers as
                    // soon as descriptors are free.
                    self.spare = None;
                    let answered = match self.listener.accept() {
                        Ok((mut stream, _)) => {
                            let err = ApiError::Unavailable(format!(
                                "the init is out of file descriptors ({e}); try again later"
                            ));
                            let bytes = err.to_response(false).to_bytes();
                            let _ = io::Write::write(&mut stream, &bytes);
                            true
                        }
                        Err(_) => false,
                    };
                    self.spare = spare_fd();
                    crate::warn!("accept failed: {e}; answered 503");
                    if !answered || self.spare.is_none() {
                        return;
                    }
                }
                Err(e) => {
                    // Leave the rest in the backlog.
                    crate::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, io: &mut Io, mut stream: UnixStream) {
        let now = Instant::now();
        if self.conns.len() >= MAX_CONNS {
            let err = ApiError::Unavailable("too many connections".into());
            let _ = io::Write::write(&mut stream, &err.to_response(false).to_bytes());
            return;
        }
        let trusted = peer_is_trusted(&stream);
        let Ok(token) = io.register(&mut stream, Interest::READABLE, Owner::Conn) else {
            return;
        };
        self.conns.insert(token, Conn::new(stream, trusted, now));
        self.arm_sweep(io, now + conn::IDLE_TIMEOUT);
    }

    /// Reads what the client sent, no more than one maximal request ahead
    /// (a client that floods is held back by its own socket buffer).
    pub(crate) fn read(&mut self, token: Token) {
        let limit = http::MAX_HEAD_BYTES + http::MAX_BODY_BYTES + 1;
        if let Some(conn) = self.conns.get_mut(&token) {
            if conn.backed_up() {
                // Left in the kernel: the client blocks on its own sends.
                conn.held_back = true;
                return;
            }
            if let ReadResult::Closed = conn.read_available(limit) {
                conn.peer_closed = true;
            }
        }
    }

    /// The next complete request on the connection, while it may take one
    /// (not while an earlier one waits). Malformed and forbidden requests
    /// are answered here.
    pub(crate) fn next_request(&mut self, io: &mut Io, token: Token) -> Option<Request> {
        loop {
            let now = Instant::now();
            let conn = self.conns.get_mut(&token)?;
            if !matches!(conn.state, ConnState::Idle | ConnState::Reading) || conn.rbuf.is_empty() {
                return None;
            }
            if conn.backed_up() {
                conn.held_back = true;
                return None;
            }
            match http::parse_request(&conn.rbuf) {
                Ok(None) => {
                    if !conn.continue_sent && http::expects_continue(&conn.rbuf) {
                        // curl waits a second for this before sending a body.
                        conn.continue_sent = true;
                        conn.wbuf.extend_from_slice(http::CONTINUE);
                    }
                    if conn.state == ConnState::Idle {
                        conn.state = ConnState::Reading;
                        conn.deadline = Some(now + conn::REQUEST_TIMEOUT);
                        self.arm_sweep(io, now + conn::REQUEST_TIMEOUT);
                    }
                    return None;
                }
                Err(e) => {
                    conn.rbuf.clear();
                    self.respond(io, token, ApiError::from(e).to_response(false));
                    return None;
                }
                Ok(Some((req, used))) => {
                    conn.rbuf.drain(..used);
                    conn.continue_sent = false;
                    conn.state = ConnState::Awaiting;
                    conn.deadline = None;
                    if !conn.trusted {
                        self.respond(io, token, ApiError::Forbidden.to_response(false));
                        continue;
                    }
                    return Some(req);
                }
            }
        }
    }

    /// Gives a request (`keep_alive`: what it asked for) its answer.
    pub(crate) fn reply(&mut self, io: &mut Io, token: Token, keep_alive: bool, answer: Answer) {
        match answer {
            Answer::Now(mut resp) => {
                resp.keep_alive = resp.keep_alive && keep_alive;
                self.respond(io, token, resp);
            }
            Answer::Wait(wait) => self.pending.add(Pending {
                conn: token,
                keep_alive,
                wait,
            }),
            Answer::Follow { name, body } => {
                let head = http::chunked_head(200, "text/plain");
                self.begin_stream(token, keep_alive, head, &body, Await::Follow(name));
                self.flush(io, token);
            }
            Answer::Events { body } => {
                let head = http::event_stream_head();
                self.begin_stream(token, keep_alive, head, &body, Await::Events);
                // With the other answers, after the state file.
                self.flush_later(token);
            }
            Answer::Sent => {}
        }
    }

    /// A streamed answer's head and first bytes; the connection then waits
    /// as `wait` until the stream ends.
    fn begin_stream(
        &mut self,
        token: Token,
        keep_alive: bool,
        head: Vec<u8>,
        body: &[u8],
        wait: Await,
    ) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.wbuf.extend_from_slice(&head);
        conn.wbuf.extend_from_slice(&http::chunk(body));
        conn.state = ConnState::Streaming;
        conn.deadline = None;
        self.pending.add(Pending {
            conn: token,
            keep_alive,
            wait,
        });
    }

    /// Queues an answer on the connection and moves it back to reading.
    pub(crate) fn respond(&mut self, io: &mut Io, token: Token, resp: Response) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let keep_alive = resp.keep_alive;
        if resp.durable || !conn.queued.is_empty() {
            // Sent once the state file is written (`flush_deferred`); the
            // connection takes no other request meanwhile.
            conn.queued.push(resp);
            conn.state = ConnState::Holding;
            conn.deadline = None;
            if !self.flush_pending.contains(&token) {
                self.flush_pending.push(token);
            }
            return;
        }
        conn.wbuf.extend_from_slice(&resp.to_bytes());
        let deadline = if keep_alive {
            conn.state = ConnState::Idle;
            now + conn::IDLE_TIMEOUT
        } else {
            conn.state = ConnState::Closing;
            now + conn::REQUEST_TIMEOUT
        };
        conn.deadline = Some(deadline);
        self.arm_sweep(io, deadline);
    }

    /// Removes and returns the waits `pick` selects, oldest first. Each
    /// must be given to `answer` (or `wait_again`).
    pub(crate) fn take_waits(&mut self, pick: impl Fn(&Await) -> bool) -> Vec<Pending> {
        self.pending.take(pick)
    }

    /// Puts back a wait taken but not answered.
    pub(crate) fn wait_again(&mut self, p: Pending) {
        self.pending.add(p);
    }

    /// Answers a waiting request. It is written after the state file, and
    /// requests pipelined behind it are taken up at the end of the loop
    /// iteration (`take_resumable`), never from inside the caller.
    pub(crate) fn answer(&mut self, io: &mut Io, p: Pending, mut resp: Response) {
        resp.keep_alive = resp.keep_alive && p.keep_alive;
        // A start, stop, delete or restore reports a change.
        resp.durable |= matches!(p.wait, Await::Goal { .. } | Await::Restore);
        self.respond(io, p.conn, resp);
        if !self.resume.contains(&p.conn) {
            self.resume.push(p.conn);
        }
        self.flush_later(p.conn);
    }

    /// Connections answered late, whose pipelined requests wait.
    pub(crate) fn take_resumable(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.resume)
    }

    /// Waits whose clients went away since the last call.
    pub(crate) fn take_abandoned(&mut self) -> Vec<Pending> {
        std::mem::take(&mut self.abandoned)
    }

    /// More of a log stream; a follower that does not read is cut off
    /// rather than buffered without bound.
    pub(crate) fn stream(&mut self, io: &mut Io, token: Token, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let bytes = http::chunk(data);
        if conn.wbuf.len() + bytes.len() > MAX_PENDING_OUTPUT {
            self.close(io, token);
            return;
        }
        conn.wbuf.extend_from_slice(&bytes);
        self.flush(io, token);
    }

    /// More of an events stream, written with the answers at the end of the
    /// loop iteration. A client already owed more than the bound is cut off
    /// instead: a reader that does not keep up never holds the init back
    /// or makes it buffer without end.
    pub(crate) fn stream_later(&mut self, io: &mut Io, token: Token, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.wbuf.len() > MAX_PENDING_OUTPUT {
            crate::warn!(
                "an events client fell {} bytes behind: cut off",
                conn.wbuf.len()
            );
            self.close(io, token);
            return;
        }
        conn.wbuf.extend_from_slice(&http::chunk(data));
        self.flush_later(token);
    }

    /// Ends a log stream (its service was deleted) and the connection.
    pub(crate) fn end_stream(&mut self, io: &mut Io, token: Token) {
        self.pending.remove(token);
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.wbuf.extend_from_slice(http::last_chunk());
            conn.state = ConnState::Closing;
        }
        self.flush(io, token);
    }

    /// After a read: true when the client closed its side.
    pub(crate) fn peer_closed(&self, token: Token) -> bool {
        self.conns.get(&token).is_some_and(|c| c.peer_closed)
    }

    /// The client closed its side. A request still waiting (a start, an
    /// exec, a follow) is abandoned: the start goes on, the exec is killed.
    /// Answers already made are written first (a client that half-closes
    /// after sending, like `nc`, still gets them).
    pub(crate) fn on_peer_closed(&mut self, io: &mut Io, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match conn.state {
            ConnState::Awaiting | ConnState::Streaming => self.close(io, token),
            _ => {
                conn.state = ConnState::Closing;
                self.flush_later(token);
            }
        }
    }

    /// Queues a flush for the end of this loop iteration.
    pub(crate) fn flush_later(&mut self, token: Token) {
        if !self.flush_pending.contains(&token) {
            self.flush_pending.push(token);
        }
    }

    /// Writes every answer queued for the end of the iteration, once the
    /// state file was written (`durable`: Err says why it was not). An
    /// answer reporting a change that is not on disk becomes a 503: no
    /// success for a change a crash would lose.
    pub(crate) fn flush_deferred(&mut self, io: &mut Io, durable: Result<(), &str>) {
        let now = Instant::now();
        for token in std::mem::take(&mut self.flush_pending) {
            if let Some(conn) = self.conns.get_mut(&token) {
                let mut keep_alive = true;
                for resp in std::mem::take(&mut conn.queued) {
                    keep_alive = resp.keep_alive;
                    let resp = match durable {
                        Err(why) if resp.durable && (200..300).contains(&resp.status) => {
                            ApiError::NotDurable(format!(
                                "the change was made but is not durable: {why}; \
                                 the init writes the state file again at the next change"
                            ))
                            .to_response(resp.keep_alive)
                        }
                        _ => resp,
                    };
                    conn.wbuf.extend_from_slice(&resp.to_bytes());
                }
                if conn.state == ConnState::Holding {
                    let (state, wait) = if keep_alive {
                        (ConnState::Idle, conn::IDLE_TIMEOUT)
                    } else {
                        (ConnState::Closing, conn::REQUEST_TIMEOUT)
                    };
                    conn.state = state;
                    conn.deadline = Some(now + wait);
                    self.arm_sweep(io, now + wait);
                    // Requests pipelined behind the held answers.
                    if !self.resume.contains(&token) {
                        self.resume.push(token);
                    }
                }
            }
            self.flush(io, token);
        }
    }

    /// Connections with pipelined requests to take up: the loop must not
    /// sleep before it has.
    pub(crate) fn has_resumable(&self) -> bool {
        !self.resume.is_empty()
    }

    /// Writes pending output; closes the connection when done with it.
    pub(crate) fn flush(&mut self, io: &mut Io, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let before = conn.wbuf.len();
        if conn.flush().is_err() || conn.wants_close() {
            self.close(io, token);
            return;
        }
        if conn.wbuf.len() < before && conn.state == ConnState::Idle {
            // A client that takes its answers is not idle.
            conn.deadline = Some(Instant::now() + conn::IDLE_TIMEOUT);
        }
        if conn.held_back && !conn.backed_up() {
            // Drained: its pipelined requests are read and served again at
            // the end of the loop iteration.
            conn.held_back = false;
            if !self.resume.contains(&token) {
                self.resume.push(token);
            }
        }
        let want_write = !conn.wbuf.is_empty();
        if want_write != conn.writable_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if io.reregister(&mut conn.stream, token, interest).is_ok() {
                conn.writable_interest = want_write;
            }
        }
    }

    /// The one way a connection ends: its wait, if any, is abandoned.
    pub(crate) fn close(&mut self, io: &mut Io, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            io.deregister(&mut conn.stream, token);
        }
        if let Some(p) = self.pending.remove(token) {
            self.abandoned.push(p);
        }
    }

    fn arm_sweep(&mut self, io: &mut Io, at: Instant) {
        if self.sweep_at.is_none_or(|s| at < s) {
            self.sweep_at = Some(at);
            io.schedule(at, TimerKey::ConnSweep);
        }
    }

    /// True (and forgotten) when no connection has a deadline any more.
    pub(crate) fn sweep_is_stale(&mut self) -> bool {
        let stale = self.conns.values().all(|c| c.deadline.is_none());
        if stale {
            self.sweep_at = None;
        }
        stale
    }

    /// Closes idle keep-alive connections and answers 408 to requests that
    /// did not arrive whole in time.
    pub(crate) fn sweep(&mut self, io: &mut Io, now: Instant) {
        self.sweep_at = None;
        let expired: Vec<(Token, ConnState)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(t, c)| (*t, c.state))
            .collect();
        for (token, state) in expired {
            if state == ConnState::Reading {
                let resp = ApiError::TooSlow.to_response(false);
                if let Some(c) = self.conns.get_mut(&token) {
                    c.rbuf.clear();
                    c.wbuf.extend_from_slice(&resp.to_bytes());
                    c.state = ConnState::Closing;
                    c.deadline = Some(now + Duration::from_secs(5));
                }
                self.flush(io, token);
            } else {
                self.close(io, token);
            }
        }
        if let Some(next) = self.conns.values().filter_map(|c| c.deadline).min() {
            self.arm_sweep(io, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pending::GoalKind;
    use std::io::{Read, Write};

    /// A server with one connection whose other end the test holds.
    fn server_with_client() -> (Io, ApiServer, Token, std::os::unix::net::UnixStream) {
        let mut io = Io::new().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "iris-server-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut api = ApiServer::bind(&dir.join("s.sock"), &mut io).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        api.add_conn(&mut io, UnixStream::from_std(ours));
        let token = *api.conns.keys().next().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (io, api, token, theirs)
    }

    fn request(api: &mut ApiServer, io: &mut Io, token: Token, client: &mut impl Write, raw: &str) {
        client.write_all(raw.as_bytes()).unwrap();
        api.read(token);
        let _ = io;
    }

    #[test]
    fn each_kind_of_wait_is_abandoned_once_when_the_client_goes_away() {
        let waits = [
            Await::Goal {
                name: "web".into(),
                kind: GoalKind::Start,
            },
            Await::Restore,
            Await::Exec(7),
            Await::Follow("web".into()),
            Await::Events,
        ];
        for wait in waits {
            let (mut io, mut api, token, mut client) = server_with_client();
            request(
                &mut api,
                &mut io,
                token,
                &mut client,
                "GET /x HTTP/1.1\r\n\r\n",
            );
            let req = api.next_request(&mut io, token).unwrap();
            let answer = match &wait {
                Await::Follow(name) => Answer::Follow {
                    name: name.clone(),
                    body: b"old line\n".to_vec(),
                },
                Await::Events => Answer::Events {
                    body: b"id: 0\nevent: snapshot\ndata: {}\n\n".to_vec(),
                },
                w => Answer::Wait(w.clone()),
            };
            api.reply(&mut io, token, req.keep_alive, answer);
            drop(client);
            api.read(token);
            assert!(api.peer_closed(token));
            api.on_peer_closed(&mut io, token);
            let gone = api.take_abandoned();
            assert_eq!(gone.len(), 1, "{wait:?}");
            assert_eq!(gone[0].wait, wait);
            assert_eq!(api.connections(), 0);
            assert!(api.take_abandoned().is_empty(), "cleaned up once");
            assert!(api.take_waits(|_| true).is_empty(), "no wait left behind");
        }
    }

    #[test]
    fn a_late_answer_resumes_pipelined_requests_at_the_end_of_the_iteration() {
        let (mut io, mut api, token, mut client) = server_with_client();
        let two = "POST /v1/services/a/start HTTP/1.1\r\n\r\nGET /v1/system HTTP/1.1\r\n\r\n";
        request(&mut api, &mut io, token, &mut client, two);
        let first = api.next_request(&mut io, token).unwrap();
        assert_eq!(first.path, "/v1/services/a/start");
        let wait = Await::Goal {
            name: "a".into(),
            kind: GoalKind::Start,
        };
        api.reply(&mut io, token, true, Answer::Wait(wait.clone()));
        assert!(
            api.next_request(&mut io, token).is_none(),
            "nothing is parsed while a request waits"
        );
        let mut mine = api.take_waits(|w| *w == wait);
        let p = mine.pop().unwrap();
        api.answer(&mut io, p, Response::json(200, b"{}".to_vec()));
        assert_eq!(api.take_resumable(), [token]);
        // A start's answer reports a change: held until the state file is
        // written, and the GET behind it waits with it.
        assert!(api.next_request(&mut io, token).is_none());
        api.flush_deferred(&mut io, Ok(()));
        assert_eq!(api.take_resumable(), [token]);
        let second = api.next_request(&mut io, token).unwrap();
        assert_eq!(second.path, "/v1/system");
        let mut got = vec![0u8; 4096];
        let n = client.read(&mut got).unwrap();
        assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn an_events_stream_has_an_sse_head_and_a_client_that_never_reads_is_cut_off() {
        let (mut io, mut api, token, mut client) = server_with_client();
        request(
            &mut api,
            &mut io,
            token,
            &mut client,
            "GET /v1/events HTTP/1.1\r\n\r\n",
        );
        let req = api.next_request(&mut io, token).unwrap();
        let first = b"id: 3\nevent: snapshot\ndata: {}\n\n".to_vec();
        api.reply(
            &mut io,
            token,
            req.keep_alive,
            Answer::Events { body: first },
        );
        api.flush_deferred(&mut io, Ok(()));
        let mut got = vec![0u8; 4096];
        let n = client.read(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got[..n]).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for h in [
            "Content-Type: text/event-stream",
            "Cache-Control: no-cache",
            "Transfer-Encoding: chunked",
        ] {
            assert!(head.contains(h), "{h}: {head}");
        }
        assert!(!head.contains("Content-Length"), "{head}");
        assert_eq!(body, "20\r\nid: 3\nevent: snapshot\ndata: {}\n\n\r\n");
        // Now it stops reading: once it is owed more than the bound, it goes.
        let frame = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while api.connections() == 1 {
            api.stream_later(&mut io, token, &frame);
            api.flush_deferred(&mut io, Ok(()));
            sent += 1;
            assert!(sent < 2 * MAX_PENDING_OUTPUT / frame.len(), "never cut off");
        }
        let gone = api.take_abandoned();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].wait, Await::Events);
    }

    #[test]
    fn a_follower_that_does_not_read_is_cut_off() {
        let (mut io, mut api, token, mut client) = server_with_client();
        request(
            &mut api,
            &mut io,
            token,
            &mut client,
            "GET /x HTTP/1.1\r\n\r\n",
        );
        let req = api.next_request(&mut io, token).unwrap();
        let follow = Answer::Follow {
            name: "web".into(),
            body: Vec::new(),
        };
        api.reply(&mut io, token, req.keep_alive, follow);
        let line = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_PENDING_OUTPUT / line.len() + 64) {
            api.stream(&mut io, token, &line);
        }
        assert_eq!(api.connections(), 0);
        let gone = api.take_abandoned();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].wait, Await::Follow("web".into()));
    }
}

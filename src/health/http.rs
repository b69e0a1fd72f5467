//! One attempt of an HTTP check: a non-blocking connect to loopback
//! (127.0.0.1, then ::1 when refused), a `GET`, and the status line read,
//! all driven by readiness events so the loop never waits on a server.

use mio::net::TcpStream;
use mio::Interest;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The status line must come within this many bytes.
const MAX_HEAD: usize = 4096;

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The server answered with this status.
    Status(u16),
    /// Connected (a connect-only probe, [`HttpProbe::connect`]).
    Connected,
    /// No answer: refused, reset, closed early, or not HTTP. In words.
    Failed(String),
}

impl Answer {
    /// The result in words, for the service object and errors.
    pub fn describe(&self) -> String {
        match self {
            Answer::Status(s) => format!("answered {s}"),
            Answer::Connected => "accepted a connection".into(),
            Answer::Failed(why) => why.clone(),
        }
    }
}

/// What the owner does after an event.
#[derive(Debug)]
pub enum Step {
    /// Wait for the next readiness event of this token.
    Wait,
    /// 127.0.0.1 refused: the probe now connects to ::1 on a new stream.
    /// Deregister this old one and register [`HttpProbe::stream`].
    Reconnect(TcpStream),
    Done(Answer),
}

enum Connect {
    Pending,
    Done,
    /// Now connecting to ::1; the old stream.
    Switched(TcpStream),
}

enum State {
    Connecting,
    Sending { written: usize },
    Reading,
}

/// What a probe's stream is registered for.
pub const INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// One GET in flight. Register [`HttpProbe::stream`] for [`INTEREST`], then
/// call [`HttpProbe::on_event`] on each of its events until it is `Done`
/// (deregister the stream then).
pub struct HttpProbe {
    stream: TcpStream,
    ipv6: bool,
    port: u16,
    request: Vec<u8>,
    state: State,
    buf: Vec<u8>,
}

impl HttpProbe {
    /// Starts connecting to 127.0.0.1:`port` (or ::1 when the kernel
    /// refuses at once). An error here is the attempt's answer.
    pub fn start(port: u16, path: &str) -> Result<HttpProbe, Answer> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: iris-init\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        Self::with_request(port, request)
    }

    /// A probe that only connects (a `tcp` liveness check): its answer is
    /// `Connected` or why not.
    pub fn connect(port: u16) -> Result<HttpProbe, Answer> {
        Self::with_request(port, Vec::new())
    }

    fn with_request(port: u16, request: Vec<u8>) -> Result<HttpProbe, Answer> {
        let (stream, ipv6) = match connect(port, false) {
            Ok(s) => (s, false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                (connect(port, true).map_err(|_| failed(&e))?, true)
            }
            Err(e) => return Err(failed(&e)),
        };
        Ok(HttpProbe {
            stream,
            ipv6,
            port,
            request,
            state: State::Connecting,
            buf: Vec::new(),
        })
    }

    /// The socket to register (it changes once, see [`Step::Reconnect`]).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Goes as far as the socket allows (events are edge-triggered).
    pub fn on_event(&mut self) -> Step {
        loop {
            let next = match self.state {
                State::Connecting => match self.connecting() {
                    Ok(Connect::Pending) => Ok(None),
                    Ok(Connect::Done) if self.request.is_empty() => Err(Answer::Connected),
                    Ok(Connect::Done) => Ok(Some(State::Sending { written: 0 })),
                    Ok(Connect::Switched(old)) => return Step::Reconnect(old),
                    Err(a) => Err(a),
                },
                State::Sending { written } => self.sending(written),
                State::Reading => self.reading(),
            };
            match next {
                Ok(Some(state)) => self.state = state,
                Ok(None) => return Step::Wait,
                Err(answer) => return Step::Done(answer),
            }
        }
    }

    fn connecting(&mut self) -> Result<Connect, Answer> {
        let err = match self.stream.take_error() {
            Ok(None) => match self.stream.peer_addr() {
                Ok(_) => return Ok(Connect::Done),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(Connect::Pending),
                Err(e) => e,
            },
            Ok(Some(e)) | Err(e) => e,
        };
        if err.kind() == io::ErrorKind::ConnectionRefused && !self.ipv6 {
            // Maybe it listens on ::1 only.
            if let Ok(s) = connect(self.port, true) {
                self.ipv6 = true;
                return Ok(Connect::Switched(std::mem::replace(&mut self.stream, s)));
            }
        }
        Err(failed(&err))
    }

    fn sending(&mut self, mut written: usize) -> Result<Option<State>, Answer> {
        while let Some(rest) = self.request.get(written..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => return Err(Answer::Failed("connection closed before an answer".into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.state = State::Sending { written };
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(failed(&e)),
            }
        }
        Ok(Some(State::Reading))
    }

    fn reading(&mut self) -> Result<Option<State>, Answer> {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(answer) = status_of(&self.buf) {
                return Err(answer);
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(Answer::Failed(format!(
                    "no HTTP status line in the first {MAX_HEAD} bytes"
                )));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(Answer::Failed(if self.buf.is_empty() {
                        "connection closed before an answer".into()
                    } else {
                        "not an HTTP answer".into()
                    }))
                }
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(failed(&e)),
            }
        }
    }
}

fn connect(port: u16, ipv6: bool) -> io::Result<TcpStream> {
    let addr = if ipv6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    };
    TcpStream::connect(addr)
}

fn failed(e: &io::Error) -> Answer {
    Answer::Failed(match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    })
}

/// The answer once `buf` holds a whole status line: `HTTP/1.1 200 OK`.
fn status_of(buf: &[u8]) -> Option<Answer> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(buf.get(..end).unwrap_or_default());
    let mut words = line.trim_end_matches('\r').split(' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=999).contains(c) && code.len() == 3);
    Some(match (version.starts_with("HTTP/"), status) {
        (true, Some(s)) => Answer::Status(s),
        _ => Answer::Failed("not an HTTP answer".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A server on 127.0.0.1 that reads one request and answers `reply`
    /// in pieces; returns its port and the request it read.
    fn serve(reply: &'static [&'static [u8]]) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                let n = c.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            for piece in reply {
                c.write_all(piece).unwrap();
                c.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            String::from_utf8(req).unwrap()
        });
        (port, h)
    }

    /// Drives one probe to its answer with a real poll.
    fn drive(started: Result<HttpProbe, Answer>) -> Answer {
        let mut probe = match started {
            Ok(p) => p,
            Err(a) => return a,
        };
        let mut poll = Poll::new().unwrap();
        let mut token = Token(7);
        poll.registry()
            .register(probe.stream(), token, INTEREST)
            .unwrap();
        let mut events = Events::with_capacity(8);
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no event within 10 s");
            if !events.iter().any(|e| e.token() == token) {
                continue; // a late event of the stream replaced
            }
            match probe.on_event() {
                Step::Wait => {}
                Step::Reconnect(mut old) => {
                    poll.registry().deregister(&mut old).unwrap();
                    token = Token(token.0 + 1);
                    poll.registry()
                        .register(probe.stream(), token, INTEREST)
                        .unwrap();
                }
                Step::Done(a) => return a,
            }
        }
    }

    fn run(port: u16, path: &str) -> Answer {
        drive(HttpProbe::start(port, path))
    }

    #[test]
    fn status_of_a_real_server() {
        let (port, h) = serve(&[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
        assert_eq!(run(port, "/healthz?x=1"), Answer::Status(200));
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /healthz?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
    }

    #[test]
    fn status_line_split_across_writes() {
        let (port, _h) = serve(&[b"HTT", b"P/1.0 50", b"3 Service Unavailable\r", b"\n\r\n"]);
        let a = run(port, "/");
        assert_eq!(a, Answer::Status(503));
        assert_eq!(a.describe(), "answered 503");
    }

    #[test]
    fn closed_without_answer_and_garbage_fail() {
        let (port, _h) = serve(&[]);
        assert_eq!(
            run(port, "/"),
            Answer::Failed("connection closed before an answer".into())
        );
        let (port, _h) = serve(&[b"SSH-2.0-OpenSSH\r\n"]);
        assert_eq!(run(port, "/"), Answer::Failed("not an HTTP answer".into()));
    }

    #[test]
    fn connect_only_probe() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(drive(HttpProbe::connect(port)), Answer::Connected);
        drop(l);
        assert_eq!(
            drive(HttpProbe::connect(port)),
            Answer::Failed("connection refused".into())
        );
    }

    #[test]
    fn refused_port_fails() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(run(port, "/"), Answer::Failed("connection refused".into()));
    }

    #[test]
    fn a_server_on_ipv6_loopback_only_is_reached() {
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            // No IPv6 loopback in this namespace: nothing to reach.
            assert!(std::fs::read_to_string("/proc/net/if_inet6")
                .map(|s| !s.contains("00000000000000000000000000000001"))
                .unwrap_or(true));
            return;
        };
        let port = l.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return; // the port is taken on 127.0.0.1: a refusal is not sure
        }
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 512];
            let _ = c.read(&mut b).unwrap();
            c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        assert_eq!(run(port, "/"), Answer::Status(204));
        h.join().unwrap();
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(Answer::Status(200)));
        assert_eq!(status_of(b"HTTP/1.1 404\r\n"), Some(Answer::Status(404)));
        assert_eq!(
            status_of(b"HTTP/1.1 2000 OK\r\n").map(|a| a.describe()),
            Some("not an HTTP answer".into())
        );
        assert_eq!(status_of(b"HTTP/1.1 20"), None, "wait for the line's end");
        assert!(matches!(status_of(b"hello\n"), Some(Answer::Failed(_))));
    }
}

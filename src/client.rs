//! A small blocking HTTP/1.1 client for the init's unix socket, shared by
//! `irisctl`, the integration tests and the bench: one request type, one
//! response head, `Content-Length`, chunked and close-delimited bodies, a
//! piecewise body read for streams (log follow, events), and a parser for
//! Server-Sent Events.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A response head larger than this is not from iris-init.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted in a chunked body.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Requests are tiny; a server that does not take them within this is stuck.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP request, before encoding. A body is sent as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: &str, path: impl Into<String>) -> Request {
        Request {
            method: method.to_string(),
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a JSON body.
    pub fn body(mut self, json: impl Into<Vec<u8>>) -> Request {
        self.body = Some(json.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The bytes on the wire; `Content-Length` always, 0 without a body.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.body.as_deref().unwrap_or_default();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// Everything that can go wrong in one exchange.
#[derive(Debug)]
pub enum Error {
    Connect(io::Error),
    Send(io::Error),
    Receive(io::Error),
    /// No bytes within the read timeout.
    Timeout(Duration),
    /// The server closed the connection before the answer was complete.
    Closed,
    BadResponse(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "cannot connect: {e}"),
            Error::Send(e) => write!(f, "cannot send the request: {e}"),
            Error::Receive(e) => write!(f, "cannot read the answer: {e}"),
            Error::Timeout(d) => write!(f, "no answer within {} seconds", d.as_secs()),
            Error::Closed => f.write_str("connection closed before the answer was complete"),
            Error::BadResponse(why) => write!(f, "bad answer: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// A response's status line and framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub framing: Framing,
}

impl Head {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

/// Parses a response head; `Ok(None)` when more bytes are needed, else the
/// head and its length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Err(Error::BadResponse(format!("malformed head: {e}"))),
    };
    let status = resp
        .code
        .ok_or_else(|| Error::BadResponse("no status code".into()))?;
    let mut chunked = false;
    let mut length = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            chunked |= v.split(',').any(|t| t.trim() == "chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::BadResponse("invalid Content-Length".into()))?;
            length = Some(v);
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        _ if status == 204 || status == 304 || (100..200).contains(&status) => Framing::Length(0),
        _ => Framing::UntilClose,
    };
    let reason = resp.reason.unwrap_or("").to_string();
    Ok(Some((
        len,
        Head {
            status,
            reason,
            framing,
        },
    )))
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    BadSize(String),
    LineTooLong,
    MissingCrlf,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::BadSize(s) => write!(f, "bad chunk size '{s}'"),
            ChunkError::LineTooLong => f.write_str("chunk header line too long"),
            ChunkError::MissingCrlf => f.write_str("chunk data not followed by CRLF"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked`: bytes can be fed in
/// any split, so a followed log is printed as soon as a chunk arrives.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            line: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `input` into `out`; returns how many bytes it
    /// consumed (less than all only once the final chunk has been seen).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut rest = input;
        while !rest.is_empty() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    if let Some(line) = self.take_line(&mut rest)? {
                        self.state = self.after_line(&line)?;
                    }
                }
                ChunkState::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    let (data, after) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    out.extend_from_slice(data);
                    rest = after;
                    self.state = match left.saturating_sub(take as u64) {
                        0 => ChunkState::DataCr,
                        left => ChunkState::Data(left),
                    };
                }
                ChunkState::DataCr | ChunkState::DataLf => {
                    let Some((&b, after)) = rest.split_first() else {
                        break;
                    };
                    self.state = match (self.state, b) {
                        (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                        // A bare LF is tolerated, as most clients do.
                        (_, b'\n') => ChunkState::Size,
                        _ => return Err(ChunkError::MissingCrlf),
                    };
                    rest = after;
                }
                ChunkState::Done => break,
            }
        }
        Ok(input.len().saturating_sub(rest.len()))
    }

    /// The state after a complete size or trailer line.
    fn after_line(&self, line: &[u8]) -> Result<ChunkState, ChunkError> {
        Ok(match self.state {
            ChunkState::Size => match parse_chunk_size(line)? {
                0 => ChunkState::Trailer,
                n => ChunkState::Data(n),
            },
            _ if line.is_empty() => ChunkState::Done,
            // A trailer field: ignored.
            _ => ChunkState::Trailer,
        })
    }

    /// Accumulates a line; returns it (without CR LF) once its LF arrived.
    fn take_line(&mut self, rest: &mut &[u8]) -> Result<Option<Vec<u8>>, ChunkError> {
        let found = rest.iter().position(|&b| b == b'\n');
        let (part, after) = match found {
            Some(pos) => rest.split_at_checked(pos).unwrap_or((rest, &[])),
            None => (*rest, &[][..]),
        };
        self.line.extend_from_slice(part);
        // Skip the LF itself.
        *rest = after.get(1..).unwrap_or(&[]);
        if self.line.len() > MAX_CHUNK_LINE {
            return Err(ChunkError::LineTooLong);
        }
        if found.is_none() {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let text = String::from_utf8_lossy(line);
    // Chunk extensions (`;name=value`) are allowed and ignored.
    let size = text.split(';').next().unwrap_or("").trim();
    if size.is_empty() {
        return Err(ChunkError::BadSize(text.into_owned()));
    }
    u64::from_str_radix(size, 16).map_err(|_| ChunkError::BadSize(text.into_owned()))
}

/// Where a body read stands; see [`Conn::next_piece`].
#[derive(Debug, Clone)]
pub struct BodyReader {
    state: BodyState,
}

#[derive(Debug, Clone)]
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl BodyReader {
    pub fn new(framing: Framing) -> BodyReader {
        let state = match framing {
            Framing::Length(0) => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyState::UntilClose,
        };
        BodyReader { state }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    /// Takes the body bytes that `buf` holds, leaving what follows the body.
    fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Vec<u8>, Error> {
        match &mut self.state {
            BodyState::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let out: Vec<u8> = buf.drain(..take).collect();
                *left = left.saturating_sub(take as u64);
                if *left == 0 {
                    self.state = BodyState::Done;
                }
                Ok(out)
            }
            BodyState::Chunked(decoder) => {
                let mut out = Vec::new();
                let used = decoder
                    .feed(buf, &mut out)
                    .map_err(|e| Error::BadResponse(e.to_string()))?;
                buf.drain(..used.min(buf.len()));
                if decoder.is_done() {
                    self.state = BodyState::Done;
                }
                Ok(out)
            }
            BodyState::UntilClose => Ok(std::mem::take(buf)),
            BodyState::Done => Ok(Vec::new()),
        }
    }

    /// The stream ended: the normal end of a close-delimited body only.
    fn at_eof(&mut self) -> Result<(), Error> {
        match self.state {
            BodyState::UntilClose | BodyState::Done => {
                self.state = BodyState::Done;
                Ok(())
            }
            _ => Err(Error::Closed),
        }
    }
}

/// One connection: the stream plus bytes read but not yet used, so
/// keep-alive and pipelined answers are read one after the other.
#[derive(Debug)]
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    timeout: Option<Duration>,
}

impl Conn<UnixStream> {
    /// Connects with a read timeout (`None`: wait as long as it takes).
    pub fn connect(socket: &Path, timeout: Option<Duration>) -> Result<Self, Error> {
        let stream = UnixStream::connect(socket).map_err(Error::Connect)?;
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
            .map_err(Error::Connect)?;
        Ok(Conn::new(stream, timeout))
    }
}

impl<S> Conn<S> {
    pub fn new(stream: S, timeout: Option<Duration>) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            timeout,
        }
    }

    pub fn stream(&self) -> &S {
        &self.stream
    }
}

impl<S: Write> Conn<S> {
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).map_err(Error::Send)
    }
}

impl<S: Read + Write> Conn<S> {
    /// Sends `req` and reads the whole answer.
    pub fn request(&mut self, req: &Request) -> Result<Response, Error> {
        self.send(&req.encode())?;
        self.read_response()
    }

    /// Sends `req` and reads the answer's head; the body is left to the
    /// caller, which may stream it with [`Conn::next_piece`].
    pub fn open(&mut self, req: &Request) -> Result<Head, Error> {
        self.send(&req.encode())?;
        self.read_head()
    }
}

impl<S: Read> Conn<S> {
    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> Result<usize, Error> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(tmp.get(..n).unwrap_or(&[]));
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout(self.timeout.unwrap_or_default()))
                }
                Err(e) => return Err(Error::Receive(e)),
            }
        }
    }

    /// Reads the final response head, skipping interim `1xx` answers.
    pub fn read_head(&mut self) -> Result<Head, Error> {
        loop {
            if let Some((len, head)) = parse_head(&self.buf)? {
                self.buf.drain(..len.min(self.buf.len()));
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Error::BadResponse("response head too large".into()));
            }
            if self.fill()? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    /// The body bytes already read (with the head, or after a piece),
    /// without reading: call it once before polling the stream.
    pub fn buffered_piece(&mut self, body: &mut BodyReader) -> Result<Vec<u8>, Error> {
        body.decode(&mut self.buf)
    }

    /// The next piece of a body: the bytes already buffered, else what one
    /// read brings (so a caller that polls the stream never blocks twice).
    /// `Some` may be empty when a read brought only framing; `None` at the
    /// end of the body.
    pub fn next_piece(&mut self, body: &mut BodyReader) -> Result<Option<Vec<u8>>, Error> {
        let out = self.buffered_piece(body)?;
        if !out.is_empty() {
            return Ok(Some(out));
        }
        if body.is_done() {
            return Ok(None);
        }
        if self.fill()? == 0 {
            body.at_eof()?;
            return Ok(None);
        }
        let out = body.decode(&mut self.buf)?;
        Ok(if out.is_empty() && body.is_done() {
            None
        } else {
            Some(out)
        })
    }

    /// Passes the body to `sink` piece by piece as it arrives.
    pub fn read_body<E: From<Error>>(
        &mut self,
        framing: Framing,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut body = BodyReader::new(framing);
        while let Some(piece) = self.next_piece(&mut body)? {
            if !piece.is_empty() {
                sink(&piece)?;
            }
        }
        Ok(())
    }

    pub fn read_body_all(&mut self, framing: Framing) -> Result<Vec<u8>, Error> {
        let mut all = Vec::new();
        self.read_body(framing, &mut |piece| -> Result<(), Error> {
            all.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(all)
    }

    /// Reads one whole response.
    pub fn read_response(&mut self) -> Result<Response, Error> {
        let head = self.read_head()?;
        let body = self.read_body_all(head.framing)?;
        Ok(Response {
            status: head.status,
            reason: head.reason,
            body,
        })
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// This event's `id:` (see [`SseParser::last_id`] for reconnecting).
    pub id: Option<String>,
    /// `event:`, `message` when absent.
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Splits a `text/event-stream` body, fed in any pieces, into events.
/// Comment lines (`:`) and unknown fields are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous line ended with CR: an LF right after it is part of it.
    after_cr: bool,
    last_id: Option<String>,
    id: Option<String>,
    event: String,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last `id:` seen, for `Last-Event-ID` when reconnecting.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    events.extend(self.line_done(&String::from_utf8_lossy(&line)));
                }
                _ => self.line.push(b),
            }
        }
        events
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let event = std::mem::take(&mut self.event);
            let id = self.id.take();
            return data.map(|data| SseEvent {
                id,
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
            });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = value.to_string(),
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_string());
                self.last_id = Some(value.to_string());
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_request_has_a_matching_content_length() {
        let req = Request::new("PUT", "/v1/services/a").body(r#"{"cmd":"é"}"#);
        let text = String::from_utf8(req.encode()).unwrap();
        assert!(text.starts_with("PUT /v1/services/a HTTP/1.1\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Content-Type: application/json"));
        assert_eq!(body, r#"{"cmd":"é"}"#);

        let get = Request::new("GET", "/v1/system").header("Connection", "close");
        let text = String::from_utf8(get.encode()).unwrap();
        assert!(text.contains("Content-Length: 0\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(!text.contains("Content-Type"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    /// A reader that hands out one byte per read, to exercise every split.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.get(self.1), buf.first_mut()) {
                (Some(b), Some(slot)) => {
                    *slot = *b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn read_response(raw: &[u8]) -> Result<(Head, Vec<u8>), Error> {
        let mut conn = Conn::new(Trickle(raw.to_vec(), 0), None);
        let head = conn.read_head()?;
        let body = conn.read_body_all(head.framing)?;
        Ok((head, body))
    }

    #[test]
    fn reads_content_length_chunked_and_close_delimited_bodies() {
        let (head, body) =
            read_response(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n{}\r\nextra").unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(body, b"{}\r\n");

        let (head, body) = read_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(body, b"hello!");

        let (_, body) = read_response(b"HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(body, b"until close");

        let (head, body) = read_response(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!((head.status, body.as_slice()), (404, &b"{}"[..]));
    }

    #[test]
    fn keep_alive_answers_are_read_one_after_the_other() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n\
                     Transfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut conn = Conn::new(&wire[..], None);
        let bodies: Vec<Vec<u8>> = (0..3).map(|_| conn.read_response().unwrap().body).collect();
        assert_eq!(bodies, [b"a".to_vec(), b"b".to_vec(), Vec::new()]);
        assert!(matches!(conn.read_response(), Err(Error::Closed)));
    }

    #[test]
    fn truncated_or_garbled_answers_are_errors() {
        assert!(matches!(
            read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Err(Error::Closed)
        ));
        assert!(matches!(
            read_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
            Err(Error::Closed)
        ));
        assert!(matches!(read_response(b"HTTP/1.1 20"), Err(Error::Closed)));
        assert!(matches!(
            read_response(b"SMTP ready\r\n\r\n"),
            Err(Error::BadResponse(_))
        ));
        assert!(matches!(
            read_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(Error::BadResponse(_))
        ));
    }

    #[test]
    fn chunked_decoder_gives_the_same_bytes_for_every_split() {
        let wire = b"4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::new();
            let used_a = dec.feed(a, &mut out).unwrap();
            let used_b = dec.feed(b, &mut out).unwrap();
            assert!(dec.is_done(), "split {split}");
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "split {split}");
            // Everything up to the end of the last chunk is consumed, the
            // bytes after it are left unread.
            let used = if used_a < a.len() {
                used_a
            } else {
                used_a + used_b
            };
            assert_eq!(used, wire.len() - b"NEXT".len(), "split {split}");
        }
    }

    #[test]
    fn chunked_decoder_rejects_garbage() {
        let mut out = Vec::new();
        assert!(matches!(
            ChunkedDecoder::new().feed(b"zz\r\n", &mut out),
            Err(ChunkError::BadSize(_))
        ));
        assert!(matches!(
            ChunkedDecoder::new().feed(b"\r\n", &mut out),
            Err(ChunkError::BadSize(_))
        ));
        assert_eq!(
            ChunkedDecoder::new().feed(b"2\r\nabX", &mut out),
            Err(ChunkError::MissingCrlf)
        );
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert_eq!(
            ChunkedDecoder::new().feed(&long, &mut out),
            Err(ChunkError::LineTooLong)
        );
    }

    #[test]
    fn pieces_of_a_stream_come_as_they_arrive() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n";
        let mut conn = Conn::new(Trickle(wire.to_vec(), 0), None);
        let head = conn.read_head().unwrap();
        let mut body = BodyReader::new(head.framing);
        let mut pieces = Vec::new();
        // One byte per read: each call reads at most once.
        while let Some(p) = conn.next_piece(&mut body).unwrap() {
            if !p.is_empty() {
                pieces.push(String::from_utf8(p).unwrap());
            }
        }
        assert_eq!(pieces.concat(), "onetwo");
        assert!(pieces.len() >= 6, "{pieces:?}");
        assert!(body.is_done());
    }

    #[test]
    fn sse_events_in_any_split() {
        let wire = "id: 1\nevent: snapshot\ndata: {\"services\":[]}\n\n: keep-alive\n\n\
                    id: 2\r\nevent: service\r\ndata: {\"a\":1}\r\ndata: x\r\n\r\ndata:plain\r\r";
        for split in 0..wire.len() {
            let (a, b) = wire.as_bytes().split_at(split);
            let mut p = SseParser::new();
            let mut got = p.feed(a);
            got.extend(p.feed(b));
            let expect = [
                (Some("1"), "snapshot", "{\"services\":[]}"),
                (Some("2"), "service", "{\"a\":1}\nx"),
                (None, "message", "plain"),
            ];
            assert_eq!(got.len(), expect.len(), "split {split}: {got:?}");
            assert_eq!(p.last_id(), Some("2"));
            for (e, (id, event, data)) in got.iter().zip(expect) {
                assert_eq!(e.id.as_deref(), id, "split {split}");
                assert_eq!((e.event.as_str(), e.data.as_str()), (event, data));
            }
        }
    }
}

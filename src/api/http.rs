//! HTTP/1.1 framing for the control API: turning received bytes into complete
//! requests and responses into bytes. It owns the protocol limits (head size,
//! header count, body size) and the keep-alive rules, and does no I/O: the
//! connection code feeds it the bytes it has read and writes what it returns.
//!
//! Requests carry their body with `Content-Length` only; `Transfer-Encoding`
//! on a request is refused, which keeps framing unambiguous (no smuggling
//! between a chunked and a length-delimited reading of the same bytes).

use std::fmt;

/// Largest accepted request body (the contract's 413 limit).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest accepted request line plus headers, including the blank line.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 64;

/// Bytes to send when a client asked for `Expect: 100-continue`; see
/// [`expects_continue`].
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path only, without the query string, not percent-decoded.
    pub path: String,
    /// Query pairs, percent-decoded (`+` is a space), in order of appearance.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// `Last-Event-ID`: where an events client resumes (EventSource sends
    /// it on reconnecting).
    pub last_event_id: Option<String>,
}

impl Request {
    /// The value of the first query pair named `key`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why bytes cannot become a request. Each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// 400: not HTTP, or an invalid header value.
    Malformed(String),
    /// 413: `Content-Length` above [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// 431: no complete head within [`MAX_HEAD_BYTES`], or more than
    /// [`MAX_HEADERS`] headers.
    HeadTooLarge,
    /// 411: the request uses `Transfer-Encoding` instead of `Content-Length`.
    LengthRequired,
    /// 505: an HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
}

impl ParseError {
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Malformed(_) => 400,
            ParseError::BodyTooLarge => 413,
            ParseError::HeadTooLarge => 431,
            ParseError::LengthRequired => 411,
            ParseError::VersionNotSupported => 505,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed HTTP request: {why}"),
            ParseError::BodyTooLarge => write!(
                f,
                "request body is larger than the limit of {MAX_BODY_BYTES} bytes (1 MiB)"
            ),
            ParseError::HeadTooLarge => write!(
                f,
                "request line and headers exceed the limit of {MAX_HEAD_BYTES} bytes \
                 or {MAX_HEADERS} headers"
            ),
            ParseError::LengthRequired => write!(
                f,
                "Transfer-Encoding is not accepted on requests; send the body with Content-Length"
            ),
            ParseError::VersionNotSupported => {
                write!(f, "only HTTP/1.0 and HTTP/1.1 are supported")
            }
        }
    }
}

impl std::error::Error for ParseError {}

fn malformed(why: impl Into<String>) -> ParseError {
    ParseError::Malformed(why.into())
}

/// What the head says, before the body is there.
struct Head {
    method: String,
    target: String,
    head_len: usize,
    content_length: usize,
    keep_alive: bool,
    expect_continue: bool,
    last_event_id: Option<String>,
}

/// Parses one request from the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((req, consumed)))`: one
/// complete request; the caller drains `consumed` bytes and calls again for a
/// pipelined next one. Limits are applied as soon as the bytes allow (the
/// head alone decides them), so a too-large body is refused before it
/// arrives.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ParseError> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    let consumed = head
        .head_len
        .checked_add(head.content_length)
        .ok_or(ParseError::BodyTooLarge)?;
    let Some(body) = buf.get(head.head_len..consumed) else {
        return Ok(None);
    };
    let (path, query) = split_target(&head.target)?;
    let request = Request {
        method: head.method,
        path,
        query,
        body: body.to_vec(),
        keep_alive: head.keep_alive,
        last_event_id: head.last_event_id,
    };
    Ok(Some((request, consumed)))
}

/// True when the head in `buf` is complete, asks for `Expect: 100-continue`
/// and its body has not fully arrived: the caller should then write
/// [`CONTINUE`] once so the client sends the body without its own delay.
pub fn expects_continue(buf: &[u8]) -> bool {
    match parse_head(buf) {
        Ok(Some(head)) => {
            head.expect_continue
                && head.content_length > 0
                && buf.len().saturating_sub(head.head_len) < head.content_length
        }
        _ => false,
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    // Only the first MAX_HEAD_BYTES are ever looked at, so the verdict on a
    // head does not depend on how many body bytes came with it.
    let window = buf.get(..MAX_HEAD_BYTES).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(ParseError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
        Err(httparse::Error::Version) => {
            return match classify_version(window) {
                VersionToken::Incomplete if buf.len() < MAX_HEAD_BYTES => Ok(None),
                VersionToken::Incomplete => Err(ParseError::HeadTooLarge),
                VersionToken::OtherHttp => Err(ParseError::VersionNotSupported),
                VersionToken::Garbage => Err(malformed(
                    "the request line does not end with HTTP/1.0 or HTTP/1.1",
                )),
            };
        }
        Err(e) => return Err(malformed(describe_httparse_error(e))),
    };
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let http10 = req.version == Some(0);
    let facts = read_headers(req.headers)?;
    let content_length = facts.content_length.unwrap_or(0);
    if content_length > MAX_BODY_BYTES as u64 {
        return Err(ParseError::BodyTooLarge);
    }
    let content_length = usize::try_from(content_length).map_err(|_| ParseError::BodyTooLarge)?;
    let keep_alive = if http10 {
        facts.keep_alive && !facts.close
    } else {
        !facts.close
    };
    Ok(Some(Head {
        method,
        target,
        head_len,
        content_length,
        keep_alive,
        expect_continue: facts.expect_continue,
        last_event_id: facts.last_event_id,
    }))
}

/// What the headers say about framing and the connection.
#[derive(Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    expect_continue: bool,
    last_event_id: Option<String>,
}

fn read_headers(headers: &[httparse::Header<'_>]) -> Result<HeaderFacts, ParseError> {
    let mut facts = HeaderFacts::default();
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError::LengthRequired);
        } else if name.eq_ignore_ascii_case("content-length") {
            // A list of identical values ("5, 5") is allowed (RFC 9110 8.6);
            // differing values would make the framing ambiguous.
            for item in h.value.split(|&b| b == b',') {
                let n = parse_content_length(item.trim_ascii())?;
                match facts.content_length {
                    Some(prev) if prev != n => {
                        return Err(malformed("conflicting Content-Length values"))
                    }
                    _ => facts.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    facts.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    facts.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("last-event-id") {
            facts.last_event_id = Some(String::from_utf8_lossy(h.value).trim().to_string());
        } else if name.eq_ignore_ascii_case("expect") {
            facts.expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    Ok(facts)
}

fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    // `u64::from_str` would accept a leading '+'; the grammar is digits only.
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(malformed(format!(
            "Content-Length {:?} is not a non-negative decimal number",
            String::from_utf8_lossy(value)
        )));
    }
    // Digits only, so the only failure left is overflow: a huge length.
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(ParseError::BodyTooLarge)
}

fn describe_httparse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

enum VersionToken {
    /// The request line is not finished; more bytes decide.
    Incomplete,
    /// `HTTP/<digit>.<digit>`, but not one httparse accepts.
    OtherHttp,
    Garbage,
}

/// Tells an unsupported HTTP version (505) from a garbage line (400) after
/// httparse refused the version. httparse refuses at the first wrong byte, so
/// an unfinished line is only judged once its end is there; that keeps the
/// verdict the same however the bytes are split.
fn classify_version(buf: &[u8]) -> VersionToken {
    // httparse skips empty lines before the request line.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(start..).unwrap_or_default();
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (rest.get(..end).unwrap_or_default(), true),
        None => (rest, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(token) = line.splitn(3, |&b| b == b' ').nth(2) else {
        return VersionToken::Garbage;
    };
    let pattern_ok = |i: usize, b: u8| match i {
        0..=4 => b == *b"HTTP/".get(i).unwrap_or(&0),
        5 | 7 => b.is_ascii_digit(),
        6 => b == b'.',
        _ => false,
    };
    let prefix_ok = token.iter().enumerate().all(|(i, &b)| pattern_ok(i, b));
    if !prefix_ok {
        VersionToken::Garbage
    } else if !complete {
        VersionToken::Incomplete
    } else if token.len() == 8 {
        VersionToken::OtherHttp
    } else {
        VersionToken::Garbage
    }
}

/// Splits a request target into the raw path and the decoded query pairs.
fn split_target(target: &str) -> Result<(String, Vec<(String, String)>), ParseError> {
    if !target.starts_with('/') {
        return Err(malformed(format!(
            "request target {target:?} is not a path starting with '/'"
        )));
    }
    let (path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok((path.to_string(), query))
}

/// Decodes `%XX` escapes and `+` (form encoding's space) into UTF-8 text.
fn percent_decode(s: &str) -> Result<String, ParseError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|&c| (c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(malformed(format!("invalid percent-escape in query {s:?}")));
                };
                // Two hex digits fit a byte.
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| malformed(format!("query {s:?} is not UTF-8 once decoded")))
}

/// One complete (non-streaming) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub keep_alive: bool,
    /// Written after the standard headers; CR and LF in values become spaces.
    pub extra_headers: Vec<(&'static str, String)>,
    /// Reports a change: sent as a success only once the state file holds
    /// it (the server turns it into a 503 when the write failed).
    pub durable: bool,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self::with_type(status, "application/json", body)
    }

    pub fn text(status: u16, body: Vec<u8>) -> Self {
        Self::with_type(status, "text/plain", body)
    }

    pub fn with_type(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            body,
            keep_alive: true,
            extra_headers: Vec::new(),
            durable: false,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        push_status_line(&mut out, self.status);
        push_header(&mut out, "Content-Type", self.content_type);
        // 1xx, 204 and 304 answers have no body by definition (RFC 9110).
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodiless {
            push_header(&mut out, "Content-Length", &self.body.len().to_string());
        }
        push_header(
            &mut out,
            "Connection",
            if self.keep_alive {
                "keep-alive"
            } else {
                "close"
            },
        );
        for (name, value) in &self.extra_headers {
            push_header(&mut out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        if !bodiless {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    // A CR or LF in a value would let it start a header of its own.
    out.extend(
        value
            .bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The head of a streamed (chunked) response; follow it with [`chunk`]s and
/// end it with [`last_chunk`]. Chunked answers need an HTTP/1.1 client.
pub fn chunked_head(status: u16, content_type: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push_status_line(&mut out, status);
    push_header(&mut out, "Content-Type", content_type);
    push_header(&mut out, "Transfer-Encoding", "chunked");
    out.extend_from_slice(b"\r\n");
    out
}

/// The head of a Server-Sent Events stream: chunked (no length: it ends
/// when the client or the init goes away), never cached or buffered.
pub fn event_stream_head() -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    push_status_line(&mut out, 200);
    push_header(&mut out, "Content-Type", "text/event-stream");
    push_header(&mut out, "Cache-Control", "no-cache");
    push_header(&mut out, "X-Accel-Buffering", "no");
    push_header(&mut out, "Transfer-Encoding", "chunked");
    out.extend_from_slice(b"\r\n");
    out
}

/// One chunk holding `data`. Empty `data` gives no bytes at all, because an
/// empty chunk would be the terminator and end the stream.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The terminating chunk of a streamed response.
pub fn last_chunk() -> &'static [u8] {
    b"0\r\n\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `parse_request` would give for this head, without waiting
    /// for the body; `Ok(())` means "no error yet", not "complete".
    fn check_early(buf: &[u8]) -> Result<(), ParseError> {
        parse_head(buf).map(|_| ())
    }

    fn req(method: &str, path: &str, query: &[(&str, &str)], body: &[u8], ka: bool) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            keep_alive: ka,
            last_event_id: None,
        }
    }

    fn valid_cases() -> Vec<(Vec<u8>, Request)> {
        vec![
            (
                b"GET /v1/services HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                req("GET", "/v1/services", &[], b"", true),
            ),
            (
                b"PUT /v1/services/redis HTTP/1.1\r\nContent-Type: application/json\r\n\
                  Content-Length: 15\r\n\r\n{\"cmd\":\"redis\"}"
                    .to_vec(),
                req(
                    "PUT",
                    "/v1/services/redis",
                    &[],
                    b"{\"cmd\":\"redis\"}",
                    true,
                ),
            ),
            (
                b"GET /v1/services/a%20b/logs?tail=10&follow=true HTTP/1.0\r\n\
                  Connection: keep-alive\r\n\r\n"
                    .to_vec(),
                req(
                    "GET",
                    "/v1/services/a%20b/logs",
                    &[("tail", "10"), ("follow", "true")],
                    b"",
                    true,
                ),
            ),
            (
                b"POST /v1/exec?x=%41+b&flag HTTP/1.1\r\nConnection: close\r\n\
                  content-length: 3\r\n\r\nabc"
                    .to_vec(),
                req(
                    "POST",
                    "/v1/exec",
                    &[("x", "A b"), ("flag", "")],
                    b"abc",
                    false,
                ),
            ),
        ]
    }

    #[test]
    fn every_split_is_partial_until_complete() {
        for (case, (bytes, want)) in valid_cases().iter().enumerate() {
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse_request(&bytes[..cut]),
                    Ok(None),
                    "case {case}, cut at {cut}"
                );
                assert_eq!(check_early(&bytes[..cut]), Ok(()), "case {case}, cut {cut}");
            }
            assert_eq!(
                parse_request(bytes),
                Ok(Some((want.clone(), bytes.len()))),
                "case {case}"
            );
        }
    }

    #[test]
    fn pipelined_requests_come_out_one_at_a_time() {
        let cases = valid_cases();
        let mut buf = cases[1].0.clone();
        buf.extend_from_slice(&cases[0].0);
        buf.extend_from_slice(b"GET /nex"); // a third, unfinished

        let (first, n1) = parse_request(&buf).unwrap().unwrap();
        assert_eq!(first, cases[1].1);
        assert_eq!(n1, cases[1].0.len());
        buf.drain(..n1);
        let (second, n2) = parse_request(&buf).unwrap().unwrap();
        assert_eq!(second, cases[0].1);
        buf.drain(..n2);
        assert_eq!(buf, b"GET /nex");
        assert_eq!(parse_request(&buf), Ok(None));
    }

    fn head_with_length(n: usize) -> Vec<u8> {
        format!("PUT /v1/services/x HTTP/1.1\r\nContent-Length: {n}\r\n\r\n").into_bytes()
    }

    #[test]
    fn body_of_exactly_one_mib_is_accepted() {
        let mut buf = head_with_length(MAX_BODY_BYTES);
        let head_len = buf.len();
        assert_eq!(check_early(&buf), Ok(()));
        assert_eq!(parse_request(&buf), Ok(None));
        buf.resize(head_len + MAX_BODY_BYTES, b'a');
        assert_eq!(parse_request(&buf[..buf.len() - 1]), Ok(None));
        let (r, n) = parse_request(&buf).unwrap().unwrap();
        assert_eq!(r.body.len(), MAX_BODY_BYTES);
        assert_eq!(n, buf.len());
    }

    #[test]
    fn body_over_one_mib_is_refused_before_it_arrives() {
        let head = head_with_length(MAX_BODY_BYTES + 1);
        assert_eq!(check_early(&head), Err(ParseError::BodyTooLarge));
        assert_eq!(parse_request(&head), Err(ParseError::BodyTooLarge));
        assert_eq!(ParseError::BodyTooLarge.status(), 413);
        // Not before the head is complete: the length could still be "10".
        assert_eq!(check_early(&head[..head.len() - 1]), Ok(()));
        // A length too long for any integer is the same refusal, not a 400.
        let huge = b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse_request(huge), Err(ParseError::BodyTooLarge));
    }

    #[test]
    fn huge_head_is_refused() {
        let mut buf = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEAD_BYTES - 1, b'a');
        assert_eq!(check_early(&buf), Ok(()));
        assert_eq!(parse_request(&buf), Ok(None));
        buf.push(b'a');
        assert_eq!(check_early(&buf), Err(ParseError::HeadTooLarge));
        assert_eq!(parse_request(&buf), Err(ParseError::HeadTooLarge));
        assert_eq!(ParseError::HeadTooLarge.status(), 431);

        // A head of exactly the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        exact.resize(MAX_HEAD_BYTES - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert!(parse_request(&exact).unwrap().is_some());

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn content_length_must_be_one_plain_number() {
        let conflicting = b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
        assert!(matches!(
            parse_request(conflicting),
            Err(ParseError::Malformed(m)) if m.contains("conflicting")
        ));
        let listed = b"PUT / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd";
        assert!(matches!(
            parse_request(listed),
            Err(ParseError::Malformed(_))
        ));
        // The same value repeated is unambiguous.
        let same = b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_request(same).unwrap().unwrap().0.body, b"abc");
        for bad in ["-1", "abc", "+3", "", "3 3", "0x10"] {
            let buf = format!("PUT / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            let got = parse_request(buf.as_bytes());
            assert!(
                matches!(&got, Err(ParseError::Malformed(_))),
                "{bad:?} gave {got:?}"
            );
            assert_eq!(got.unwrap_err().status(), 400);
        }
    }

    #[test]
    fn transfer_encoding_needs_a_length() {
        let buf = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse_request(buf), Err(ParseError::LengthRequired));
        assert_eq!(ParseError::LengthRequired.status(), 411);
    }

    #[test]
    fn garbage_is_malformed_with_a_message() {
        for bad in [
            &b"hello there\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET v1/services HTTP/1.1\r\n\r\n",
        ] {
            let got = parse_request(bad);
            match &got {
                Err(ParseError::Malformed(m)) => assert!(!m.is_empty()),
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(bad)),
            }
            let text = got.unwrap_err().to_string();
            assert!(text.starts_with("malformed HTTP request: "), "{text}");
        }
    }

    #[test]
    fn other_http_versions_are_not_supported() {
        for line in ["GET / HTTP/2.0\r\n\r\n", "GET / HTTP/1.2\r\n\r\n"] {
            let bytes = line.as_bytes();
            assert_eq!(parse_request(bytes), Err(ParseError::VersionNotSupported));
            // Same verdict however the bytes arrive: undecided until the line ends.
            for cut in 0..bytes.len() {
                let early = parse_request(&bytes[..cut]);
                assert!(
                    early == Ok(None) || early == Err(ParseError::VersionNotSupported),
                    "{line:?} cut at {cut}: {early:?}"
                );
            }
        }
        assert_eq!(ParseError::VersionNotSupported.status(), 505);
    }

    #[test]
    fn query_is_decoded_and_path_is_not() {
        let buf = b"GET /v1/services/my%2Fsvc/logs?tail=5&msg=a%20b+c%26d&tail=9&&empty= HTTP/1.1\r\n\r\n";
        let (r, _) = parse_request(buf).unwrap().unwrap();
        assert_eq!(r.path, "/v1/services/my%2Fsvc/logs");
        assert_eq!(
            r.query,
            vec![
                ("tail".to_string(), "5".to_string()),
                ("msg".to_string(), "a b c&d".to_string()),
                ("tail".to_string(), "9".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert_eq!(r.query_param("tail"), Some("5"));
        assert_eq!(r.query_param("msg"), Some("a b c&d"));
        assert_eq!(r.query_param("follow"), None);

        let utf8 = b"GET /x?name=%C3%A9t%C3%A9 HTTP/1.1\r\n\r\n";
        assert_eq!(
            parse_request(utf8).unwrap().unwrap().0.query_param("name"),
            Some("\u{e9}t\u{e9}")
        );
        for bad in ["/x?a=%zz", "/x?a=%4", "/x?a=%ff"] {
            let buf = format!("GET {bad} HTTP/1.1\r\n\r\n");
            assert!(
                matches!(parse_request(buf.as_bytes()), Err(ParseError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn keep_alive_rules() {
        let cases = [
            ("HTTP/1.1", "", true),
            ("HTTP/1.1", "Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: Keep-Alive\r\n", true),
            ("HTTP/1.1", "Connection: upgrade, CLOSE\r\n", false),
            ("HTTP/1.0", "", false),
            ("HTTP/1.0", "Connection: keep-alive\r\n", true),
            ("HTTP/1.0", "Connection: close\r\n", false),
        ];
        for (i, (version, header, want)) in cases.iter().enumerate() {
            let buf = format!("GET / {version}\r\n{header}\r\n");
            let (r, _) = parse_request(buf.as_bytes()).unwrap().unwrap();
            assert_eq!(r.keep_alive, *want, "case {i}: {version} {header:?}");
        }
    }

    #[test]
    fn expect_continue_is_reported_until_the_body_arrives() {
        let buf = b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert!(!expects_continue(&buf[..buf.len() - 1]));
        assert!(expects_continue(buf));
        let mut full = buf.to_vec();
        full.extend_from_slice(b"ok");
        assert!(!expects_continue(&full));
        assert!(!expects_continue(
            b"PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n"
        ));
    }

    #[test]
    fn response_bytes_are_exact() {
        let mut r = Response::json(404, br#"{"error":"not_found"}"#.to_vec());
        r.extra_headers.push(("Allow", "GET, PUT".to_string()));
        assert_eq!(
            r.to_bytes(),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
              Content-Length: 21\r\nConnection: keep-alive\r\nAllow: GET, PUT\r\n\r\n\
              {\"error\":\"not_found\"}"
                .to_vec()
        );

        let mut closing = Response::text(200, b"hi".to_vec());
        closing.keep_alive = false;
        closing
            .extra_headers
            .push(("X-Evil", "a\r\nSet-Cookie: b".to_string()));
        assert_eq!(
            closing.to_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
              Connection: close\r\nX-Evil: a  Set-Cookie: b\r\n\r\nhi"
                .to_vec()
        );
        // The bytes parse back as a response with the same framing.
        let bytes = r.to_bytes();
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut headers);
        let n = match parsed.parse(&bytes).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(parsed.code, Some(404));
        assert_eq!(&bytes[n..], br#"{"error":"not_found"}"#);
    }

    #[test]
    fn chunked_stream_bytes() {
        assert_eq!(
            chunked_head(200, "text/plain"),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
              Transfer-Encoding: chunked\r\n\r\n"
                .to_vec()
        );
        assert_eq!(chunk(b"hello\n"), b"6\r\nhello\n\r\n".to_vec());
        assert_eq!(chunk(&[b'x'; 26])[..4], *b"1a\r\n");
        assert!(chunk(b"").is_empty(), "an empty chunk would end the stream");
        assert_eq!(last_chunk(), b"0\r\n\r\n");
    }

    #[test]
    fn heads_up_to_sixteen_kib_are_accepted() {
        // A long header (a big token, say) well past a few KiB is fine.
        let mut buf = b"GET / HTTP/1.1\r\nX-Token: ".to_vec();
        buf.resize(15 * 1024, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(check_early(&buf), Ok(()));
        assert!(parse_request(&buf).unwrap().is_some());
    }

    /// A request line that will never be HTTP/1.x, trickling in without its
    /// end: undecided while short, 431 once it fills the head limit.
    #[test]
    fn an_endless_request_line_with_a_bad_version_is_refused_at_the_limit() {
        let mut line = b"GET /".to_vec();
        line.resize(MAX_HEAD_BYTES - " HTTP/2".len(), b'a');
        line.extend_from_slice(b" HTTP/2");
        assert_eq!(line.len(), MAX_HEAD_BYTES);
        assert_eq!(parse_request(&line[..line.len() - 1]), Ok(None));
        assert_eq!(parse_request(&line), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn empty_lines_before_the_request_line_are_skipped() {
        let (r, _) = parse_request(b"\r\nGET /x HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/x");
        assert_eq!(
            parse_request(b"\r\n\nGET / HTTP/2.0\r\n\r\n"),
            Err(ParseError::VersionNotSupported)
        );
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
                "invalid header value",
            ),
            (
                b"G\x01T / HTTP/1.1\r\n\r\n",
                "invalid method or request line",
            ),
        ];
        for (bytes, want) in cases {
            let got = parse_request(bytes);
            assert_eq!(got, Err(ParseError::Malformed(want.into())), "{bytes:?}");
        }
    }

    #[test]
    fn bodiless_statuses_have_no_length_and_no_body() {
        for status in [100, 204, 304] {
            let bytes = Response::json(status, b"{}".to_vec()).to_bytes();
            let text = String::from_utf8(bytes).unwrap();
            assert!(!text.contains("Content-Length"), "{status}: {text:?}");
            assert!(text.ends_with("keep-alive\r\n\r\n"), "{status}: {text:?}");
        }
        for status in [200, 205, 303, 404] {
            let text =
                String::from_utf8(Response::json(status, b"{}".to_vec()).to_bytes()).unwrap();
            assert!(text.contains("Content-Length: 2\r\n"), "{status}: {text:?}");
            assert!(text.ends_with("\r\n\r\n{}"), "{status}: {text:?}");
        }
    }

    /// The status line names each status the API answers with.
    #[test]
    fn status_lines_name_their_status() {
        let phrases = [
            (100, "Continue"),
            (200, "OK"),
            (201, "Created"),
            (202, "Accepted"),
            (204, "No Content"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (409, "Conflict"),
            (411, "Length Required"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (415, "Unsupported Media Type"),
            (422, "Unprocessable Content"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
            (299, "Unknown"),
        ];
        for (status, phrase) in phrases {
            assert_eq!(reason_phrase(status), phrase, "{status}");
            let head = Response::text(status, Vec::new()).to_bytes();
            let line = format!("HTTP/1.1 {status} {phrase}\r\n");
            assert!(head.starts_with(line.as_bytes()), "{status}");
        }
    }

    #[test]
    fn every_error_has_a_sentence_and_a_status() {
        let all = [
            ParseError::Malformed("x".into()),
            ParseError::BodyTooLarge,
            ParseError::HeadTooLarge,
            ParseError::LengthRequired,
            ParseError::VersionNotSupported,
        ];
        let statuses: Vec<u16> = all.iter().map(ParseError::status).collect();
        assert_eq!(statuses, [400, 413, 431, 411, 505]);
        for e in &all {
            assert!(e.to_string().len() > 20, "{e:?}");
            assert_ne!(reason_phrase(e.status()), "Unknown");
        }
    }
}

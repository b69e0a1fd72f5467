//! Talking to the init through the library's client: one exchange per
//! connection, streams left open for the caller, and every failure as a
//! [`CtlError`] whose message names the socket or quotes the server.

use std::fmt;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use iris_init::client::{self, Conn, Head, Request, Response};
use serde_json::Value;

use crate::request::InputError;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything that can go wrong talking to the init or printing its answer.
#[derive(Debug)]
pub enum CtlError {
    Connect {
        socket: PathBuf,
        source: io::Error,
    },
    Send {
        socket: PathBuf,
        source: io::Error,
    },
    Http(client::Error),
    /// The server's answer was an error: its message.
    Api {
        message: String,
    },
    Input(InputError),
    Output(io::Error),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Connect { socket, source } => write!(
                f,
                "cannot connect to iris-init at {}: {source} (is it running? set --socket or IRIS_SOCKET)",
                socket.display()
            ),
            CtlError::Send { socket, source } => {
                write!(f, "cannot send the request to {}: {source}", socket.display())
            }
            CtlError::Http(client::Error::Timeout(d)) => {
                write!(f, "no answer from iris-init within {} seconds", d.as_secs())
            }
            CtlError::Http(client::Error::Closed) => {
                f.write_str("iris-init closed the connection before the answer was complete")
            }
            CtlError::Http(client::Error::BadResponse(why)) => {
                write!(f, "bad answer from iris-init: {why}")
            }
            CtlError::Http(e) => e.fmt(f),
            CtlError::Api { message } => f.write_str(message),
            CtlError::Input(e) => e.fmt(f),
            CtlError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl From<client::Error> for CtlError {
    fn from(e: client::Error) -> Self {
        CtlError::Http(e)
    }
}

impl From<InputError> for CtlError {
    fn from(e: InputError) -> Self {
        CtlError::Input(e)
    }
}

/// Names the socket in connect and send failures.
fn on_socket(socket: &Path, e: client::Error) -> CtlError {
    match e {
        client::Error::Connect(source) => CtlError::Connect {
            socket: socket.to_path_buf(),
            source,
        },
        client::Error::Send(source) => CtlError::Send {
            socket: socket.to_path_buf(),
            source,
        },
        e => CtlError::Http(e),
    }
}

/// The human sentence for a failed request: the JSON `message`, else the
/// raw body, else the status line.
pub fn error_message(status: u16, reason: &str, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(msg) = v.get("message").and_then(Value::as_str) {
            if !msg.trim().is_empty() {
                return msg.trim().to_string();
            }
        }
    }
    let raw = String::from_utf8_lossy(body);
    let raw = raw.trim();
    if raw.is_empty() {
        format!("HTTP {status} {reason}").trim().to_string()
    } else {
        raw.to_string()
    }
}

/// irisctl's headers on a request: one request per connection.
fn with_headers(req: &Request) -> Request {
    let mut req = req
        .clone()
        .header("User-Agent", &format!("irisctl/{VERSION}"))
        .header("Connection", "close");
    if !req.headers.iter().any(|(n, _)| n == "Accept") {
        req = req.header("Accept", "application/json");
    }
    req
}

/// Connects, sends `req` and reads the answer's head; a 2xx answer's body
/// is left to the caller, which may stream it; any other is an error.
pub fn open(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<(Conn<UnixStream>, Head), CtlError> {
    let mut conn = Conn::connect(socket, timeout).map_err(|e| on_socket(socket, e))?;
    let head = conn
        .open(&with_headers(req))
        .map_err(|e| on_socket(socket, e))?;
    if !head.is_success() {
        let body = conn.read_body_all(head.framing)?;
        return Err(CtlError::Api {
            message: error_message(head.status, &head.reason, &body),
        });
    }
    Ok((conn, head))
}

/// One complete exchange: a 2xx answer, or the server's message as an error.
pub fn exchange(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<Response, CtlError> {
    let (mut conn, head) = open(socket, req, timeout)?;
    let body = conn.read_body_all(head.framing)?;
    Ok(Response {
        status: head.status,
        reason: head.reason,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_json_message_then_raw_body() {
        let body = br#"{"error":"not_found","message":"no service named 'x'"}"#;
        assert_eq!(
            error_message(404, "Not Found", body),
            "no service named 'x'"
        );
        assert_eq!(
            error_message(404, "Not Found", b"plain text\n"),
            "plain text"
        );
        assert_eq!(error_message(404, "Not Found", b""), "HTTP 404 Not Found");
        assert_eq!(
            error_message(404, "Not Found", br#"{"error":"x"}"#),
            r#"{"error":"x"}"#
        );
    }

    #[test]
    fn requests_close_and_say_who_sends_them() {
        let text =
            String::from_utf8(with_headers(&Request::new("GET", "/v1/system")).encode()).unwrap();
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.contains("User-Agent: irisctl/"), "{text}");
        assert!(text.contains("Accept: application/json\r\n"), "{text}");
        let events = Request::new("GET", "/v1/events").header("Accept", "text/event-stream");
        let text = String::from_utf8(with_headers(&events).encode()).unwrap();
        assert!(!text.contains("application/json"), "{text}");
    }
}

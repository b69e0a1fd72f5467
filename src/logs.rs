//! Service logs over the API (placeholder: reads the log file).

use crate::api::error::ApiError;
use crate::api::http::{Request, Response};
use crate::api::Reply;
use crate::event_loop::Init;
use mio::Token;

pub(crate) fn handle(
    init: &mut Init,
    _token: Token,
    name: &str,
    tail: Option<usize>,
    _follow: bool,
    _req: &Request,
) -> Result<Reply, ApiError> {
    if init.sup.get(name).is_none() {
        return Err(ApiError::NotFound(name.to_string()));
    }
    let text = std::fs::read(init.log_dir().join(format!("{name}.log"))).unwrap_or_default();
    let body = match tail {
        Some(n) => last_lines(&text, n).to_vec(),
        None => text,
    };
    Ok(Reply::Now(Response::text(200, body)))
}

/// The last `n` lines of `text` (a final line without newline counts).
pub fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let end = text.len();
    let mut count = 0;
    let search_end = if text.last() == Some(&b'\n') {
        end.saturating_sub(1)
    } else {
        end
    };
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

//! One-shot commands (`/v1/exec`, service exec). Placeholder until the
//! exec issue lands: nothing is tracked yet.

use crate::event_loop::Init;
use crate::supervisor::{ExitStatus, Pid};
use mio::Token;

/// A reaped child that belongs to an exec; false when it is not one.
pub fn on_exit(_init: &mut Init, _pid: Pid, _status: ExitStatus) -> bool {
    false
}

pub fn on_conn_closed(_init: &mut Init, _token: Token) {}

pub(crate) fn service_exec(
    init: &mut Init,
    _token: Token,
    name: &str,
    _req: &crate::api::http::Request,
) -> Result<crate::api::Reply, crate::api::error::ApiError> {
    if init.sup.get(name).is_none() {
        return Err(crate::api::error::ApiError::NotFound(name.to_string()));
    }
    Err(crate::api::error::ApiError::Unavailable(
        "exec is not implemented yet".into(),
    ))
}

pub(crate) fn sandbox_exec(
    _init: &mut Init,
    _token: Token,
    _req: &crate::api::http::Request,
) -> Result<crate::api::Reply, crate::api::error::ApiError> {
    Err(crate::api::error::ApiError::Unavailable(
        "exec is not implemented yet".into(),
    ))
}

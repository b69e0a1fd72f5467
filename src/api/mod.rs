//! The HTTP API on the unix socket: the server (connections, parsing,
//! answering at once or later), what each request means (`handlers`), and
//! the waits of requests answered later (`pending`). Deferred answers never
//! block the loop.

pub(crate) mod conn;
pub mod error;
pub mod events;
pub mod exec_request;
pub(crate) mod handlers;
pub mod http;
pub mod metrics;
pub(crate) mod model;
pub(crate) mod pending;
pub(crate) mod routes;
pub(crate) mod server;

//! Health checking: which ports listen, confirming connects, HTTP checks
//! and the sd_notify socket.

pub mod http;
pub mod logline;
pub mod notify;
pub mod scan;

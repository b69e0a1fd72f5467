//! Health checking: which ports listen (`scan`), watching the ports of
//! services that wait to be ready (`watcher`), HTTP checks (`http`), the
//! log-line matcher (`logline`) and the sd_notify socket (`notify`).

pub(crate) mod http;
pub(crate) mod logline;
pub(crate) mod notify;
pub(crate) mod runner;
pub(crate) mod scan;
pub(crate) mod watcher;

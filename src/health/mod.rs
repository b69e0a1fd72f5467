//! Health checking: which ports listen (`scan`), and watching the ports of
//! services that wait to be ready (`watcher`).

pub(crate) mod scan;
pub(crate) mod watcher;

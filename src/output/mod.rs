//! Service output (log pipes, files, follow streams) and exec commands.

pub(crate) mod exec;
pub(crate) mod logs;

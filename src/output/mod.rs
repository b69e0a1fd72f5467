//! Service output (log pipes, files, follow streams) and exec commands.

pub mod exec;
pub mod logs;

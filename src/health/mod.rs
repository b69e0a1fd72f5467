//! Health checking: which ports listen, and confirming connects.

pub mod scan;

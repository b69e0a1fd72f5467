//! The core: service definitions and the supervisor state machine. No I/O.

pub mod checks;
pub mod definition;
pub mod json_number;
pub mod limits;
pub mod supervisor;

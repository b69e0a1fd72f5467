//! The core: service definitions and the supervisor state machine. No I/O.

pub mod bounds;
pub mod checks;
pub mod definition;
pub mod json_number;
pub mod json_object;
pub mod limits;
pub mod supervisor;

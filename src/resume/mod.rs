//! Restore after a memory snapshot: what `POST /v1/restore` does before any
//! service is touched (the clock, the kernel's randomness, the VM
//! generation), the body that asks for it, and the kernel's VM generation
//! ID event that triggers it by itself.

pub(crate) mod clock;
pub(crate) mod entropy;
pub(crate) mod generation;
pub mod request;
pub(crate) mod resumer;
pub(crate) mod steps;
pub(crate) mod uevent;

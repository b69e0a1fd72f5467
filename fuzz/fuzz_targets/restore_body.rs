//! The body of `POST /v1/restore`: never panics; an accepted body is empty
//! or an object, its entropy within bounds, its time a real instant.
#![no_main]

use iris_init::resume::request::{RestoreRequest, ENTROPY_MAX, ENTROPY_MIN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = RestoreRequest::parse(data) else {
        return;
    };
    let blank = data.iter().all(u8::is_ascii_whitespace);
    let object = serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.is_object());
    assert!(blank || object, "only an object (or nothing) is a restore body");
    if let Some(e) = &req.entropy {
        assert!((ENTROPY_MIN..=ENTROPY_MAX).contains(&e.len()));
    }
    if let Some(t) = req.time {
        assert!(t.nanos < 1_000_000_000);
    }
});

//! The bodies of `POST /v1/exec` and a service exec: never panic; what is
//! accepted is an object with a command, sane env keys and a bounded timeout.
#![no_main]

use iris_init::api::exec_request::{parse_sandbox_exec, parse_service_exec};
use iris_init::core::bounds::MAX_EXEC_TIMEOUT;
use libfuzzer_sys::fuzz_target;

fn is_object(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.is_object())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_sandbox_exec(data) {
        assert!(is_object(data));
        assert!(req.cmd.first().is_some_and(|c| !c.is_empty()));
        assert!(!req.timeout().is_zero() && req.timeout() <= MAX_EXEC_TIMEOUT);
        assert!(req.env.keys().all(|k| !k.is_empty() && !k.contains('=')));
    }
    if let Ok(req) = parse_service_exec(data) {
        assert!(is_object(data));
        assert!(req.cmd.first().is_some_and(|c| !c.is_empty()));
        assert!(!req.timeout().is_zero() && req.timeout() <= MAX_EXEC_TIMEOUT);
    }
});

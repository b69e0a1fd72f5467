//! The bodies of `POST /v1/exec` and a service exec: never panic; what is
//! accepted is an object with a command, sane env keys and a bounded timeout.
#![no_main]

use iris_init::core::exec_request::{sandbox, service};
use iris_init::core::limits::MAX_EXEC_TIMEOUT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for parsed in [sandbox(data), service(data)] {
        let Ok(req) = parsed else { continue };
        let value: serde_json::Value = serde_json::from_slice(data).expect("accepted, so JSON");
        assert!(value.is_object());
        assert!(req.cmd.first().is_some_and(|c| !c.is_empty()));
        assert!(!req.timeout.is_zero() && req.timeout <= MAX_EXEC_TIMEOUT);
        assert!(req.env.keys().all(|k| !k.is_empty() && !k.contains('=')));
    }
});

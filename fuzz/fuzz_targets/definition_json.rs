//! A `PUT /v1/services/NAME` body: never panics; an accepted definition is
//! an object, valid, and survives a round trip through its own JSON.
#![no_main]

use iris_init::core::definition::Definition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(def) = Definition::from_json(data) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_slice(data).expect("accepted, so JSON");
    assert!(value.is_object(), "a definition must be an object");
    assert!(def.validate().is_ok());
    let bytes = serde_json::to_vec(&def).expect("serializable");
    let again = Definition::from_json(&bytes).expect("its own JSON is accepted");
    assert_eq!(again, def);
});

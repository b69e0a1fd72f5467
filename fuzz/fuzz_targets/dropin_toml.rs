//! A drop-in file: never panics; an accepted definition is valid and reads
//! back the same from its JSON form (the two formats mean the same thing).
#![no_main]

use iris_init::core::definition::Definition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = Definition::from_toml(text) else {
        return;
    };
    assert!(def.validate().is_ok());
    let bytes = serde_json::to_vec(&def).expect("serializable");
    assert_eq!(Definition::from_json(&bytes).expect("valid as JSON too"), def);
});

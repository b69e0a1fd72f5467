//! The API document's lists of words are the parsers' own: every word it
//! lists is accepted, and every word the server takes is listed.

use iris_init::core::definition::Definition;
use serde_json::Value;

const OPENAPI: &str = include_str!("../src/api/openapi.json");

fn definition_enum(field: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    doc["components"]["schemas"]["Definition"]["properties"][field]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn accepts(field: &str, word: &str) -> bool {
    let body = serde_json::json!({"cmd": "x", field: word}).to_string();
    Definition::from_json(body.as_bytes()).is_ok()
}

#[test]
fn on_restore_lists_exactly_the_signals_the_server_takes() {
    let listed = definition_enum("on_restore");
    for word in &listed {
        assert!(accepts("on_restore", word), "listed but refused: {word}");
    }
    // Every signal the platform names, with and without SIG.
    for sig in nix::sys::signal::Signal::iterator() {
        let full = sig.as_str();
        for word in [full, full.trim_start_matches("SIG")] {
            assert_eq!(
                accepts("on_restore", word),
                listed.iter().any(|w| w == word),
                "{word}: accepted and listed must agree"
            );
        }
    }
    for word in ["hup", "SIGFOO", "", "SIG", "Keep", "SIGRTMIN"] {
        assert!(!accepts("on_restore", word), "{word}");
        assert!(!listed.iter().any(|w| w == word), "{word}");
    }
}

#[test]
fn restart_and_type_list_their_words() {
    for (field, words) in [
        ("restart", &["on-failure", "always", "never"][..]),
        ("type", &["service", "oneshot"]),
    ] {
        assert_eq!(definition_enum(field), words);
        for w in words {
            assert!(accepts(field, w), "{field}: {w}");
        }
        assert!(!accepts(field, "sometimes"));
    }
}

//! The HTTP request parser on arbitrary bytes: never panics, and what it
//! says is consistent (a complete request parses the same from exactly its
//! own bytes, the early check agrees with the full parse).
#![no_main]

use iris_init::api::http::{check_early, expects_continue, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = parse_request(data);
    let early = check_early(data);
    let _ = expects_continue(data);
    match &full {
        Ok(Some((req, used))) => {
            assert!(*used <= data.len());
            assert!(req.body.len() <= iris_init::api::http::MAX_BODY_BYTES);
            assert!(early.is_ok(), "early check refused a complete request");
            let again = parse_request(&data[..*used]);
            assert_eq!(again.ok().flatten().map(|(r, n)| (r, n)), Some((req.clone(), *used)));
            // A pipelined rest is parsed on its own without trouble.
            let _ = parse_request(&data[*used..]);
        }
        Ok(None) => {
            assert!(early.is_ok(), "early check refused an incomplete head");
        }
        Err(e) => {
            assert!((400..600).contains(&e.status()));
        }
    }
});

//! The HTTP request parser on arbitrary bytes: never panics, and what it
//! says is consistent (a complete request parses the same from exactly its
//! own bytes; a prefix of it is incomplete or an error, never another
//! request).
#![no_main]

use iris_init::api::http::{expects_continue, parse_request, MAX_BODY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = expects_continue(data);
    match parse_request(data) {
        Ok(Some((req, used))) => {
            assert!(used <= data.len());
            assert!(req.body.len() <= MAX_BODY_BYTES);
            let again = parse_request(&data[..used]);
            assert_eq!(again.ok().flatten(), Some((req, used)));
            if used > 0 {
                assert!(!matches!(parse_request(&data[..used - 1]), Ok(Some(_))));
            }
            // A pipelined rest is parsed on its own without trouble.
            let _ = parse_request(&data[used..]);
        }
        Ok(None) => {}
        Err(e) => assert!((400..600).contains(&e.status())),
    }
});

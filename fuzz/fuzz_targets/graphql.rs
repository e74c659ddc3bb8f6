//! The GraphQL entry: arbitrary bytes as a request body (JSON decoding, the batch and
//! nesting checks), or as a document, then parsed, validated against the real schema
//! and executed. Nothing may panic or overflow the stack.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let body = match mode % 2 {
        0 => rest.to_vec(),
        _ => match std::str::from_utf8(rest) {
            Ok(document) => serde_json::json!({ "query": document }).to_string().into_bytes(),
            Err(_) => return,
        },
    };
    if let Ok(request) = plaza_read_api::parse_request(&body) {
        common::execute(request);
    }
});

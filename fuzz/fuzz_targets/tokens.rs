//! Bearer tokens: arbitrary text verified as an access token. Only a token this secret
//! signed is accepted.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plaza_edge::Tokens;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let tokens = Tokens::new(b"fuzzing-secret-fuzzing-secret-32", Duration::from_secs(60));
    assert!(tokens.verify(token).is_err(), "an unsigned token was accepted: {token:?}");
});

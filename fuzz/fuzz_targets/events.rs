//! Event decoding: arbitrary type names, schema versions and data as the store would
//! hand them over. A bad record is a decode error, never a panic; a decoded event
//! encodes back to data that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plaza_domain::Event;

fuzz_target!(|data: &[u8]| {
    let Some((version, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (event_type, json) = text.split_once('\n').unwrap_or(("UserFollowed", text));
    if let Ok(event) = Event::decode(event_type, u32::from(*version), json) {
        let again = serde_json::to_string(&event).unwrap();
        assert_eq!(Event::decode(event.event_type(), plaza_domain::event::SCHEMA_VERSION, &again).unwrap(), event);
    }
});

//! REST request bodies: arbitrary bytes through the decoder every command's body goes
//! through, as each request type; and arbitrary text through every domain value parser
//! the commands run next. Nothing may panic, and whatever is accepted must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plaza_domain::accounts::{Email, Password, ProfileChanges, Username};
use plaza_domain::conversations;
use plaza_domain::counters::{CounterKey, check_delta};
use plaza_domain::text::{Lines, clean};
use plaza_domain::videos::{CommentBody, CreateHashtag, Description, Hashtag, MediaUrl, Title, video_hashtags};
use plaza_write_api::decode_json;
use plaza_write_api::requests::*;

fuzz_target!(|data: &[u8]| {
    let _ = decode_json::<RegisterRequest>(data);
    let _ = decode_json::<LoginRequest>(data);
    let _ = decode_json::<ProfileRequest>(data);
    let _ = decode_json::<PublishRequest>(data);
    let _ = decode_json::<UpdateRequest>(data);
    let _ = decode_json::<CommentRequest>(data);
    let _ = decode_json::<HashtagRequest>(data);
    let _ = decode_json::<IncrementRequest>(data);
    let _ = decode_json::<StartRequest>(data);
    let _ = decode_json::<UpdateConversationRequest>(data);
    let _ = decode_json::<MembersRequest>(data);
    let _ = decode_json::<RoleRequest>(data);
    let _ = decode_json::<MessageRequest>(data);
    let _ = decode_json::<EditRequest>(data);
    let _ = decode_json::<ReadRequest>(data);
    let _ = decode_json::<ReadNotificationsRequest>(data);
    let _ = decode_json::<NotificationSettingsRequest>(data);
    // The operators' routes: a form or JSON naming dead letters, the page's login form.
    for form in [true, false] {
        let _ = plaza_write_api::admin_forms::decode_which(data, form);
    }
    let _ = plaza_write_api::admin_forms::decode_login(data);
    if decode_json::<serde_json::Value>(data).is_ok() {
        assert_eq!(data.iter().find(|b| !b.is_ascii_whitespace()), Some(&b'{'), "only objects are bodies");
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, second) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let _ = Username::parse(text);
    // A search history path's query (`DELETE /api/v1/search/history/{query}`).
    if let Ok(query) = plaza_domain::search::normalize_query(text) {
        assert!((1..=200).contains(&query.chars().count()), "{query:?}");
        assert_eq!(plaza_domain::search::normalize_query(&query).as_ref(), Ok(&query), "a normalized query normalizes to itself");
    }
    let named = plaza_domain::notifications::mentions(text);
    assert!(named.len() <= plaza_domain::notifications::MAX_MENTIONS, "{named:?}");
    assert!(named.iter().all(|n| Username::parse(n).is_ok()), "a mention names a possible username: {named:?}");
    let _ = plaza_domain::event::partition_key(first, second);
    let _ = plaza_domain::accounts::Role::parse(text);
    let _ = Email::parse(text);
    let _ = Password::parse(text.to_owned());
    let _ = ProfileChanges::parse(Some(Some(first.to_owned())), Some(Some(second.to_owned())), Some(Some(text.to_owned())));
    for lines in [Lines::One, Lines::Many] {
        if let Some(cleaned) = clean(text, lines) {
            assert!(!cleaned.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{cleaned:?}");
        }
    }
    if let Ok(title) = Title::parse(text) {
        assert!(!title.as_str().is_empty() && title.as_str().chars().count() <= 150);
    }
    let _ = MediaUrl::parse(text);
    let _ = CommentBody::parse(text);
    if let Ok(description) = Description::parse(text) {
        let _ = video_hashtags(&[first.to_owned(), second.to_owned()], &description);
    }
    if let Ok(tag) = Hashtag::parse(text) {
        assert_eq!(Hashtag::parse(tag.as_str()).map(|again| again.as_str().to_owned()), Ok(tag.as_str().to_owned()), "a parsed name parses to itself");
        let _ = CreateHashtag::new(tag, Some(second), uuid::Uuid::nil());
    }
    let _ = CounterKey::parse_generic(first, second);
    if let Ok(body) = conversations::Body::parse(text) {
        let chars = body.as_str().chars().count();
        assert!((1..=4000).contains(&chars), "{chars}");
    }
    let _ = conversations::Title::parse(text);
    let _ = conversations::Description::parse(text);
    let _ = conversations::attachment_url(text);
    let _ = conversations::Role::parse(text);
    if data.len() >= 8 {
        let delta = i64::from_le_bytes(data[..8].try_into().unwrap());
        if let Ok(delta) = check_delta(delta) {
            assert!(delta != 0 && delta.unsigned_abs() <= 1_000_000);
        }
    }
});

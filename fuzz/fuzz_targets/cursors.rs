//! Cursors: arbitrary text as the `after` of every kind of list (keyset cursors, the
//! ranked feeds' and search's cursors), through the real schema. A bad cursor is an error, never a
//! panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

const QUERY: &str = "query($c: String) {
    videos(authorId: \"a\", first: 2, after: $c) { totalCount }
    followers(userId: \"a\", first: 2, after: $c) { totalCount }
    comments(videoId: \"v\", first: 2, after: $c) { totalCount }
    hot: feed(kind: HOT, first: 2, after: $c) { totalCount }
    recommended: feed(kind: RECOMMENDED, first: 2, after: $c) { totalCount }
    following: feed(kind: FOLLOWING, first: 2, after: $c) { totalCount }
    search(query: \"cats\", after: $c) { totalCount }
}";

fuzz_target!(|data: &[u8]| {
    let Ok(cursor) = std::str::from_utf8(data) else { return };
    let variables = async_graphql::Variables::from_json(serde_json::json!({ "c": cursor }));
    common::execute(async_graphql::Request::new(QUERY).variables(variables));
});

//! End-to-end: `search` on `plaza serve` (embedded and on PostgreSQL), where the search
//! projector feeds a tantivy index in the data dir: English and Chinese, typos and
//! prefixes, sorts, edited and deleted videos, users and hashtags, escaped highlights,
//! and bad queries answered with GraphQL errors, never a 500.
//!
//! Not yet: the processes of the roles and cluster profiles (their read API has no
//! index and answers `search_unavailable`, tested below).

mod common;

use std::time::{Duration, Instant};

use common::{Plaza, Profile};
use serde_json::{Value, json};

const SEARCH: &str = "query($q: String!, $kind: SearchKind, $sort: SearchSort, $after: String, $first: Int) {
    search(query: $q, kind: $kind, sort: $sort, after: $after, first: $first) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { score highlights { field fragment } video { id title } user { username } hashtag { name videoCount } } }
    } }";

fn search(plaza: &Plaza, variables: Value) -> Value {
    let reply = plaza.graphql_reply(SEARCH, variables, None, None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// What `search` answers once it satisfies `done` (the index follows the store a moment
/// behind the read models).
fn until(plaza: &Plaza, variables: Value, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let body = search(plaza, variables.clone());
        if body["errors"].is_null() && done(&body["data"]["search"]) {
            return body["data"]["search"].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "search never answered as expected: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn titles(found: &Value) -> Vec<String> {
    found["edges"].as_array().unwrap().iter().map(|e| e["node"]["video"]["title"].as_str().unwrap().to_owned()).collect()
}

fn publish(plaza: &Plaza, token: &str, title: &str, hashtags: &[&str]) -> String {
    let body = json!({ "title": title, "description": "", "media_url": "https://cdn.example.com/v.mp4", "hashtags": hashtags });
    let reply = plaza.send("POST", "/api/v1/videos", Some(body), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["video_id"].as_str().unwrap().to_owned()
}

fn finds_videos_users_and_hashtags(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")]);
    let (_, alice, _) = plaza.register("alice_films");
    let (_, bob, _) = plaza.register("bob");
    let cats = publish(&plaza, &alice, "Funny cats compilation", &["cats"]);
    publish(&plaza, &alice, "超级搞笑的猫咪视频", &["搞笑"]);
    let tricks = publish(&plaza, &alice, "Cat tricks <b>live</b> & loud", &["cats"]);
    let liked = publish(&plaza, &alice, "Cats and boxes", &["cats"]);
    for token in [&alice, &bob] {
        let reply = plaza.send("POST", &format!("/api/v1/videos/{liked}/like"), None, Some(token), &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    let videos = |q: &str| json!({ "q": q });
    let found = until(&plaza, videos("funny cats"), |s| s["totalCount"] == 1);
    assert_eq!(titles(&found), ["Funny cats compilation"]);
    let highlights = &found["edges"][0]["node"]["highlights"];
    assert!(
        highlights.as_array().unwrap().contains(&json!({ "field": "title", "fragment": "<em>Funny</em> <em>cats</em> compilation" })),
        "{highlights}"
    );
    // Chinese, typos, prefixes.
    assert_eq!(titles(&until(&plaza, videos("搞笑视频"), |s| s["totalCount"] == 1)), ["超级搞笑的猫咪视频"]);
    assert_eq!(titles(&until(&plaza, videos("compilaton"), |s| s["totalCount"] == 1)), ["Funny cats compilation"]);
    assert_eq!(titles(&until(&plaza, videos("funny ca"), |s| s["totalCount"] == 1)), ["Funny cats compilation"]);
    // Sorts, pages, escaping.
    let most_liked = until(&plaza, json!({ "q": "cats", "sort": "MOST_LIKED" }), |s| s["totalCount"] == 3);
    assert_eq!(titles(&most_liked)[0], "Cats and boxes");
    let newest = until(&plaza, json!({ "q": "cats", "sort": "NEWEST", "first": 2 }), |s| s["totalCount"] == 3);
    assert_eq!(titles(&newest), ["Cats and boxes", "Cat tricks <b>live</b> & loud"]);
    assert_eq!(newest["pageInfo"]["hasNextPage"], true);
    let after = newest["pageInfo"]["endCursor"].as_str().unwrap();
    let rest = until(&plaza, json!({ "q": "cats", "sort": "NEWEST", "after": after }), |_| true);
    assert_eq!(titles(&rest), ["Funny cats compilation"]);
    let loud = until(&plaza, videos("loud"), |s| s["totalCount"] == 1);
    assert_eq!(loud["edges"][0]["node"]["highlights"][0]["fragment"], "Cat tricks &lt;b&gt;live&lt;/b&gt; &amp; <em>loud</em>");

    // Edited: found by its new words only; deleted: not found.
    let edit = json!({ "title": "Sleepy kittens", "description": "", "hashtags": ["kittens"] });
    assert_eq!(plaza.send("PUT", &format!("/api/v1/videos/{cats}"), Some(edit), Some(&alice), &[]).status, 200);
    assert_eq!(plaza.send("DELETE", &format!("/api/v1/videos/{tricks}"), None, Some(&alice), &[]).status, 200);
    assert_eq!(titles(&until(&plaza, videos("kittens"), |s| s["totalCount"] == 1)), ["Sleepy kittens"]);
    let cats_now = until(&plaza, videos("cats"), |s| s["totalCount"] == 1);
    assert_eq!(titles(&cats_now), ["Cats and boxes"]);
    assert_eq!(until(&plaza, videos("compilation"), |s| s["totalCount"] == 0)["edges"], json!([]));

    // Users and hashtags.
    let users = until(&plaza, json!({ "q": "alice", "kind": "USERS" }), |s| s["totalCount"] == 1);
    assert_eq!(users["edges"][0]["node"]["user"]["username"], "alice_films");
    let hashtags = until(&plaza, json!({ "q": "cat", "kind": "HASHTAGS" }), |s| s["totalCount"] == 1);
    assert_eq!(hashtags["edges"][0]["node"]["hashtag"], json!({ "name": "cats", "videoCount": 1 }));

    // Bad input: GraphQL errors with a code, never a 500.
    for (query, code) in [("", "invalid_search"), ("   ", "invalid_search"), (&"x".repeat(1000) as &str, "invalid_search")] {
        let body = search(&plaza, videos(query));
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
    }
    for syntax in ["title:(cats) AND -dogs*", "\"unclosed", "~~~", "*", "\\", "[1 TO 5]"] {
        let body = search(&plaza, videos(syntax));
        assert!(body["errors"].is_null(), "{syntax}: {body}");
    }
    let body = search(&plaza, json!({ "q": "cats", "after": "bm90IGEgY3Vyc29y" }));
    assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_cursor");
    plaza.assert_alive();
}

#[test]
fn embedded_finds_videos_users_and_hashtags() {
    finds_videos_users_and_hashtags(Profile::Embedded);
}

#[test]
fn postgres_finds_videos_users_and_hashtags() {
    finds_videos_users_and_hashtags(Profile::Postgres);
}

/// A read API without an index says so.
#[test]
fn a_read_api_without_an_index_answers_search_unavailable() {
    let plaza = Plaza::start(Profile::Roles);
    let body = search(&plaza, json!({ "q": "cats" }));
    assert_eq!(body["errors"][0]["extensions"]["code"], "search_unavailable", "{body}");
}

//! End-to-end: `search` on every deployment, where each read API's search projector
//! feeds a tantivy index in its data dir: English and Chinese, typos and prefixes,
//! sorts, edited and deleted videos, users and hashtags, escaped highlights, and bad
//! queries answered with GraphQL errors, never a 500. Then what signed-in searches
//! leave: each user's private, clearable history, the hot searches (one searcher counts
//! once per query and hour), and suggestions.

mod common;

use common::{Plaza, Profile};
use serde_json::{Value, json};

const SEARCH: &str = "query($q: String!, $kind: SearchKind, $sort: SearchSort, $after: String, $first: Int) {
    search(query: $q, kind: $kind, sort: $sort, after: $after, first: $first) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { score highlights { field fragment } video { id title } user { username } hashtag { name videoCount } } }
    } }";

/// What `search` answers once the read models and the search index include `position`
/// (the consistency token covers the index too). A consistency timeout is asked again,
/// for up to 90 s: a Kafka consumer group may take that long to settle on a loaded
/// machine.
fn search(plaza: &Plaza, variables: Value, position: u64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let reply = plaza.graphql_reply(SEARCH, variables.clone(), None, Some(position));
        let timed_out = reply.status == 503 || reply.body["errors"][0]["extensions"]["code"] == "consistency_timeout";
        if !timed_out || started.elapsed() > std::time::Duration::from_secs(90) {
            assert_eq!(reply.status, 200, "{}", reply.body);
            return reply.body;
        }
    }
}

fn found(plaza: &Plaza, variables: Value, position: u64) -> Value {
    let body = search(plaza, variables, position);
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["search"].clone()
}

fn titles(found: &Value) -> Vec<String> {
    found["edges"].as_array().unwrap().iter().map(|e| e["node"]["video"]["title"].as_str().unwrap().to_owned()).collect()
}

fn publish(plaza: &Plaza, token: &str, title: &str, hashtags: &[&str]) -> (String, u64) {
    let body = json!({ "title": title, "description": "", "media_url": "https://cdn.example.com/v.mp4", "hashtags": hashtags });
    let reply = plaza.send("POST", "/api/v1/videos", Some(body), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["video_id"].as_str().unwrap().to_owned(), reply.position())
}

fn finds_videos_users_and_hashtags(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")]);
    let (_, alice, _) = plaza.register("alice_films");
    let (_, bob, _) = plaza.register("bob");
    let (cats, _) = publish(&plaza, &alice, "Funny cats compilation", &["cats"]);
    publish(&plaza, &alice, "超级搞笑的猫咪视频", &["搞笑"]);
    let (tricks, _) = publish(&plaza, &alice, "Cat tricks <b>live</b> & loud", &["cats"]);
    let (liked, mut at) = publish(&plaza, &alice, "Cats and boxes", &["cats"]);
    for token in [&alice, &bob] {
        let reply = plaza.send("POST", &format!("/api/v1/videos/{liked}/like"), None, Some(token), &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        at = reply.position();
    }

    let videos = |q: &str| json!({ "q": q });
    let result = found(&plaza, videos("funny cats"), at);
    assert_eq!(titles(&result), ["Funny cats compilation"]);
    let highlights = &result["edges"][0]["node"]["highlights"];
    assert!(
        highlights.as_array().unwrap().contains(&json!({ "field": "title", "fragment": "<em>Funny</em> <em>cats</em> compilation" })),
        "{highlights}"
    );
    // Chinese, typos, prefixes.
    assert_eq!(titles(&found(&plaza, videos("搞笑视频"), at)), ["超级搞笑的猫咪视频"]);
    assert_eq!(titles(&found(&plaza, videos("compilaton"), at)), ["Funny cats compilation"]);
    assert_eq!(titles(&found(&plaza, videos("funny ca"), at)), ["Funny cats compilation"]);
    // Sorts, pages, escaping.
    let most_liked = found(&plaza, json!({ "q": "cats", "sort": "MOST_LIKED" }), at);
    assert_eq!(titles(&most_liked)[0], "Cats and boxes");
    let newest = found(&plaza, json!({ "q": "cats", "sort": "NEWEST", "first": 2 }), at);
    assert_eq!(titles(&newest), ["Cats and boxes", "Cat tricks <b>live</b> & loud"]);
    assert_eq!((&newest["totalCount"], &newest["pageInfo"]["hasNextPage"]), (&json!(3), &json!(true)));
    let after = newest["pageInfo"]["endCursor"].as_str().unwrap();
    assert_eq!(titles(&found(&plaza, json!({ "q": "cats", "sort": "NEWEST", "after": after }), at)), ["Funny cats compilation"]);
    let loud = found(&plaza, videos("loud"), at);
    assert_eq!(loud["edges"][0]["node"]["highlights"][0]["fragment"], "Cat tricks &lt;b&gt;live&lt;/b&gt; &amp; <em>loud</em>");

    // Edited: found by its new words only; deleted: not found.
    let edit = json!({ "title": "Sleepy kittens", "description": "", "hashtags": ["kittens"] });
    assert_eq!(plaza.send("PUT", &format!("/api/v1/videos/{cats}"), Some(edit), Some(&alice), &[]).status, 200);
    let deleted = plaza.send("DELETE", &format!("/api/v1/videos/{tricks}"), None, Some(&alice), &[]);
    assert_eq!(deleted.status, 200);
    let at = deleted.position();
    assert_eq!(titles(&found(&plaza, videos("kittens"), at)), ["Sleepy kittens"]);
    assert_eq!(titles(&found(&plaza, videos("cats"), at)), ["Cats and boxes"]);
    assert_eq!(found(&plaza, videos("compilation"), at)["totalCount"], 0);

    // Users and hashtags.
    let users = found(&plaza, json!({ "q": "alice", "kind": "USERS" }), at);
    assert_eq!(users["edges"][0]["node"]["user"]["username"], "alice_films");
    let hashtags = found(&plaza, json!({ "q": "cat", "kind": "HASHTAGS" }), at);
    assert_eq!(hashtags["edges"][0]["node"]["hashtag"], json!({ "name": "cats", "videoCount": 1 }));

    // Bad input: GraphQL errors with a code, never a 500.
    for query in ["", "   ", &"x".repeat(1000)] {
        let body = search(&plaza, videos(query), at);
        assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_search", "{body}");
    }
    for syntax in ["title:(cats) AND -dogs*", "\"unclosed", "~~~", "*", "\\", "[1 TO 5]"] {
        let body = search(&plaza, videos(syntax), at);
        assert!(body["errors"].is_null(), "{syntax}: {body}");
    }
    let body = search(&plaza, json!({ "q": "cats", "after": "bm90IGEgY3Vyc29y" }), at);
    assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_cursor");
    plaza.assert_alive();
}

/// A signed-in search: its results' titles and the position of its `SearchPerformed`.
fn search_as(plaza: &Plaza, token: &str, query: &str, position: u64) -> u64 {
    let reply = plaza.graphql_reply("query($q: String!) { search(query: $q) { totalCount } }", json!({ "q": query }), Some(token), Some(position));
    assert_eq!((reply.status, &reply.body["errors"]), (200, &Value::Null), "{}", reply.body);
    reply.body["extensions"]["position"].as_u64().unwrap_or_else(|| panic!("no position in {}", reply.body))
}

fn history(plaza: &Plaza, token: &str, position: u64) -> Vec<String> {
    let data = plaza.graphql("{ searchHistory { query searchedAt } }", json!({}), Some(token), position);
    data["searchHistory"].as_array().unwrap().iter().map(|entry| entry["query"].as_str().unwrap().to_owned()).collect()
}

fn remembers_history_hot_searches_and_suggests(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")]);
    let (_, alice, _) = plaza.register("alice");
    let (_, bob, _) = plaza.register("bob");
    let (_, carol, _) = plaza.register("carol");
    let (funnyguy, _, _) = plaza.register("funnyguy");
    let (video, mut at) = publish(&plaza, &alice, "Funny cats compilation", &["funny"]);
    for token in [&alice, &bob, &carol] {
        at = plaza.send("POST", &format!("/api/v1/users/{funnyguy}/follow"), None, Some(token), &[]).position();
    }
    for token in [&bob, &carol] {
        at = plaza.send("POST", &format!("/api/v1/videos/{video}/like"), None, Some(token), &[]).position();
    }

    // Alice searches "funny cats" three times and "kittens" five: each counts once.
    for _ in 0..3 {
        at = search_as(&plaza, &alice, "Funny   CATS", at);
    }
    for _ in 0..5 {
        at = search_as(&plaza, &alice, "kittens", at);
    }
    for (token, query) in [(&bob, "funny cats"), (&bob, "dogs"), (&carol, "funny cats"), (&carol, "dogs")] {
        at = search_as(&plaza, token, query, at);
    }
    // A later page of the same search is not another search.
    let page = plaza.graphql_reply("{ search(query: \"cats\", after: \"czow\") { totalCount } }", json!({}), Some(&alice), Some(at));
    assert!(page.body["extensions"]["position"].is_null(), "{}", page.body);

    // History: one's own, most recent first, each query once; private; clearable.
    assert_eq!(history(&plaza, &alice, at), ["kittens", "funny cats"]);
    assert_eq!(history(&plaza, &bob, at), ["dogs", "funny cats"]);
    let anonymous = plaza.graphql_reply("{ searchHistory { query } }", json!({}), None, Some(at));
    assert_eq!(anonymous.body["errors"][0]["extensions"]["code"], "unauthenticated", "{}", anonymous.body);
    let cleared = plaza.send("DELETE", "/api/v1/search/history/KITTENS", None, Some(&alice), &[]);
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(history(&plaza, &alice, cleared.position()), ["funny cats"]);
    assert_eq!(history(&plaza, &bob, cleared.position()), ["dogs", "funny cats"], "someone else's history stays");
    let cleared = plaza.send("DELETE", "/api/v1/search/history/funny%20cats", None, Some(&bob), &[]);
    assert_eq!(history(&plaza, &bob, cleared.position()), ["dogs"], "a percent-encoded query");
    let cleared = plaza.send("DELETE", "/api/v1/search/history", None, Some(&bob), &[]);
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert!(history(&plaza, &bob, cleared.position()).is_empty());
    assert_eq!(plaza.send("DELETE", "/api/v1/search/history", None, None, &[]).status, 401);
    for bad in ["%20", &"x".repeat(1000), "a%00b", "%FF%FE"] {
        let reply = plaza.send("DELETE", &format!("/api/v1/search/history/{bad}"), None, Some(&alice), &[]);
        assert_eq!((reply.status, &reply.body["error"]), (400, &json!("invalid_search")), "{bad}: {}", reply.body);
    }

    // Hot searches: distinct searchers; alice's repeats and clearing change nothing.
    let at = cleared.position();
    let hot = plaza.graphql("{ hotSearches { query score searchers } }", json!({}), None, at);
    let queries: Vec<&str> = hot["hotSearches"].as_array().unwrap().iter().map(|h| h["query"].as_str().unwrap()).collect();
    assert_eq!(queries, ["funny cats", "dogs", "kittens"], "{hot}");
    assert_eq!(hot["hotSearches"][0]["searchers"], 3, "{hot}");

    // Suggestions: hot queries first, then titles, usernames and hashtags by popularity.
    let suggest = |prefix: &str| {
        let data = plaza.graphql("query($p: String!) { searchSuggestions(prefix: $p) { text kind popularity } }", json!({ "p": prefix }), None, at);
        data["searchSuggestions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["text"].as_str().unwrap().to_owned(), s["kind"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>()
    };
    let pairs = |list: &[(&str, &str)]| list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(suggest("Fun"), pairs(&[("funny cats", "QUERY"), ("funnyguy", "USER"), ("Funny cats compilation", "VIDEO"), ("funny", "HASHTAG")]));
    assert_eq!(suggest("kit"), pairs(&[("kittens", "QUERY")]));
    assert!(suggest("zebra").is_empty());
    for (variables, code) in [
        (json!({ "p": "" }), "invalid_search"),
        (json!({ "p": "a", "n": 0 }), "invalid_page_size"),
        (json!({ "p": "a", "n": 21 }), "invalid_page_size"),
    ] {
        let reply =
            plaza.graphql_reply("query($p: String!, $n: Int! = 10) { searchSuggestions(prefix: $p, first: $n) { text } }", variables, None, Some(at));
        assert_eq!(reply.body["errors"][0]["extensions"]["code"], code, "{}", reply.body);
    }
    plaza.assert_alive();
}

on_every_profile!(finds_videos_users_and_hashtags, remembers_history_hot_searches_and_suggests);

/// `plaza projections rebuild search` builds the index anew beside the serving one, and
/// the server takes it up: every search meanwhile finds every video, and the server
/// goes on indexing into the new one.
#[test]
fn rebuilds_the_index_while_searching() {
    // The reader searches as fast as it can, anonymously: no rate limits.
    let plaza = std::sync::Arc::new(Plaza::start_with(
        Profile::Embedded,
        &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0"), ("PLAZA_GRAPHQL_RATE_LIMIT_IP_PER_SEC", "0")],
    ));
    let (_, alice, _) = plaza.register("alice");
    let mut at = 0;
    for i in 0..30 {
        at = publish(&plaza, &alice, &format!("Cats number {i}"), &[]).1;
    }
    assert_eq!(found(&plaza, json!({ "q": "cats" }), at)["totalCount"], 30);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (plaza, stop) = (plaza.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = plaza.graphql_reply("{ search(query: \"cats\") { totalCount } }", json!({}), None, None);
                assert_eq!((reply.status, &reply.body["data"]["search"]["totalCount"]), (200, &json!(30)), "{}", reply.body);
                reads += 1;
            }
            reads
        })
    };
    let (ok, out, err) = plaza.cli(&["projections", "rebuild", "search"], &[]);
    assert!(ok && out.contains("search: switched to index v3-"), "{out}{err}");
    let root = std::path::PathBuf::from(plaza.setting("PLAZA_DATA_DIR").unwrap()).join("search");
    let current = std::fs::read_to_string(root.join("CURRENT")).unwrap();
    // The server takes the new index up at its projector's next idle moment (within a
    // second), then deletes the old one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let generations = || std::fs::read_dir(&root).unwrap().flatten().filter(|e| e.path().is_dir()).count();
    while generations() > 1 {
        assert!(std::time::Instant::now() < deadline, "the old index was never given up:\n{}", plaza.log_tail(30));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(root.join(current.trim()).is_dir());
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 3);
    let (_, at) = publish(&plaza, &alice, "Cats once more", &[]);
    assert_eq!(found(&plaza, json!({ "q": "cats" }), at)["totalCount"], 31, "the server indexes into the rebuilt index");
    plaza.assert_alive();
}

//! Hardening: what an outside probe found (issue 8), each finding a regression test, and
//! a test that no hostile request takes a process down, on the embedded profile and on
//! the cluster profile's write and read APIs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Plaza, Profile, RawReply, parse_raw, raw_http, run_to_exit};
use serde_json::{Value, json};

fn graphql_code(reply: &common::Reply) -> &str {
    reply.body["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

fn publish(plaza: &Plaza, token: &str, body: Value) -> common::Reply {
    plaza.send("POST", "/api/v1/videos", Some(body), Some(token), &[])
}

fn video_body(title: &str) -> Value {
    json!({ "title": title, "media_url": "https://cdn.example.com/v.mp4" })
}

/// `{ counters(keys: [[[...]]]) { value } }` and friends, `depth` levels deep.
fn nested_documents(depth: usize) -> Vec<String> {
    let (open, close) = ("[".repeat(depth), "]".repeat(depth));
    vec![
        format!("{{ counters(keys: {open}{close}) {{ value }} }}"),
        format!("{{ __typename(x: {open}1{close}) }}"),
        format!("{{ __typename(x: {}1{}) }}", "{a: ".repeat(depth), "}".repeat(depth)),
        format!("{{ me {} }}", "{ id ".repeat(depth) + &"}".repeat(depth)),
    ]
}

// 1. Deep nesting overflowed the parser's stack and aborted the process.
fn deeply_nested_documents_get_an_error_not_a_crash(profile: Profile) {
    let plaza = Plaza::start(profile);
    // 500 levels took a debug build down, 1,750 a release build; 10,000 still fit in a
    // request body, 100,000 do not and are refused by size.
    let refused =
        [(500, 400, "nesting_too_deep"), (1_750, 400, "nesting_too_deep"), (10_000, 400, "nesting_too_deep"), (100_000, 413, "payload_too_large")];
    for (depth, status, code) in refused {
        for query in nested_documents(depth) {
            let body = json!({ "query": query }).to_string();
            let request =
                format!("POST /graphql HTTP/1.1\r\nHost: plaza\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let reply = raw_http(plaza.port(0), request.as_bytes(), Duration::from_secs(30));
            let answered = reply.body["errors"][0]["extensions"]["code"].as_str();
            assert_eq!((reply.status, answered), (status, Some(code)), "{depth}: {}", reply.head);
        }
    }
    // Nesting in variables is bounded by the JSON decoder.
    let deep_variable: Value = serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap();
    let reply =
        plaza.send("POST", "/graphql", Some(json!({ "query": "query($x: Int) { __typename }", "variables": { "x": deep_variable } })), None, &[]);
    assert!(reply.body["errors"].is_array(), "{}", reply.body);
    plaza.assert_alive();
}

// 2. delta = i64::MIN passed the bound check and wrapped the total.
fn counter_deltas_and_totals_never_overflow(profile: Profile) {
    let plaza = Plaza::start(profile);
    for delta in [i64::MIN, i64::MAX, i64::MIN + 1, 1_000_001, -1_000_001] {
        let reply =
            plaza.send("POST", "/api/v1/counter/increment", Some(json!({ "resource_id": "r", "counter_type": "clicks", "delta": delta })), None, &[]);
        assert_eq!((reply.status, reply.code()), (400, "invalid_counter"), "{delta}: {}", reply.body);
    }
    let ok = plaza.send(
        "POST",
        "/api/v1/counter/increment",
        Some(json!({ "resource_id": "r", "counter_type": "clicks", "delta": -1_000_000 })),
        None,
        &[],
    );
    assert_eq!(ok.body["current_value"], -1_000_000, "{}", ok.body);
    plaza.assert_alive();
}

// 3. Anyone could set a video's views through the generic counter endpoint.
fn derived_counters_are_reserved(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, token, _) = plaza.register("alice");
    let video = publish(&plaza, &token, video_body("Mine"));
    let video_id = video.body["video_id"].as_str().unwrap();
    for counter_type in ["views", "Views", " views "] {
        let body = json!({ "resource_id": video_id, "counter_type": counter_type, "delta": 1_000_000 });
        let reply = plaza.send("POST", "/api/v1/counter/increment", Some(body), Some(&token), &[]);
        assert_eq!((reply.status, reply.code()), (403, "reserved_counter"), "{}", reply.body);
    }
    let view = plaza.send("POST", &format!("/api/v1/videos/{video_id}/views"), None, None, &[]);
    assert_eq!(view.body["current_value"], 1, "only a view counts a view: {}", view.body);
}

// 4. Aliases multiplied the cost of expensive fields; GraphQL had no rate limit.
fn expensive_graphql_fields_cost_their_weight(profile: Profile) {
    let plaza = Plaza::start(profile);
    let aliases: String = (0..990).map(|i| format!("a{i}: feed(kind: HOT, first: 0) {{ totalCount }} ")).collect();
    let reply = plaza.send("POST", "/graphql", Some(json!({ "query": format!("{{ {aliases} }}") })), None, &[]);
    assert!(reply.body["errors"][0]["message"].as_str().unwrap_or("").contains("too complex"), "{}", reply.body);
    assert!(reply.body["data"].is_null(), "nothing ran: {}", reply.body);
    // A few expensive fields in one request still run, and share the HOT candidates.
    let few: String = (0..5).map(|i| format!("a{i}: feed(kind: HOT, first: 5) {{ totalCount }} ")).collect();
    let reply = plaza.send("POST", "/graphql", Some(json!({ "query": format!("{{ {few} }}") })), None, &[]);
    assert!(reply.body["errors"].is_null(), "{}", reply.body);
}

fn graphql_is_rate_limited_per_ip_and_per_user(profile: Profile) {
    let plaza = Plaza::start_with(
        profile,
        &[("PLAZA_GRAPHQL_RATE_LIMIT_USER_PER_SEC", "1"), ("PLAZA_GRAPHQL_RATE_LIMIT_USER_BURST", "3"), ("PLAZA_GRAPHQL_RATE_LIMIT_IP_PER_SEC", "0")],
    );
    let (_, alice, _) = plaza.register("alice");
    let (_, bob, _) = plaza.register("bob");
    let query = |token: Option<&str>| plaza.send("POST", "/graphql", Some(json!({ "query": "{ me { id } }" })), token, &[]);
    let refused = (0..20).map(|_| query(Some(&alice))).find(|r| r.status == 429).expect("alice is limited");
    assert_eq!(graphql_code(&refused), "rate_limited", "{}", refused.body);
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    let bobs = query(Some(&bob));
    assert_eq!(bobs.status, 200, "bob has his own bucket: {}", bobs.body);

    let plaza = Plaza::start_with(profile, &[("PLAZA_GRAPHQL_RATE_LIMIT_IP_PER_SEC", "1"), ("PLAZA_GRAPHQL_RATE_LIMIT_IP_BURST", "2")]);
    let anonymous = || plaza.send("POST", "/graphql", Some(json!({ "query": "{ __typename }" })), None, &[]);
    let refused = (0..20).map(|_| anonymous()).find(|r| r.status == 429).expect("the IP is limited");
    assert_eq!(graphql_code(&refused), "rate_limited");
    // Commands draw on their own buckets.
    let (_, _, _) = plaza.register("carol");
}

// 5. Wrong passwords could be tried as fast as argon2 hashes them.
fn failed_logins_are_throttled_per_account_and_ip(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_LOGIN_FREE_FAILURES", "3"), ("PLAZA_LOGIN_BACKOFF_MS", "1000")]);
    plaza.register("alice");
    let login =
        |login: &str, password: &str| plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": login, "password": password })), None, &[]);
    for _ in 0..3 {
        assert_eq!(login("alice", "wrong password").status, 401);
    }
    // Locked: by username and by email alike, even with the right password.
    for name in ["alice", "ALICE@example.com"] {
        let locked = login(name, "correct horse battery");
        assert_eq!((locked.status, locked.code()), (429, "login_throttled"), "{}", locked.body);
        assert_eq!(locked.header("retry-after"), Some("1"));
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(login("alice", "correct horse battery").status, 200, "the account logs in after the window");
    assert_eq!(login("alice", "wrong password").status, 401, "a success starts the count again");

    let plaza = Plaza::start_with(profile, &[("PLAZA_LOGIN_IP_FREE_FAILURES", "4"), ("PLAZA_LOGIN_BACKOFF_MS", "60000")]);
    let login = |login: &str| plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": login, "password": "wrong password" })), None, &[]);
    for i in 0..4 {
        assert_eq!(login(&format!("user{i}")).status, 401);
    }
    let locked = login("someone_else");
    assert_eq!((locked.status, locked.code()), (429, "login_throttled"), "{}", locked.body);
    assert!(locked.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 1)));
}

// 6. The secret and the event store were readable by every user of the machine.
fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    // Without a configured secret, Plaza keeps one in the data directory.
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_JWT_SECRET", "")]);
    plaza.register("alice");
    let dir = std::path::PathBuf::from(plaza.setting("PLAZA_DATA_DIR").unwrap());
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let check = || {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // The search index is a directory of its own, as private.
            assert_eq!(mode(&path), if path.is_dir() { 0o700 } else { 0o600 }, "{}", path.display());
        }
    };
    check();
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for name in ["jwt-secret", "events.db", "events.db-wal", "read.db", "search"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    // An older Plaza left them open: fixed on start, and said so.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["jwt-secret", "events.db"] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    plaza.restart();
    check();
    assert!(plaza.log().contains("tightened permissions"), "{}", plaza.log_tail(20));
}

/// Sends `request` and reads until the server closes the connection (within 10 s);
/// returns what it answered.
fn until_closed(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let closed = stream.read_to_end(&mut received);
    assert!(closed.is_ok() || closed.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset), "{closed:?}");
    received
}

// 7. Half-sent requests held connections for minutes.
fn slow_and_greedy_clients_are_cut_off(profile: Profile) {
    let plaza = Plaza::start_with(
        profile,
        // Idle connections held for the per-address limit must outlive the moments a
        // loaded machine takes to accept them: a head timeout of a few seconds.
        &[("PLAZA_HTTP_HEADER_TIMEOUT_MS", "3000"), ("PLAZA_HTTP_BODY_TIMEOUT_MS", "500"), ("PLAZA_HTTP_MAX_CONNECTIONS_PER_IP", "8")],
    );
    let port = plaza.port(0);
    // Half a head: the connection is closed.
    until_closed(port, b"POST /api/v1/users/login HTTP/1.1\r\nHost: plaza\r\n");
    // Half a body: 408 with the JSON error shape.
    let half_body = b"POST /api/v1/users/login HTTP/1.1\r\nHost: plaza\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"login\"";
    let reply = raw_http(port, half_body, Duration::from_secs(10));
    assert_eq!((reply.status, reply.body["error"].as_str()), (408, Some("request_timeout")), "{}", reply.head);
    // A refusal sent before the body was read (here: no token) ends the connection, and
    // says so, or the client would send its next request on a closed connection.
    // Read to the end: the server closes it (and so gives back its place in the
    // per-address limit below).
    let reply = parse_raw(&until_closed(port, b"POST /admin/projections/content/pause HTTP/1.1\r\nHost: plaza\r\nContent-Length: 100\r\n\r\n"));
    assert_eq!(reply.status, 401, "{}", reply.head);
    assert!(reply.head.to_ascii_lowercase().contains("\r\nconnection: close"), "{}", reply.head);

    // At most 8 connections per client address; the 9th is told so and closed. A closed
    // connection gives its place back when the server's task for it ends, which on a
    // loaded machine can come after the next connections are accepted: wait for it.
    std::thread::sleep(Duration::from_millis(500));
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let refused = raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: plaza\r\n\r\n", Duration::from_secs(10));
    assert_eq!((refused.status, refused.body["error"].as_str()), (429, Some("too_many_connections")), "{}", refused.head);
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    plaza.assert_alive();
}

// 8. A position far beyond the head waited for the whole timeout.
fn positions_beyond_the_head_are_refused_at_once(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_CONSISTENCY_TIMEOUT_MS", "60000")]);
    let (_, _, position) = plaza.register("alice");
    let reply = plaza.graphql_reply("{ __typename }", json!({}), None, Some(position + 1_000_000));
    assert_eq!((reply.status, graphql_code(&reply)), (400, "invalid_position"), "{}", reply.body);
    let reply = plaza.graphql_reply("{ __typename }", json!({}), None, Some(position));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

// 9. Idempotency keys were ignored by counters and views; a reused key ran a new command.
fn idempotency_keys_hold_for_every_command(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, token, _) = plaza.register("alice");
    let increment = |key: Option<&str>, delta: i64| {
        let headers: Vec<(&str, &str)> = key.map(|k| vec![("idempotency-key", k)]).unwrap_or_default();
        let body = json!({ "resource_id": "page", "counter_type": "clicks", "delta": delta });
        plaza.send("POST", "/api/v1/counter/increment", Some(body), None, &headers)
    };
    assert_eq!(increment(Some("inc-1"), 5).body["current_value"], 5);
    let replay = increment(Some("inc-1"), 5);
    assert_eq!((replay.status, &replay.body["current_value"]), (200, &json!(5)), "{}", replay.body);
    assert_eq!(increment(None, 1).body["current_value"], 6, "the replay added nothing");
    let reused = increment(Some("inc-1"), 7);
    assert_eq!((reused.status, reused.code()), (422, "idempotency_key_reused"), "{}", reused.body);

    let video = publish(&plaza, &token, video_body("Viewed"));
    let views = format!("/api/v1/videos/{}/views", video.body["video_id"].as_str().unwrap());
    let key = [("idempotency-key", "view-1")];
    assert_eq!(plaza.send("POST", &views, None, None, &key).body["current_value"], 1);
    assert_eq!(plaza.send("POST", &views, None, None, &key).body["current_value"], 1);
    assert_eq!(plaza.send("POST", &views, None, None, &[]).body["current_value"], 2);

    let key = [("idempotency-key", "publish-1")];
    let first = plaza.send("POST", "/api/v1/videos", Some(video_body("First")), Some(&token), &key);
    let again = plaza.send("POST", "/api/v1/videos", Some(video_body("First")), Some(&token), &key);
    assert_eq!((first.status, again.status, &first.body["video_id"]), (201, 201, &again.body["video_id"]), "{}", again.body);
    let other = plaza.send("POST", "/api/v1/videos", Some(video_body("Second")), Some(&token), &key);
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"), "{}", other.body);
    // Another path with the same key is a reuse too.
    let elsewhere = plaza.send("POST", "/api/v1/hashtags", Some(json!({ "name": "cats" })), Some(&token), &key);
    assert_eq!((elsewhere.status, elsewhere.code()), (422, "idempotency_key_reused"), "{}", elsewhere.body);
}

// 10. Free text took control characters and bidi overrides; hashtags were not normalised.
fn free_text_follows_one_rule(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, token, _) = plaza.register("alice");
    let profile_path = format!("/api/v1/users/{alice}");
    for bad in [
        json!({ "bio": "a\u{0}b" }),
        json!({ "bio": "\u{1b}[31mred" }),
        json!({ "bio": "x\u{85}y" }),
        json!({ "display_name": "Al\u{202E}ice" }),
        json!({ "display_name": "tab\there" }),
        json!({ "bio": "iso\u{2066}late" }),
    ] {
        let reply = plaza.send("PUT", &profile_path, Some(bad.clone()), Some(&token), &[]);
        assert_eq!((reply.status, reply.code()), (400, "invalid_profile"), "{bad}: {}", reply.body);
    }
    let ok = plaza.send("PUT", &profile_path, Some(json!({ "bio": "two\nlines\tand a tab" })), Some(&token), &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    for bad in [
        video_body("evil\u{202E}gnp.exe"),
        video_body("bell\u{7}"),
        json!({ "title": "ok", "description": "\u{1b}]0;x", "media_url": "https://x.org/v" }),
    ] {
        let reply = publish(&plaza, &token, bad.clone());
        assert_eq!((reply.status, reply.code()), (400, "invalid_video"), "{bad}: {}", reply.body);
    }
    let video = publish(
        &plaza,
        &token,
        json!({ "title": "Cafe\u{301}", "description": "at the #cafe\u{301}", "media_url": "https://x.org/v", "hashtags": ["#Cafe\u{301}"] }),
    );
    assert_eq!(video.status, 201, "{}", video.body);
    let id = video.body["video_id"].as_str().unwrap();
    let data = plaza.graphql("query($id: ID!) { video(id: $id) { title hashtags } }", json!({ "id": id }), None, video.position());
    assert_eq!(data["video"], json!({ "title": "Caf\u{e9}", "hashtags": ["caf\u{e9}"] }));
    let comment = plaza.send("POST", &format!("/api/v1/videos/{id}/comments"), Some(json!({ "body": "hi\u{202D}" })), Some(&token), &[]);
    assert_eq!((comment.status, comment.code()), (400, "invalid_comment"));
    let hashtag = plaza.send("POST", "/api/v1/hashtags", Some(json!({ "name": "cafe\u{301}" })), Some(&token), &[]);
    assert_eq!((hashtag.status, hashtag.body["name"].as_str()), (201, Some("caf\u{e9}")), "{}", hashtag.body);
    let again = plaza.send("POST", "/api/v1/hashtags", Some(json!({ "name": "caf\u{e9}" })), Some(&token), &[]);
    assert_eq!(again.code(), "hashtag_exists", "one hashtag however it is spelled");
}

// 11. Arrays were accepted for objects; any content type was taken for JSON.
fn bodies_are_json_objects(profile: Profile) {
    let plaza = Plaza::start(profile);
    let array = plaza.send_raw("POST", "/api/v1/users/register", br#"["mallory","m@example.org","long enough pw"]"#);
    assert_eq!((array.status, array.code()), (400, "invalid_request"), "{}", array.body);
    let body = json!({ "username": "mallory", "email": "m@example.org", "password": "long enough pw" }).to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        let reply = plaza.send("POST", "/api/v1/users/register", Some(serde_json::from_str(&body).unwrap()), None, &[("content-type", content_type)]);
        assert_eq!((reply.status, reply.code()), (415, "unsupported_media_type"), "{content_type}: {}", reply.body);
    }
    let reply = plaza.send("POST", "/graphql", Some(json!({ "query": "{ __typename }" })), None, &[("content-type", "text/plain")]);
    assert_eq!((reply.status, graphql_code(&reply)), (415, "unsupported_media_type"), "{}", reply.body);
    let ok = plaza.send(
        "POST",
        "/api/v1/users/register",
        Some(serde_json::from_str(&body).unwrap()),
        None,
        &[("content-type", "application/json; charset=utf-8")],
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
}

// 12. Some errors were plain text or empty.
fn every_error_is_json(profile: Profile) {
    let plaza = Plaza::start(profile);
    let batch = plaza.send("POST", "/graphql", Some(json!([{ "query": "{ __typename }" }])), None, &[]);
    assert_eq!((batch.status, graphql_code(&batch)), (400, "batch_not_supported"), "{}", batch.body);
    let broken = plaza.send_raw("POST", "/graphql", b"{\"query\": ");
    assert_eq!((broken.status, graphql_code(&broken)), (400, "invalid_json"), "{}", broken.body);
    let not_a_request = plaza.send("POST", "/graphql", Some(json!({ "query": 42 })), None, &[]);
    assert_eq!((not_a_request.status, graphql_code(&not_a_request)), (400, "invalid_request"), "{}", not_a_request.body);
    let big = plaza.send("POST", "/graphql", Some(json!({ "query": "#".repeat(70_000) })), None, &[]);
    assert_eq!((big.status, graphql_code(&big)), (413, "payload_too_large"), "{}", big.body);

    let port = plaza.port(0);
    let wait = Duration::from_secs(10);
    let reply = raw_http(port, b"POST /api/v1/videos/%FF%FE/views HTTP/1.1\r\nHost: plaza\r\nContent-Length: 0\r\n\r\n", wait);
    assert_eq!((reply.status, reply.body["error"].as_str()), (404, Some("video_not_found")), "{}", reply.head);
    let reply = raw_http(port, b"DELETE /api/v1/comments/%C0%AF HTTP/1.1\r\nHost: plaza\r\n\r\n", wait);
    assert_eq!(reply.status, 401, "{}", reply.head);
    assert!(reply.body["error"].is_string(), "{}", reply.head);
    let long = format!("GET /api/v1/{} HTTP/1.1\r\nHost: plaza\r\n\r\n", "a".repeat(70_000));
    let reply = raw_http(port, long.as_bytes(), wait);
    assert_json_error(&reply, 414, "uri_too_long");
    let long = format!("GET /api/v1/{} HTTP/1.1\r\nHost: plaza\r\n\r\n", "a".repeat(10_000));
    assert_json_error(&raw_http(port, long.as_bytes(), wait), 414, "uri_too_long");
    let huge_header = format!("GET /healthz HTTP/1.1\r\nHost: plaza\r\nX-Big: {}\r\n\r\n", "a".repeat(500_000));
    assert_json_error(&raw_http(port, huge_header.as_bytes(), wait), 431, "headers_too_large");
    assert_json_error(&raw_http(port, b"NOT HTTP AT ALL\r\n\r\n", wait), 400, "bad_request");
    plaza.assert_alive();
}

fn assert_json_error(reply: &RawReply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.body["error"].as_str()), (status, Some(code)), "{}\n{}", reply.head, reply.body);
    assert!(reply.head.to_ascii_lowercase().contains("content-type: application/json"), "{}", reply.head);
}

// 13. Several spellings of one id; weak secrets; introspection always on.
fn ids_have_one_spelling(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (bob, _, _) = plaza.register("bob");
    let (_, token, _) = plaza.register("alice");
    let upper = bob.to_uppercase();
    let simple = bob.replace('-', "");
    for spelling in [upper, simple, format!("%7B{bob}%7D"), format!("urn:uuid:{bob}")] {
        let reply = plaza.send("POST", &format!("/api/v1/users/{spelling}/follow"), None, Some(&token), &[]);
        assert_eq!((reply.status, reply.code()), (404, "user_not_found"), "{spelling}: {}", reply.body);
    }
    assert_eq!(plaza.send("POST", &format!("/api/v1/users/{bob}/follow"), None, Some(&token), &[]).status, 200);
}

fn weak_token_secrets_are_refused() {
    let (ok, output) = run_to_exit(&["serve"], &[("PLAZA_JWT_SECRET", "too short")]);
    assert!(!ok, "{output}");
    assert!(output.contains("at least 32 bytes"), "{output}");
}

fn introspection_and_suggestions_can_be_turned_off(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_GRAPHQL_INTROSPECTION", "false")]);
    let schema = plaza.send("POST", "/graphql", Some(json!({ "query": "{ __schema { types { name } } }" })), None, &[]);
    assert!(schema.body["errors"].is_array() || schema.body["data"]["__schema"].is_null(), "{}", schema.body);
    assert!(!schema.body.to_string().contains("\"User\""), "{}", schema.body);
    let typo = plaza.send("POST", "/graphql", Some(json!({ "query": "{ me { usernam } }" })), None, &[]);
    let message = typo.body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty() && !message.contains("Did you mean"), "{}", typo.body);

    let open = Plaza::start(profile);
    let schema = open.send("POST", "/graphql", Some(json!({ "query": "{ __schema { queryType { name } } }" })), None, &[]);
    assert_eq!(schema.body["data"]["__schema"]["queryType"]["name"], "Query", "on by default");
}

/// Every finding's request (but 6, the data directory's permissions), at the processes
/// that take it; then every process answers.
fn no_request_takes_a_process_down(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_HTTP_HEADER_TIMEOUT_MS", "300"), ("PLAZA_HTTP_BODY_TIMEOUT_MS", "300")]);
    let (alice, token, _) = plaza.register("alice");
    for query in nested_documents(500).into_iter().chain(nested_documents(1_750)) {
        plaza.send("POST", "/graphql", Some(json!({ "query": query })), None, &[]);
    }
    let aliases: String = (0..990).map(|i| format!("a{i}: feed(kind: HOT, first: 0) {{ totalCount }} ")).collect();
    plaza.send("POST", "/graphql", Some(json!({ "query": format!("{{ {aliases} }}") })), None, &[]);
    for delta in [i64::MIN, i64::MAX] {
        plaza.send("POST", "/api/v1/counter/increment", Some(json!({ "resource_id": "r", "counter_type": "c", "delta": delta })), None, &[]);
    }
    plaza.send("POST", "/api/v1/counter/increment", Some(json!({ "resource_id": alice, "counter_type": "views", "delta": 1 })), None, &[]);
    for _ in 0..10 {
        plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": "alice", "password": "wrong password" })), None, &[]);
    }
    plaza.graphql_reply("{ __typename }", json!({}), None, Some(u64::MAX));
    plaza.send("PUT", &format!("/api/v1/users/{alice}"), Some(json!({ "bio": "\u{0}\u{202E}" })), Some(&token), &[]);
    plaza.send_raw("POST", "/api/v1/users/register", br#"["x","y","z"]"#);
    plaza.send("POST", "/graphql", Some(json!([{ "query": "{ __typename }" }])), None, &[]);
    for delta in [1, 2] {
        let body = json!({ "resource_id": "r", "counter_type": "c", "delta": delta });
        plaza.send("POST", "/api/v1/counter/increment", Some(body), None, &[("idempotency-key", "reused")]);
    }
    plaza.send("POST", &format!("/api/v1/users/{}/follow", alice.to_uppercase()), None, Some(&token), &[]);
    plaza.send("POST", "/graphql", Some(json!({ "query": "{ __schema { types { name fields { name } } } }" })), None, &[]);
    for index in 0..plaza.process_count() {
        let port = plaza.port(index);
        let wait = Duration::from_secs(5);
        raw_http(port, b"POST /graphql HTTP/1.1\r\nHost: p\r\nContent-Length: 10\r\n\r\n{", wait);
        raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: p\r\n", wait);
        raw_http(port, format!("GET /{} HTTP/1.1\r\nHost: p\r\n\r\n", "a".repeat(70_000)).as_bytes(), wait);
        raw_http(port, b"\x00\x01\x02 garbage\r\n\r\n", wait);
        raw_http(port, b"GET /api/v1/users/%FF/follow HTTP/1.1\r\nHost: p\r\n\r\n", wait);
    }
    plaza.assert_alive();
}

mod embedded {
    use super::*;

    #[test]
    fn deeply_nested_documents_get_an_error_not_a_crash() {
        super::deeply_nested_documents_get_an_error_not_a_crash(Profile::Embedded)
    }
    #[test]
    fn counter_deltas_and_totals_never_overflow() {
        super::counter_deltas_and_totals_never_overflow(Profile::Embedded)
    }
    #[test]
    fn derived_counters_are_reserved() {
        super::derived_counters_are_reserved(Profile::Embedded)
    }
    #[test]
    fn expensive_graphql_fields_cost_their_weight() {
        super::expensive_graphql_fields_cost_their_weight(Profile::Embedded)
    }
    #[test]
    fn graphql_is_rate_limited_per_ip_and_per_user() {
        super::graphql_is_rate_limited_per_ip_and_per_user(Profile::Embedded)
    }
    #[test]
    fn failed_logins_are_throttled_per_account_and_ip() {
        super::failed_logins_are_throttled_per_account_and_ip(Profile::Embedded)
    }
    #[test]
    fn the_data_directory_is_private() {
        super::the_data_directory_is_private()
    }
    #[test]
    fn slow_and_greedy_clients_are_cut_off() {
        super::slow_and_greedy_clients_are_cut_off(Profile::Embedded)
    }
    #[test]
    fn positions_beyond_the_head_are_refused_at_once() {
        super::positions_beyond_the_head_are_refused_at_once(Profile::Embedded)
    }
    #[test]
    fn idempotency_keys_hold_for_every_command() {
        super::idempotency_keys_hold_for_every_command(Profile::Embedded)
    }
    #[test]
    fn free_text_follows_one_rule() {
        super::free_text_follows_one_rule(Profile::Embedded)
    }
    #[test]
    fn bodies_are_json_objects() {
        super::bodies_are_json_objects(Profile::Embedded)
    }
    #[test]
    fn every_error_is_json() {
        super::every_error_is_json(Profile::Embedded)
    }
    #[test]
    fn ids_have_one_spelling() {
        super::ids_have_one_spelling(Profile::Embedded)
    }
    #[test]
    fn weak_token_secrets_are_refused() {
        super::weak_token_secrets_are_refused()
    }
    #[test]
    fn introspection_and_suggestions_can_be_turned_off() {
        super::introspection_and_suggestions_can_be_turned_off(Profile::Embedded)
    }
    #[test]
    fn no_request_takes_a_process_down() {
        super::no_request_takes_a_process_down(Profile::Embedded)
    }
}

/// The cluster profile's separate write and read APIs (and relay, projectors) take the
/// same requests: shared state (Redis buckets, the store's head) is where they differ.
mod cluster {
    use super::*;

    #[test]
    fn no_request_takes_a_process_down() {
        super::no_request_takes_a_process_down(Profile::Cluster)
    }
    #[test]
    fn graphql_is_rate_limited_per_ip_and_per_user() {
        super::graphql_is_rate_limited_per_ip_and_per_user(Profile::Cluster)
    }
    #[test]
    fn failed_logins_are_throttled_per_account_and_ip() {
        super::failed_logins_are_throttled_per_account_and_ip(Profile::Cluster)
    }
    #[test]
    fn positions_beyond_the_head_are_refused_at_once() {
        super::positions_beyond_the_head_are_refused_at_once(Profile::Cluster)
    }
    #[test]
    fn idempotency_keys_hold_for_every_command() {
        super::idempotency_keys_hold_for_every_command(Profile::Cluster)
    }
    #[test]
    fn slow_and_greedy_clients_are_cut_off() {
        super::slow_and_greedy_clients_are_cut_off(Profile::Cluster)
    }
}

//! End-to-end: accounts, login, profiles and follows, from REST command to event
//! store to projection to GraphQL, on the embedded profile and on PostgreSQL.

mod common;

use std::collections::HashSet;

use common::{Plaza, Profile};
use serde_json::{Value, json};

const USER: &str = "query($id: ID!) { user(id: $id) { id username displayName bio avatarUrl followersCount followingCount createdAt } }";

fn user(plaza: &Plaza, id: &str, position: u64) -> Value {
    plaza.graphql(USER, json!({ "id": id }), None, position)["user"].clone()
}

fn register_body(username: &str, email: &str, password: &str) -> Option<Value> {
    Some(json!({ "username": username, "email": email, "password": password }))
}

fn register_login_and_read_the_user(profile: Profile) {
    let plaza = Plaza::start(profile);
    let reply = plaza.send("POST", "/api/v1/users/register", register_body("Alice_1", "Alice@Example.com", "correct horse"), None, &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["user_id"].as_str().unwrap().to_owned();
    let token = reply.body["token"].as_str().unwrap().to_owned();
    let position = reply.position();

    for login in ["alice_1", "ALICE_1", "alice@example.com"] {
        let reply = plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": login, "password": "correct horse" })), None, &[]);
        assert_eq!(reply.status, 200, "{login}: {}", reply.body);
        assert_eq!(reply.body["user_id"], id.as_str());
        assert!(reply.body["token"].as_str().unwrap().len() > 20);
    }
    for (login, password) in [("alice_1", "wrong horse"), ("nobody", "correct horse"), ("nobody@example.com", "correct horse"), ("x", "y")] {
        let reply = plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": login, "password": password })), None, &[]);
        assert_eq!((reply.status, reply.code()), (401, "invalid_credentials"), "{login}");
    }

    let user = user(&plaza, &id, position);
    assert_eq!(user["username"], "alice_1");
    assert_eq!(user["followersCount"], 0);
    assert_eq!(user["displayName"], Value::Null);
    assert!(user["createdAt"].as_str().unwrap().starts_with("20"));
    let by_name = plaza.graphql("{ user(username: \"Alice_1\") { id } }", json!({}), None, position);
    assert_eq!(by_name["user"]["id"], id.as_str());
    let missing = plaza.graphql("{ user(username: \"nobody\") { id } }", json!({}), None, position);
    assert_eq!(missing["user"], Value::Null);

    let me = plaza.graphql("{ me { id username } }", json!({}), Some(&token), position);
    assert_eq!(me["me"]["id"], id.as_str());
    assert_eq!(plaza.graphql("{ me { id } }", json!({}), None, position)["me"], Value::Null);
    let bad = plaza.graphql_reply("{ me { id } }", json!({}), Some("forged.token.value"), None);
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body["errors"][0]["extensions"]["code"], "invalid_token");
}

fn invalid_registrations_get_clear_errors(profile: Profile) {
    let plaza = Plaza::start(profile);
    let register = |body: Option<Value>| plaza.send("POST", "/api/v1/users/register", body, None, &[]);
    let cases = [
        (register_body("ab", "a@example.com", "long enough"), "invalid_username"),
        (register_body(&"a".repeat(31), "a@example.com", "long enough"), "invalid_username"),
        (register_body("has-dash", "a@example.com", "long enough"), "invalid_username"),
        (register_body("valid_name", "not-an-email", "long enough"), "invalid_email"),
        (register_body("valid_name", "a@example.com", "short"), "invalid_password"),
        (Some(json!({ "username": "valid_name", "email": "a@example.com" })), "invalid_request"),
        (Some(json!({ "username": "valid_name", "email": "a@example.com", "password": "long enough", "admin": true })), "invalid_request"),
    ];
    for (body, code) in cases {
        let reply = register(body.clone());
        assert_eq!((reply.status, reply.code()), (400, code), "{body:?}: {}", reply.body);
        assert!(!reply.body["message"].as_str().unwrap().is_empty());
    }
    let reply = plaza.send_raw("POST", "/api/v1/users/register", b"{\"username\": ");
    assert_eq!((reply.status, reply.code()), (400, "invalid_json"));
    let huge = format!("{{\"username\":\"{}\"}}", "x".repeat(70 * 1024));
    let reply = plaza.send_raw("POST", "/api/v1/users/register", huge.as_bytes());
    assert_eq!((reply.status, reply.code()), (413, "payload_too_large"));

    // Uniqueness ignores case, for usernames and emails; a refused registration keeps
    // nothing reserved.
    plaza.register("carol");
    let taken = register(register_body("CAROL", "other@example.com", "long enough"));
    assert_eq!((taken.status, taken.code()), (409, "username_taken"));
    let email_taken = register(register_body("carol2", "Carol@Example.COM", "long enough"));
    assert_eq!((email_taken.status, email_taken.code()), (409, "email_taken"));
    let after_release = register(register_body("carol2", "carol2@example.com", "long enough"));
    assert_eq!(after_release.status, 201, "the username freed by the failed attempt is available: {}", after_release.body);
}

/// Sends the registrations concurrently, one thread each; returns their statuses.
fn register_concurrently(plaza: &Plaza, bodies: Vec<Option<Value>>) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            bodies.into_iter().map(|body| scope.spawn(move || plaza.send("POST", "/api/v1/users/register", body, None, &[]).status)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn concurrent_registrations_of_one_name_have_one_winner(profile: Profile) {
    let plaza = Plaza::start(profile);
    let same_name = (0..8).map(|i| register_body("popular", &format!("p{i}@example.com"), "long enough")).collect();
    let statuses = register_concurrently(&plaza, same_name);
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    let same_email = (0..8).map(|i| register_body(&format!("mail{i}"), "shared@example.com", "long enough")).collect();
    let statuses = register_concurrently(&plaza, same_email);
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
}

fn profiles_change_only_by_their_owner(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let path = format!("/api/v1/users/{alice}");
    let body = Some(json!({ "display_name": "Alice A.", "bio": "hello", "avatar_url": "https://cdn.example.com/a.png" }));

    let reply = plaza.send("PUT", &path, body.clone(), None, &[]);
    assert_eq!((reply.status, reply.code()), (401, "unauthenticated"));
    let reply = plaza.send("PUT", &path, body.clone(), Some("nonsense"), &[]);
    assert_eq!((reply.status, reply.code()), (401, "invalid_token"));
    let reply = plaza.send("PUT", &path, body.clone(), Some(&bob_token), &[]);
    assert_eq!((reply.status, reply.code()), (403, "forbidden"));
    let reply = plaza.send("PUT", &path, Some(json!({ "avatar_url": "ftp://x" })), Some(&alice_token), &[]);
    assert_eq!((reply.status, reply.code()), (400, "invalid_profile"));
    let reply = plaza.send("PUT", &path, Some(json!({ "bio": "x".repeat(501) })), Some(&alice_token), &[]);
    assert_eq!((reply.status, reply.code()), (400, "invalid_profile"));

    let reply = plaza.send("PUT", &path, body, Some(&alice_token), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let shown = user(&plaza, &alice, reply.position());
    assert_eq!((shown["displayName"].as_str(), shown["bio"].as_str()), (Some("Alice A."), Some("hello")));
    assert_eq!(shown["avatarUrl"], "https://cdn.example.com/a.png");

    // A missing field stays; null clears.
    let reply = plaza.send("PUT", &path, Some(json!({ "bio": null })), Some(&alice_token), &[]);
    assert_eq!(reply.status, 200);
    let shown = user(&plaza, &alice, reply.position());
    assert_eq!((shown["displayName"].as_str(), shown["bio"].as_str()), (Some("Alice A."), None));
    // Bob's profile is untouched.
    assert_eq!(user(&plaza, &bob, reply.position())["displayName"], Value::Null);
}

fn following_and_unfollowing(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, token, _) = plaza.register("alice");
    let (bob, _, _) = plaza.register("bob");
    let follow = |target: &str, method: &str, token: Option<&str>| plaza.send(method, &format!("/api/v1/users/{target}/follow"), None, token, &[]);

    assert_eq!(follow(&bob, "POST", None).status, 401);
    let first = follow(&bob, "POST", Some(&token));
    assert_eq!(first.status, 200, "{}", first.body);
    let again = follow(&bob, "POST", Some(&token));
    assert_eq!((again.status, again.code()), (409, "already_following"));
    let me = follow(&alice, "POST", Some(&token));
    assert_eq!((me.status, me.code()), (400, "cannot_follow_self"));
    let unknown = follow(&uuid::Uuid::new_v4().to_string(), "POST", Some(&token));
    assert_eq!((unknown.status, unknown.code()), (404, "user_not_found"));
    assert_eq!(follow("not-a-uuid", "POST", Some(&token)).status, 404);

    let position = first.position();
    assert_eq!(user(&plaza, &bob, position)["followersCount"], 1);
    assert_eq!(user(&plaza, &alice, position)["followingCount"], 1);

    let unfollowed = follow(&bob, "DELETE", Some(&token));
    assert_eq!(unfollowed.status, 200);
    let not_following = follow(&bob, "DELETE", Some(&token));
    assert_eq!((not_following.status, not_following.code()), (409, "not_following"));
    let position = unfollowed.position();
    assert_eq!(user(&plaza, &bob, position)["followersCount"], 0);
    assert_eq!(user(&plaza, &alice, position)["followingCount"], 0);
    let followers =
        plaza.graphql("query($id: ID!) { followers(userId: $id) { totalCount edges { node { id } } } }", json!({ "id": bob }), None, position);
    assert_eq!(followers["followers"]["totalCount"], 0);

    // Following again after unfollowing works.
    assert_eq!(follow(&bob, "POST", Some(&token)).status, 200);
}

const FOLLOWERS: &str = "query($id: ID!, $first: Int, $after: String) {
    followers(userId: $id, first: $first, after: $after) {
        totalCount edges { cursor node { username } } pageInfo { hasNextPage endCursor }
    }
}";

fn followers_page_newest_first(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (star, _, _) = plaza.register("star");
    let mut position = 0;
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("fan{i}");
        let (_, token, _) = plaza.register(&name);
        position = plaza.send("POST", &format!("/api/v1/users/{star}/follow"), None, Some(&token), &[]).position();
        names.push(name);
    }
    names.reverse(); // newest first

    let (mut seen, mut after, mut pages) = (Vec::new(), Value::Null, 0);
    loop {
        let data = plaza.graphql(FOLLOWERS, json!({ "id": star, "first": 2, "after": after }), None, position);
        let connection = &data["followers"];
        assert_eq!(connection["totalCount"], 5);
        seen.extend(connection["edges"].as_array().unwrap().iter().map(|e| e["node"]["username"].as_str().unwrap().to_owned()));
        pages += 1;
        if !connection["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, names);
    assert_eq!(pages, 3);

    let following =
        plaza.graphql("query($id: ID!) { following(userId: $id) { totalCount edges { node { username } } } }", json!({ "id": star }), None, position);
    assert_eq!(following["following"]["totalCount"], 0);
    let bad = plaza.graphql_reply(FOLLOWERS, json!({ "id": star, "after": "garbage!" }), None, Some(position));
    assert_eq!(bad.body["errors"][0]["extensions"]["code"], "invalid_cursor");
    let too_many = plaza.graphql_reply(FOLLOWERS, json!({ "id": star, "first": 1000 }), None, Some(position));
    assert_eq!(too_many.body["errors"][0]["extensions"]["code"], "invalid_page_size");
}

fn idempotency_keys_make_retries_no_ops(profile: Profile) {
    let plaza = Plaza::start(profile);
    let key = [("idempotency-key", "register-dave-1")];
    let body = register_body("dave", "dave@example.com", "long enough");
    let first = plaza.send("POST", "/api/v1/users/register", body.clone(), None, &key);
    let retry = plaza.send("POST", "/api/v1/users/register", body.clone(), None, &key);
    assert_eq!((first.status, retry.status), (201, 201), "{} {}", first.body, retry.body);
    assert_eq!(first.body["user_id"], retry.body["user_id"]);
    assert_eq!(first.position(), retry.position());
    let without_key = plaza.send("POST", "/api/v1/users/register", body, None, &[]);
    assert_eq!((without_key.status, without_key.code()), (409, "username_taken"));

    let token = first.body["token"].as_str().unwrap();
    let (erin, _, _) = plaza.register("erin");
    let path = format!("/api/v1/users/{erin}/follow");
    let key = [("idempotency-key", "follow-erin")];
    let follow = plaza.send("POST", &path, None, Some(token), &key);
    let retried = plaza.send("POST", &path, None, Some(token), &key);
    assert_eq!((follow.status, retried.status), (200, 200), "{}", retried.body);
    assert_eq!(follow.position(), retried.position());
    assert_eq!(user(&plaza, &erin, retried.position())["followersCount"], 1);
    let other_key = plaza.send("POST", &path, None, Some(token), &[("idempotency-key", "another")]);
    assert_eq!((other_key.status, other_key.code()), (409, "already_following"));
}

fn acknowledged_commands_survive_kill_9(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, token, _) = plaza.register("alice");
    let mut followed = HashSet::new();
    let mut position = 0;
    for i in 0..10 {
        let (id, _, _) = plaza.register(&format!("user{i}"));
        position = plaza.send("POST", &format!("/api/v1/users/{id}/follow"), None, Some(&token), &[]).position();
        followed.insert(id);
    }
    let update = plaza.send("PUT", &format!("/api/v1/users/{alice}"), Some(json!({ "bio": "still here" })), Some(&token), &[]);
    assert_eq!(update.status, 200);
    position = position.max(update.position());

    plaza.restart(); // SIGKILL, then start again on the same data

    let login = plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": "alice", "password": "correct horse battery" })), None, &[]);
    assert_eq!(login.status, 200, "{}", login.body);
    let shown = user(&plaza, &alice, position);
    assert_eq!((shown["bio"].as_str(), shown["followingCount"].as_i64()), (Some("still here"), Some(10)));
    let following =
        plaza.graphql("query($id: ID!) { following(userId: $id, first: 100) { edges { node { id } } } }", json!({ "id": alice }), None, position);
    let ids: HashSet<String> =
        following["following"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, followed);
    // Commands still work and positions keep growing.
    let (_, _, next) = plaza.register("after_restart");
    assert!(next > position);
}

fn consistency_waits_are_bounded(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_CONSISTENCY_TIMEOUT_MS", "300")]);
    let (_, _, position) = plaza.register("alice");
    // On a loaded machine the cluster's pipeline may take longer than the 300 ms wait:
    // that answer is the 503 below, and asking again is what a client does.
    let mut ok = plaza.graphql_reply("{ user(username: \"alice\") { id } }", json!({}), None, Some(position));
    for _ in 0..50 {
        if ok.status != 503 {
            break;
        }
        assert_eq!(ok.body["errors"][0]["extensions"]["code"], "consistency_timeout", "{}", ok.body);
        ok = plaza.graphql_reply("{ user(username: \"alice\") { id } }", json!({}), None, Some(position));
    }
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_ne!(ok.body["data"]["user"], Value::Null, "a read with the command's token sees the command");
    // A position the store has not reached is no position a command returned.
    let future = plaza.graphql_reply("{ user(username: \"alice\") { id } }", json!({}), None, Some(1_000_000_000));
    assert_eq!((future.status, future.body["errors"][0]["extensions"]["code"].as_str()), (400, Some("invalid_position")), "{}", future.body);
    // Projectors that stopped: the wait ends after the timeout.
    if let Profile::Roles = profile {
        plaza.stop_process(2);
        let (_, _, position) = plaza.register("bob");
        let late = plaza.graphql_reply("{ user(username: \"bob\") { id } }", json!({}), None, Some(position));
        assert_eq!(late.status, 503, "{}", late.body);
        assert_eq!(late.body["errors"][0]["extensions"]["code"], "consistency_timeout");
        assert_eq!(late.header("retry-after"), Some("1"));
    }
    let bad = plaza.send("POST", "/graphql", Some(json!({ "query": "{ me { id } }" })), None, &[("plaza-min-position", "soon")]);
    assert_eq!((bad.status, bad.body["errors"][0]["extensions"]["code"].as_str()), (400, Some("invalid_min_position")));
}

fn service_endpoints_answer(profile: Profile) {
    let plaza = Plaza::start(profile);
    assert_eq!(plaza.get("/healthz").status, 200);
    let ready = plaza.get("/readyz");
    assert_eq!((ready.status, ready.body["event_store"].as_str()), (200, Some("ok")));
    let graphiql = plaza.get("/graphql");
    assert_eq!(graphiql.status, 200);
    assert!(graphiql.body.as_str().unwrap().contains("graphiql"));
    let missing = plaza.get("/api/v1/nothing");
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
    let wrong_method = plaza.get("/api/v1/users/login");
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "method_not_allowed"));
}

/// A token past its expiry is refused as expired, not as invalid, by the commands (whose
/// rate limits verify it first) and by GraphQL.
#[test]
fn expired_tokens_are_refused_as_expired() {
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_TOKEN_TTL_SECS", "1")]);
    let (alice, token, _) = plaza.register("alice");
    let path = format!("/api/v1/users/{alice}");
    let body = Some(json!({ "bio": "hello" }));
    let reply = plaza.send("PUT", &path, body.clone(), Some(&token), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Expiry is in whole seconds, with no leeway.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let reply = plaza.send("PUT", &path, body, Some(&token), &[]);
    assert_eq!((reply.status, reply.code()), (401, "token_expired"));
    let reply = plaza.send("POST", &format!("{path}/follow"), None, Some(&token), &[]);
    assert_eq!((reply.status, reply.code()), (401, "token_expired"));
    let reply = plaza.send("POST", "/graphql", Some(json!({ "query": "{ me { id } }" })), Some(&token), &[]);
    assert_eq!((reply.status, reply.body["errors"][0]["extensions"]["code"].as_str()), (401, Some("token_expired")));
}

on_every_profile!(
    register_login_and_read_the_user,
    invalid_registrations_get_clear_errors,
    concurrent_registrations_of_one_name_have_one_winner,
    profiles_change_only_by_their_owner,
    following_and_unfollowing,
    followers_page_newest_first,
    idempotency_keys_make_retries_no_ops,
    acknowledged_commands_survive_kill_9,
    consistency_waits_are_bounded,
    service_endpoints_answer,
);

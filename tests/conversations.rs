//! End-to-end: conversations, membership and roles, messages, read markers and presence
//! on every deployment.

mod common;

use common::{Plaza, Profile};
use serde_json::{Value, json};

fn start(plaza: &Plaza, token: &str, body: Value) -> common::Reply {
    plaza.send("POST", "/api/v1/conversations", Some(body), Some(token), &[])
}

fn group(plaza: &Plaza, token: &str, members: &[&str]) -> (String, u64) {
    let reply = start(plaza, token, json!({ "kind": "group", "title": "Hikers", "member_ids": members }));
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["conversation_id"].as_str().unwrap().to_owned(), reply.position())
}

fn send(plaza: &Plaza, token: &str, conversation: &str, body: &str) -> common::Reply {
    plaza.send("POST", &format!("/api/v1/conversations/{conversation}/messages"), Some(json!({ "body": body })), Some(token), &[])
}

fn graphql_code(reply: &common::Reply) -> String {
    reply.body["errors"][0]["extensions"]["code"].as_str().unwrap_or_default().to_owned()
}

const CONVERSATION: &str = "query($id: ID!) { conversation(id: $id) { id kind title myRole memberCount unreadCount lastSeq
    lastMessage { seq body } members(first: 10) { totalCount edges { node { role user { username } } } } } }";

fn direct_and_group_membership(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (carol, carol_token, _) = plaza.register("carol");
    let (dave, dave_token, _) = plaza.register("dave");

    // A direct conversation is one per pair, whoever asks.
    let direct = start(&plaza, &alice_token, json!({ "kind": "direct", "member_id": bob }));
    assert_eq!(direct.status, 201, "{}", direct.body);
    let id = direct.body["conversation_id"].as_str().unwrap().to_owned();
    let again = start(&plaza, &bob_token, json!({ "kind": "direct", "member_id": alice }));
    assert_eq!((again.status, again.body["conversation_id"].as_str()), (200, Some(id.as_str())), "{}", again.body);
    let data = plaza.graphql(CONVERSATION, json!({ "id": id }), Some(&bob_token), again.position().max(direct.position()));
    assert_eq!((data["conversation"]["kind"].as_str(), data["conversation"]["memberCount"].as_i64()), (Some("DIRECT"), Some(2)));
    for (body, code) in [
        (json!({ "kind": "direct", "member_id": alice }), "invalid_conversation"),
        (json!({ "kind": "direct" }), "invalid_conversation"),
        (json!({ "kind": "direct", "member_id": uuid::Uuid::now_v7() }), "user_not_found"),
        (json!({ "kind": "group", "member_ids": [] }), "invalid_conversation"),
        (json!({ "kind": "group", "title": "", "member_ids": [] }), "invalid_conversation"),
        (json!({ "kind": "group", "title": "x", "member_ids": [uuid::Uuid::now_v7()] }), "user_not_found"),
        (json!({ "kind": "channel" }), "invalid_request"),
    ] {
        let reply = start(&plaza, &alice_token, body.clone());
        assert_eq!(reply.code(), code, "{body}: {}", reply.body);
    }
    let leave_direct = plaza.send("DELETE", &format!("/api/v1/conversations/{id}/members/{alice}"), None, Some(&alice_token), &[]);
    assert_eq!((leave_direct.status, leave_direct.code()), (400, "invalid_conversation"));

    // A group: alice owns it, bob is a member; carol is not in it.
    let (group, _) = group(&plaza, &alice_token, &[&bob]);
    let path = |rest: &str| format!("/api/v1/conversations/{group}{rest}");
    let members = |user_ids: &[&str]| json!({ "user_ids": user_ids });
    let outsider_attempts = [
        ("PUT", path(""), Some(json!({ "title": "Mine now" }))),
        ("POST", path("/members"), Some(members(&[&carol]))),
        ("DELETE", path(&format!("/members/{bob}")), None),
        ("PUT", path(&format!("/members/{bob}")), Some(json!({ "role": "admin" }))),
        ("POST", path("/messages"), Some(json!({ "body": "hi" }))),
        ("POST", path("/read"), Some(json!({ "seq": 0 }))),
        ("POST", path("/typing"), None),
    ];
    for (method, route, body) in &outsider_attempts {
        let reply = plaza.send(method, route, body.clone(), Some(&carol_token), &[]);
        assert_eq!((reply.status, reply.code()), (404, "conversation_not_found"), "{method} {route}: {}", reply.body);
    }
    let hidden = plaza.graphql_reply(CONVERSATION, json!({ "id": group }), Some(&carol_token), None);
    assert_eq!(graphql_code(&hidden), "conversation_not_found", "{}", hidden.body);
    let hidden =
        plaza.graphql_reply("query($id: ID!) { messages(conversationId: $id) { totalCount } }", json!({ "id": group }), Some(&carol_token), None);
    assert_eq!(graphql_code(&hidden), "conversation_not_found", "{}", hidden.body);

    // Members manage nothing.
    for (method, route, body) in [
        ("PUT", path(""), Some(json!({ "title": "Bob's" }))),
        ("POST", path("/members"), Some(members(&[&carol]))),
        ("PUT", path(&format!("/members/{alice}")), Some(json!({ "role": "member" }))),
        ("DELETE", path(&format!("/members/{alice}")), None),
    ] {
        let reply = plaza.send(method, &route, body, Some(&bob_token), &[]);
        assert_eq!((reply.status, reply.code()), (403, "forbidden"), "{method} {route}: {}", reply.body);
    }
    // The owner adds carol and dave and makes bob an admin; admins add and remove members,
    // not the owner or other admins, and set no roles.
    assert_eq!(plaza.send("POST", &path("/members"), Some(members(&[&carol])), Some(&alice_token), &[]).status, 200);
    let twice = plaza.send("POST", &path("/members"), Some(members(&[&carol])), Some(&alice_token), &[]);
    assert_eq!((twice.status, twice.code()), (409, "already_member"));
    assert_eq!(plaza.send("PUT", &path(&format!("/members/{bob}")), Some(json!({ "role": "admin" })), Some(&alice_token), &[]).status, 200);
    assert_eq!(plaza.send("POST", &path("/members"), Some(members(&[&dave])), Some(&bob_token), &[]).status, 200, "admins add");
    let bad_role = plaza.send("PUT", &path(&format!("/members/{carol}")), Some(json!({ "role": "king" })), Some(&alice_token), &[]);
    assert_eq!((bad_role.status, bad_role.code()), (400, "invalid_conversation"));
    let by_admin = plaza.send("PUT", &path(&format!("/members/{carol}")), Some(json!({ "role": "admin" })), Some(&bob_token), &[]);
    assert_eq!(by_admin.code(), "forbidden");
    assert_eq!(plaza.send("DELETE", &path(&format!("/members/{alice}")), None, Some(&bob_token), &[]).code(), "forbidden");
    let renamed = plaza.send("PUT", &path(""), Some(json!({ "title": "Trail runners" })), Some(&bob_token), &[]);
    assert_eq!(renamed.status, 200, "admins rename: {}", renamed.body);
    assert_eq!(plaza.send("DELETE", &path(&format!("/members/{dave}")), None, Some(&bob_token), &[]).status, 200, "admins remove members");
    let gone = plaza.send("DELETE", &path(&format!("/members/{dave}")), None, Some(&alice_token), &[]);
    assert_eq!((gone.status, gone.code()), (409, "not_member"));
    // Removed from the removal on.
    let removed = send(&plaza, &dave_token, &group, "still here?");
    assert_eq!((removed.status, removed.code()), (404, "conversation_not_found"));

    // The owner leaves only after handing ownership over.
    let leave = plaza.send("DELETE", &path(&format!("/members/{alice}")), None, Some(&alice_token), &[]);
    assert_eq!((leave.status, leave.code()), (403, "forbidden"));
    assert_eq!(plaza.send("PUT", &path(&format!("/members/{carol}")), Some(json!({ "role": "owner" })), Some(&alice_token), &[]).status, 200);
    let left = plaza.send("DELETE", &path(&format!("/members/{alice}")), None, Some(&alice_token), &[]);
    assert_eq!(left.status, 200, "{}", left.body);
    let data = plaza.graphql(CONVERSATION, json!({ "id": group }), Some(&carol_token), left.position());
    let conversation = &data["conversation"];
    assert_eq!((conversation["title"].as_str(), conversation["myRole"].as_str()), (Some("Trail runners"), Some("OWNER")));
    let roles: Vec<(String, String)> = conversation["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["node"]["user"]["username"].as_str().unwrap().to_owned(), e["node"]["role"].as_str().unwrap().to_owned()))
        .collect();
    let mut roles = roles;
    roles.sort();
    assert_eq!(roles, vec![("bob".into(), "ADMIN".into()), ("carol".into(), "OWNER".into())]);
    assert_eq!(conversation["memberCount"], 2);
    let after_leaving = plaza.graphql_reply(CONVERSATION, json!({ "id": group }), Some(&alice_token), Some(left.position()));
    assert_eq!(graphql_code(&after_leaving), "conversation_not_found");

    let list = plaza.graphql("{ conversations(first: 10) { totalCount edges { node { id kind } } } }", json!({}), Some(&bob_token), left.position());
    assert_eq!(list["conversations"]["totalCount"], 2, "{list}");
    let anonymous = plaza.graphql_reply("{ conversations { totalCount } }", json!({}), None, None);
    assert_eq!(graphql_code(&anonymous), "unauthenticated");
}

const MESSAGES: &str = "query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    messages(conversationId: $id, first: $first, after: $after, last: $last, before: $before) {
        totalCount pageInfo { hasNextPage hasPreviousPage } edges { cursor node { seq body deleted editedAt sender { username } replyTo } } } }";

fn seqs(data: &Value) -> Vec<u64> {
    data["messages"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["seq"].as_u64().unwrap()).collect()
}

fn messages_are_numbered_without_gaps(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_MESSAGE_EDIT_WINDOW_SECS", "2")]);
    let (_, owner, _) = plaza.register("owner");
    let senders: Vec<(String, String)> = (0..19).map(|i| plaza.register(&format!("sender{i}"))).map(|(id, token, _)| (id, token)).collect();
    let ids: Vec<&str> = senders.iter().map(|(id, _)| id.as_str()).collect();
    let (group, _) = group(&plaza, &owner, &ids);
    let tokens: Vec<&str> = senders.iter().map(|(_, token)| token.as_str()).chain([owner.as_str()]).collect();

    // 20 senders at once, 5 messages each.
    let answers: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let threads: Vec<_> = tokens
            .iter()
            .map(|token| {
                let (plaza, group) = (&plaza, &group);
                scope.spawn(move || {
                    (0..5)
                        .map(|n| {
                            let reply = send(plaza, token, group, &format!("message {n}"));
                            assert_eq!(reply.status, 201, "{}", reply.body);
                            (reply.body["seq"].as_u64().unwrap(), reply.position())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let mut numbers: Vec<u64> = answers.iter().map(|(seq, _)| *seq).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=100).collect::<Vec<u64>>());
    let position = answers.iter().map(|(_, position)| *position).max().unwrap();

    // Backwards from the newest, then forwards from a seq; totalCount is the last seq.
    let newest = plaza.graphql(MESSAGES, json!({ "id": group, "last": 30 }), Some(&owner), position);
    assert_eq!(seqs(&newest), (71..=100).collect::<Vec<u64>>());
    assert_eq!((newest["messages"]["totalCount"].as_u64(), newest["messages"]["pageInfo"]["hasPreviousPage"].as_bool()), (Some(100), Some(true)));
    let older = plaza.graphql(MESSAGES, json!({ "id": group, "last": 30, "before": "71" }), Some(&owner), position);
    assert_eq!(seqs(&older), (41..=70).collect::<Vec<u64>>());
    let mut caught_up = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = plaza.graphql(MESSAGES, json!({ "id": group, "first": 40, "after": after }), Some(&owner), position);
        caught_up.extend(seqs(&page));
        if !page["messages"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["messages"]["edges"].as_array().unwrap().last().unwrap()["cursor"].clone();
    }
    assert_eq!(caught_up, (1..=100).collect::<Vec<u64>>(), "catching up reads every message once");
    let bad = plaza.graphql_reply(MESSAGES, json!({ "id": group, "first": 5, "after": "x" }), Some(&owner), Some(position));
    assert_eq!(graphql_code(&bad), "invalid_cursor");

    // Replies, attachments, bodies.
    let (_, first_sender) = &senders[0];
    let first = send(&plaza, first_sender, &group, "original");
    let message_id = first.body["message_id"].as_str().unwrap().to_owned();
    let reply_body = json!({ "body": "answer", "reply_to": message_id, "attachment_url": "https://cdn.example.com/a.png" });
    let reply = plaza.send("POST", &format!("/api/v1/conversations/{group}/messages"), Some(reply_body), Some(&owner), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    // Edits: the sender, within the window; deletion: the sender or a moderator.
    let edit =
        |token: &str, body: &str| plaza.send("PUT", &format!("/api/v1/messages/{message_id}"), Some(json!({ "body": body })), Some(token), &[]);
    let not_mine = edit(&owner, "not mine");
    assert_eq!((not_mine.status, not_mine.code()), (403, "forbidden"));
    let edited = edit(first_sender, "corrected");
    assert_eq!(edited.status, 200, "{}", edited.body);
    for (body, code) in [
        (json!({ "body": "" }), "invalid_message"),
        (json!({ "body": "x".repeat(4001) }), "invalid_message"),
        (json!({ "body": "bell\u{7}" }), "invalid_message"),
        (json!({ "body": "x", "attachment_url": "javascript:alert(1)" }), "invalid_message"),
        (json!({ "body": "x", "reply_to": uuid::Uuid::now_v7() }), "invalid_message"),
    ] {
        let refused = plaza.send("POST", &format!("/api/v1/conversations/{group}/messages"), Some(body.clone()), Some(&owner), &[]);
        assert_eq!((refused.status, refused.code()), (400, code), "{body}: {}", refused.body);
    }

    std::thread::sleep(std::time::Duration::from_millis(2100));
    let late = edit(first_sender, "too late");
    assert_eq!((late.status, late.code()), (409, "edit_window_passed"));
    let (_, other_sender) = &senders[1];
    let not_theirs = plaza.send("DELETE", &format!("/api/v1/messages/{message_id}"), None, Some(other_sender), &[]);
    assert_eq!(not_theirs.code(), "forbidden");
    let deleted = plaza.send("DELETE", &format!("/api/v1/messages/{message_id}"), None, Some(&owner), &[]);
    assert_eq!(deleted.status, 200, "the owner moderates: {}", deleted.body);
    let again = plaza.send("DELETE", &format!("/api/v1/messages/{message_id}"), None, Some(&owner), &[]);
    assert_eq!((again.status, again.code()), (404, "message_not_found"));
    let unknown = plaza.send("PUT", &format!("/api/v1/messages/{}", uuid::Uuid::now_v7()), Some(json!({ "body": "x" })), Some(&owner), &[]);
    assert_eq!((unknown.status, unknown.code()), (404, "message_not_found"));

    let tail = plaza.graphql(MESSAGES, json!({ "id": group, "first": 5, "after": "100" }), Some(&owner), deleted.position().max(edited.position()));
    let edges = tail["messages"]["edges"].as_array().unwrap();
    let (gone, answer) = (&edges[0]["node"], &edges[1]["node"]);
    assert_eq!((gone["seq"].as_u64(), gone["deleted"].as_bool(), &gone["body"]), (Some(101), Some(true), &Value::Null), "{tail}");
    assert!(gone["editedAt"].is_string(), "{tail}");
    assert_eq!((answer["body"].as_str(), answer["replyTo"].as_str()), (Some("answer"), Some(message_id.as_str())));
    assert_eq!(answer["sender"]["username"], "owner");
}

fn read_markers_and_unread_counts(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (carol, carol_token, _) = plaza.register("carol");
    let direct = start(&plaza, &alice_token, json!({ "kind": "direct", "member_id": bob })).body["conversation_id"].as_str().unwrap().to_owned();
    let (group, _) = group(&plaza, &alice_token, &[&bob]);
    for n in 0..3 {
        send(&plaza, &alice_token, &direct, &format!("direct {n}"));
    }
    let mut position = 0;
    for n in 0..4 {
        position = send(&plaza, &alice_token, &group, &format!("group {n}")).position();
    }
    const UNREAD: &str = "{ me { unreadMessagesCount } conversations { edges { node { id unreadCount lastSeq lastMessage { body } } } } }";
    let unread = |token: &str, position: u64| plaza.graphql(UNREAD, json!({}), Some(token), position);
    let data = unread(&bob_token, position);
    assert_eq!(data["me"]["unreadMessagesCount"], 7, "{data}");
    let list = data["conversations"]["edges"].as_array().unwrap();
    assert_eq!(list[0]["node"]["id"].as_str(), Some(group.as_str()), "most recent activity first");
    assert_eq!((list[0]["node"]["unreadCount"].as_i64(), list[0]["node"]["lastMessage"]["body"].as_str()), (Some(4), Some("group 3")));
    assert_eq!(unread(&alice_token, position)["me"]["unreadMessagesCount"], 0, "your own messages are read");

    let read = |token: &str, conversation: &str, seq: u64| {
        plaza.send("POST", &format!("/api/v1/conversations/{conversation}/read"), Some(json!({ "seq": seq })), Some(token), &[])
    };
    let marked = read(&bob_token, &group, 3);
    assert_eq!(marked.status, 200, "{}", marked.body);
    assert_eq!(unread(&bob_token, marked.position())["me"]["unreadMessagesCount"], 4);
    let lower = read(&bob_token, &group, 1);
    assert_eq!(lower.status, 200);
    assert_eq!(unread(&bob_token, lower.position())["me"]["unreadMessagesCount"], 4, "a lower seq changes nothing");
    let beyond = read(&bob_token, &group, 5);
    assert_eq!((beyond.status, beyond.code()), (400, "invalid_conversation"));

    // A member who joins later has read what came before.
    let added = plaza.send("POST", &format!("/api/v1/conversations/{group}/members"), Some(json!({ "user_ids": [carol] })), Some(&alice_token), &[]);
    assert_eq!(added.status, 200, "{}", added.body);
    let next = send(&plaza, &bob_token, &group, "welcome carol");
    let data = unread(&carol_token, next.position().max(added.position()));
    assert_eq!(data["me"]["unreadMessagesCount"], 1, "{data}");
    // Only you see your unread count.
    let others =
        plaza.graphql("query($id: ID!) { user(id: $id) { unreadMessagesCount } }", json!({ "id": alice }), Some(&bob_token), next.position());
    assert_eq!(others["user"]["unreadMessagesCount"], Value::Null);
}

fn presence_expires_and_typing_is_for_members(profile: Profile) {
    let plaza = Plaza::start_live(profile, &[("PLAZA_PRESENCE_TTL_SECS", "1")]);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    const PRESENCE: &str = "query($ids: [ID!]!) { presence(userIds: $ids) { userId online lastSeenAt } }";
    let presence = || plaza.graphql(PRESENCE, json!({ "ids": [alice, bob, "not-an-id"] }), Some(&bob_token), 0)["presence"].clone();
    let before = presence();
    assert_eq!((before[0]["online"].as_bool(), &before[0]["lastSeenAt"]), (Some(false), &Value::Null));
    assert_eq!(plaza.send("POST", "/api/v1/presence/heartbeat", None, Some(&alice_token), &[]).status, 204);
    let now = presence();
    assert_eq!((now[0]["online"].as_bool(), now[1]["online"].as_bool(), now[2]["online"].as_bool()), (Some(true), Some(false), Some(false)), "{now}");
    assert!(now[0]["lastSeenAt"].is_string());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let later = presence();
    assert_eq!((later[0]["online"].as_bool(), &later[0]["lastSeenAt"]), (Some(false), &now[0]["lastSeenAt"]), "offline after the TTL");
    let anonymous = plaza.send("POST", "/api/v1/presence/heartbeat", None, None, &[]);
    assert_eq!(anonymous.status, 401);
    let too_many: Vec<String> = (0..201).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let refused = plaza.graphql_reply(PRESENCE, json!({ "ids": too_many }), Some(&bob_token), None);
    assert_eq!(graphql_code(&refused), "invalid_arguments");

    let direct = start(&plaza, &alice_token, json!({ "kind": "direct", "member_id": bob })).body["conversation_id"].as_str().unwrap().to_owned();
    let typing = plaza.send("POST", &format!("/api/v1/conversations/{direct}/typing"), None, Some(&bob_token), &[]);
    assert_eq!(typing.status, 204, "{}", typing.body);
    let (_, carol_token, _) = plaza.register("carol");
    let outsider = plaza.send("POST", &format!("/api/v1/conversations/{direct}/typing"), None, Some(&carol_token), &[]);
    assert_eq!((outsider.status, outsider.code()), (404, "conversation_not_found"));
}

on_every_profile!(
    direct_and_group_membership,
    messages_are_numbered_without_gaps,
    read_markers_and_unread_counts,
    presence_expires_and_typing_is_for_members
);

//! End-to-end: GraphQL subscriptions over `graphql-transport-ws` on every deployment:
//! live messages, lossless resume with `afterSeq` (also across a read API killed with
//! SIGKILL), membership ending a subscription, the inbox, typing, presence, and the protocol's
//! close codes.

mod common;

use std::time::Duration;

use common::ws::Client;
use common::{Plaza, Profile};
use serde_json::{Value, json};

const EVENTS: &str = "subscription($id: ID!, $after: Int) {
    conversationEvents(conversationId: $id, afterSeq: $after) { kind seq userIds lastSeq message { seq body deleted sender { username } } } }";

/// A group and the position of its creation.
fn group(plaza: &Plaza, token: &str, members: &[&str]) -> (String, u64) {
    let body = json!({ "kind": "group", "title": "Live", "member_ids": members });
    let reply = plaza.send("POST", "/api/v1/conversations", Some(body), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["conversation_id"].as_str().unwrap().to_owned(), reply.position())
}

fn send(plaza: &Plaza, token: &str, conversation: &str, body: &str) -> u64 {
    let reply = plaza.send("POST", &format!("/api/v1/conversations/{conversation}/messages"), Some(json!({ "body": body })), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["seq"].as_u64().unwrap()
}

/// The next event of subscription `id`: (kind, seq, body).
fn event(client: &mut Client, id: &str) -> (String, Option<u64>, Value) {
    let data = client.next_data(id);
    let event = &data["conversationEvents"];
    (event["kind"].as_str().unwrap().to_owned(), event["seq"].as_u64(), event["message"]["body"].clone())
}

/// The next message sent (membership events that came before are skipped: a new
/// subscriber may still hear of the conversation's start).
fn sent_message(client: &mut Client, id: &str) -> (u64, Value) {
    loop {
        let (kind, seq, body) = event(client, id);
        match kind.as_str() {
            "MESSAGE_SENT" => return (seq.unwrap(), body),
            "MEMBERS_ADDED" => continue,
            other => panic!("expected a message, got {other}"),
        }
    }
}

fn sent(client: &mut Client, id: &str) -> u64 {
    sent_message(client, id).0
}

fn subscribers_hear_messages_and_resume_without_gaps(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (conversation, position) = group(&plaza, &alice_token, &[&bob]);

    // `afterSeq: 0`: whatever is sent before the subscription listens comes from the
    // read model, the rest live; either way each message once, in order.
    let mut live = Client::signed_in(plaza.read_port(), &bob_token);
    live.subscribe_at("1", EVENTS, json!({ "id": conversation, "after": 0 }), position);
    for n in 1..=3 {
        assert_eq!(send(&plaza, &alice_token, &conversation, &format!("m{n}")), n);
    }
    for n in 1..=3 {
        assert_eq!(sent_message(&mut live, "1"), (n, json!(format!("m{n}"))));
    }
    // Read markers and edits are events too.
    let read = plaza.send("POST", &format!("/api/v1/conversations/{conversation}/read"), Some(json!({ "seq": 3 })), Some(&alice_token), &[]);
    assert_eq!(read.status, 200);
    let data = live.next_data("1");
    assert_eq!((data["conversationEvents"]["kind"].as_str(), data["conversationEvents"]["seq"].as_u64()), (Some("READ"), Some(3)), "{data}");
    assert_eq!(data["conversationEvents"]["userIds"], json!([alice]));
    live.close();

    // Missed while away: 4 and 5. Resuming after 3 replays them, then goes live with 6,
    // each once.
    send(&plaza, &alice_token, &conversation, "m4");
    send(&plaza, &alice_token, &conversation, "m5");
    let mut resumed = Client::signed_in(plaza.read_port(), &bob_token);
    resumed.subscribe("r", EVENTS, json!({ "id": conversation, "after": 3 }));
    assert_eq!((sent(&mut resumed, "r"), sent(&mut resumed, "r")), (4, 5));
    send(&plaza, &alice_token, &conversation, "m6");
    assert_eq!(sent(&mut resumed, "r"), 6);
    resumed.quiet(Duration::from_millis(500));

    // Removed: told so, then the subscription completes.
    let removed = plaza.send("DELETE", &format!("/api/v1/conversations/{conversation}/members/{bob}"), None, Some(&alice_token), &[]);
    assert_eq!(removed.status, 200, "{}", removed.body);
    let data = resumed.next_data("r");
    assert_eq!((data["conversationEvents"]["kind"].as_str(), &data["conversationEvents"]["userIds"]), (Some("MEMBER_REMOVED"), &json!([bob])));
    let complete = resumed.next_message(Duration::from_secs(10)).unwrap();
    assert_eq!((complete["type"].as_str(), complete["id"].as_str()), (Some("complete"), Some("r")));
    // And may not subscribe again.
    resumed.subscribe("again", EVENTS, json!({ "id": conversation }));
    let refused = resumed.next_message(Duration::from_secs(10)).unwrap();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "conversation_not_found");
}

fn a_killed_read_api_loses_nothing_on_resume(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (conversation, position) = group(&plaza, &alice_token, &[&bob]);
    let mut client = Client::signed_in(plaza.read_port(), &bob_token);
    client.subscribe_at("1", EVENTS, json!({ "id": conversation, "after": 0 }), position);
    send(&plaza, &alice_token, &conversation, "before");
    assert_eq!(sent(&mut client, "1"), 1);

    // The read API dies without warning; messages go on (through the write API, where
    // it is another process) and it comes back.
    let read_api = plaza.process_count().min(2) - 1;
    plaza.kill9_process(read_api);
    assert_eq!(client.closed(Duration::from_secs(10)), 1006, "the connection dropped");
    if read_api == 0 {
        plaza.start_process(read_api);
    }
    let more: Vec<u64> = (0..5).map(|n| send(&plaza, &alice_token, &conversation, &format!("while down {n}"))).collect();
    if read_api != 0 {
        plaza.start_process(read_api);
    }
    assert_eq!(more, vec![2, 3, 4, 5, 6]);

    let mut resumed = Client::signed_in(plaza.read_port(), &bob_token);
    resumed.subscribe("1", EVENTS, json!({ "id": conversation, "after": 1 }));
    let replayed: Vec<u64> = (0..5).map(|_| sent(&mut resumed, "1")).collect();
    assert_eq!(replayed, vec![2, 3, 4, 5, 6]);
    send(&plaza, &alice_token, &conversation, "after");
    assert_eq!(sent(&mut resumed, "1"), 7, "then live, with nothing twice");
    resumed.quiet(Duration::from_millis(500));
}

/// Sends `act` until subscription `id` hears of it (what is sent before a subscription
/// listens is not heard: typing and the inbox replay nothing); answers what it heard.
fn until_heard(client: &mut Client, id: &str, act: impl Fn()) -> Value {
    for _ in 0..20 {
        act();
        match client.poll(Duration::from_secs(1)) {
            Some(Ok(message)) => {
                assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("next"), Some(id)), "{message}");
                return message["payload"]["data"].clone();
            }
            Some(Err(closed)) => panic!("{closed:?}"),
            None => {}
        }
    }
    panic!("subscription {id} heard nothing");
}

fn inbox_typing_and_presence(profile: Profile) {
    let plaza = Plaza::start_live(profile, &[]);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (conversation, position) = group(&plaza, &alice_token, &[&bob]);

    let mut typing = Client::signed_in(plaza.read_port(), &bob_token);
    let query = "subscription($id: ID!) { typing(conversationId: $id) { userId conversationId } }";
    typing.subscribe_at("typing", query, json!({ "id": conversation }), position);
    let data = until_heard(&mut typing, "typing", || {
        let reply = plaza.send("POST", &format!("/api/v1/conversations/{conversation}/typing"), None, Some(&alice_token), &[]);
        assert_eq!(reply.status, 204);
    });
    assert_eq!(data["typing"]["conversationId"].as_str(), Some(conversation.as_str()), "{data}");
    // Your own typing is not echoed to you.
    let own = plaza.send("POST", &format!("/api/v1/conversations/{conversation}/typing"), None, Some(&bob_token), &[]);
    assert_eq!(own.status, 204);
    typing.quiet(Duration::from_millis(500));

    let mut inbox = Client::signed_in(plaza.read_port(), &bob_token);
    inbox.subscribe("inbox", "subscription { inbox { kind conversationId unreadCount message { seq body } } }", json!({}));
    let first = until_heard(&mut inbox, "inbox", || {
        send(&plaza, &alice_token, &conversation, "hello");
    });
    let seq = first["inbox"]["message"]["seq"].as_u64().unwrap();
    assert_eq!((first["inbox"]["kind"].as_str(), first["inbox"]["unreadCount"].as_u64()), (Some("MESSAGE"), Some(seq)), "{first}");
    // Messages sent before it listened are not heard; the next ones all are.
    std::thread::sleep(Duration::from_millis(200));
    while inbox.poll(Duration::from_millis(300)).is_some() {}
    let next = send(&plaza, &alice_token, &conversation, "more");
    let data = inbox.next_data("inbox");
    assert_eq!((data["inbox"]["message"]["seq"].as_u64(), data["inbox"]["unreadCount"].as_u64()), (Some(next), Some(next)), "{data}");
    assert_eq!(data["inbox"]["conversationId"].as_str(), Some(conversation.as_str()));

    // Presence: alice is offline (no heartbeat, no open connection), then online.
    let mut presence = Client::signed_in(plaza.read_port(), &bob_token);
    let query = "subscription($ids: [ID!]!) { presenceChanged(userIds: $ids) { userId online } }";
    presence.subscribe("p", query, json!({ "ids": [alice] }));
    assert_eq!(presence.next_data("p")["presenceChanged"], json!({ "userId": alice, "online": false }));
    assert_eq!(plaza.send("POST", "/api/v1/presence/heartbeat", None, Some(&alice_token), &[]).status, 204);
    assert_eq!(presence.next_data("p")["presenceChanged"], json!({ "userId": alice, "online": true }));
}

fn the_protocol_is_enforced(profile: Profile) {
    // Tokens live 5 s: long enough for the checks that need one, short enough to see
    // one expire.
    let plaza = Plaza::start_with(profile, &[("PLAZA_TOKEN_TTL_SECS", "5")]);
    let port = plaza.read_port();
    let (_, alice_token, _) = plaza.register("alice");
    let (conversation, position) = group(&plaza, &alice_token, &[]);
    let init = |token: &str| json!({ "type": "connection_init", "payload": { "token": token } });

    // No subprotocol asked for: 4406.
    assert_eq!(Client::connect(port, false).closed(Duration::from_secs(10)), 4406);
    // A bad or missing token: 4401.
    for payload in [json!({ "type": "connection_init", "payload": { "token": "nonsense" } }), json!({ "type": "connection_init" })] {
        let mut client = Client::connect(port, true);
        client.send(payload);
        assert_eq!(client.closed(Duration::from_secs(10)), 4401);
    }
    // Subscribing before the acknowledgement: 4401.
    let mut client = Client::connect(port, true);
    client.subscribe("1", EVENTS, json!({ "id": conversation }));
    assert_eq!(client.closed(Duration::from_secs(10)), 4401);
    // A second init: 4429.
    let mut client = Client::signed_in(port, &alice_token);
    client.send(init(&alice_token));
    assert_eq!(client.closed(Duration::from_secs(10)), 4429);
    // A message that is not the protocol's: 4400.
    for text in ["not json", r#"{"type": "launch"}"#, r#"{"type": "subscribe", "id": "1"}"#] {
        let mut client = Client::signed_in(port, &alice_token);
        client.send_text(text);
        assert_eq!(client.closed(Duration::from_secs(10)), 4400, "{text}");
    }
    // An id in use: 4409.
    let mut client = Client::signed_in(port, &alice_token);
    client.subscribe_at("same", EVENTS, json!({ "id": conversation }), position);
    client.subscribe_at("same", EVENTS, json!({ "id": conversation }), position);
    assert_eq!(client.closed(Duration::from_secs(10)), 4409);
    // Ping, pong; queries over the socket; errors for what cannot run.
    let (_, mallory_token, registered) = plaza.register("mallory");
    let mut client = Client::signed_in(port, &mallory_token);
    client.send(json!({ "type": "ping" }));
    assert_eq!(client.next_message(Duration::from_secs(10)).unwrap()["type"], "pong");
    client.subscribe_at("q", "{ me { username } }", json!({}), registered);
    assert_eq!(client.next_data("q")["me"]["username"], "mallory");
    assert_eq!(client.next_message(Duration::from_secs(10)).unwrap()["type"], "complete");
    client.subscribe("x", EVENTS, json!({ "id": conversation }));
    let refused = client.next_message(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (refused["type"].as_str(), refused["payload"][0]["extensions"]["code"].as_str()),
        (Some("error"), Some("conversation_not_found")),
        "{refused}"
    );
    let deep = format!("subscription {{ inbox(x: {}1{}) {{ kind }} }}", "[".repeat(10_000), "]".repeat(10_000));
    client.subscribe("deep", &deep, json!({}));
    let refused = client.next_message(Duration::from_secs(10)).unwrap();
    assert_eq!(refused["payload"][0]["extensions"]["code"], "nesting_too_deep", "{refused}");
    // No init in time: 4408.
    assert_eq!(Client::connect(port, true).closed(Duration::from_secs(10)), 4408);
    // The token expires: 4401 at that moment.
    assert_eq!(client.closed(Duration::from_secs(10)), 4401);
    plaza.assert_alive();
}

/// Subscribers that send the same document share one rendering of each event, but a
/// field that depends on who asks is rendered for each of them.
#[test]
fn an_event_rendered_once_never_shares_what_is_personal() {
    const PERSONAL: &str = "subscription($id: ID!) {
        conversationEvents(conversationId: $id) { kind message { seq body sender { username unreadMessagesCount } } } }";
    let plaza = Plaza::start(Profile::Embedded);
    let (_, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (carol, carol_token, _) = plaza.register("carol");
    let (conversation, position) = group(&plaza, &alice_token, &[&bob, &carol]);
    // Each subscription on a connection of its own: the test reads them in turn.
    let mut clients: Vec<(&str, Client, Client)> = Vec::new();
    for (who, token) in [("alice", &alice_token), ("bob", &bob_token), ("carol", &carol_token)] {
        let mut same = Client::signed_in(plaza.read_port(), token);
        same.subscribe_at("same", EVENTS, json!({ "id": conversation }), position);
        let mut personal = Client::signed_in(plaza.read_port(), token);
        personal.subscribe_at("personal", PERSONAL, json!({ "id": conversation }), position);
        clients.push((who, same, personal));
    }
    // Bob and Carol have not read it; the sender has.
    send(&plaza, &alice_token, &conversation, "hello");
    for (who, same, personal) in &mut clients {
        assert_eq!(sent_message(same, "same"), (1, json!("hello")), "{who}");
        let message = loop {
            let data = personal.next_data("personal");
            if data["conversationEvents"]["kind"] == "MESSAGE_SENT" {
                break data["conversationEvents"]["message"].clone();
            }
        };
        assert_eq!(message["sender"]["username"], "alice", "{who}");
        // The sender's unread count is the sender's own: only Alice sees it.
        let expected = if *who == "alice" { json!(0) } else { Value::Null };
        assert_eq!(message["sender"]["unreadMessagesCount"], expected, "{who}: {message}");
    }
}

on_every_profile!(
    subscribers_hear_messages_and_resume_without_gaps,
    a_killed_read_api_loses_nothing_on_resume,
    inbox_typing_and_presence,
    the_protocol_is_enforced
);

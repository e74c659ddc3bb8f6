//! End-to-end: notifications on every deployment: each kind reaches the right user and
//! never the actor, grouping, withdrawal on undo, read up to / read all, settings,
//! mentions (description, comment, message: members only), the `notificationAdded`
//! subscription, and the welcome flow (a process manager) surviving SIGKILL between its
//! two steps.

mod common;

use std::time::{Duration, Instant};

use common::ws::Client;
use common::{Plaza, Profile};
use serde_json::{Value, json};

const LIST: &str = "{ me { unreadNotificationsCount } notifications(first: 50) { totalCount edges { node {
    id kind groupCount text read actors { username } video { id } comment { id } conversation { id } } } } }";

/// The user's notifications (newest first) and unread count, once `position` is applied.
fn list(plaza: &Plaza, token: &str, position: u64) -> (Vec<Value>, i64) {
    let data = plaza.graphql(LIST, json!({}), Some(token), position);
    let nodes = data["notifications"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect();
    (nodes, data["me"]["unreadNotificationsCount"].as_i64().unwrap())
}

/// `(kind, groupCount, actors)` of each notification, newest first.
fn summary(nodes: &[Value]) -> Vec<(String, i64, Vec<String>)> {
    nodes
        .iter()
        .map(|n| {
            let actors = n["actors"].as_array().unwrap().iter().map(|a| a["username"].as_str().unwrap().to_owned()).collect();
            (n["kind"].as_str().unwrap().to_owned(), n["groupCount"].as_i64().unwrap(), actors)
        })
        .collect()
}

fn row(kind: &str, count: i64, actors: &[&str]) -> (String, i64, Vec<String>) {
    (kind.to_owned(), count, actors.iter().map(|a| (*a).to_owned()).collect())
}

fn ok(reply: common::Reply) -> u64 {
    assert!(matches!(reply.status, 200 | 201), "{} {}", reply.status, reply.body);
    reply.position()
}

fn publish(plaza: &Plaza, token: &str, description: &str) -> (String, u64) {
    let body = json!({ "title": "Clip", "description": description, "media_url": "https://cdn.example.com/v.mp4" });
    let reply = plaza.send("POST", "/api/v1/videos", Some(body), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["video_id"].as_str().unwrap().to_owned(), reply.position())
}

fn each_kind_reaches_its_user_grouped_read_and_withdrawn(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")]);
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let (_, carol_token, _) = plaza.register("carol");
    let (dave, dave_token, registered) = plaza.register("dave");
    // Mentions resolve when applied: through Kafka a registration of a moment ago may
    // still be on its way (another partition), so the names are known first.
    list(&plaza, &dave_token, registered);
    let act = |method: &str, path: &str, body: Option<Value>, token: &str| ok(plaza.send(method, path, body, Some(token), &[]));

    // A mention in a description; an unknown @name is plain text.
    let (video, _) = publish(&plaza, &alice_token, "Shot with @Bob and @nobody_here");
    let like = |token: &str, method: &str| act(method, &format!("/api/v1/videos/{video}/like"), None, token);
    // Three likes form one group, latest actor first; the author's own like tells nobody.
    like(&bob_token, "POST");
    like(&carol_token, "POST");
    like(&dave_token, "POST");
    let position = like(&alice_token, "POST");
    let (nodes, unread) = list(&plaza, &alice_token, position);
    assert_eq!(summary(&nodes), vec![row("VIDEO_LIKED", 3, &["dave", "carol", "bob"])]);
    assert_eq!((unread, &nodes[0]["video"]["id"], &nodes[0]["read"]), (1, &json!(video), &json!(false)));
    let (nodes, _) = list(&plaza, &bob_token, position);
    assert_eq!(summary(&nodes), vec![row("MENTIONED", 1, &["alice"])]);
    assert_eq!(nodes[0]["text"], "Shot with @Bob and @nobody_here");

    // Undone while unread: withdrawn (a favorite entirely, one like from its group).
    let position = act("POST", &format!("/api/v1/videos/{video}/favorite"), None, &carol_token);
    assert_eq!(summary(&list(&plaza, &alice_token, position).0)[0], row("VIDEO_FAVORITED", 1, &["carol"]));
    act("DELETE", &format!("/api/v1/videos/{video}/favorite"), None, &carol_token);
    let position = like(&dave_token, "DELETE");
    assert_eq!(summary(&list(&plaza, &alice_token, position).0), vec![row("VIDEO_LIKED", 2, &["carol", "bob"])]);

    // Read all: nothing unread. A like undone after reading stays counted; a like after
    // reading starts a new group.
    let position = act("POST", "/api/v1/notifications/read", Some(json!({ "all": true })), &alice_token);
    let (nodes, unread) = list(&plaza, &alice_token, position);
    assert_eq!((unread, &nodes[0]["read"]), (0, &json!(true)));
    like(&bob_token, "DELETE");
    let position = like(&bob_token, "POST");
    let (nodes, unread) = list(&plaza, &alice_token, position);
    assert_eq!(summary(&nodes), vec![row("VIDEO_LIKED", 1, &["bob"]), row("VIDEO_LIKED", 2, &["carol", "bob"])]);
    assert_eq!((unread, &nodes[0]["read"], &nodes[1]["read"]), (1, &json!(false), &json!(true)));

    // Follows group too; an unfollow withdraws.
    act("POST", &format!("/api/v1/users/{alice}/follow"), None, &carol_token);
    act("POST", &format!("/api/v1/users/{alice}/follow"), None, &dave_token);
    let position = act("DELETE", &format!("/api/v1/users/{alice}/follow"), None, &dave_token);
    assert_eq!(summary(&list(&plaza, &alice_token, position).0)[0], row("FOLLOWED", 1, &["carol"]));

    // Comments: the video's author hears of a top-level comment, a comment's author of
    // a reply and of a like; mentions in comments reach whoever is named.
    let posted = plaza.send("POST", &format!("/api/v1/videos/{video}/comments"), Some(json!({ "body": "love it @carol" })), Some(&bob_token), &[]);
    assert_eq!(posted.status, 201, "{}", posted.body);
    let comment_id = posted.body["comment_id"].as_str().unwrap().to_owned();
    act("POST", &format!("/api/v1/videos/{video}/comments"), Some(json!({ "body": "thanks @dave", "parent_id": comment_id })), &alice_token);
    let position = act("POST", &format!("/api/v1/comments/{comment_id}/like"), None, &carol_token);
    let (nodes, _) = list(&plaza, &alice_token, position);
    assert_eq!(summary(&nodes)[0], row("VIDEO_COMMENTED", 1, &["bob"]));
    assert_eq!((&nodes[0]["text"], &nodes[0]["comment"]["id"]), (&json!("love it @carol"), &json!(comment_id)));
    let (nodes, _) = list(&plaza, &bob_token, position);
    assert_eq!(summary(&nodes)[..2], [row("COMMENT_LIKED", 1, &["carol"]), row("COMMENT_REPLIED", 1, &["alice"])]);
    assert_eq!(summary(&list(&plaza, &carol_token, position).0), vec![row("MENTIONED", 1, &["bob"])]);
    assert_eq!(summary(&list(&plaza, &dave_token, position).0), vec![row("MENTIONED", 1, &["alice"])]);

    // A deleted comment takes its unread notifications along.
    let position = act("DELETE", &format!("/api/v1/comments/{comment_id}"), None, &bob_token);
    assert!(summary(&list(&plaza, &alice_token, position).0).iter().all(|n| n.0 != "VIDEO_COMMENTED"));
    assert_eq!(list(&plaza, &carol_token, position).0, Vec::<Value>::new());
    assert!(summary(&list(&plaza, &bob_token, position).0).iter().all(|n| n.0 != "COMMENT_LIKED"));

    // A mention in a message reaches members only.
    let group = json!({ "kind": "group", "title": "Us", "member_ids": [bob] });
    let started = plaza.send("POST", "/api/v1/conversations", Some(group), Some(&alice_token), &[]);
    let conversation = started.body["conversation_id"].as_str().unwrap().to_owned();
    let position = act("POST", &format!("/api/v1/conversations/{conversation}/messages"), Some(json!({ "body": "hi @bob and @dave" })), &alice_token);
    let (nodes, unread) = list(&plaza, &bob_token, position);
    assert_eq!(summary(&nodes), vec![row("MENTIONED", 1, &["alice"]), row("COMMENT_REPLIED", 1, &["alice"]), row("MENTIONED", 1, &["alice"])]);
    assert_eq!((&nodes[0]["conversation"]["id"], &nodes[0]["text"], unread), (&json!(conversation), &json!("hi @bob and @dave"), 3));
    assert_eq!(list(&plaza, &dave_token, position).0.len(), 1, "dave is not in the conversation");

    // Read up to one: it and the older ones are read, the newer not.
    let up_to = nodes[1]["id"].as_str().unwrap();
    let position = act("POST", "/api/v1/notifications/read", Some(json!({ "up_to": up_to })), &bob_token);
    let (nodes, unread) = list(&plaza, &bob_token, position);
    let read: Vec<&Value> = nodes.iter().map(|n| &n["read"]).collect();
    assert_eq!((unread, read), (1, vec![&json!(false), &json!(true), &json!(true)]));
    for bad in [json!({}), json!({ "all": true, "up_to": up_to }), json!({ "up_to": "x" }), json!({ "up_to": 0 }), json!({ "all": false })] {
        let reply = plaza.send("POST", "/api/v1/notifications/read", Some(bad.clone()), Some(&bob_token), &[]);
        assert_eq!((reply.status, reply.code()), (400, "invalid_notification"), "{bad}: {}", reply.body);
    }

    // A kind switched off is neither created nor counted; switched on, it is again.
    let settings = format!("/api/v1/users/{dave}/notification-settings");
    // (settings count from when they are applied: through Kafka, another stream's like
    // may otherwise be applied first)
    let position = act("PUT", &settings, Some(json!({ "video_liked": false })), &dave_token);
    list(&plaza, &dave_token, position);
    let (davids, _) = publish(&plaza, &dave_token, "mine");
    let position = act("POST", &format!("/api/v1/videos/{davids}/like"), None, &bob_token);
    let (nodes, unread) = list(&plaza, &dave_token, position);
    assert_eq!((summary(&nodes), unread), (vec![row("MENTIONED", 1, &["alice"])], 1), "switched off: not created, not counted");
    let position = act("PUT", &settings, Some(json!({ "video_liked": true, "followed": true })), &dave_token);
    list(&plaza, &dave_token, position);
    let position = act("POST", &format!("/api/v1/videos/{davids}/like"), None, &carol_token);
    assert_eq!(summary(&list(&plaza, &dave_token, position).0)[0], row("VIDEO_LIKED", 1, &["carol"]));
    let refused = plaza.send("PUT", &settings, Some(json!({ "shouting": false })), Some(&dave_token), &[]);
    assert_eq!(refused.status, 400, "{}", refused.body);
}

fn subscribers_hear_new_and_grown_groups(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"), ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0")]);
    let (alice, alice_token, _) = plaza.register("alice");
    let (_, bob_token, _) = plaza.register("bob");
    let (_, carol_token, _) = plaza.register("carol");
    let (video, _) = publish(&plaza, &alice_token, "");
    let mut client = Client::signed_in(plaza.read_port(), &alice_token);
    client.subscribe("n", "subscription { notificationAdded { id kind groupCount actors { username } } }", json!({}));
    // What happens before the subscription listens is not heard: follow until it is,
    // then let the rest of those arrive.
    let follower = std::cell::Cell::new(0);
    let first = until_heard(&mut client, "n", || {
        follower.set(follower.get() + 1);
        let (_, token, _) = plaza.register(&format!("fan{}", follower.get()));
        ok(plaza.send("POST", &format!("/api/v1/users/{alice}/follow"), None, Some(&token), &[]));
    });
    assert_eq!(first["notificationAdded"]["kind"], "FOLLOWED");
    while client.poll(Duration::from_secs(2)).is_some() {}

    ok(plaza.send("POST", &format!("/api/v1/videos/{video}/like"), None, Some(&bob_token), &[]));
    let new = heard(&mut client, "n")["notificationAdded"].clone();
    assert_eq!((&new["kind"], &new["groupCount"], &new["actors"]), (&json!("VIDEO_LIKED"), &json!(1), &json!([{ "username": "bob" }])));
    ok(plaza.send("POST", &format!("/api/v1/videos/{video}/like"), None, Some(&carol_token), &[]));
    let grown = heard(&mut client, "n")["notificationAdded"].clone();
    assert_eq!((&grown["id"], &grown["groupCount"]), (&new["id"], &json!(2)));
    assert_eq!(grown["actors"], json!([{ "username": "carol" }, { "username": "bob" }]));
    // Nobody hears of their own actions.
    ok(plaza.send("POST", &format!("/api/v1/videos/{video}/like"), None, Some(&alice_token), &[]));
    client.quiet(Duration::from_secs(1));
}

/// The next data of subscription `id`. Patient: through Kafka a projector's consumer
/// group may take tens of seconds to settle on a loaded machine.
fn heard(client: &mut Client, id: &str) -> Value {
    let message = client.next_message(Duration::from_secs(90)).expect("the connection stays open");
    assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("next"), Some(id)), "{message}");
    message["payload"]["data"].clone()
}

/// Acts until subscription `id` hears something; answers its data.
fn until_heard(client: &mut Client, id: &str, act: impl Fn()) -> Value {
    for _ in 0..20 {
        act();
        if let Some(message) = client.poll(Duration::from_secs(1)) {
            let message = message.expect("the connection stays open");
            assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("next"), Some(id)), "{message}");
            return message["payload"]["data"].clone();
        }
    }
    panic!("subscription {id} heard nothing");
}

/// Polls the user's notifications until `done` holds (the welcome flow runs after the
/// registration, in the background).
fn until(plaza: &Plaza, token: &str, position: u64, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (nodes, _) = list(plaza, token, position);
        if done(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {nodes:?}\n{}", plaza.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count(nodes: &[Value], kind: &str) -> usize {
    nodes.iter().filter(|n| n["kind"] == kind).count()
}

fn following(plaza: &Plaza, user: &str, position: u64) -> i64 {
    plaza.graphql("query($id: ID!) { user(id: $id) { followingCount } }", json!({ "id": user }), None, position)["user"]["followingCount"]
        .as_i64()
        .unwrap()
}

fn welcome_flow_runs_once_even_when_killed_between_its_steps(profile: Profile) {
    let mut plaza = Plaza::start_with(
        profile,
        &[("PLAZA_WELCOME_TEXT", "Welcome aboard!"), ("PLAZA_WELCOME_FOLLOW", "plaza"), ("PLAZA_TEST_PAUSE_WELCOME_AFTER_NOTICE", "eve")],
    );
    let (plaza_id, plaza_token, position) = plaza.register("plaza");
    let nodes = until(&plaza, &plaza_token, position, "plaza's welcome", |n| count(n, "SYSTEM") == 1);
    assert_eq!((&nodes[0]["text"], &nodes[0]["actors"]), (&json!("Welcome aboard!"), &json!([])));

    // Eve's flow sends the notice, then stops before following: killed there.
    let (eve, eve_token, position) = plaza.register("eve");
    until(&plaza, &eve_token, position, "eve's welcome", |n| count(n, "SYSTEM") == 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !plaza.log().contains("welcome flow paused after its notice") {
        assert!(Instant::now() < deadline, "the flow never paused:\n{}", plaza.log_tail(40));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(following(&plaza, &eve, position), 0);
    plaza.kill9();
    plaza.set_setting("PLAZA_TEST_PAUSE_WELCOME_AFTER_NOTICE", "");
    plaza.restart();

    // On restart the flow finishes: eve follows plaza, and each step happened once.
    let nodes = until(&plaza, &plaza_token, position, "eve's follow", |n| count(n, "FOLLOWED") == 1);
    assert_eq!(summary(&nodes)[0], row("FOLLOWED", 1, &["eve"]));
    // (a later command's position covers the follow, which the notification shows done)
    let later = plaza.update_bio(&eve, &eve_token, "here");
    assert_eq!(following(&plaza, &eve, later), 1);
    let (_, _, position) = plaza.register("frank");
    let frank = plaza.graphql("{ user(username: \"frank\") { id } }", json!({}), None, position)["user"]["id"].as_str().unwrap().to_owned();
    until(&plaza, &plaza_token, position, "frank's follow", |n| n[0]["groupCount"] == 2);
    let later = plaza.update_bio(&eve, &eve_token, "still here");
    assert_eq!(following(&plaza, &frank, later), 1);
    let (eves, _) = list(&plaza, &eve_token, position);
    assert_eq!(summary(&eves), vec![row("SYSTEM", 1, &[])], "one notice, however often the flow ran");
    assert_eq!(count(&list(&plaza, &plaza_token, position).0, "SYSTEM"), 1);
    assert_eq!(following(&plaza, &plaza_id, position), 0, "plaza does not follow itself");

    // The process manager reports like a projection.
    let (ok, out, err) = plaza.cli(&["projections", "status", "--json"], &[]);
    assert!(ok, "{err}");
    let statuses: Value = serde_json::from_str(&out).unwrap();
    let welcome = statuses.as_array().unwrap().iter().find(|s| s["name"] == "welcome").expect("welcome in the status").clone();
    assert_eq!((&welcome["dead_letters"], welcome["applied_position"].as_u64() > Some(0)), (&json!(0), true), "{welcome}");
}

on_every_profile!(
    each_kind_reaches_its_user_grouped_read_and_withdrawn,
    subscribers_hear_new_and_grown_groups,
    welcome_flow_runs_once_even_when_killed_between_its_steps,
);

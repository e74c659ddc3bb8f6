//! Subscriptions driven by a client this project did not write: the reference
//! `graphql-ws` client from npm, run by Node (`clients/graphql-ws/subscribe.mjs`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Plaza, Profile};
use serde_json::{Value, json};

const EVENTS: &str = "subscription($id: ID!, $after: Int) {
    conversationEvents(conversationId: $id, afterSeq: $after) { kind seq message { seq body sender { username } } } }";

/// The Node client, subscribed; what it prints arrives on `lines`.
struct Node {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Node {
    fn subscribe(port: u16, token: &str, query: &str, variables: Value, extensions: Value) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/graphql-ws");
        assert!(
            dir.join("node_modules/graphql-ws").is_dir(),
            "the graphql-ws client is not installed: run `make test` (npm ci in {})",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("subscribe.mjs"))
            .env("PLAZA_WS", format!("ws://127.0.0.1:{port}/graphql/ws"))
            .env("TOKEN", token)
            .env("QUERY", query)
            .env("VARIABLES", variables.to_string())
            .env("EXTENSIONS", extensions.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (Node 20 is installed by make services)");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    let _ = sender.send(value);
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self) -> Value {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("the node client printed nothing in 20 s")
    }

    /// The seq of the next message the client heard (other events skipped).
    fn next_message(&self) -> u64 {
        loop {
            let line = self.next();
            let event = &line["next"]["data"]["conversationEvents"];
            assert!(!line["next"].is_null(), "{line}");
            if event["kind"] == "MESSAGE_SENT" {
                return event["seq"].as_u64().unwrap();
            }
        }
    }

    fn quiet(&self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            assert!(line["next"]["data"]["conversationEvents"]["kind"] != "MESSAGE_SENT", "a message twice: {line}");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(plaza: &Plaza, token: &str, conversation: &str, body: &str) -> u64 {
    let reply = plaza.send("POST", &format!("/api/v1/conversations/{conversation}/messages"), Some(json!({ "body": body })), Some(token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["seq"].as_u64().unwrap()
}

fn the_reference_client_hears_and_resumes(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, alice, _) = plaza.register("alice");
    let (bob_id, bob, _) = plaza.register("bob");
    let started = plaza.send("POST", "/api/v1/conversations", Some(json!({ "kind": "direct", "member_id": bob_id })), Some(&alice), &[]);
    let conversation = started.body["conversation_id"].as_str().unwrap().to_owned();
    let at = json!({ "minPosition": started.position() });

    let live = Node::subscribe(plaza.read_port(), &bob, EVENTS, json!({ "id": conversation, "after": 0 }), at.clone());
    for n in 1..=3 {
        send(&plaza, &alice, &conversation, &format!("m{n}"));
    }
    assert_eq!((live.next_message(), live.next_message(), live.next_message()), (1, 2, 3));
    drop(live);

    send(&plaza, &alice, &conversation, "m4");
    send(&plaza, &alice, &conversation, "m5");
    let resumed = Node::subscribe(plaza.read_port(), &bob, EVENTS, json!({ "id": conversation, "after": 3 }), at);
    assert_eq!((resumed.next_message(), resumed.next_message()), (4, 5));
    send(&plaza, &alice, &conversation, "m6");
    assert_eq!(resumed.next_message(), 6);
    resumed.quiet(Duration::from_millis(500));

    // A bad token: the client sees the connection closed with 4401.
    let refused = Node::subscribe(plaza.read_port(), "not a token", EVENTS, json!({ "id": conversation }), json!({}));
    let closed = std::iter::repeat_with(|| refused.next()).find(|line| !line["closed"].is_null()).unwrap();
    assert_eq!(closed["closed"], 4401, "{closed}");
}

on_every_profile!(the_reference_client_hears_and_resumes);

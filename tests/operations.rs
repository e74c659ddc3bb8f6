//! End-to-end: what operators do to a running deployment with `plaza projections ...`:
//! read the status, pause and resume a projection, rebuild one under load without
//! downtime, and resume a rebuild killed with SIGKILL.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Plaza, Profile};
use serde_json::{Value, json};

fn status(plaza: &Plaza) -> Vec<Value> {
    let (ok, out, err) = plaza.cli(&["projections", "status", "--json"], &[]);
    assert!(ok, "status failed: {err}");
    serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}")).as_array().unwrap().clone()
}

fn status_of(plaza: &Plaza, name: &str) -> Value {
    status(plaza).into_iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name} in the status"))
}

/// Polls the status of `name` until `done` holds (at most 60 s); returns it.
fn wait_for_status(plaza: &Plaza, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(plaza, name);
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{name} never {what}: {status:#}\n{}", plaza.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn follow(plaza: &Plaza, token: &str, target: &str, on: bool) -> u64 {
    let reply = plaza.send(if on { "POST" } else { "DELETE" }, &format!("/api/v1/users/{target}/follow"), None, Some(token), &[]);
    assert!(reply.status < 300, "{} {}", reply.status, reply.body);
    reply.position()
}

fn status_shows_lag_while_paused_and_none_after_resume(profile: Profile) {
    let plaza = start(profile);
    let (_, _, position) = plaza.register("alice");
    let caught_up = wait_for_status(&plaza, "accounts", "caught up", |s| s["applied_position"].as_u64() >= Some(position));
    assert_eq!(caught_up["state"], "running", "{caught_up:#}");
    assert_eq!((caught_up["version"].as_u64(), caught_up["generation"].as_u64()), (Some(1), Some(1)));

    let (ok, out, err) = plaza.cli(&["projections", "pause", "accounts"], &[]);
    assert!(ok && out.contains("accounts: paused"), "{out}{err}");
    let (_, _, later) = plaza.register("bob");
    let paused = wait_for_status(&plaza, "accounts", "showed its lag", |s| s["head_position"].as_u64() >= Some(later));
    assert_eq!(paused["state"], "paused");
    assert!(paused["lag_events"].as_u64().unwrap() > 0, "{paused:#}");
    assert!(paused["applied_position"].as_u64().unwrap() < later, "a paused projection applied bob: {paused:#}");
    // The other projections go on.
    wait_for_status(&plaza, "content", "caught up", |s| s["applied_position"].as_u64() >= Some(later));
    let stale = plaza.graphql_reply("{ user(username: \"bob\") { id } }", json!({}), None, None);
    assert_eq!(stale.body["data"]["user"], Value::Null, "bob cannot be read while accounts is paused");

    let (ok, out, err) = plaza.cli(&["projections", "resume", "accounts"], &[]);
    assert!(ok && out.contains("accounts: resumed"), "{out}{err}");
    let resumed = wait_for_status(&plaza, "accounts", "caught up after resume", |s| s["lag_events"] == 0);
    assert_eq!(resumed["state"], "running");
    let user = plaza.graphql("{ user(username: \"bob\") { username } }", json!({}), None, later);
    assert_eq!(user["user"]["username"], "bob");

    let (ok, _, err) = plaza.cli(&["projections", "pause", "no_such_projection"], &[]);
    assert!(!ok && err.contains("unknown projection \"no_such_projection\"; known: accounts"), "{err}");
}

fn a_rebuild_under_load_keeps_every_query_answering(profile: Profile) {
    let plaza = Arc::new(start(profile));
    let (star, _, registered) = plaza.register("star");
    plaza.graphql("query($id: ID!) { user(id: $id) { id } }", json!({ "id": star }), None, registered);
    let stop = Arc::new(AtomicBool::new(false));
    let last_position = Arc::new(AtomicU64::new(0));
    // Load: newcomers follow the star, one after the other.
    let load = {
        let (plaza, stop, last_position, star) = (plaza.clone(), stop.clone(), last_position.clone(), star.clone());
        std::thread::spawn(move || {
            let mut follows = 0;
            while !stop.load(Ordering::Relaxed) {
                let (_, token, _) = plaza.register(&format!("fan{follows}"));
                last_position.store(follow(&plaza, &token, &star, true), Ordering::Relaxed);
                follows += 1;
            }
            follows
        })
    };
    // Readers: every answer has data, and the star's follower count never goes down.
    let reader = {
        let (plaza, stop, star) = (plaza.clone(), stop.clone(), star.clone());
        std::thread::spawn(move || {
            let (mut seen, mut reads) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let reply = plaza.graphql_reply("query($id: ID!) { user(id: $id) { followersCount } }", json!({ "id": star }), None, None);
                assert!(reply.status == 200 && reply.body.get("errors").is_none(), "{} {}", reply.status, reply.body);
                let count = reply.body["data"]["user"]["followersCount"].as_i64().unwrap_or_else(|| panic!("no answer: {}", reply.body));
                assert!(count >= seen, "followers went from {seen} to {count}");
                (seen, reads) = (count, reads + 1);
            }
            reads
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let (ok, out, err) = plaza.cli(&["projections", "rebuild", "accounts"], &[("PLAZA_REBUILD_BATCH_SIZE", "20")]);
    assert!(ok && out.contains("accounts: switched to generation 2 (version 1)"), "{out}{err}\n{}", plaza.log_tail(40));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let follows = load.join().unwrap();
    assert!(reader.join().unwrap() > 5);
    assert!(follows > 0);
    let user =
        plaza.graphql("query($id: ID!) { user(id: $id) { followersCount } }", json!({ "id": star }), None, last_position.load(Ordering::Relaxed));
    assert_eq!(user["user"]["followersCount"], follows, "the rebuilt read model counts every follow");
    let after = wait_for_status(&plaza, "accounts", "caught up", |s| s["lag_events"] == 0);
    assert_eq!((after["generation"].as_u64(), after["state"].as_str()), (Some(2), Some("running")), "{after:#}");
    assert_eq!(after["rebuild"], Value::Null);
}

/// The position in a rebuild's progress line.
fn position_in(line: &str) -> u64 {
    line.split("at position ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no position in {line:?}"))
}

fn a_rebuild_refuses_a_second_one_and_resumes_after_sigkill(profile: Profile) {
    let plaza = Arc::new(start(profile));
    let (_, token, _) = plaza.register("talker");
    let reply =
        plaza.send("POST", "/api/v1/conversations", Some(json!({ "kind": "group", "title": "Chatter", "member_ids": [] })), Some(&token), &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let group = reply.body["conversation_id"].as_str().unwrap().to_owned();
    // Enough events that a rebuild one event per transaction takes a while.
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (plaza, token, group) = (plaza.clone(), token.clone(), group.clone());
            std::thread::spawn(move || {
                let mut position = 0;
                for i in 0..300 {
                    let reply = plaza.send(
                        "POST",
                        &format!("/api/v1/conversations/{group}/messages"),
                        Some(json!({ "body": format!("{t}-{i}") })),
                        Some(&token),
                        &[],
                    );
                    assert_eq!(reply.status, 201, "{}", reply.body);
                    position = position.max(reply.position());
                }
                position
            })
        })
        .collect();
    let head = senders.into_iter().map(|s| s.join().unwrap()).max().unwrap();
    wait_for_status(&plaza, "conversations", "caught up", |s| s["applied_position"].as_u64() >= Some(head));

    // One rebuild runs; frozen right after its first batch, it still holds its lock. It
    // commits every batch, so the checkpoint is where its progress says.
    let one_by_one = [("PLAZA_REBUILD_BATCH_SIZE", "1"), ("PLAZA_REBUILD_COMMIT_MS", "0")];
    let mut first = plaza.command(&["projections", "rebuild", "conversations"], &one_by_one).spawn().unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let line = lines.find_map(|line| line.ok().filter(|l| l.contains("at position"))).expect("a progress line");
    std::process::Command::new("kill").args(["-STOP", &first.id().to_string()]).status().unwrap();
    let (ok, _, err) = plaza.cli(&["projections", "rebuild", "conversations"], &[]);
    assert!(!ok && err.contains("a rebuild of conversations is already running"), "{err}");

    // Killed with SIGKILL mid-way: its generation stays, with its checkpoint.
    first.kill().unwrap();
    first.wait().unwrap();
    let building = status_of(&plaza, "conversations");
    assert_eq!(building["state"], "rebuilding", "{building:#}");
    let checkpoint = building["rebuild"]["applied_position"].as_u64().unwrap();
    assert!(checkpoint >= position_in(&line) && checkpoint < head, "first batch at {}, checkpoint {checkpoint}, head {head}", position_in(&line));

    // Run again (committing a second's worth of batches at once): it continues from that
    // checkpoint and switches over.
    let (ok, out, err) = plaza.cli(&["projections", "rebuild", "conversations"], &[("PLAZA_REBUILD_BATCH_SIZE", "10")]);
    assert!(ok && out.contains("conversations: switched to generation 2"), "{out}{err}");
    let continued_at = position_in(err.lines().find(|l| l.contains("at position")).expect("a progress line"));
    assert!(continued_at > checkpoint && continued_at <= checkpoint + 50, "started again at {continued_at}, not right after {checkpoint}: {err}");
    let messages = plaza.graphql("query($id: ID!) { conversation(id: $id) { lastMessage { seq } } }", json!({ "id": group }), Some(&token), head);
    assert_eq!(messages["conversation"]["lastMessage"]["seq"], 1200, "every message is in the rebuilt read model");
}

fn a_poison_event_is_parked_and_retried_after_the_fix(profile: Profile) {
    let plaza = Plaza::start_with(
        profile,
        &[("PLAZA_TEST_POISON_PROJECTION", "true"), ("PLAZA_PROJECTION_MAX_ATTEMPTS", "2"), ("PLAZA_RATE_LIMIT_USER_PER_SEC", "0")],
    );
    let (alice, alice_token, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    plaza.update_bio(&alice, &alice_token, "one");
    let poison = plaza.update_bio(&alice, &alice_token, "poison");
    let behind = plaza.update_bio(&alice, &alice_token, "three");
    let other = plaza.update_bio(&bob, &bob_token, "other");

    // Parked with the later event of its stream; bob's goes on.
    let status =
        wait_for_status(&plaza, "poison_test", "parked the poison", |s| s["dead_letters"] == 2 && s["applied_position"].as_u64() >= Some(other));
    assert!(status["last_error"].as_str().unwrap_or_default().to_lowercase().contains("null"), "{status:#}");
    let (ok, out, err) = plaza.cli(&["projections", "dead-letters", "list", "--json"], &[]);
    assert!(ok, "{err}");
    let letters: Vec<Value> = serde_json::from_str(&out).unwrap();
    let parked: Vec<(u64, &str)> = letters.iter().map(|d| (d["position"].as_u64().unwrap(), d["state"].as_str().unwrap())).collect();
    assert_eq!(parked, vec![(poison, "failed"), (behind, "blocked")]);
    assert!(letters.iter().all(|d| d["stream_id"] == format!("user-{alice}") && d["event_type"] == "ProfileUpdated"), "{out}");

    let (ok, out, err) = plaza.cli(&["projections", "dead-letters", "retry", "poison_test", "--all", "--dry-run"], &[]);
    assert!(ok && out.contains("poison_test: would replay 2 events"), "{out}{err}");
    let (ok, _, err) = plaza.cli(&["projections", "dead-letters", "retry", "poison_test", "--id", "999999"], &[]);
    assert!(!ok && err.contains("no dead letter at position 999999"), "{err}");
    let (ok, _, err) = plaza.cli(&["projections", "dead-letters", "retry", "poison_test"], &[]);
    assert!(!ok && err.contains("--id"), "neither --id nor --all: {err}");

    // The fix, then the retry applies both, in order.
    plaza.read_models_sql("INSERT INTO poison_fixes__g1 (fixed) VALUES (1)");
    let (ok, out, err) = plaza.cli(&["projections", "dead-letters", "retry", "poison_test", "--all"], &[]);
    assert!(ok && out.contains("poison_test: replayed 2 events; 0 still parked"), "{out}{err}");
    let after = status_of(&plaza, "poison_test");
    assert_eq!(after["dead_letters"], 0, "{after:#}");
    let (ok, out, _) = plaza.cli(&["projections", "dead-letters", "list"], &[]);
    assert!(ok && out.contains("no dead letters"), "{out}");
    // Alice's stream flows again.
    let later = plaza.update_bio(&alice, &alice_token, "five");
    wait_for_status(&plaza, "poison_test", "applied the stream again", |s| s["applied_position"].as_u64() >= Some(later) && s["dead_letters"] == 0);
}

/// Operator tests send many commands and queries (a reader under load asks as fast as it
/// can, anonymously): no rate limit in these deployments.
fn start(profile: Profile) -> Plaza {
    Plaza::start_with(
        profile,
        &[
            ("PLAZA_RATE_LIMIT_USER_PER_SEC", "0"),
            ("PLAZA_RATE_LIMIT_IP_PER_SEC", "0"),
            ("PLAZA_GRAPHQL_RATE_LIMIT_USER_PER_SEC", "0"),
            ("PLAZA_GRAPHQL_RATE_LIMIT_IP_PER_SEC", "0"),
        ],
    )
}

on_embedded_and_cluster!(
    status_shows_lag_while_paused_and_none_after_resume,
    a_rebuild_under_load_keeps_every_query_answering,
    a_rebuild_refuses_a_second_one_and_resumes_after_sigkill,
    a_poison_event_is_parked_and_retried_after_the_fix,
);

mod embedded_only {
    use super::*;

    #[test]
    fn unknown_commands_and_projections_are_refused_clearly() {
        let (ok, out) = common::run_to_exit(&["projections", "rebuild", "nope"], &[]);
        assert!(!ok && out.contains("unknown projection \"nope\""), "{out}");
        let (ok, out) = common::run_to_exit(&["projections", "frobnicate"], &[]);
        assert!(!ok && out.contains("unrecognized subcommand"), "{out}");
    }
}

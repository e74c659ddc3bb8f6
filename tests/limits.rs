//! Command rate limits, end to end on every profile: in-process token buckets for one
//! write API, Redis-held ones in the cluster profile.

mod common;

use common::{Plaza, Profile};
use serde_json::json;

/// Sends `send` until it is refused; returns how many got through first and the refusal.
fn until_refused(send: impl Fn() -> common::Reply) -> (usize, common::Reply) {
    for accepted in 0..20 {
        let reply = send();
        if reply.status == 429 {
            return (accepted, reply);
        }
    }
    panic!("20 requests in a row were accepted");
}

fn commands_beyond_a_users_rate_are_refused_with_retry_after(profile: Profile) {
    let plaza = Plaza::start_with(profile, &[("PLAZA_RATE_LIMIT_USER_PER_SEC", "1"), ("PLAZA_RATE_LIMIT_USER_BURST", "3")]);
    let (_, alice, _) = plaza.register("alice");
    let (bob, bob_token, _) = plaza.register("bob");
    let path = format!("/api/v1/users/{bob}/follow");
    let following = std::cell::Cell::new(false);
    let (accepted, refused) = until_refused(|| {
        let method = if following.replace(!following.get()) { "DELETE" } else { "POST" };
        plaza.send(method, &path, None, Some(&alice), &[])
    });
    assert!(accepted >= 3, "the burst of 3 goes through: {accepted}");
    assert_eq!(refused.code(), "rate_limited", "{}", refused.body);
    let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Another user is not held back by alice's bucket.
    let (carol, _, _) = plaza.register("carol");
    let reply = plaza.send("POST", &format!("/api/v1/users/{carol}/follow"), None, Some(&bob_token), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn anonymous_commands_are_limited_per_ip(profile: Profile) {
    // Failed logins are the anonymous command here; the throttle of failed logins stays
    // out of the way, however slowly a loaded machine sends them.
    let plaza = Plaza::start_with(
        profile,
        &[
            ("PLAZA_RATE_LIMIT_IP_PER_SEC", "1"),
            ("PLAZA_RATE_LIMIT_IP_BURST", "2"),
            ("PLAZA_LOGIN_FREE_FAILURES", "100"),
            ("PLAZA_LOGIN_IP_FREE_FAILURES", "100"),
        ],
    );
    let login = || plaza.send("POST", "/api/v1/users/login", Some(json!({ "login": "nobody", "password": "wrong horse" })), None, &[]);
    let (accepted, refused) = until_refused(login);
    assert!(accepted >= 2, "the burst of 2 goes through: {accepted}");
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    assert!(refused.header("retry-after").is_some());
    // The refusal read the request's body, so the client's keep-alive connection still
    // answers its next request.
    let again = login();
    assert_eq!((again.status, again.code()), (429, "rate_limited"), "{}", again.body);
}

on_every_profile!(commands_beyond_a_users_rate_are_refused_with_retry_after, anonymous_commands_are_limited_per_ip);

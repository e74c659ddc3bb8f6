//! End-to-end in a real browser (Debian's chromium, driven by playwright-core from
//! `clients/browser`; `make services` installs both): the ops page renders the
//! projections without JavaScript and its Retry button works, and nothing is fetched
//! from anywhere but Plaza.

mod common;

use std::process::Command;

use common::{Plaza, Profile};
use serde_json::{Value, json};

/// Runs one of `clients/browser`'s scripts; returns the JSON line it prints.
fn browse(script: &str, args: &[&str]) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/browser");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists() && std::path::Path::new(dir).join("node_modules/playwright-core").exists(),
        "chromium or playwright-core is missing: run `make services`"
    );
    let output = Command::new("node").arg(format!("{dir}/{script}")).args(args).output().expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_ops_page_renders_the_projections_and_its_retry_button_works() {
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_TEST_POISON_PROJECTION", "true"), ("PLAZA_PROJECTION_MAX_ATTEMPTS", "2")]);
    plaza.register("operator");
    let (ok, out, err) = plaza.cli(&["admin", "grant", "operator"], &[]);
    assert!(ok, "{out}{err}");
    let (alice, token, _) = plaza.register("alice");
    plaza.update_bio(&alice, &token, "one");
    let poison = plaza.update_bio(&alice, &token, "poison");
    let behind = plaza.update_bio(&alice, &token, "three");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, out, _) = plaza.cli(&["projections", "dead-letters", "list", "--json"], &[]);
        if serde_json::from_str::<Vec<Value>>(&out).is_ok_and(|letters| letters.len() == 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the poison was never parked: {out}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    plaza.read_models_sql("INSERT INTO poison_fixes__g1 (fixed) VALUES (1)");

    let seen = browse("ops-page.mjs", &[&plaza.base, "operator", "correct horse battery"]);
    assert!(seen["loginUrl"].as_str().unwrap().ends_with("/admin/login"), "{seen}");
    assert_eq!(
        seen["projections"],
        json!(["accounts", "content", "counters", "conversations", "feeds", "notifications", "searches", "poison_test", "welcome"]),
        "{seen}"
    );
    assert_eq!(seen["letters"], json!([poison, behind]), "{seen}");
    assert_eq!(seen["after"], json!([behind]), "the retried event left the page: {seen}");
    assert_eq!(seen["refresh"], true);
    assert_eq!(seen["outside"], json!([]), "the page fetched from elsewhere: {seen}");
    let (_, out, _) = plaza.cli(&["projections", "dead-letters", "list", "--json"], &[]);
    let left: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(left.iter().map(|d| d["position"].as_u64().unwrap()).collect::<Vec<_>>(), vec![behind]);
}

#[test]
fn graphiql_renders_and_runs_a_query_with_no_network_but_plaza() {
    let plaza = Plaza::start(Profile::Embedded);
    let (_, _, position) = plaza.register("alice");
    plaza.graphql("{ user(username: \"alice\") { id } }", json!({}), None, position);
    let seen = browse("graphiql.mjs", &[&plaza.base, "{ user(username: \"alice\") { username } }"]);
    let result = seen["result"].as_str().unwrap();
    assert!(result.contains("\"username\": \"alice\""), "{seen}");
    assert_eq!(seen["outside"], json!([]), "GraphiQL fetched from elsewhere: {seen}");
    assert_eq!(seen["errors"], json!([]), "{seen}");
}

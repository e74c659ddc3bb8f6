//! End-to-end: `plaza events ...` for analysts. The ranges are exact, incremental
//! exports add only what is new, password hashes never leave, bad arguments get clear
//! errors.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{Plaza, Profile};
use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn positions(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["position"].as_u64().unwrap()).collect()
}

fn tail(plaza: &Plaza, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events", "tail"];
    all.extend(args);
    let (ok, out, err) = plaza.cli(&all, &[]);
    assert!(ok, "{err}");
    lines(&out)
}

fn tail_ranges_are_exact(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, _, _) = plaza.register("alice");
    let (_, _, head) = plaza.register("bob");
    let all = tail(&plaza, &[]);
    assert_eq!(positions(&all), (1..=head).collect::<Vec<_>>(), "every event once, in order");
    assert!(all.iter().all(|e| e["data"]["password_hash"].is_null() || e["data"]["password_hash"] == "[redacted]"), "hashes are redacted");
    assert!(all.iter().any(|e| e["data"]["password_hash"] == "[redacted]"));
    let first = &all[0];
    for field in ["stream_id", "version", "event_type", "schema_version", "occurred_at", "event_id", "metadata", "data"] {
        assert!(!first[field].is_null(), "{field} missing in {first}");
    }
    assert_eq!(positions(&tail(&plaza, &["--from-position", "2", "--to-position", "4"])), vec![3, 4]);
    let registered = tail(&plaza, &["--types", "UserRegistered"]);
    assert_eq!(registered.len(), 2);
    assert!(registered.iter().all(|e| e["event_type"] == "UserRegistered"));
    let alices = tail(&plaza, &["--stream-prefix", &format!("user-{alice}")]);
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0]["data"]["username"], "alice");

    let (ok, _, err) = plaza.cli(&["events", "tail", "--from-position", "5", "--to-position", "4"], &[]);
    assert!(!ok && err.contains("--from-position (5) is after --to-position (4)"), "{err}");

    // --follow keeps printing what comes next.
    let mut follower = plaza.command(&["events", "tail", "--follow", "--from-position", &head.to_string()], &[]).spawn().unwrap();
    let (carol, _, _) = plaza.register("carol");
    let mut reader = BufReader::new(follower.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["event_type"] == "UserRegistered" && e["data"]["user_id"] == carol.as_str()) {
        assert!(Instant::now() < deadline, "--follow never printed carol: {seen:?}");
        let line = reader.next().expect("a line").unwrap();
        seen.push(serde_json::from_str(&line).unwrap());
    }
    assert!(positions(&seen).iter().all(|p| *p > head), "only what came after {head}");
    follower.kill().unwrap();
    follower.wait().unwrap();
}

fn exports_are_chunked_and_incremental(profile: Profile) {
    let plaza = Plaza::start(profile);
    plaza.register("alice");
    let (_, _, head) = plaza.register("bob");
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let (ok, out, err) = plaza.cli(&["events", "export", "--format", "jsonl", "--out", first.to_str().unwrap(), "--chunk-events", "4"], &[]);
    assert!(ok, "{out}{err}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(first.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (manifest["complete"].as_bool(), manifest["last_position"].as_u64(), manifest["events"].as_u64()),
        (Some(true), Some(head), Some(head))
    );
    let mut exported = Vec::new();
    for chunk in manifest["chunks"].as_array().unwrap() {
        let text = std::fs::read_to_string(first.join(chunk["file"].as_str().unwrap())).unwrap();
        let events = lines(&text);
        assert!(events.len() <= 4);
        assert_eq!(events.len() as u64, chunk["events"].as_u64().unwrap());
        exported.extend(events);
    }
    assert_eq!(exported, tail(&plaza, &[]), "the export holds exactly what tail prints");

    // Incremental: only what is newer than the first export.
    let (_, _, newer) = plaza.register("carol");
    let second = dir.path().join("second");
    let (ok, out, err) = plaza.cli(&["events", "export", "--out", second.to_str().unwrap(), "--since-manifest", first.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(second.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["from_position"].as_u64(), manifest["last_position"].as_u64()), (Some(head), Some(newer)));
    let files: Vec<String> = manifest["chunks"].as_array().unwrap().iter().map(|c| c["file"].as_str().unwrap().to_owned()).collect();
    let added: Vec<Value> = files.iter().flat_map(|f| lines(&std::fs::read_to_string(second.join(f)).unwrap())).collect();
    assert_eq!(positions(&added), (head + 1..=newer).collect::<Vec<_>>());
    // Run again on a complete export: nothing to do.
    let (ok, out, _) = plaza.cli(&["events", "export", "--out", second.to_str().unwrap()], &[]);
    assert!(ok && out.contains("already complete"), "{out}");
    let third = dir.path().join("third");
    let (ok, out, _) = plaza.cli(&["events", "export", "--out", third.to_str().unwrap(), "--since-manifest", second.to_str().unwrap()], &[]);
    assert!(ok && out.contains(&format!("nothing new after position {newer} (no files written)")), "{out}");

    let (ok, _, err) = plaza.cli(&["events", "export", "--out", "/proc/plaza-cannot-write-here"], &[]);
    assert!(!ok && err.contains("cannot create the directory /proc/plaza-cannot-write-here"), "{err}");
    let (ok, _, err) = plaza.cli(&["events", "export", "--out", dir.path().join("x").to_str().unwrap(), "--since-manifest", "/nonexistent"], &[]);
    assert!(!ok && err.contains("no manifest.json in /nonexistent"), "{err}");
}

/// Reads an export's Parquet files back with DuckDB (its Python package, installed by
/// `make services`): the column types, the count and an MD5 over every row.
const DUCKDB_READ_BACK: &str = r#"
import duckdb, hashlib, json, sys
files = sys.argv[1] + "/*.parquet"
con = duckdb.connect()
types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{files}'))").fetchall())
(count,) = con.execute(f"SELECT count(*) FROM read_parquet('{files}')").fetchone()
rows = con.execute(f"""SELECT position, stream_id, version, event_type, schema_version, epoch_us(occurred_at), event_id,
                              coalesce(correlation_id, ''), data
                       FROM read_parquet('{files}') ORDER BY position""").fetchall()
digest = hashlib.md5()
for row in rows:
    data = json.dumps(json.loads(row[8]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest.update(("|".join(map(str, row[:8])) + "|" + data + "\n").encode())
print(json.dumps({"types": types, "count": count, "md5": digest.hexdigest(),
                  "first": rows[0][0] if rows else None, "hashes": any("$argon2" in row[8] for row in rows)}))
"#;

fn duckdb(dir: &std::path::Path) -> Value {
    let python = std::env::var("PLAZA_VENV").unwrap_or_else(|_| format!("{}/.cache/plaza/venv", std::env::var("HOME").unwrap())) + "/bin/python";
    let output = std::process::Command::new(&python)
        .args(["-c", DUCKDB_READ_BACK, dir.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("{python} (DuckDB; `make services` installs it): {e}"));
    assert!(output.status.success(), "DuckDB read-back failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The same MD5 as `DUCKDB_READ_BACK`, over the events as the store gives them.
fn checksum(events: &[Value]) -> String {
    use md5::Digest as _;
    let mut digest = md5::Md5::new();
    for e in events {
        let occurred = chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap().timestamp_micros();
        let fields = [
            e["position"].to_string(),
            e["stream_id"].as_str().unwrap().to_owned(),
            e["version"].to_string(),
            e["event_type"].as_str().unwrap().to_owned(),
            e["schema_version"].to_string(),
            occurred.to_string(),
            e["event_id"].as_str().unwrap().to_owned(),
            e["metadata"]["correlation_id"].as_str().unwrap_or("").to_owned(),
            serde_json::to_string(&e["data"]).unwrap(),
        ];
        digest.update(format!("{}\n", fields.join("|")).as_bytes());
    }
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parquet export, read back by a tool this project did not write: the same events,
/// typed envelope columns, and incremental pulls add only what is new.
fn parquet_exports_read_back_in_duckdb(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, token, _) = plaza.register("alice");
    plaza.register("bob");
    let reply = plaza.send("PUT", &format!("/api/v1/users/{alice}"), Some(serde_json::json!({ "bio": "Zoë 🎥" })), Some(&token), &[]);
    assert_eq!(reply.status, 200);
    let head = reply.body["position"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let (ok, out, err) = plaza.cli(&["events", "export", "--format", "parquet", "--out", first.to_str().unwrap(), "--chunk-events", "2"], &[]);
    assert!(ok, "{out}{err}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(first.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["format"].as_str(), manifest["events"].as_u64()), (Some("parquet"), Some(head)));
    assert!(manifest["chunks"].as_array().unwrap().len() > 1, "chunks of 2: {manifest}");

    let store = tail(&plaza, &[]);
    let read_back = duckdb(&first);
    assert_eq!(read_back["count"].as_u64(), Some(store.len() as u64));
    assert_eq!(read_back["md5"].as_str().unwrap(), checksum(&store), "DuckDB reads back exactly the store's events");
    assert_eq!(read_back["hashes"], false, "no password hash leaves");
    let types = &read_back["types"];
    for (column, expected) in [
        ("position", "BIGINT"),
        ("version", "BIGINT"),
        ("schema_version", "INTEGER"),
        ("occurred_at", "TIMESTAMP WITH TIME ZONE"),
        ("stream_id", "VARCHAR"),
        ("event_type", "VARCHAR"),
        ("actor", "VARCHAR"),
        ("correlation_id", "VARCHAR"),
        ("data", "VARCHAR"),
    ] {
        assert_eq!(types[column].as_str(), Some(expected), "{column}: {types}");
    }

    let (_, _, newer) = plaza.register("carol");
    let second = dir.path().join("second");
    let (ok, out, err) =
        plaza.cli(&["events", "export", "--format", "parquet", "--out", second.to_str().unwrap(), "--since-manifest", first.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    let added = duckdb(&second);
    assert_eq!((added["count"].as_u64(), added["first"].as_u64()), (Some(newer - head), Some(head + 1)), "only what is new");
    let (ok, _, err) = plaza.cli(&["events", "export", "--format", "jsonl", "--out", second.to_str().unwrap()], &[]);
    assert!(ok, "a complete export is left alone whatever the format: {err}");
}

fn a_stream_prints_its_events_and_its_state(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (alice, token, _) = plaza.register("alice");
    let reply = plaza.send("PUT", &format!("/api/v1/users/{alice}"), Some(serde_json::json!({ "bio": "hi" })), Some(&token), &[]);
    assert_eq!(reply.status, 200);
    let stream = format!("user-{alice}");
    let (ok, out, err) = plaza.cli(&["events", "stream", &stream], &[]);
    assert!(ok, "{err}");
    let all = lines(&out);
    assert_eq!(all.len(), 3, "two events and the state: {out}");
    assert_eq!((all[0]["event_type"].as_str(), all[1]["event_type"].as_str()), (Some("UserRegistered"), Some("ProfileUpdated")));
    let state = &all[2];
    assert_eq!(state["aggregate"], "Account");
    assert_eq!(state["state"]["registered"]["username"], "alice");
    assert_eq!(state["state"]["registered"]["profile"]["bio"], "hi");
    assert_eq!(state["state"]["registered"]["password_hash"], "[redacted]");
    let (ok, out, _) = plaza.cli(&["events", "stream", &stream, "--to-version", "0"], &[]);
    assert!(ok);
    let until_first = lines(&out);
    assert_eq!(until_first.len(), 2);
    assert_eq!(until_first[1]["state"]["registered"]["profile"]["bio"], Value::Null, "the state after version 0 only");
    let (ok, _, err) = plaza.cli(&["events", "stream", "user-nobody"], &[]);
    assert!(!ok && err.contains("stream \"user-nobody\" has no events"), "{err}");
}

/// Time travel: a projection as it stood at a position, in a SQLite file any SQL tool
/// opens.
fn a_projection_is_built_as_it_stood_at_a_position(profile: Profile) {
    let plaza = Plaza::start(profile);
    let (_, _, at) = plaza.register("alice");
    plaza.register("bob");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accounts-then.sqlite");
    let (ok, out, err) = plaza.cli(&["projections", "build", "accounts", "--to-position", &at.to_string(), "--into", file.to_str().unwrap()], &[]);
    assert!(ok && out.contains(&format!("accounts: built at position {at}")), "{out}{err}");
    let conn = rusqlite::Connection::open(&file).unwrap();
    let names: Vec<String> =
        conn.prepare("SELECT username FROM users").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(names, ["alice"], "bob came later");
    let (ok, _, err) = plaza.cli(&["projections", "build", "accounts", "--to-position", &at.to_string(), "--into", file.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("exists; give a new file"), "{err}");
    let (ok, _, err) =
        plaza.cli(&["projections", "build", "accounts", "--to-position", "999999", "--into", dir.path().join("x.sqlite").to_str().unwrap()], &[]);
    assert!(!ok && err.contains("beyond the event log's head"), "{err}");
    let (ok, _, err) =
        plaza.cli(&["projections", "build", "nope", "--to-position", "1", "--into", dir.path().join("y.sqlite").to_str().unwrap()], &[]);
    assert!(!ok && err.contains("unknown projection \"nope\""), "{err}");
}

on_embedded_and_cluster!(
    tail_ranges_are_exact,
    exports_are_chunked_and_incremental,
    parquet_exports_read_back_in_duckdb,
    a_stream_prints_its_events_and_its_state,
    a_projection_is_built_as_it_stood_at_a_position,
);

/// `plaza events replay` (its exact range is checked against the broker in
/// `infra/tests/relay.rs`): it says what it produced, and refuses bad arguments.
#[test]
fn a_replay_says_what_it_produced() {
    let plaza = Plaza::start_with(Profile::Embedded, &[("PLAZA_KAFKA_BROKERS", &common::kafka_brokers())]);
    plaza.register("alice");
    let topic = format!("plaza-replay-{}", uuid::Uuid::new_v4().simple());
    let (ok, out, err) = plaza.cli(&["events", "replay", "--to-topic", &topic, "--from-position", "1", "--to-position", "3"], &[]);
    assert!(ok && out.contains(&format!("{topic}: produced 2 events, positions 2..=3")), "{out}{err}");
    let (ok, _, err) = plaza.cli(&["events", "replay", "--to-topic", &topic, "--from-position", "3", "--to-position", "1"], &[]);
    assert!(!ok && err.contains("--from-position (3) is after --to-position (1)"), "{err}");
    let (ok, _, err) = plaza.cli(&["events", "replay", "--to-topic", " "], &[]);
    assert!(!ok && err.contains("--to-topic must name a topic"), "{err}");
}

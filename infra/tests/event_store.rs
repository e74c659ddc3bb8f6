//! The event-store conformance suite: every test runs against every adapter that can
//! run here (SQLite, PostgreSQL), each on its own fresh file or database.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent, Snapshot, StoreError};
use plaza_infra::postgres::PgEventStore;
use plaza_infra::sqlite::SqliteEventStore;
use uuid::Uuid;

fn event() -> NewEvent {
    let data = Event::UserFollowed { follower_id: Uuid::new_v4(), followee_id: Uuid::new_v4() };
    NewEvent::new(Uuid::new_v4(), &data, Metadata { actor: Some(Uuid::new_v4()), ..Metadata::default() }, Utc::now())
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|_| event()).collect()
}

fn is_conflict(result: Result<plaza_domain::Appended, StoreError>, actual_version: Option<u64>) -> bool {
    matches!(result, Err(StoreError::WrongExpectedVersion { actual, .. }) if actual == actual_version)
}

async fn expected_versions_are_enforced(store: Arc<dyn EventStore>) {
    let first = store.append("s-1", ExpectedVersion::NoStream, events(2)).await.unwrap();
    assert_eq!(first.stream_version, 1);
    assert!(first.last_position > first.first_position);
    assert!(is_conflict(store.append("s-1", ExpectedVersion::NoStream, events(1)).await, Some(1)));
    assert!(is_conflict(store.append("s-1", ExpectedVersion::Exact(0), events(1)).await, Some(1)));
    assert!(is_conflict(store.append("s-2", ExpectedVersion::Exact(0), events(1)).await, None));
    let exact = store.append("s-1", ExpectedVersion::Exact(1), events(1)).await.unwrap();
    assert_eq!(exact.stream_version, 2);
    let any = store.append("s-1", ExpectedVersion::Any, events(1)).await.unwrap();
    assert_eq!(any.stream_version, 3);
    assert!(any.first_position > exact.last_position);
    assert!(matches!(store.append("s-1", ExpectedVersion::Any, vec![]).await, Err(StoreError::EmptyAppend)));
}

async fn duplicate_event_ids_are_appended_once(store: Arc<dyn EventStore>) {
    let batch = events(2);
    let first = store.append("dup", ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    // A retry of the same append: no version check, same answer, nothing new stored.
    let again = store.append("dup", ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(store.read_stream("dup", 0, 100).await.unwrap().len(), 2);
    assert_eq!(store.head().await.unwrap(), first.last_position);
    // Only the unknown events of a partly known append are stored.
    let mut mixed = batch;
    mixed.push(event());
    let third = store.append("dup", ExpectedVersion::Exact(1), mixed).await.unwrap();
    assert_eq!(third.stream_version, 2);
    assert_eq!(store.read_stream("dup", 0, 100).await.unwrap().len(), 3);
}

async fn streams_read_forward_from_a_version(store: Arc<dyn EventStore>) {
    let written = events(5);
    store.append("read-me", ExpectedVersion::NoStream, written.clone()).await.unwrap();
    store.append("other", ExpectedVersion::NoStream, events(3)).await.unwrap();
    let all = store.read_stream("read-me", 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    for (recorded, sent) in all.iter().zip(&written) {
        assert_eq!(recorded.event_id, sent.event_id);
        assert_eq!(recorded.stream_id, "read-me");
        assert_eq!(recorded.event_type, sent.event_type);
        // JSON equality: PostgreSQL's jsonb normalises key order and spacing.
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert_eq!(json(&recorded.data), json(&sent.data));
        assert_eq!(recorded.metadata, sent.metadata);
        assert_eq!(recorded.occurred_at.timestamp_micros(), sent.occurred_at.timestamp_micros());
        assert_eq!(recorded.decode().unwrap(), Event::decode(&sent.event_type, 1, &sent.data).unwrap());
    }
    let tail = store.read_stream("read-me", 2, 2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 3]);
    assert!(store.read_stream("missing", 0, 10).await.unwrap().is_empty());
}

async fn the_global_log_reads_in_batches(store: Arc<dyn EventStore>) {
    assert_eq!(store.head().await.unwrap(), 0);
    for i in 0..7 {
        store.append(&format!("log-{}", i % 3), ExpectedVersion::Any, events(1 + i % 2)).await.unwrap();
    }
    let head = store.head().await.unwrap();
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        let page = store.read_all(after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().position;
        seen.extend(page.into_iter().map(|e| e.position));
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "positions increase: {seen:?}");
    assert_eq!(seen.last(), Some(&head));
}

async fn waiters_wake_on_new_events(store: Arc<dyn EventStore>) {
    let head = store.head().await.unwrap();
    assert_eq!(store.wait_for_events(head, Duration::from_millis(50)).await.unwrap(), head);
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.wait_for_events(head, Duration::from_secs(30)).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let appended = store.append("wake", ExpectedVersion::Any, events(1)).await.unwrap();
    let woke_at = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("waiter woke").unwrap();
    assert!(woke_at >= appended.last_position);
}

/// Concurrent appenders and a tailing reader: the reader sees every position exactly
/// once, in order, with no gaps, even though commits race.
async fn a_tailing_reader_never_skips_a_late_commit(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 16;
    const APPENDS: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut version = None;
                for i in 0..APPENDS {
                    let stream = format!("writer-{w}");
                    let appended = store.append(&stream, ExpectedVersion::from_current(version), events(1 + i % 3)).await.unwrap();
                    version = Some(appended.stream_version);
                    // A shared hot stream appended without a version check, too.
                    store.append("shared", ExpectedVersion::Any, events(1)).await.unwrap();
                }
            })
        })
        .collect();
    let total: u64 = (WRITERS * (0..APPENDS).map(|i| 2 + i % 3).sum::<usize>()) as u64;
    let reader = tokio::spawn({
        let store = store.clone();
        async move {
            let (mut after, mut seen) = (0u64, Vec::new());
            while (seen.len() as u64) < total {
                let page = store.read_all(after, 7).await.unwrap();
                if page.is_empty() {
                    store.wait_for_events(after, Duration::from_millis(200)).await.unwrap();
                    continue;
                }
                after = page.last().unwrap().position;
                seen.extend(page);
            }
            seen
        }
    });
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader caught up").unwrap();
    assert_eq!(seen.len() as u64, total);
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "positions increase");
    assert_eq!(seen.iter().map(|e| e.event_id).collect::<HashSet<_>>().len() as u64, total);
    for w in 0..WRITERS {
        let versions: Vec<u64> = seen.iter().filter(|e| e.stream_id == format!("writer-{w}")).map(|e| e.version).collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>(), "writer-{w} in order");
    }
}

/// Concurrent appends racing for the same new stream: exactly one wins.
async fn racing_appends_to_a_new_stream_have_one_winner(store: Arc<dyn EventStore>) {
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append("contested", ExpectedVersion::NoStream, events(1)).await })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => winners += 1,
            Err(StoreError::WrongExpectedVersion { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(winners, 1);
}

async fn events_are_found_by_id(store: Arc<dyn EventStore>) {
    let written = events(2);
    let appended = store.append("by-id", ExpectedVersion::NoStream, written.clone()).await.unwrap();
    let found = store.read_event("by-id", written[1].event_id).await.unwrap().expect("stored event is found");
    assert_eq!((found.position, found.version, found.stream_id.as_str()), (appended.last_position, 1, "by-id"));
    assert!(store.read_event("by-id", Uuid::new_v4()).await.unwrap().is_none());
    assert!(store.read_event("elsewhere", written[1].event_id).await.unwrap().is_none());
}

async fn snapshots_keep_the_newest_version(store: Arc<dyn EventStore>) {
    assert!(store.read_snapshot("snap").await.unwrap().is_none());
    let snapshot = |version: u64, state: &str| Snapshot { stream_id: "snap".into(), version, position: version + 10, schema: 1, state: state.into() };
    store.write_snapshot(snapshot(5, r#"{"n":5}"#)).await.unwrap();
    store.write_snapshot(snapshot(3, r#"{"n":3}"#)).await.unwrap(); // older: ignored
    let read = store.read_snapshot("snap").await.unwrap().unwrap();
    assert_eq!((read.version, read.position, read.schema), (5, 15, 1));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&read.state).unwrap(), serde_json::json!({ "n": 5 }));
    store.write_snapshot(snapshot(9, r#"{"n":9}"#)).await.unwrap();
    assert_eq!(store.read_snapshot("snap").await.unwrap().unwrap().version, 9);
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
                    super::$test(store).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let url = common::fresh_database().await;
                    let store = Arc::new(PgEventStore::connect(&url).await.unwrap());
                    super::$test(store).await;
                }
            )*
        }
        /// Runs only against a server named by PLAZA_TEST_EVENTSTOREDB_URL (an `esdb://`
        /// connection string); each test gets its own namespace on it.
        #[cfg(feature = "eventstoredb")]
        mod eventstoredb {
            use super::*;
            use plaza_infra::eventstoredb::EsdbEventStore;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Ok(url) = std::env::var("PLAZA_TEST_EVENTSTOREDB_URL") else {
                        eprintln!(
                            "eventstoredb conformance: {} SKIPPED (set PLAZA_TEST_EVENTSTOREDB_URL to run it against a server)",
                            stringify!($test)
                        );
                        return;
                    };
                    let namespace = format!("t{}-", Uuid::new_v4().simple());
                    let store = Arc::new(EsdbEventStore::connect(&url, &namespace).await.unwrap());
                    super::$test(store).await;
                }
            )*
        }
    };
}

conformance!(
    expected_versions_are_enforced,
    duplicate_event_ids_are_appended_once,
    streams_read_forward_from_a_version,
    the_global_log_reads_in_batches,
    waiters_wake_on_new_events,
    a_tailing_reader_never_skips_a_late_commit,
    racing_appends_to_a_new_stream_have_one_winner,
    events_are_found_by_id,
    snapshots_keep_the_newest_version,
);

/// SQLite and PostgreSQL promise more than the port: positions are 1, 2, 3, ... with
/// no gaps, also when appends race.
async fn positions_are_gap_free(store: Arc<dyn EventStore>) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(&format!("dense-{}", i % 7), ExpectedVersion::Any, events(1 + i % 2)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let positions: Vec<u64> = store.read_all(0, 1000).await.unwrap().iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=75).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_positions_are_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    positions_are_gap_free(Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_positions_are_gap_free() {
    positions_are_gap_free(Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap())).await;
}

/// Group commit: many concurrent appends, far fewer transactions.
async fn concurrent_appends(store: Arc<dyn EventStore>, appends: usize) {
    let tasks: Vec<_> = (0..appends)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(&format!("gc-{i}"), ExpectedVersion::NoStream, events(1)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    concurrent_appends(store.clone(), 300).await;
    assert!(store.commits() < 300, "{} commits for 300 appends", store.commits());
    assert_eq!(store.head().await.unwrap(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_appends_share_commits() {
    let url = common::fresh_database().await;
    let store = Arc::new(PgEventStore::connect(&url).await.unwrap());
    concurrent_appends(store.clone(), 300).await;
    assert!(store.commits() < 300, "{} commits for 300 appends", store.commits());
    assert_eq!(store.head().await.unwrap(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_events_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let written = {
        let store = SqliteEventStore::open(&path).unwrap();
        store.append("kept", ExpectedVersion::NoStream, events(3)).await.unwrap()
    };
    let store = SqliteEventStore::open(&path).unwrap();
    assert_eq!(store.head().await.unwrap(), written.last_position);
    let next = store.append("kept", ExpectedVersion::Exact(2), events(1)).await.unwrap();
    assert_eq!(next.first_position, written.last_position + 1);
}

/// Two store instances (as two processes would) append to one database: positions
/// stay gap-free and each instance's waiters hear the other's commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_instances_share_one_log() {
    let url = common::fresh_database().await;
    let a = Arc::new(PgEventStore::connect(&url).await.unwrap());
    let b = Arc::new(PgEventStore::connect(&url).await.unwrap());
    let waiter = tokio::spawn({
        let a = a.clone();
        async move { a.wait_for_events(0, Duration::from_secs(30)).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.append("from-b", ExpectedVersion::NoStream, events(1)).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("a heard b").unwrap() >= 1);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.append("both", ExpectedVersion::Any, events(1)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = a.read_all(0, 1000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=101).collect::<Vec<_>>());
    assert_eq!(b.read_stream("both", 0, 1000).await.unwrap().iter().map(|e| e.version).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
}

/// The writer keeps what it commits for readers following the head: what they read
/// is what a fresh instance reads from the store, to the microsecond (PostgreSQL hands
/// JSONB back with its own key order and spacing), also when another instance
/// (process) appends in between.
async fn recent_events_read_as_stored(a: &dyn EventStore, b: &dyn EventStore, fresh: &dyn EventStore) {
    for i in 0..30 {
        let store = if i % 7 < 4 { a } else { b };
        store.append(&format!("s-{}", i % 5), ExpectedVersion::Any, events(1 + i % 3)).await.unwrap();
    }
    let stored = fresh.read_all(0, 1000).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=stored.len() as u64).collect::<Vec<_>>());
    for store in [a, b] {
        let (mut after, mut read) = (0, Vec::new());
        loop {
            let page = store.read_all(after, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            read.extend(page);
        }
        assert_eq!(read, stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recent_events_read_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let (a, b) = (SqliteEventStore::open(&path).unwrap(), SqliteEventStore::open(&path).unwrap());
    recent_events_read_as_stored(&a, &b, &SqliteEventStore::open(&path).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recent_events_read_as_stored() {
    let url = common::fresh_database().await;
    let (a, b) = (PgEventStore::connect(&url).await.unwrap(), PgEventStore::connect(&url).await.unwrap());
    recent_events_read_as_stored(&a, &b, &PgEventStore::connect(&url).await.unwrap()).await;
}

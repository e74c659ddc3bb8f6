//! The counter batcher against real event stores: exact totals with several writers
//! (as several write-API processes would be) sharing the shard streams, and after a
//! restart. The read models are taken as empty here (no projector runs), so every total
//! comes from the shards' events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use plaza_commands::{CommandError, CounterBaseline, Counters};
use plaza_domain::EventStore;
use plaza_domain::counters::CounterKey;
use plaza_infra::postgres::PgEventStore;
use plaza_infra::sqlite::SqliteEventStore;

/// Read models that have applied nothing yet.
struct NothingApplied;

#[async_trait::async_trait]
impl CounterBaseline for NothingApplied {
    async fn baseline(&self, _: &CounterKey, _: &str) -> Result<(i64, Option<u64>), CommandError> {
        Ok((0, None))
    }
}

/// Read models holding one value for every counter.
struct Holding(i64);

#[async_trait::async_trait]
impl CounterBaseline for Holding {
    async fn baseline(&self, _: &CounterKey, _: &str) -> Result<(i64, Option<u64>), CommandError> {
        Ok((self.0, None))
    }
}

const KEYS: [&str; 3] = ["hot", "warm", "cold"];

/// `writers` batchers over one store, each with 10 tasks incrementing every key 50
/// times; checks every answer is distinct per key and the last one is the total.
async fn exact_totals_with_several_writers(store: Arc<dyn EventStore>, writers: usize) {
    let batchers: Vec<Counters> = (0..writers).map(|_| Counters::start(store.clone(), Arc::new(NothingApplied))).collect();
    let mut tasks = Vec::new();
    for batcher in &batchers {
        for _ in 0..10 {
            let batcher = batcher.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..50 {
                    for key in KEYS {
                        let value = batcher.increment(CounterKey::parse(key, "likes").unwrap(), 1, None).await.unwrap();
                        seen.push((key, value));
                    }
                }
                seen
            }));
        }
    }
    let mut values: HashMap<&str, Vec<i64>> = HashMap::new();
    for task in tasks {
        for (key, value) in task.await.unwrap() {
            values.entry(key).or_default().push(value);
        }
    }
    let expected = (writers * 10 * 50) as i64;
    for key in KEYS {
        let answers = &values[key];
        assert_eq!(answers.iter().copied().collect::<HashSet<_>>().len() as i64, expected, "{key}: every answer is its own value");
        assert_eq!(answers.iter().max().copied(), Some(expected), "{key}");
    }
    // A new batcher (a restarted process) continues from the durable increments.
    let restarted = Counters::start(store, Arc::new(NothingApplied));
    assert_eq!(restarted.increment(CounterKey::parse("hot", "likes").unwrap(), 5, None).await.unwrap(), expected + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_counters_add_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    exact_totals_with_several_writers(Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap()), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_counters_add_up_exactly_across_writers() {
    let admin = std::env::var("PLAZA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("PostgreSQL runs (make services)");
    tokio::spawn(connection);
    let name = format!("plaza_test_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    // Two store instances, as two write-API processes would have.
    let first: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(&url).await.unwrap());
    let second: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(&url).await.unwrap());
    let batchers = [Counters::start(first.clone(), Arc::new(NothingApplied)), Counters::start(second, Arc::new(NothingApplied))];
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let batcher = batchers[i % 2].clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..50 {
                    seen.push(batcher.increment(CounterKey::parse("shared", "views").unwrap(), 1, None).await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    assert_eq!(answers.iter().copied().collect::<HashSet<_>>().len(), 1000, "no two answers alike across writers");
    assert_eq!(answers.iter().max().copied(), Some(1000));
    exact_totals_with_several_writers(first, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_increment_counts_once_however_often_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let (one, two) = (Counters::start(store.clone(), Arc::new(NothingApplied)), Counters::start(store.clone(), Arc::new(NothingApplied)));
    let key = || CounterKey::parse("page", "clicks").unwrap();
    let request = Some(uuid::Uuid::new_v4());
    // Ten repeats at once in one writer: one of them adds. (Repeats racing in two
    // writers are kept apart by the idempotency key's claim, before they get here.)
    let repeats: Vec<_> = (0..10).map(|_| one.clone()).map(|c| tokio::spawn(async move { c.increment(key(), 3, request).await })).collect();
    for repeat in repeats {
        repeat.await.unwrap().unwrap();
    }
    assert_eq!(one.increment(key(), 1, None).await.unwrap(), 4);
    assert_eq!(one.increment(key(), 3, request).await.unwrap(), 3, "a repeat answers what the first did");
    // Another writer catches up on the shard before it decides on a keyed increment.
    assert_eq!(two.increment(key(), 3, request).await.unwrap(), 4, "the current total, where the first answer is not known");
    assert_eq!(two.increment(key(), 1, None).await.unwrap(), 5);
    // A restarted writer reads the shard's history and knows the request too.
    let restarted = Counters::start(store, Arc::new(NothingApplied));
    assert_eq!(restarted.increment(key(), 3, request).await.unwrap(), 5);
    assert_eq!(restarted.increment(key(), 1, None).await.unwrap(), 6);
}

#[tokio::test]
async fn totals_are_never_pushed_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let counters = Counters::start(store, Arc::new(Holding(i64::MAX - 10)));
    let key = || CounterKey::parse("big", "clicks").unwrap();
    assert_eq!(counters.increment(key(), 10, None).await.unwrap(), i64::MAX);
    let refused = counters.increment(key(), 1, None).await.unwrap_err();
    assert!(matches!(refused, CommandError::Domain(plaza_domain::DomainError::InvalidCounter(_))), "{refused:?}");
    assert_eq!(counters.increment(key(), -1, None).await.unwrap(), i64::MAX - 1, "the refused one added nothing");
}

//! The relay against a real Kafka-protocol broker (tansu, started by `make services`)
//! and a real PostgreSQL event store; each test has its own database and topic.

mod common;

use common::broker::Broker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use plaza_infra::kafka::{KafkaSettings, Relay, RelayCheckpoints, ensure_topic, recorded_event, replay, watermark};
use plaza_infra::postgres::PgEventStore;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;
use uuid::Uuid;

async fn append_round(store: &PgEventStore, streams: usize, round: u64) {
    for s in 0..streams {
        let event = Event::UserFollowed { follower_id: Uuid::new_v4(), followee_id: Uuid::new_v4() };
        let new = NewEvent::new(Uuid::now_v7(), &event, Metadata { actor: Some(Uuid::new_v4()), ..Metadata::default() }, Utc::now());
        let expected = if round == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(round - 1) };
        store.append(&format!("stream-{s}"), expected, vec![new]).await.unwrap();
    }
}

fn consumer(brokers: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Runs a relay over the store until `stop` is sent `true`.
fn start_relay(settings: &KafkaSettings, store: &Arc<PgEventStore>) -> (watch::Sender<bool>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (stop, shutdown) = watch::channel(false);
    let relay = Relay::new(settings, store.clone(), store.clone()).unwrap();
    (stop, tokio::spawn(async move { relay.run(shutdown).await }))
}

fn settings(brokers: &str, partitions: i32) -> KafkaSettings {
    KafkaSettings { brokers: brokers.to_owned(), topic: format!("plaza-test-{}", Uuid::new_v4().simple()), partitions }
}

/// What a test consumer received: the events in arrival order (duplicates kept), and
/// per partition the highest watermark so far.
#[derive(Default)]
struct Received {
    seen: Vec<(String, RecordedEvent)>,
    marks: HashMap<i32, u64>,
    watermarks: usize,
}

/// Receives until `count` distinct events arrived. Checks the watermark promise: no
/// event arrives in a partition after a watermark that covers its position.
async fn receive(consumer: &StreamConsumer, count: usize, received: &mut Received) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut ids: HashSet<Uuid> = received.seen.iter().map(|(_, e)| e.event_id).collect();
    while ids.len() < count {
        // Transport errors while a broker restarts are reported, not fatal: keep reading.
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await.expect("events arrive in time") else {
            continue;
        };
        let mark = received.marks.entry(message.partition()).or_default();
        if let Some(watermark) = watermark(&message) {
            assert!(message.payload().is_none_or(<[u8]>::is_empty), "a watermark carries no event");
            *mark = (*mark).max(watermark);
            received.watermarks += 1;
            continue;
        }
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let event = recorded_event(&message).unwrap();
        if ids.insert(event.event_id) {
            assert!(event.position > *mark, "event {} arrived after watermark {mark} of its partition", event.position);
        }
        received.seen.push((key, event));
    }
}

fn assert_matches_store(seen: &[(String, RecordedEvent)], stored: &[RecordedEvent]) {
    let by_id: HashMap<Uuid, &RecordedEvent> = stored.iter().map(|e| (e.event_id, e)).collect();
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for (key, event) in seen {
        let original = by_id[&event.event_id];
        assert_eq!(key, &plaza_domain::event::partition_key(&original.stream_id, &original.data), "the stream's partition key");
        assert_eq!((event.position, event.version, &event.event_type), (original.position, original.version, &original.event_type));
        assert_eq!(event.metadata, original.metadata);
        assert_eq!(event.decode().unwrap(), original.decode().unwrap());
        // A stream's events arrive in order (a replay after a crash may repeat a suffix).
        if let Some(previous) = last_version.insert(&original.stream_id, event.version) {
            assert!(
                event.version == previous + 1 || event.version <= previous,
                "stream {} jumped from {previous} to {}",
                original.stream_id,
                event.version
            );
        }
    }
}

fn brokers() -> String {
    std::env::var("PLAZA_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_produces_every_event_in_stream_order_and_resumes_after_restart() {
    let settings = settings(&brokers(), 3);
    ensure_topic(&settings).await.unwrap();
    let store = Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap());
    for round in 0..20 {
        append_round(&store, 5, round).await;
    }

    let (stop, running) = start_relay(&settings, &store);
    let consumer = consumer(&settings.brokers, &settings.topic);
    let mut received = Received::default();
    receive(&consumer, 100, &mut received).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(store.load(&format!("relay:{}", settings.topic)).await.unwrap(), store.head().await.unwrap());

    // More commands while the relay is stopped; a new relay picks up where it stopped.
    for round in 20..30 {
        append_round(&store, 5, round).await;
    }
    let (stop, running) = start_relay(&settings, &store);
    receive(&consumer, 150, &mut received).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let stored = store.read_all(0, 1000).await.unwrap();
    assert_eq!(stored.len(), 150);
    assert_eq!(received.seen.len(), 150, "a clean stop and restart re-sends nothing");
    assert!(received.watermarks >= 3, "each batch ends with a watermark in every partition");
    assert_matches_store(&received.seen, &stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_keep_flowing_while_the_broker_is_down_and_the_relay_catches_up() {
    let mut broker = Broker::start();
    let settings = settings(&broker.brokers(), 2);
    let store = Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap());
    let (stop, running) = start_relay(&settings, &store);
    for round in 0..10 {
        append_round(&store, 4, round).await;
    }
    let consumer = consumer(&settings.brokers, &settings.topic);
    let mut received = Received::default();
    receive(&consumer, 40, &mut received).await;

    broker.kill9();
    // The write side does not depend on the broker.
    for round in 10..20 {
        append_round(&store, 4, round).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.launch();

    receive(&consumer, 80, &mut received).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let stored = store.read_all(0, 1000).await.unwrap();
    assert_eq!(stored.len(), 80);
    assert_matches_store(&received.seen, &stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_stops_on_request_while_the_broker_is_down() {
    let mut broker = Broker::start();
    let settings = settings(&broker.brokers(), 2);
    let store = Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap());
    let (stop, running) = start_relay(&settings, &store);
    append_round(&store, 2, 0).await;
    let consumer = consumer(&settings.brokers, &settings.topic);
    receive(&consumer, 2, &mut Received::default()).await;

    broker.kill9();
    append_round(&store, 2, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), running).await.expect("the relay stops although deliveries hang");
    stopped.unwrap().unwrap();
    let checkpoint = store.load(&format!("relay:{}", settings.topic)).await.unwrap();
    assert_eq!(checkpoint, 2, "the undelivered batch is not checkpointed, so it is sent again later");
}

/// `plaza events replay`: exactly the chosen range, with the relay's envelope, and no
/// watermarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_produces_exactly_its_range() {
    let url = common::fresh_database().await;
    let store = PgEventStore::connect(&url).await.unwrap();
    for round in 0..3 {
        append_round(&store, 4, round).await;
    }
    let settings = settings(&brokers(), 2);
    let wanted = |e: &RecordedEvent| e.stream_id != "stream-0";
    let mut reached = Vec::new();
    let produced = replay(&settings, &store, 3, 10, &wanted, &mut |p| reached.push(p)).await.unwrap();
    let expected: Vec<RecordedEvent> = store.read_all(3, 100).await.unwrap().into_iter().filter(|e| e.position <= 10 && wanted(e)).collect();
    assert_eq!(produced, expected.len() as u64);
    assert_eq!(reached.last(), Some(&10));

    let consumer = consumer(&settings.brokers, &settings.topic);
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("the replayed events").unwrap();
        assert!(watermark(&message).is_none(), "no watermarks in a replay");
        seen.push(recorded_event(&message).unwrap());
    }
    seen.sort_by_key(|e| e.position);
    assert_eq!(seen, expected);
    // Nothing more arrives.
    assert!(tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await.is_err());
}

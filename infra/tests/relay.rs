//! The relay against a real Kafka-protocol broker (tansu, started by `make services`)
//! and a real PostgreSQL event store; each test has its own database and topic.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use plaza_infra::kafka::{Relay, RelayCheckpoints, ensure_topic, recorded_event};
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

/// Receives until `count` distinct events arrived (duplicates are kept apart).
async fn receive(consumer: &StreamConsumer, count: usize, seen: &mut Vec<(String, RecordedEvent)>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.iter().map(|(_, e)| e.event_id).collect::<std::collections::HashSet<_>>().len() < count {
        // Transport errors while a broker restarts are reported, not fatal: keep reading.
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await.expect("events arrive in time") else {
            continue;
        };
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        seen.push((key, recorded_event(&message).unwrap()));
    }
}

fn assert_matches_store(seen: &[(String, RecordedEvent)], stored: &[RecordedEvent]) {
    let by_id: HashMap<Uuid, &RecordedEvent> = stored.iter().map(|e| (e.event_id, e)).collect();
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for (key, event) in seen {
        let original = by_id[&event.event_id];
        assert_eq!(key, &original.stream_id, "key is the stream id");
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
    let brokers = brokers();
    let topic = format!("plaza-test-{}", Uuid::new_v4().simple());
    ensure_topic(&brokers, &topic, 3).await.unwrap();
    let store = Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap());
    for round in 0..20 {
        append_round(&store, 5, round).await;
    }

    let (stop, shutdown) = watch::channel(false);
    let relay = Relay::new(&brokers, &topic, 3, store.clone(), store.clone()).unwrap();
    let running = tokio::spawn(relay.run(shutdown));
    let consumer = consumer(&brokers, &topic);
    let mut seen = Vec::new();
    receive(&consumer, 100, &mut seen).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(store.load(&format!("relay:{topic}")).await.unwrap(), store.head().await.unwrap());

    // More commands while the relay is stopped; a new relay picks up where it stopped.
    for round in 20..30 {
        append_round(&store, 5, round).await;
    }
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(Relay::new(&brokers, &topic, 3, store.clone(), store.clone()).unwrap().run(shutdown));
    receive(&consumer, 150, &mut seen).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let stored = store.read_all(0, 1000).await.unwrap();
    assert_eq!(stored.len(), 150);
    assert_eq!(seen.len(), 150, "a clean stop and restart re-sends nothing");
    assert_matches_store(&seen, &stored);
}

/// A broker of this test's own, so it can be killed without disturbing other tests.
struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Broker {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut broker = Self { port, dir: tempfile::tempdir().unwrap(), child: None };
        broker.launch();
        broker
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let tansu = std::env::var("PLAZA_TANSU").unwrap_or_else(|_| {
            let cargo_bin = std::path::Path::new(&std::env::var("HOME").unwrap()).join(".cargo/bin/tansu");
            if cargo_bin.exists() { cargo_bin.display().to_string() } else { "tansu".into() }
        });
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::options().create(true).append(true).open(self.dir.path().join("tansu.log")).unwrap();
        let child = std::process::Command::new(&tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // The sqlite:// path is relative to the broker's working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {tansu} ({e}); run `make services`"));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not start on port {}", self.port);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_keep_flowing_while_the_broker_is_down_and_the_relay_catches_up() {
    let mut broker = Broker::start();
    let brokers = broker.brokers();
    let topic = format!("plaza-test-{}", Uuid::new_v4().simple());
    let store = Arc::new(PgEventStore::connect(&common::fresh_database().await).await.unwrap());
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(Relay::new(&brokers, &topic, 2, store.clone(), store.clone()).unwrap().run(shutdown));
    for round in 0..10 {
        append_round(&store, 4, round).await;
    }
    let consumer = consumer(&brokers, &topic);
    let mut seen = Vec::new();
    receive(&consumer, 40, &mut seen).await;

    broker.kill9();
    // The write side does not depend on the broker.
    for round in 10..20 {
        append_round(&store, 4, round).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.launch();

    receive(&consumer, 80, &mut seen).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let stored = store.read_all(0, 1000).await.unwrap();
    assert_eq!(stored.len(), 80);
    assert_matches_store(&seen, &stored);
}

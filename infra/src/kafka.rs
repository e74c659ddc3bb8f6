//! Event distribution through Kafka: the relay tails the event store's global log and
//! produces every event to a topic, keyed by stream id so one stream's events stay in
//! order on one partition, with the envelope in headers and the data as payload.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use plaza_domain::{EventStore, RecordedEvent};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the relay records the last position Kafka acknowledged.
#[async_trait::async_trait]
pub trait RelayCheckpoints: Send + Sync + 'static {
    async fn load(&self, name: &str) -> anyhow::Result<u64>;
    async fn save(&self, name: &str, position: u64) -> anyhow::Result<()>;
}

/// Envelope header names, shared with consumers.
pub mod headers {
    pub const EVENT_ID: &str = "event_id";
    pub const STREAM_ID: &str = "stream_id";
    pub const VERSION: &str = "version";
    pub const POSITION: &str = "position";
    pub const EVENT_TYPE: &str = "event_type";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const OCCURRED_AT: &str = "occurred_at";
    pub const METADATA: &str = "metadata";
}

/// Creates the topic unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new_topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

pub struct Relay {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn RelayCheckpoints>,
    producer: FutureProducer,
    brokers: String,
    topic: String,
    partitions: i32,
    batch_size: usize,
}

impl Relay {
    /// An idempotent producer that never gives up on a message: while the broker is
    /// down, deliveries wait (in order) rather than fail and be re-sent out of order.
    pub fn new(
        brokers: &str,
        topic: &str,
        partitions: i32,
        store: Arc<dyn EventStore>,
        checkpoints: Arc<dyn RelayCheckpoints>,
    ) -> anyhow::Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .create()?;
        Ok(Self { store, checkpoints, producer, brokers: brokers.to_owned(), topic: topic.to_owned(), partitions, batch_size: 1000 })
    }

    fn checkpoint_name(&self) -> String {
        format!("relay:{}", self.topic)
    }

    /// Produces everything after the checkpoint, batch by batch, and records each batch
    /// once Kafka acknowledged all of it. Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        // The broker may be down when the relay starts: keep trying, the log waits.
        while let Err(error) = ensure_topic(&self.brokers, &self.topic, self.partitions).await {
            warn!(%error, topic = %self.topic, "cannot reach the broker to create the topic, retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        let name = self.checkpoint_name();
        let mut position = self.checkpoints.load(&name).await?;
        info!(topic = %self.topic, position, "relay started");
        while !*shutdown.borrow() {
            let events = self.store.read_all(position, self.batch_size).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                tokio::select! {
                    _ = self.store.wait_for_events(position, Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            // Enqueued in log order (join_all polls in order); the idempotent producer
            // keeps that order per partition through retries.
            let deliveries = join_all(events.iter().map(|event| {
                let headers = envelope_headers(event);
                let record = FutureRecord::to(&self.topic).key(event.stream_id.as_bytes()).payload(event.data.as_bytes()).headers(headers);
                self.producer.send(record, Timeout::Never)
            }))
            .await;
            if let Some(Err((error, _))) = deliveries.into_iter().find(Result::is_err) {
                // Unreachable with message.timeout.ms = 0 short of a fatal producer error;
                // re-sending from the checkpoint is safe: consumers skip what they saw.
                warn!(%error, position, "relay delivery failed, retrying from the checkpoint");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            self.checkpoints.save(&name, last).await?;
            position = last;
        }
        info!(topic = %self.topic, position, "relay stopped");
        Ok(())
    }
}

fn envelope_headers(event: &RecordedEvent) -> OwnedHeaders {
    let (version, position, schema) = (event.version.to_string(), event.position.to_string(), event.schema_version.to_string());
    let occurred_at = event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let metadata = serde_json::to_string(&event.metadata).expect("metadata serializes");
    let event_id = event.event_id.to_string();
    [
        (headers::EVENT_ID, event_id.as_str()),
        (headers::STREAM_ID, event.stream_id.as_str()),
        (headers::VERSION, version.as_str()),
        (headers::POSITION, position.as_str()),
        (headers::EVENT_TYPE, event.event_type.as_str()),
        (headers::SCHEMA_VERSION, schema.as_str()),
        (headers::OCCURRED_AT, occurred_at.as_str()),
        (headers::METADATA, metadata.as_str()),
    ]
    .into_iter()
    .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }))
}

/// Rebuilds the recorded event from a relayed message's headers and payload.
pub fn recorded_event(message: &impl rdkafka::Message) -> anyhow::Result<RecordedEvent> {
    use rdkafka::message::Headers;
    let headers = message.headers().ok_or_else(|| anyhow::anyhow!("message without envelope headers"))?;
    let get = |name: &str| -> anyhow::Result<&str> {
        let header = headers.iter().find(|h| h.key == name).ok_or_else(|| anyhow::anyhow!("missing header {name}"))?;
        Ok(std::str::from_utf8(header.value.unwrap_or_default())?)
    };
    Ok(RecordedEvent {
        event_id: get(headers::EVENT_ID)?.parse()?,
        stream_id: get(headers::STREAM_ID)?.to_owned(),
        version: get(headers::VERSION)?.parse()?,
        position: get(headers::POSITION)?.parse()?,
        event_type: get(headers::EVENT_TYPE)?.to_owned(),
        schema_version: get(headers::SCHEMA_VERSION)?.parse()?,
        data: std::str::from_utf8(message.payload().unwrap_or_default())?.to_owned(),
        metadata: serde_json::from_str(get(headers::METADATA)?)?,
        occurred_at: chrono::DateTime::parse_from_rfc3339(get(headers::OCCURRED_AT)?)?.with_timezone(&chrono::Utc),
    })
}

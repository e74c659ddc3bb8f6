//! Event distribution through Kafka (cluster profile).
//!
//! The relay ([`Relay`]) tails the event store's global log and produces every event to
//! one topic, keyed so one stream's events stay in order on one partition
//! ([`plaza_domain::event::partition_key`]: the stream id, or for a stream about
//! another's thing, such as a like of a video, that thing's key), with the envelope in
//! headers and the event's JSON as payload. After each batch it
//! also writes a watermark to every partition (see `plaza_projections::partitions`).
//!
//! Kafka projectors ([`KafkaProjector`]) consume that topic in one consumer group per
//! projection and apply each batch, with the partitions' offsets, in one read-model
//! transaction. The search projection, which needs the events in the global log's
//! order, reads every partition in one consumer and merges them back into that order
//! ([`KafkaSearchFeed`]).

mod projector;
mod relay;
mod search;

pub use projector::KafkaProjector;
pub use relay::{Relay, RelayCheckpoints, replay};
pub use search::KafkaSearchFeed;

use std::time::Duration;

use plaza_domain::RecordedEvent;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, Producer};

/// Where the events go: brokers, topic, and the partitions the topic gets when Plaza
/// creates it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
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
    /// On the relay's watermark messages only (no payload): "every event of this
    /// partition up to this position came before". Consumers of events skip them.
    pub const WATERMARK: &str = "plaza_watermark";
}

/// Creates the topic unless it exists.
pub async fn ensure_topic(settings: &KafkaSettings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &settings.brokers).create()?;
    let new_topic = NewTopic::new(&settings.topic, settings.partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new_topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Asks the brokers about a topic. Used for the partition count and readiness checks.
#[derive(Clone)]
pub struct Probe {
    client: std::sync::Arc<BaseProducer>,
    topic: String,
}

impl Probe {
    pub fn new(settings: &KafkaSettings) -> anyhow::Result<Self> {
        let client: BaseProducer = ClientConfig::new().set("bootstrap.servers", &settings.brokers).create()?;
        Ok(Self { client: std::sync::Arc::new(client), topic: settings.topic.clone() })
    }

    /// The topic's partition count; an error when the brokers do not answer in time or
    /// do not know the topic.
    pub async fn partitions(&self, timeout: Duration) -> anyhow::Result<i32> {
        let (client, topic) = (self.client.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let metadata = client.client().fetch_metadata(Some(&topic), timeout)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { anyhow::bail!("topic {topic} not found") };
            if let Some(error) = found.error() {
                anyhow::bail!("topic {topic}: {error:?}");
            }
            Ok(found.partitions().len() as i32)
        })
        .await?
    }
}

impl Probe {
    /// Each partition's end (high watermark): the offset the next message will get.
    pub async fn end_offsets(&self, partitions: i32, timeout: Duration) -> anyhow::Result<Vec<(i32, i64)>> {
        let (client, topic) = (self.client.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || (0..partitions).map(|p| Ok((p, client.client().fetch_watermarks(&topic, p, timeout)?.1))).collect())
            .await?
    }
}

fn header<'a>(message: &'a impl rdkafka::Message, name: &str) -> Option<&'a [u8]> {
    message.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value)
}

/// The position a relay watermark carries, if the message is one.
pub fn watermark(message: &impl rdkafka::Message) -> Option<u64> {
    std::str::from_utf8(header(message, headers::WATERMARK)?).ok()?.parse().ok()
}

/// Rebuilds the recorded event from a relayed message's headers and payload.
pub fn recorded_event(message: &impl rdkafka::Message) -> anyhow::Result<RecordedEvent> {
    let get = |name: &str| -> anyhow::Result<&str> {
        let value = header(message, name).ok_or_else(|| anyhow::anyhow!("missing header {name}"))?;
        Ok(std::str::from_utf8(value)?)
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

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use plaza_domain::{EventStore, RecordedEvent};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{KafkaSettings, Probe, ensure_topic, headers};

/// Where the relay records the last position Kafka acknowledged.
#[async_trait::async_trait]
pub trait RelayCheckpoints: Send + Sync + 'static {
    async fn load(&self, name: &str) -> anyhow::Result<u64>;
    async fn save(&self, name: &str, position: u64) -> anyhow::Result<()>;
}

pub struct Relay {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn RelayCheckpoints>,
    producer: FutureProducer,
    settings: KafkaSettings,
    batch_size: usize,
}

impl Relay {
    /// An idempotent producer that never gives up on a message: while the broker is
    /// down, deliveries wait (in order) rather than fail and be re-sent out of order.
    pub fn new(settings: &KafkaSettings, store: Arc<dyn EventStore>, checkpoints: Arc<dyn RelayCheckpoints>) -> anyhow::Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "1")
            .create()?;
        Ok(Self { store, checkpoints, producer, settings: settings.clone(), batch_size: 1000 })
    }

    fn checkpoint_name(&self) -> String {
        format!("relay:{}", self.settings.topic)
    }

    /// Waits until the topic exists (creating it) and answers with its partition count.
    /// The broker may be down when the relay starts: keep trying, the log waits.
    async fn topic_partitions(&self, shutdown: &mut watch::Receiver<bool>) -> Option<i32> {
        loop {
            let attempt = async {
                ensure_topic(&self.settings).await?;
                Probe::new(&self.settings)?.partitions(Duration::from_secs(10)).await
            };
            match attempt.await {
                Ok(partitions) => return Some(partitions),
                Err(error) => warn!(%error, topic = %self.settings.topic, "cannot reach the broker to set up the topic, retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// Produces everything after the checkpoint, batch by batch, and records each batch
    /// once Kafka acknowledged all of it. Runs until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Some(partitions) = self.topic_partitions(&mut shutdown).await else { return Ok(()) };
        let name = self.checkpoint_name();
        let mut position = self.checkpoints.load(&name).await?;
        info!(topic = %self.settings.topic, partitions, position, "relay started");
        while !*shutdown.borrow() {
            let events = self.store.read_all(position, self.batch_size).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                tokio::select! {
                    _ = self.store.wait_for_events(position, Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            let produced = tokio::select! {
                produced = self.produce(&events, partitions, last) => produced,
                // While the broker is away deliveries wait forever; a stop request must not.
                // The batch is not checkpointed, so the next relay sends it again.
                _ = shutdown.changed() => break,
            };
            if let Err(error) = produced {
                // Unreachable with message.timeout.ms = 0 short of a fatal producer error;
                // re-sending from the checkpoint is safe: consumers skip what they saw.
                warn!(%error, position, "relay delivery failed, retrying from the checkpoint");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            self.checkpoints.save(&name, last).await?;
            debug!(position = last, events = events.len(), "relay batch acknowledged");
            metrics::gauge!("plaza_relay_position").set(last as f64);
            metrics::counter!("plaza_relay_events_total").increment(events.len() as u64);
            position = last;
        }
        info!(topic = %self.settings.topic, position, "relay stopped");
        Ok(())
    }

    /// Enqueues the batch's events in log order, then a watermark `last` to every
    /// partition, and waits until Kafka acknowledged all of it. Enqueueing is
    /// synchronous, so the order of the calls is the order in each partition; the
    /// idempotent producer keeps that order through retries.
    async fn produce(&self, events: &[RecordedEvent], partitions: i32, last: u64) -> anyhow::Result<()> {
        let topic = self.settings.topic.as_str();
        let mut deliveries = Vec::with_capacity(events.len() + partitions as usize);
        for event in events {
            let key = plaza_domain::event::partition_key(&event.stream_id, &event.data);
            let record = FutureRecord::to(topic).key(key.as_bytes()).payload(event.data.as_bytes()).headers(envelope_headers(event));
            deliveries.push(self.producer.send_result(record).map_err(|(error, _)| error)?);
        }
        let mark = last.to_string();
        for partition in 0..partitions {
            let headers = OwnedHeaders::new().insert(Header { key: headers::WATERMARK, value: Some(mark.as_str()) });
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(partition).headers(headers);
            deliveries.push(self.producer.send_result(record).map_err(|(error, _)| error)?);
        }
        for delivery in join_all(deliveries).await {
            delivery?.map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}

/// Produces the events after `from` up to `to` (inclusive) that `wanted` keeps to
/// `settings.topic` (created if needed), keyed by stream id with the relay's envelope
/// headers and no watermarks: a bounded range for an external consumer. Waits until
/// Kafka acknowledged every message; returns how many were produced. `report` hears
/// the position reached after each batch.
pub async fn replay(
    settings: &KafkaSettings,
    store: &dyn EventStore,
    from: u64,
    to: u64,
    wanted: &dyn Fn(&RecordedEvent) -> bool,
    report: &mut dyn FnMut(u64),
) -> anyhow::Result<u64> {
    ensure_topic(settings).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let (mut position, mut produced) = (from, 0);
    while position < to {
        let events = store.read_all(position, 1000).await?;
        let Some(last) = events.last().map(|e| e.position) else { break };
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events.iter().take_while(|e| e.position <= to).filter(|e| wanted(e)) {
            let record =
                FutureRecord::to(&settings.topic).key(event.stream_id.as_bytes()).payload(event.data.as_bytes()).headers(envelope_headers(event));
            deliveries.push(producer.send_result(record).map_err(|(error, _)| error)?);
        }
        produced += deliveries.len() as u64;
        for delivery in join_all(deliveries).await {
            delivery?.map_err(|(error, _)| error)?;
        }
        position = last.min(to);
        report(position);
    }
    Ok(produced)
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

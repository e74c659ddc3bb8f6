use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use plaza_domain::EventStore;
use plaza_domain::search::SearchWriter;
use plaza_projections::merge::{Delivery, Merge};
use plaza_projections::search::{SearchProjector, changes};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{KafkaSettings, Probe, ensure_topic, recorded_event, watermark};

/// Events a partition may hold waiting for the others before it is paused (a partition
/// read far ahead of the others while catching up).
const WAITING_MOST: usize = 50_000;
/// Events per batch applied to the index at most (one bulk request or commit each).
const BATCH: usize = 10_000;
/// How often, while nothing is left to apply, the feed looks for a rebuilt index.
const IDLE: Duration = Duration::from_secs(1);
/// How often the feed asks whether the topic has grown partitions (it then starts over
/// with all of them).
const PARTITIONS_EVERY: Duration = Duration::from_secs(10);

/// Feeds the search projection from the events topic, in the global log's order.
///
/// The projection reads its documents back to change them and counts a hashtag's
/// videos from every video's partition, so it applies the events in position order, as
/// the search projector tailing the store does: one consumer reads every partition of
/// the topic (a manual assignment, in the consumer group `{topic}.search`) and a
/// [`Merge`] puts them back in order. One feed runs per index, which the caller makes
/// sure of (a lock), like [`SearchProjector`].
///
/// The index's position is the truth: events at or below it are dropped. Offsets are
/// committed to the group after each applied batch, with that position as their
/// metadata; a restart reads from them when the index has applied what they follow
/// ([`Self::starts`]), and from the beginning otherwise (an index restored or rebuilt
/// to an older position).
pub struct KafkaSearchFeed {
    index: Arc<dyn SearchWriter>,
    settings: KafkaSettings,
    /// To catch up from before reading the topic (a new index), when given.
    store: Option<Arc<dyn EventStore>>,
    batch_size: usize,
    applied: watch::Sender<u64>,
}

impl KafkaSearchFeed {
    pub fn new(index: Arc<dyn SearchWriter>, settings: &KafkaSettings) -> Self {
        Self { index, settings: settings.clone(), store: None, batch_size: BATCH, applied: watch::channel(0).0 }
    }

    /// Catches the index up from the store before reading the topic: a new index is
    /// built much faster from the store, and the topic may not hold the whole history.
    pub fn with_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The position the index has applied, as it moves (once `run` has started).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn group(&self) -> String {
        format!("{}.search", self.settings.topic)
    }

    /// Runs until `shutdown` turns true. Failures are logged and the feed starts over
    /// from the index's position, with backoff; nothing is skipped.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        info!(topic = %self.settings.topic, group = %self.group(), "search feed started");
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            match self.consume(&mut shutdown).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    warn!(error = format!("{error:#}"), "search feed failed, starting over");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        info!("search feed stopped");
    }

    /// Reads and applies until shutdown, or until the index was switched to a rebuilt
    /// one (returns, to start over from its position).
    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        if let Some(store) = &self.store {
            let projector = SearchProjector::new(self.index.clone(), store.clone()).with_batch_size(self.batch_size);
            projector.catch_up().await?;
        }
        ensure_topic(&self.settings).await?;
        let probe = Probe::new(&self.settings)?;
        let partitions = probe.partitions(Duration::from_secs(10)).await?;
        let position = self.index.position().await?;
        self.applied.send_replace(position);
        let consumer: Arc<StreamConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &self.settings.brokers)
                .set("group.id", self.group())
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create()?,
        );
        let starts = self.starts(&consumer, partitions, position).await?;
        let mut assignment = TopicPartitionList::new();
        for &(partition, start) in &starts {
            assignment.add_partition_offset(&self.settings.topic, partition, start.map_or(Offset::Beginning, Offset::Offset))?;
        }
        consumer.assign(&assignment)?;
        debug!(position, ?starts, "search feed reading");
        let mut merge = Merge::new(starts.iter().map(|&(partition, start)| (partition, start.unwrap_or(0))), position);
        let mut paused = BTreeSet::new();
        let (mut looked, mut counted) = (Instant::now(), Instant::now());
        loop {
            let first = tokio::select! {
                message = consumer.recv() => Some(message),
                _ = tokio::time::sleep(IDLE) => None,
                _ = shutdown.changed() => return Ok(()),
            };
            match first {
                Some(Ok(message)) => push(&mut merge, &message),
                // Transport errors while a broker restarts: librdkafka reconnects.
                Some(Err(error)) => debug!(%error, "search feed: kafka consumer error"),
                None => {}
            }
            for _ in 1..self.batch_size {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => push(&mut merge, &message),
                    _ => break,
                }
            }
            self.pace(&consumer, &merge, &mut paused)?;
            let before = merge.released();
            loop {
                let events = merge.release(self.batch_size);
                let Some(last) = events.last().map(|event| event.position) else { break };
                let changes = changes(&*self.index, &events).await?;
                self.index.apply(changes, last).await?;
                self.applied.send_replace(last);
            }
            if counted.elapsed() >= PARTITIONS_EVERY {
                counted = Instant::now();
                let now = probe.partitions(Duration::from_secs(10)).await?;
                if now != partitions {
                    info!(before = partitions, now, "the events topic has new partitions: the search feed starts over with them");
                    return Ok(());
                }
            }
            if merge.released() > before {
                self.commit(&consumer, &merge);
            } else if looked.elapsed() >= IDLE {
                // Nothing new: the moment to take up a rebuilt index, if one was made.
                looked = Instant::now();
                if self.index.take_up_rebuilt().await? {
                    info!("search feed switched to the rebuilt index");
                    return Ok(());
                }
            }
        }
    }

    /// Where to read each partition from (`None`: the beginning). A committed offset
    /// holds when the index has applied what came before it: when the position noted
    /// with it is at or below the index's, or, from a broker that keeps no notes (tansu),
    /// when the index has just caught up from the store (every position ever committed
    /// is at or below the store's head).
    async fn starts(&self, consumer: &Arc<StreamConsumer>, partitions: i32, position: u64) -> anyhow::Result<Vec<(i32, Option<i64>)>> {
        let mut wanted = TopicPartitionList::new();
        for partition in 0..partitions {
            wanted.add_partition(&self.settings.topic, partition);
        }
        let consumer = consumer.clone();
        let committed = tokio::task::spawn_blocking(move || consumer.committed_offsets(wanted, Duration::from_secs(10))).await??;
        let caught_up = self.store.is_some();
        Ok((0..partitions)
            .map(|partition| {
                let found = committed.find_partition(&self.settings.topic, partition);
                let start = found.and_then(|element| match (element.offset(), element.metadata()) {
                    (Offset::Offset(offset), "") if caught_up => Some(offset),
                    (Offset::Offset(offset), note) => note.parse::<u64>().is_ok_and(|at| at <= position).then_some(offset),
                    _ => None,
                });
                (partition, start)
            })
            .collect())
    }

    /// Pauses a partition read far ahead of the others, resumes it once they caught up.
    fn pace(&self, consumer: &StreamConsumer, merge: &Merge, paused: &mut BTreeSet<i32>) -> anyhow::Result<()> {
        for partition in merge.partitions() {
            let waiting = merge.waiting(partition);
            let mut list = TopicPartitionList::new();
            list.add_partition(&self.settings.topic, partition);
            if waiting >= WAITING_MOST && paused.insert(partition) {
                consumer.pause(&list)?;
            } else if waiting < WAITING_MOST / 2 && paused.remove(&partition) {
                consumer.resume(&list)?;
            }
        }
        Ok(())
    }

    /// Commits where each partition resumes, noting the index's position. A failed
    /// commit only costs re-reading on the next start.
    fn commit(&self, consumer: &StreamConsumer, merge: &Merge) {
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in merge.resume_offsets() {
            let mut element = offsets.add_partition(&self.settings.topic, partition);
            element.set_metadata(merge.released().to_string());
            if let Err(error) = element.set_offset(Offset::Offset(offset)) {
                debug!(%error, partition, "search feed: cannot note an offset");
            }
        }
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            debug!(%error, "search feed: cannot commit offsets");
        }
    }
}

fn push(merge: &mut Merge, message: &BorrowedMessage<'_>) {
    let delivery = match watermark(message) {
        Some(position) => Delivery::Watermark { position },
        None => match recorded_event(message) {
            Ok(event) => Delivery::Event(event),
            Err(error) => {
                warn!(%error, partition = message.partition(), offset = message.offset(), "search feed: skipping an unreadable message");
                Delivery::Unreadable
            }
        },
    };
    merge.push(message.partition(), message.offset(), delivery);
}

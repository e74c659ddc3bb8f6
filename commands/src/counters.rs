//! High-rate counters: increments are batched per shard and appended as one
//! `CountersIncremented` event, so tens of thousands of increments a second cost a few
//! hundred appends, and every acknowledged increment is durable (its batch's append was
//! acknowledged before the answer).
//!
//! Each answer carries the counter's value including its own increment. One task per
//! shard owns the shard's stream in this process and keeps the totals of the counters it
//! has seen. A total it has not seen yet starts from the read models (value and the shard
//! stream version they include, read together) plus the shard's events after that
//! version. When another process appended to the shard meanwhile (several write APIs),
//! the append's expected version fails, the task reads the new events into its totals
//! and tries again: totals stay exact across processes without a shared cache.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use plaza_domain::counters::{CounterKey, SHARDS, counters_stream};
use plaza_domain::{Event, EventStore, ExpectedVersion, Increment, Metadata, NewEvent, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use uuid::Uuid;

use crate::CommandError;

/// Requests one append carries at most.
const MAX_BATCH: usize = 2048;
/// Counters a shard task remembers before it starts over (totals reload on demand).
const MAX_CACHED: usize = 100_000;
/// Appends a batch tries before it gives up on a shard other processes keep changing.
const MAX_ATTEMPTS: usize = 10;

/// Where a counter's total starts: what the read models hold.
#[async_trait::async_trait]
pub trait CounterBaseline: Send + Sync + 'static {
    /// The counter's value in the read models and the version of its shard's stream
    /// they include (`None`: nothing of that stream yet), read in one snapshot.
    async fn baseline(&self, key: &CounterKey, shard_stream: &str) -> Result<(i64, Option<u64>), CommandError>;
}

struct Request {
    key: CounterKey,
    delta: i64,
    reply: oneshot::Sender<Result<i64, CommandError>>,
}

#[derive(Clone)]
pub struct Counters {
    shards: Arc<Vec<mpsc::Sender<Request>>>,
}

impl Counters {
    /// Starts one task per shard.
    pub fn start(store: Arc<dyn EventStore>, baseline: Arc<dyn CounterBaseline>) -> Self {
        let shards = (0..SHARDS)
            .map(|shard| {
                let (requests, queue) = mpsc::channel(16 * MAX_BATCH);
                let task = ShardTask {
                    shard,
                    stream: counters_stream(shard),
                    store: store.clone(),
                    baseline: baseline.clone(),
                    version: None,
                    totals: HashMap::new(),
                    loaded: false,
                };
                tokio::spawn(task.run(queue));
                requests
            })
            .collect();
        Self { shards: Arc::new(shards) }
    }

    /// Adds `delta` to the counter; answers its value including this increment once the
    /// increment is durable.
    pub async fn increment(&self, key: CounterKey, delta: i64) -> Result<i64, CommandError> {
        let (reply, answer) = oneshot::channel();
        let shard = key.shard();
        self.shards[shard].send(Request { key, delta, reply }).await.map_err(|_| CommandError::Internal("the counter task stopped".into()))?;
        answer.await.map_err(|_| CommandError::Internal("the counter task dropped an increment".into()))?
    }
}

struct ShardTask {
    shard: usize,
    stream: String,
    store: Arc<dyn EventStore>,
    baseline: Arc<dyn CounterBaseline>,
    /// The last version of the shard's stream folded into `totals`.
    version: Option<u64>,
    totals: HashMap<CounterKey, i64>,
    /// Whether `version` has been read from the store since the task started.
    loaded: bool,
}

impl ShardTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let outcome = self.commit(&batch).await;
            match outcome {
                Ok(values) => {
                    for (request, value) in batch.into_iter().zip(values) {
                        let _ = request.reply.send(Ok(value));
                    }
                }
                Err(error) => {
                    warn!(shard = self.shard, %error, increments = batch.len(), "counter batch failed");
                    // What this task believed may be off now: start over on the next batch.
                    self.forget();
                    for request in batch {
                        let _ = request.reply.send(Err(clone_error(&error)));
                    }
                }
            }
        }
    }

    fn forget(&mut self) {
        self.totals.clear();
        self.version = None;
        self.loaded = false;
    }

    /// Appends the batch as one event; returns each request's value after its delta.
    async fn commit(&mut self, batch: &[Request]) -> Result<Vec<i64>, CommandError> {
        if self.totals.len() > MAX_CACHED {
            self.forget();
        }
        let event = Event::CountersIncremented {
            increments: batch
                .iter()
                .map(|r| Increment { resource_id: r.key.resource_id().to_owned(), counter_type: r.key.counter_type().to_owned(), delta: r.delta })
                .collect(),
        };
        let new = NewEvent::new(Uuid::now_v7(), &event, Metadata::default(), Utc::now());
        for _ in 0..MAX_ATTEMPTS {
            if !self.loaded {
                self.catch_up().await?;
                self.loaded = true;
            }
            for request in batch {
                self.load_total(&request.key).await?;
            }
            match self.store.append(&self.stream, ExpectedVersion::from_current(self.version), vec![new.clone()]).await {
                Ok(appended) => {
                    self.version = Some(appended.stream_version);
                    return Ok(batch
                        .iter()
                        .map(|r| {
                            let total = self.totals.entry(r.key.clone()).or_default();
                            *total += r.delta;
                            *total
                        })
                        .collect());
                }
                // Another process appended to this shard: fold its increments in, retry.
                Err(StoreError::WrongExpectedVersion { .. }) => self.catch_up().await?,
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Contention)
    }

    /// Folds the shard's events after `version` into the totals this task holds.
    async fn catch_up(&mut self) -> Result<(), CommandError> {
        loop {
            let from = self.version.map_or(0, |v| v + 1);
            let events = self.store.read_stream(&self.stream, from, 1000).await?;
            let Some(last) = events.last().map(|e| e.version) else { return Ok(()) };
            for recorded in &events {
                if let Event::CountersIncremented { increments } = recorded.decode().map_err(|e| StoreError::Corrupt(e.to_string()))? {
                    for increment in increments {
                        if let Ok(key) = CounterKey::parse(&increment.resource_id, &increment.counter_type)
                            && let Some(total) = self.totals.get_mut(&key)
                        {
                            *total += increment.delta;
                        }
                    }
                }
            }
            self.version = Some(last);
        }
    }

    /// Makes sure the counter's total (as of `version`) is known: the read models' value
    /// plus the deltas of the shard's events they do not include yet.
    async fn load_total(&mut self, key: &CounterKey) -> Result<(), CommandError> {
        if self.totals.contains_key(key) {
            return Ok(());
        }
        let (mut total, included) = self.baseline.baseline(key, &self.stream).await?;
        if included > self.version {
            // The read models already include increments this task has not folded in
            // (another process's): catch up first, so they are not counted twice.
            self.catch_up().await?;
        }
        let mut from = included.map_or(0, |v| v + 1);
        // Only events up to `version`: later ones are folded in by `catch_up`.
        while self.version.is_some_and(|v| from <= v) {
            let events = self.store.read_stream(&self.stream, from, 1000).await?;
            let Some(last) = events.last().map(|e| e.version) else { break };
            for recorded in events.iter().filter(|e| self.version.is_some_and(|v| e.version <= v)) {
                if let Event::CountersIncremented { increments } = recorded.decode().map_err(|e| StoreError::Corrupt(e.to_string()))? {
                    total += increments
                        .iter()
                        .filter(|i| i.resource_id == key.resource_id() && i.counter_type == key.counter_type())
                        .map(|i| i.delta)
                        .sum::<i64>();
                }
            }
            from = last + 1;
        }
        self.totals.insert(key.clone(), total);
        Ok(())
    }
}

/// Every request of a failed batch gets the error; `CommandError` is not `Clone`.
fn clone_error(error: &CommandError) -> CommandError {
    match error {
        CommandError::Store(StoreError::Unavailable(detail)) => CommandError::Store(StoreError::Unavailable(detail.clone())),
        CommandError::Contention => CommandError::Contention,
        other => CommandError::Internal(other.to_string()),
    }
}

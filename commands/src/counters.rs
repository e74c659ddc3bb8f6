//! High-rate counters: increments are batched per shard and appended as one
//! `CountersIncremented` event, so tens of thousands of increments a second cost a few
//! hundred appends, and every acknowledged increment is durable (its batch's append was
//! acknowledged before the answer).
//!
//! Each answer carries the counter's value including its own increment. One task per
//! shard owns the shard's stream in this process and keeps the totals of the counters it
//! has seen. A total it has not seen yet starts from the read models (value and the shard
//! stream version they include, read together) plus the shard's events after that
//! version. Batches are appended without an expected version, so the tasks of several
//! processes (several write APIs) never make each other retry; the stream's order is the
//! counters' order, and after each append a task folds in whatever other processes
//! appended before its batch: totals stay exact across processes without a shared cache.
//!
//! A total never leaves the range of i64: an increment that would take it out is refused
//! (`invalid_counter`) before its batch is appended. (Only increments of other processes
//! appended at the same moment could still cross the bound; the total then stops at it,
//! here and in the read model alike.)
//!
//! An increment sent with an `Idempotency-Key` carries an id derived from the key. A
//! task remembers the ids of the last [`MAX_REMEMBERED`] such increments of its shard
//! (its own, and those it folds in from the stream, which it reads whole when it
//! starts), so a repeat that arrives before its first answer was recorded (see
//! [`crate::idempotency`]) adds nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::Utc;
use plaza_domain::counters::{CounterKey, SHARDS, add_to_total, counters_stream};
use plaza_domain::{DomainError, Event, EventStore, ExpectedVersion, Increment, Metadata, NewEvent, RecordedEvent, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use uuid::Uuid;

use crate::CommandError;

/// Requests one append carries at most.
const MAX_BATCH: usize = 2048;
/// Counters a shard task remembers before it starts over (totals reload on demand).
const MAX_CACHED: usize = 100_000;
/// Ids of keyed increments a shard task remembers.
const MAX_REMEMBERED: usize = 100_000;

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
    /// From an idempotency key: a repeat adds nothing.
    request_id: Option<Uuid>,
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
                    remembered: Remembered::default(),
                };
                tokio::spawn(task.run(queue));
                requests
            })
            .collect();
        Self { shards: Arc::new(shards) }
    }

    /// Adds `delta` to the counter; answers its value including this increment once the
    /// increment is durable. An increment with a `request_id` this shard already applied
    /// adds nothing and answers as it did.
    pub async fn increment(&self, key: CounterKey, delta: i64, request_id: Option<Uuid>) -> Result<i64, CommandError> {
        let (reply, answer) = oneshot::channel();
        let shard = key.shard();
        self.shards[shard]
            .send(Request { key, delta, request_id, reply })
            .await
            .map_err(|_| CommandError::Internal("the counter task stopped".into()))?;
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
    remembered: Remembered,
}

/// Ids of keyed increments applied to a shard, with the value each answered (when the
/// task knew the counter's total then); the oldest are forgotten first.
#[derive(Default)]
struct Remembered {
    answers: HashMap<Uuid, Option<i64>>,
    order: VecDeque<Uuid>,
}

impl Remembered {
    fn insert(&mut self, id: Uuid, answer: Option<i64>) {
        if self.answers.insert(id, answer).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
    }
}

/// What one request of a batch does.
enum Plan {
    /// Appended with the batch.
    Add,
    /// Refused before the append.
    Refuse(CommandError),
    /// A repeat of an applied increment: answers this (or the current total).
    Repeat(Option<i64>),
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
                Ok(answers) => {
                    for (request, answer) in batch.into_iter().zip(answers) {
                        let _ = request.reply.send(answer);
                    }
                }
                Err(error) => {
                    warn!(shard = self.shard, %error, increments = batch.len(), "counter batch failed");
                    // What this task believed may be off now: start over on the next batch.
                    self.forget();
                    for request in batch {
                        let _ = request.reply.send(Err(error.copy()));
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

    /// Appends the batch's new increments as one event; answers each request with its
    /// value after its delta, or why it was refused.
    async fn commit(&mut self, batch: &[Request]) -> Result<Vec<Result<i64, CommandError>>, CommandError> {
        if self.totals.len() > MAX_CACHED {
            self.forget();
        }
        if !self.loaded {
            self.catch_up(None).await?;
            self.loaded = true;
        }
        // A keyed increment this task has not seen may have been appended by another
        // process: fold in what the shard holds before deciding on it.
        if batch.iter().any(|r| r.request_id.is_some_and(|id| !self.remembered.answers.contains_key(&id))) {
            self.catch_up(None).await?;
        }
        self.load_totals(batch).await?;
        let plans = self.plan(batch);
        let increments: Vec<Increment> = batch
            .iter()
            .zip(&plans)
            .filter(|(_, plan)| matches!(plan, Plan::Add))
            .map(|(r, _)| Increment {
                resource_id: r.key.resource_id().to_owned(),
                counter_type: r.key.counter_type().to_owned(),
                delta: r.delta,
                request_id: r.request_id,
            })
            .collect();
        if !increments.is_empty() {
            let event = Event::CountersIncremented { increments };
            let new = NewEvent::new(Uuid::now_v7(), &event, Metadata::default(), Utc::now());
            // No expected version: writers of several processes never make each other
            // retry. The stream's order is the counters' order: what others appended
            // before this batch is folded in first, then this batch's deltas.
            let appended = self.store.append(&self.stream, ExpectedVersion::Any, vec![new]).await?;
            self.catch_up(Some(appended.stream_version)).await?;
            self.version = Some(appended.stream_version);
        }
        let mut answers = Vec::with_capacity(batch.len());
        for (request, plan) in batch.iter().zip(plans) {
            answers.push(match plan {
                Plan::Add => {
                    let total = self.totals.entry(request.key.clone()).or_default();
                    *total = total.saturating_add(request.delta);
                    let value = *total;
                    if let Some(id) = request.request_id {
                        self.remembered.insert(id, Some(value));
                    }
                    Ok(value)
                }
                Plan::Refuse(error) => Err(error),
                Plan::Repeat(answer) => Ok(answer.unwrap_or_else(|| self.totals.get(&request.key).copied().unwrap_or_default())),
            });
        }
        Ok(answers)
    }

    /// Decides, before the append, what each request does: repeats of applied keyed
    /// increments (also within the batch) add nothing, and an increment that would take
    /// its total out of range is refused.
    fn plan(&self, batch: &[Request]) -> Vec<Plan> {
        let mut totals: HashMap<&CounterKey, i64> = HashMap::new();
        let mut in_batch: HashMap<Uuid, usize> = HashMap::new();
        let mut plans: Vec<Plan> = Vec::with_capacity(batch.len());
        for (index, request) in batch.iter().enumerate() {
            if let Some(id) = request.request_id {
                if let Some(answer) = self.remembered.answers.get(&id) {
                    plans.push(Plan::Repeat(*answer));
                    continue;
                }
                if let Some(first) = in_batch.get(&id) {
                    // A repeat within the batch answers the total after the batch.
                    plans.push(match &plans[*first] {
                        Plan::Refuse(_) => Plan::Refuse(DomainError::InvalidCounter("the counter would overflow").into()),
                        _ => Plan::Repeat(None),
                    });
                    continue;
                }
                in_batch.insert(id, index);
            }
            let total = totals.entry(&request.key).or_insert_with(|| self.totals.get(&request.key).copied().unwrap_or_default());
            match add_to_total(*total, request.delta) {
                Ok(next) => {
                    *total = next;
                    plans.push(Plan::Add);
                }
                Err(error) => plans.push(Plan::Refuse(error.into())),
            }
        }
        plans
    }

    /// Folds the shard's events after `version` (and before `until`, when given) into the
    /// totals this task holds.
    async fn catch_up(&mut self, until: Option<u64>) -> Result<(), CommandError> {
        loop {
            let from = self.version.map_or(0, |v| v + 1);
            if until.is_some_and(|until| from >= until) {
                return Ok(());
            }
            let mut events = self.store.read_stream(&self.stream, from, 1000).await?;
            if let Some(until) = until {
                events.retain(|e| e.version < until);
            }
            let Some(last) = events.last().map(|e| e.version) else { return Ok(()) };
            for recorded in &events {
                for (key, delta, request_id) in increments(recorded)? {
                    let total = self.totals.get_mut(&key).map(|total| {
                        *total = total.saturating_add(delta);
                        *total
                    });
                    if let Some(id) = request_id {
                        self.remembered.insert(id, total);
                    }
                }
            }
            self.version = Some(last);
        }
    }

    /// Makes sure the totals (as of `version`) of the batch's counters are known: for each
    /// new one, the read models' value plus the deltas of the shard's events they do not
    /// include yet. The shard's stream is read once for all of them.
    async fn load_totals(&mut self, batch: &[Request]) -> Result<(), CommandError> {
        let mut missing: HashMap<CounterKey, (i64, Option<u64>)> = HashMap::new();
        for request in batch {
            if self.totals.contains_key(&request.key) || missing.contains_key(&request.key) {
                continue;
            }
            let baseline = self.baseline.baseline(&request.key, &self.stream).await?;
            missing.insert(request.key.clone(), baseline);
        }
        if missing.is_empty() {
            return Ok(());
        }
        if missing.values().any(|(_, included)| *included > self.version) {
            // The read models already include increments this task has not folded in
            // (another process's): catch up first, so they are not counted twice.
            self.catch_up(None).await?;
        }
        let mut from = missing.values().map(|(_, included)| included.map_or(0, |v| v + 1)).min().unwrap_or(0);
        // Only events up to `version`: later ones are folded in by `catch_up`.
        while self.version.is_some_and(|v| from <= v) {
            let events = self.store.read_stream(&self.stream, from, 1000).await?;
            let Some(last) = events.last().map(|e| e.version) else { break };
            for recorded in events.iter().filter(|e| self.version.is_some_and(|v| e.version <= v)) {
                for (key, delta, _) in increments(recorded)? {
                    // Added only to counters whose baseline does not include this event.
                    if let Some((total, included)) = missing.get_mut(&key)
                        && included.is_none_or(|v| recorded.version > v)
                    {
                        *total = total.saturating_add(delta);
                    }
                }
            }
            from = last + 1;
        }
        self.totals.extend(missing.into_iter().map(|(key, (total, _))| (key, total)));
        Ok(())
    }
}

/// The increments a shard's event carries (none for any other event), with their
/// request ids; ones that break the rules are skipped, as the read model skips them.
fn increments(recorded: &RecordedEvent) -> Result<Vec<(CounterKey, i64, Option<Uuid>)>, CommandError> {
    let event = recorded.decode().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let Event::CountersIncremented { increments } = event else { return Ok(vec![]) };
    Ok(increments.iter().filter_map(|i| i.checked().map(|(key, delta)| (key, delta, i.request_id))).collect())
}

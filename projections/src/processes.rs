//! Process managers: projections whose output is commands. A process reads the global
//! log like a projector and reacts to the events it cares about by issuing commands
//! (the welcome flow: on `UserRegistered`, send a notice and follow some accounts).
//!
//! What it shares with projections, through the same tables:
//! - a checkpoint: a generation in `projection_generations` named after the process,
//!   with no tables ([`checkpoint`]), moved after each event it reacted to and after
//!   each batch. A crash redelivers at most the event in hand: delivery is
//!   at-least-once, so a process must issue commands whose event ids derive from the
//!   triggering event (an idempotency key), and a redelivered event then appends nothing
//!   twice;
//! - retries with backoff, then a dead letter (`dead_letters`, under the process's
//!   name) and on, or stop, as the [`FailurePolicy`] says;
//! - status (`plaza projections status`, `/admin`), health rows and pause/resume.
//!
//! One runner per process at a time among the processes sharing the read models: it
//! holds the lock `process:{name}` ([`ReadModelDb::try_lock`]); others wait for it to go.

use std::sync::Arc;
use std::time::Duration;

use plaza_domain::{Event, EventStore, RecordedEvent};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::dead_letters::{Changes, FAILED};
use crate::generations::{self, Tables};
use crate::health::Health;
use crate::runtime::{FailurePolicy, pace, sleep_or_shutdown};
use crate::{Projection, ReadModelDb, Statement};

/// Why a reaction failed (it is retried, then parked).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// A process manager's logic.
#[async_trait::async_trait]
pub trait Process: Send + Sync + 'static {
    /// Stable name: its checkpoint, lock, dead letters and status go by it.
    fn name(&self) -> &'static str;
    /// Whether events of this type concern it (the others only move its checkpoint).
    fn wants(&self, event_type: &str) -> bool;
    /// Carries out what the event asks. Called again for the same event after a crash
    /// or a failure: every command must be idempotent, keyed by the event.
    async fn react(&self, event: &Event, envelope: &RecordedEvent) -> Result<(), ProcessError>;
}

/// A process's checkpoint as a projection without tables, so generations, dead letters,
/// health and status treat it as one.
pub struct Checkpoint(pub &'static str);

impl Projection for Checkpoint {
    fn name(&self) -> &'static str {
        self.0
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        &[]
    }

    fn apply(&self, _: &Event, _: &RecordedEvent, _: &mut Vec<Statement>) {}
}

/// The checkpoint of `process`.
pub fn checkpoint(process: &dyn Process) -> Arc<dyn Projection> {
    Arc::new(Checkpoint(process.name()))
}

/// Events read per batch.
const BATCH: usize = 500;
/// How long a runner with nothing to do waits before it looks again.
const IDLE: Duration = Duration::from_secs(1);

pub struct ProcessRunner {
    process: Arc<dyn Process>,
    store: Arc<dyn EventStore>,
    db: Arc<dyn ReadModelDb>,
    policy: FailurePolicy,
}

impl ProcessRunner {
    pub fn new(process: Arc<dyn Process>, store: Arc<dyn EventStore>, db: Arc<dyn ReadModelDb>) -> Self {
        Self { process, store, db, policy: FailurePolicy::default() }
    }

    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs until `shutdown` turns true, finishing the reaction in hand first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.process.name();
        let checkpoint = Checkpoint(name);
        let _lock = loop {
            match self.db.try_lock(&format!("process:{name}")).await {
                Ok(Some(guard)) => break guard,
                Ok(None) => {}
                Err(error) => warn!(process = name, %error, "cannot take the process's lock, retrying"),
            }
            if sleep_or_shutdown(IDLE, &mut shutdown).await {
                return;
            }
        };
        let mut health = Health::new(name);
        while !*shutdown.borrow() {
            let live = match generations::ensure_live(&*self.db, &checkpoint).await {
                Ok(live) if !live.paused => live,
                Ok(_) => {
                    if sleep_or_shutdown(IDLE, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
                Err(error) => {
                    warn!(process = name, %error, "cannot read the process's checkpoint, retrying");
                    if sleep_or_shutdown(IDLE, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let tables = Arc::new(Tables::of(&checkpoint, live.generation));
            info!(process = name, checkpoint = live.position, "process manager running");
            match self.tail(&tables, live.position, &mut health, &mut shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    warn!(process = name, %error, "process manager interrupted, starting again from its checkpoint");
                    if sleep_or_shutdown(IDLE, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Reacts to the log after `checkpoint` until shutdown (`Ok`), or until the
    /// checkpoint cannot be stored (the generation was paused, or the database failed).
    async fn tail(
        &self,
        tables: &Arc<Tables>,
        mut checkpoint: u64,
        health: &mut Health,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), crate::ReadModelError> {
        let name = self.process.name();
        while !*shutdown.borrow() {
            health.report(&*self.db).await;
            let started = tokio::time::Instant::now();
            let events = match self.store.read_all(checkpoint, BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    warn!(process = name, %error, "cannot read the event store, retrying");
                    health.failed(&error);
                    if sleep_or_shutdown(IDLE, shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            let Some(last) = events.last().map(|e| e.position) else {
                tokio::select! {
                    _ = self.store.wait_for_events(checkpoint, IDLE) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            let mut reacted = 0;
            for envelope in events.iter().filter(|e| self.process.wants(&e.event_type)) {
                if !self.react(tables, checkpoint, envelope, health, shutdown).await? {
                    return Ok(());
                }
                reacted += 1;
                self.db.apply(tables.clone(), vec![], checkpoint, envelope.position).await?;
                checkpoint = envelope.position;
            }
            if last > checkpoint {
                self.db.apply(tables.clone(), vec![], checkpoint, last).await?;
                checkpoint = last;
            }
            health.applied(reacted);
            pace(started, shutdown).await;
        }
        health.report(&*self.db).await;
        Ok(())
    }

    /// Reacts to one event (after checkpoint `after`), with retries; parks it as a dead
    /// letter when the policy says so. Returns false if shutdown came first.
    async fn react(
        &self,
        tables: &Arc<Tables>,
        after: u64,
        envelope: &RecordedEvent,
        health: &mut Health,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, crate::ReadModelError> {
        let name = self.process.name();
        let event = match envelope.decode() {
            Ok(event) => event,
            Err(error) => {
                warn!(process = name, position = envelope.position, %error, "skipping an undecodable event");
                return Ok(true);
            }
        };
        let (mut attempts, mut backoff) = (0, Duration::from_millis(100));
        loop {
            let error = match self.process.react(&event, envelope).await {
                Ok(()) => return Ok(true),
                Err(error) => error,
            };
            attempts += 1;
            health.failed(&error);
            health.report(&*self.db).await;
            warn!(process = name, position = envelope.position, stream = %envelope.stream_id, attempts, %error, "reaction failed");
            if attempts >= self.policy.max_attempts && self.policy.park {
                let change = Changes {
                    position: envelope.position,
                    stream_id: envelope.stream_id.clone(),
                    event_type: envelope.event_type.clone(),
                    statements: vec![],
                    dead_letter: false,
                };
                self.db.apply(tables.clone(), vec![change.parked(tables, FAILED, &error.to_string(), attempts)], after, envelope.position).await?;
                warn!(process = name, position = envelope.position, "event parked as a dead letter");
                metrics::counter!("plaza_projection_dead_letters_parked_total", "projection" => name).increment(1);
                return Ok(true);
            }
            if sleep_or_shutdown(backoff, shutdown).await {
                return Ok(false);
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// Reacts again to the selected dead letters of `process`, in position order, deleting
/// each one that now succeeds (the operators' `dead-letters retry` for a process).
pub async fn retry(
    db: &dyn ReadModelDb,
    store: &dyn EventStore,
    process: &dyn Process,
    selection: crate::dead_letters::Selection,
) -> Result<crate::dead_letters::RetryOutcome, crate::ReadModelError> {
    use crate::dead_letters::{RetryOutcome, Selection, list};
    use crate::{ReadModelError, SqlValue};
    let mut outcome = RetryOutcome::default();
    let letters = list(db).await?.into_iter().filter(|d| {
        d.projection == process.name()
            && match selection {
                Selection::All => true,
                Selection::One(position) => d.position == position,
            }
    });
    for letter in letters {
        let found = store.read_all(letter.position - 1, 1).await.map_err(|e| ReadModelError::Database(e.to_string()))?;
        let Some(envelope) = found.into_iter().find(|e| e.position == letter.position) else {
            return Err(ReadModelError::Database(format!("the event store has no event at position {}", letter.position)));
        };
        let key = vec![process.name().into(), SqlValue::Int(letter.generation as i64), SqlValue::Int(letter.position as i64)];
        let reacted = match envelope.decode() {
            Ok(event) => process.react(&event, &envelope).await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match reacted {
            Ok(()) => {
                db.execute(Statement::new("DELETE FROM dead_letters WHERE projection = $1 AND generation = $2 AND position = $3", key)).await?;
                outcome.applied += 1;
            }
            Err(error) => {
                outcome.errors.push(format!("position {}: {error}", letter.position));
                let mut params = key;
                params.push(error.into());
                db.execute(Statement::owned(
                    "UPDATE dead_letters SET error = $4, attempts = attempts + 1 WHERE projection = $1 AND generation = $2 AND position = $3"
                        .to_owned(),
                    params,
                ))
                .await?;
            }
        }
    }
    outcome.still_parked = list(db).await?.iter().filter(|d| d.projection == process.name()).count() as u64;
    Ok(outcome)
}

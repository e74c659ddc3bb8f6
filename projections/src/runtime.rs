use std::sync::Arc;
use std::time::Duration;

use plaza_domain::{Event, EventStore, RecordedEvent, StoreError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::dead_letters::{Changes, FAILED};
use crate::generations::{self, Generation, Tables};
use crate::health::Health;
use crate::rebuild::{Rebuild, RebuildError};
use crate::{ChangeNotices, LocalNotices, Progress, ReadModelDb, ReadModelError, Statement};

/// A read model's logic: which tables it owns and which statements each event becomes.
/// It reads nothing; statements that need other rows use `INSERT .. SELECT` or
/// `UPDATE .. WHERE`.
///
/// One stream's events always arrive in order, but through Kafka different streams'
/// events arrive in any interleaving (each partition in order, partitions side by
/// side). So the statements of events of different streams must commute: write each
/// row from one stream's events only, or with increments that create the row if needed
/// (`INSERT .. ON CONFLICT DO UPDATE SET n = t.n + excluded.n`).
pub trait Projection: Send + Sync + 'static {
    /// Stable name, used for the checkpoint.
    fn name(&self) -> &'static str;
    /// The version of this projection's tables and logic. Raise it whenever either
    /// changes: a binary whose version is newer than the live generation's rebuilds the
    /// projection beside it, while the old one serves ([`crate::generations`]).
    fn version(&self) -> u64;
    /// Idempotent DDL creating the projection's tables and indexes.
    fn schema(&self) -> &'static [&'static str];
    /// Appends the statements that apply `event` to `out`.
    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>);
    /// Tables that log what listeners were told as it happened (a change log), rather
    /// than state built from the history: a generation being rebuilt writes nothing to
    /// them, and takes the live generation's rows when it switches over, so the log
    /// goes on with the same numbering ([`crate::generations::switch`]). Their columns
    /// must stay the same across versions.
    fn carried_over(&self) -> &'static [&'static str] {
        &[]
    }
    /// Indexes of the schema (by name, not unique) that only queries use, never the
    /// projection's own statements: a rebuild creates them once it has caught up,
    /// sorting each table once, instead of updating them row by row through the whole
    /// history. An index a statement here needs must not be listed (the rebuild would
    /// scan for it).
    fn query_indexes(&self) -> &'static [&'static str] {
        &[]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// Tails the global log and applies it to one projection's live generation, batch by
/// batch. Each batch's statements and the new checkpoint commit in one transaction, so
/// a restart resumes exactly after the last committed batch. When the live generation
/// was built by an older version of the projection, it rebuilds the projection beside
/// it first ([`Rebuild`]); the old generation serves meanwhile.
pub struct Projector {
    projection: Arc<dyn Projection>,
    store: Arc<dyn EventStore>,
    db: Arc<dyn ReadModelDb>,
    progress: Progress,
    notices: Arc<dyn ChangeNotices>,
    batch_size: usize,
    policy: FailurePolicy,
}

/// What a projector does with an event its projection keeps failing on.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    /// Attempts (with backoff from 100 ms, doubling) before the event counts as failing.
    pub max_attempts: u32,
    /// Park it as a dead letter and go on (true), or stop and keep retrying (false).
    pub park: bool,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self { max_attempts: 5, park: true }
    }
}

/// How long a projector with nothing to do waits before it looks again at its
/// generation (paused, or built by another version).
const IDLE: Duration = Duration::from_secs(1);
/// While events keep coming, a tailing projector reads the log at most this often, so
/// its batches grow with the load instead of its transactions: under 64 clients liking
/// videos the store committed some 800 groups a second, and every projector read,
/// applied and committed each one (its reads and commits were most of the server's
/// CPU). A projector that was idle reads at once; under load, changes become visible
/// at most this much later.
pub(crate) const PACE: Duration = Duration::from_millis(5);

impl Projector {
    pub fn new(projection: Arc<dyn Projection>, store: Arc<dyn EventStore>, db: Arc<dyn ReadModelDb>, progress: Progress) -> Self {
        Self { projection, store, db, progress, notices: Arc::new(LocalNotices::default()), batch_size: 500, policy: FailurePolicy::default() }
    }

    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Announces each committed batch here (for read APIs in other processes).
    pub fn with_notices(mut self, notices: Arc<dyn ChangeNotices>) -> Self {
        self.notices = notices;
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Makes sure the projection has a live generation (creating the first one, empty)
    /// and returns it.
    pub async fn prepare(&self) -> Result<Generation, ProjectorError> {
        let live = generations::ensure_live(&*self.db, &*self.projection).await?;
        self.progress.advance(self.name(), live.position);
        Ok(live)
    }

    /// Applies one batch after `checkpoint` to the generation of `tables`; returns the
    /// new checkpoint (unchanged when the log holds nothing newer).
    pub async fn step(&self, tables: &Arc<Tables>, checkpoint: u64) -> Result<u64, ProjectorError> {
        let events = self.store.read_all(checkpoint, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(checkpoint);
        };
        let changes = events.iter().map(|e| Changes::of(&*self.projection, e)).collect();
        self.db.apply(tables.clone(), changes, checkpoint, last).await?;
        debug!(projection = self.name(), position = last, events = events.len(), "batch applied");
        Ok(last)
    }

    /// Applies everything up to the store's current head to the live generation;
    /// returns the checkpoint.
    pub async fn catch_up(&self) -> Result<u64, ProjectorError> {
        let live = self.prepare().await?;
        let tables = Arc::new(Tables::of(&*self.projection, live.generation));
        let mut checkpoint = live.position;
        let head = self.store.head().await?;
        while checkpoint < head {
            checkpoint = self.step(&tables, checkpoint).await?;
            self.progress.advance(self.name(), checkpoint);
        }
        self.notices.publish(self.name());
        Ok(checkpoint)
    }

    /// Runs until `shutdown` turns true, finishing the batch in hand first. Failures
    /// are logged and retried with backoff; nothing is skipped.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut warned_newer = false;
        while !*shutdown.borrow() {
            let live = match self.prepare().await {
                Ok(live) => live,
                Err(error) => {
                    warn!(projection = self.name(), %error, "projector cannot read its generations, retrying");
                    if sleep_or_shutdown(IDLE, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let version = self.projection.version();
            if live.version < version {
                info!(projection = self.name(), live = live.version, version, "live generation is an older version: rebuilding beside it");
                let rebuild = Rebuild::new(self.projection.clone(), self.store.clone(), self.db.clone())
                    .with_notices(self.notices.clone())
                    .with_failure_policy(self.policy);
                match rebuild.run(&mut |_| {}, shutdown.clone()).await {
                    Ok(_) => {}
                    Err(RebuildError::Busy) => debug!(projection = self.name(), "another process is rebuilding"),
                    Err(error) => warn!(projection = self.name(), %error, "rebuild failed, retrying"),
                }
            } else if live.version > version {
                if !std::mem::replace(&mut warned_newer, true) {
                    warn!(
                        projection = self.name(),
                        live = live.version,
                        version,
                        "live generation was built by a newer Plaza; this one leaves it alone"
                    );
                }
            } else if !live.paused {
                self.tail(&live, &mut shutdown).await;
                continue;
            }
            if sleep_or_shutdown(IDLE, &mut shutdown).await {
                return;
            }
        }
    }

    /// Applies new events to `live` until shutdown, or until the generation stops
    /// taking them (paused, or replaced by a rebuild).
    async fn tail(&self, live: &Generation, shutdown: &mut watch::Receiver<bool>) {
        let tables = Arc::new(Tables::of(&*self.projection, live.generation));
        let mut checkpoint = live.position;
        let mut health = Health::new(self.name());
        info!(projection = self.name(), generation = live.generation, checkpoint, "projector applying");
        while !*shutdown.borrow() {
            health.report(&*self.db).await;
            let started = tokio::time::Instant::now();
            let events = match self.store.read_all(checkpoint, self.batch_size).await {
                Ok(events) => events,
                Err(error) => {
                    warn!(projection = self.name(), %error, "cannot read the event store, retrying");
                    health.failed(&error);
                    if sleep_or_shutdown(IDLE, shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if events.is_empty() {
                tokio::select! {
                    _ = self.store.wait_for_events(checkpoint, IDLE) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let changes = || events.iter().map(|e| Changes::of(&*self.projection, e)).collect();
            match apply_changes(&*self.db, &tables, checkpoint, changes(), changes, self.policy, &mut health, shutdown).await {
                Ok(applied) if applied > checkpoint => {
                    checkpoint = applied;
                    self.progress.advance(self.name(), checkpoint);
                    self.notices.publish(self.name());
                    pace(started, shutdown).await;
                }
                Ok(_) => {}
                Err(ReadModelError::Stopped(..)) => {
                    info!(projection = self.name(), generation = live.generation, "generation paused or replaced");
                    return;
                }
                Err(ReadModelError::Uncommitted(..)) => {
                    warn!(
                        projection = self.name(),
                        generation = live.generation,
                        checkpoint,
                        "the stored checkpoint is behind this projector's (a commit lost in a database crash): going on from the stored one"
                    );
                    return;
                }
                Err(error) => warn!(projection = self.name(), checkpoint, %error, "projection batch failed"),
            }
        }
        health.report(&*self.db).await;
        info!(projection = self.name(), checkpoint, "projector stopped");
    }
}

/// Applies a batch of events' changes (those after checkpoint `after`) to a generation,
/// in one transaction when it can.
/// When the batch fails, its events are applied one at a time to find the one that
/// fails: that one is retried `policy.max_attempts` times with backoff, then parked as
/// a dead letter (if the policy parks and the database answers, so the failure is the
/// event's) or retried on until it applies. Returns the position applied up to (less
/// than the batch's last when shutdown came first); `Stopped` when the generation takes
/// no more changes.
///
/// The batch goes to the database as it is; `again` works its changes out again if it
/// fails (copying every batch just in case took about 9 % of a content rebuild's CPU).
#[allow(clippy::too_many_arguments)] // the batch, where it goes, and how failures are retried
pub(crate) async fn apply_changes(
    db: &dyn ReadModelDb,
    tables: &Arc<Tables>,
    after: u64,
    changes: Vec<Changes>,
    again: impl FnOnce() -> Vec<Changes>,
    policy: FailurePolicy,
    health: &mut Health,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<u64, ReadModelError> {
    let Some(last) = changes.last().map(|c| c.position) else { return Ok(after) };
    let count = changes.len() as u64;
    match db.apply(tables.clone(), changes, after, last).await {
        Ok(()) => {
            health.applied(count);
            return Ok(last);
        }
        Err(error @ (ReadModelError::Stopped(..) | ReadModelError::Uncommitted(..))) => return Err(error),
        Err(error) if count > 1 => debug!(projection = tables.projection(), %error, "batch failed; applying its events one at a time"),
        Err(_) => {}
    }
    let mut applied = after;
    for change in again() {
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = match db.apply(tables.clone(), vec![change.clone()], applied, change.position).await {
                Ok(()) => break,
                Err(error @ (ReadModelError::Stopped(..) | ReadModelError::Uncommitted(..))) => return Err(error),
                Err(error) => error,
            };
            attempts += 1;
            health.failed(&error);
            health.report(db).await;
            warn!(projection = tables.projection(), position = change.position, stream = %change.stream_id, attempts, %error, "event failed");
            if attempts >= policy.max_attempts && policy.park && db.query("SELECT 1", vec![]).await.is_ok() {
                let parked = change.parked(tables, FAILED, &error.to_string(), attempts);
                match db.apply(tables.clone(), vec![parked], applied, change.position).await {
                    Ok(()) => {
                        warn!(projection = tables.projection(), position = change.position, stream = %change.stream_id, "event parked as a dead letter");
                        metrics::counter!("plaza_projection_dead_letters_parked_total", "projection" => tables.projection()).increment(1);
                        break;
                    }
                    Err(error @ (ReadModelError::Stopped(..) | ReadModelError::Uncommitted(..))) => return Err(error),
                    Err(error) => warn!(projection = tables.projection(), %error, "cannot park the event"),
                }
            }
            if sleep_or_shutdown(backoff, shutdown).await {
                return Ok(applied);
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        health.applied(1);
        applied = change.position;
    }
    Ok(applied)
}

/// Waits until [`PACE`] after `started` (the read of the batch just applied), or until
/// shutdown.
pub(crate) async fn pace(started: tokio::time::Instant, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep_until(started + PACE) => {}
        _ = shutdown.changed() => {}
    }
}

/// Sleeps; returns true if shutdown was requested meanwhile.
pub(crate) async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

use std::sync::Arc;
use std::time::Duration;

use plaza_domain::{Event, EventStore, RecordedEvent, StoreError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

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
    /// Idempotent DDL creating the projection's tables and indexes.
    fn schema(&self) -> &'static [&'static str];
    /// Appends the statements that apply `event` to `out`.
    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>);
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// Tails the global log and applies it to one projection, batch by batch. Each batch's
/// statements and the new checkpoint commit in one transaction, so a restart resumes
/// exactly after the last committed batch.
pub struct Projector {
    projection: Arc<dyn Projection>,
    store: Arc<dyn EventStore>,
    db: Arc<dyn ReadModelDb>,
    progress: Progress,
    notices: Arc<dyn ChangeNotices>,
    batch_size: usize,
}

impl Projector {
    pub fn new(projection: Arc<dyn Projection>, store: Arc<dyn EventStore>, db: Arc<dyn ReadModelDb>, progress: Progress) -> Self {
        Self { projection, store, db, progress, notices: Arc::new(LocalNotices::default()), batch_size: 500 }
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

    /// Creates the projection's tables and returns its checkpoint.
    pub async fn prepare(&self) -> Result<u64, ProjectorError> {
        self.db.migrate(self.name(), self.projection.schema()).await?;
        let checkpoint = self.db.checkpoint(self.name()).await?;
        self.progress.advance(self.name(), checkpoint);
        Ok(checkpoint)
    }

    /// Applies one batch after `checkpoint`; returns the new checkpoint (unchanged when
    /// the log holds nothing newer).
    pub async fn step(&self, checkpoint: u64) -> Result<u64, ProjectorError> {
        let events = self.store.read_all(checkpoint, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(checkpoint);
        };
        let mut statements = Vec::with_capacity(events.len() * 2);
        for envelope in &events {
            match envelope.decode() {
                Ok(event) => self.projection.apply(&event, envelope, &mut statements),
                // An event this version cannot read (written by a newer Plaza) is
                // skipped rather than stopping every read model behind it.
                Err(error) => warn!(projection = self.name(), position = envelope.position, %error, "skipping undecodable event"),
            }
        }
        self.db.apply(self.name(), statements, last).await?;
        self.progress.advance(self.name(), last);
        self.notices.publish(self.name());
        debug!(projection = self.name(), position = last, events = events.len(), "batch applied");
        Ok(last)
    }

    /// Applies everything up to the store's current head; returns the checkpoint.
    pub async fn catch_up(&self) -> Result<u64, ProjectorError> {
        let mut checkpoint = self.prepare().await?;
        let head = self.store.head().await?;
        while checkpoint < head {
            checkpoint = self.step(checkpoint).await?;
        }
        Ok(checkpoint)
    }

    /// Runs until `shutdown` turns true, finishing the batch in hand first. Failures
    /// are logged and retried with backoff; nothing is skipped.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut checkpoint = loop {
            match self.prepare().await {
                Ok(checkpoint) => break checkpoint,
                Err(error) => {
                    warn!(projection = self.name(), %error, "projector cannot start, retrying");
                    if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown).await {
                        return;
                    }
                }
            }
        };
        info!(projection = self.name(), checkpoint, "projector started");
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            match self.step(checkpoint).await {
                Ok(next) if next == checkpoint => {
                    tokio::select! {
                        _ = self.store.wait_for_events(checkpoint, Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(next) => {
                    checkpoint = next;
                    backoff = Duration::from_millis(100);
                }
                Err(error) => {
                    warn!(projection = self.name(), checkpoint, %error, "projection batch failed, retrying");
                    if sleep_or_shutdown(backoff, &mut shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        info!(projection = self.name(), checkpoint, "projector stopped");
    }
}

/// Sleeps; returns true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

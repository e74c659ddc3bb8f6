//! Rebuilding a projection without downtime: a new generation is filled from the store's
//! history beside the live one, which keeps serving and applying; once the new one has
//! caught up, one transaction switches the views over, and the old tables are dropped.
//!
//! A rebuild holds a lock for its projection ([`ReadModelDb::try_lock`]), so a second one
//! refuses to start, and resumes from its generation's own checkpoint when it is started
//! again after being killed.
//!
//! Its batches may be committed a second's worth at a time
//! ([`Tables::with_held_commits`]). If held ones are rolled back (one of them failed, or
//! their commit did), it goes back to its checkpoint and commits batch by batch up to
//! where they failed, where the usual retries and dead letters take over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plaza_domain::{EventStore, RecordedEvent, StoreError};
use tokio::sync::watch;
use tracing::info;

use crate::dead_letters::Changes;
use crate::generations::{self, Generation, Tables};
use crate::health::Health;
use crate::runtime::{FailurePolicy, apply_changes, sleep_or_shutdown};
use crate::{ChangeNotices, LocalNotices, Projection, ReadModelDb, ReadModelError};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild of this projection is already running")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// A batch read ahead: its events and their changes.
type Reading = tokio::task::JoinHandle<Result<(Vec<RecordedEvent>, Vec<Changes>), StoreError>>;

/// Where a rebuild is, for progress reports.
#[derive(Debug, Clone)]
pub struct RebuildProgress {
    pub generation: u64,
    /// Global position applied to the new generation.
    pub position: u64,
    /// The store's head when last looked at.
    pub head: u64,
    /// Events applied by this run (a resumed rebuild starts counting again).
    pub events: u64,
    pub started: Instant,
}

/// What `event` changes in the generation being built. The change logs are left to the
/// switch-over ([`Projection::carried_over`]).
fn changes_of(projection: &dyn Projection, tables: &Tables, event: &RecordedEvent) -> Changes {
    let mut changes = Changes::of(projection, event);
    changes.statements.retain(|statement| !tables.carried_over(statement));
    changes
}

pub struct Rebuild {
    projection: Arc<dyn Projection>,
    store: Arc<dyn EventStore>,
    db: Arc<dyn ReadModelDb>,
    notices: Arc<dyn ChangeNotices>,
    batch_size: usize,
    commit_interval: Duration,
    policy: FailurePolicy,
}

impl Rebuild {
    pub fn new(projection: Arc<dyn Projection>, store: Arc<dyn EventStore>, db: Arc<dyn ReadModelDb>) -> Self {
        Self {
            projection,
            store,
            db,
            notices: Arc::new(LocalNotices::default()),
            batch_size: 50_000,
            commit_interval: Duration::from_secs(1),
            policy: FailurePolicy::default(),
        }
    }

    /// What to do with an event the projection keeps failing on (as its projectors do).
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Announces the switch-over here.
    pub fn with_notices(mut self, notices: Arc<dyn ChangeNotices>) -> Self {
        self.notices = notices;
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How long the database may hold applied batches before it commits them
    /// ([`Tables::with_held_commits`]; zero: every batch). Default 1 s.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Reads the batch after `position` and works out its changes, on a task of its own.
    fn read_ahead(&self, position: u64, tables: &Arc<Tables>) -> Reading {
        let (store, projection, batch_size, tables) = (self.store.clone(), self.projection.clone(), self.batch_size, tables.clone());
        tokio::spawn(async move {
            let events = store.read_all(position, batch_size).await?;
            let changes = events.iter().map(|event| changes_of(&*projection, &tables, event)).collect();
            Ok((events, changes))
        })
    }

    /// Stops before switching over, the batches applied so far committed (if they can
    /// be: a rebuild started again resumes from its checkpoint either way).
    async fn stopped(&self, held: &Tables) -> Result<Option<Generation>, RebuildError> {
        match self.db.commit_held(held).await {
            Ok(()) | Err(ReadModelError::Uncommitted(..)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The building generation's checkpoint, as committed.
    async fn checkpoint(&self, generation: u64) -> Result<u64, ReadModelError> {
        let generations = generations::generations(&*self.db, self.projection.name()).await?;
        let building = generations.iter().find(|g| g.generation == generation);
        building.map(|g| g.position).ok_or_else(|| ReadModelError::Stopped(self.projection.name(), generation))
    }

    /// Builds a new generation up to the live one and switches over to it; returns the
    /// new live generation, or None when `shutdown` came first (run again to resume).
    pub async fn run(
        &self,
        report: &mut (dyn FnMut(&RebuildProgress) + Send),
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<Generation>, RebuildError> {
        let db = &*self.db;
        let name = self.projection.name();
        let _lock = db.try_lock(&format!("rebuild.{name}")).await?.ok_or(RebuildError::Busy)?;
        generations::ensure_live(db, &*self.projection).await?;
        let building = generations::start_building(db, &*self.projection).await?;
        let tables = Arc::new(Tables::of(&*self.projection, building.generation));
        let held = Arc::new(Tables::of(&*self.projection, building.generation).with_held_commits(self.commit_interval));
        // Up to here, batches are committed one by one (after held ones were lost).
        let mut careful_until = 0;
        let mut progress =
            RebuildProgress { generation: building.generation, position: building.position, head: 0, events: 0, started: Instant::now() };
        info!(projection = name, generation = building.generation, from = building.position, "rebuild started");
        let mut health = Health::new(name);
        'build: loop {
            if *shutdown.borrow() {
                return self.stopped(&held).await;
            }
            progress.head = self.store.head().await?;
            // The next batch is read and projected on another task while this one applies.
            let mut next = (progress.position < progress.head).then(|| self.read_ahead(progress.position, &tables));
            while let Some(reading) = next.take() {
                let (events, changes) =
                    reading.await.map_err(|error| ReadModelError::Database(format!("the rebuild's reader failed: {error}")))??;
                let Some(last) = events.last().map(|e| e.position) else { break };
                if last < progress.head {
                    next = Some(self.read_ahead(last, &tables));
                }
                let again = || events.iter().map(|event| changes_of(&*self.projection, &tables, event)).collect();
                let into = if progress.position < careful_until { &tables } else { &held };
                let applied = match apply_changes(db, into, progress.position, changes, again, self.policy, &mut health, &mut shutdown).await {
                    Ok(applied) => applied,
                    Err(ReadModelError::Uncommitted(..)) => {
                        next.inspect(tokio::task::JoinHandle::abort);
                        (careful_until, progress.position) = (last, self.checkpoint(building.generation).await?);
                        continue 'build;
                    }
                    Err(error) => {
                        next.inspect(tokio::task::JoinHandle::abort);
                        return Err(error.into());
                    }
                };
                progress.events += events.iter().filter(|e| e.position <= applied).count() as u64;
                progress.position = progress.position.max(applied);
                if applied < last {
                    next.inspect(tokio::task::JoinHandle::abort);
                    return self.stopped(&held).await;
                }
                report(&progress);
                if *shutdown.borrow() {
                    next.inspect(tokio::task::JoinHandle::abort);
                    return self.stopped(&held).await;
                }
            }
            match db.commit_held(&held).await {
                Err(ReadModelError::Uncommitted(..)) => {
                    (careful_until, progress.position) = (progress.position, self.checkpoint(building.generation).await?);
                    continue 'build;
                }
                committed => committed?,
            }
            generations::create_query_indexes(db, &*self.projection, building.generation).await?;
            let live = generations::live(db, name).await?;
            if generations::switch(db, &*self.projection, live.map(|g| g.generation), building.generation).await? {
                break;
            }
            // The live generation applied something newer meanwhile: catch up again.
            if sleep_or_shutdown(Duration::from_millis(20), &mut shutdown).await {
                return Ok(None);
            }
        }
        self.notices.publish(name);
        generations::discard_retired(db, &*self.projection).await?;
        let live =
            generations::live(db, name).await?.ok_or_else(|| ReadModelError::Database(format!("{name} has no live generation after the switch")))?;
        info!(projection = name, generation = live.generation, position = live.position, events = progress.events, "rebuild switched over");
        Ok(Some(live))
    }
}

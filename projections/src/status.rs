//! What `plaza projections status` and `GET /admin/projections` report: for each
//! projection, its generations, how far it has applied the log and how far behind the
//! store's head it is.

use std::time::{Duration, SystemTime};

use plaza_domain::EventStore;
use serde::Serialize;

use crate::generations::{self, Generation, State};
use crate::{Projection, ReadModelDb, SqlValue};

/// A projection is `catching_up` rather than `running` once its oldest unapplied event
/// is this old.
pub const CATCHING_UP_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// `running`, `catching_up`, `stalled` (events wait and nothing was applied for
    /// the stall time), `failed` (an event keeps failing), `rebuilding`, `paused`, or
    /// `missing` (never run).
    pub state: &'static str,
    /// Version of the live generation's tables, and of this binary's projection code.
    pub version: Option<u64>,
    pub code_version: u64,
    pub generation: Option<u64>,
    /// Global position applied by the live generation (the lowest over its Kafka
    /// partitions when Kafka feeds it).
    pub applied_position: u64,
    pub head_position: u64,
    pub lag_events: u64,
    /// Age of the oldest event not applied yet (0 when none).
    pub lag_seconds: f64,
    pub paused: bool,
    pub stalled: bool,
    /// Events applied per second over the last minute, by every projector of it.
    pub events_per_sec: f64,
    /// Dead letters of the live generation (failed events and those queued behind).
    pub dead_letters: u64,
    /// The newest error a projector of it reported, and when (Unix milliseconds).
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// A generation being built beside the live one.
    pub rebuild: Option<BuildStatus>,
    /// Per Kafka partition, when Kafka feeds the projection.
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildStatus {
    pub generation: u64,
    pub version: u64,
    pub applied_position: u64,
    /// Unix milliseconds.
    pub started_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i64,
    /// Next offset the projection will apply.
    pub next_offset: i64,
    /// Global position everything in the partition is applied up to.
    pub position: u64,
    /// The partition's end (high watermark) and the messages before it not applied yet,
    /// when the broker could be asked.
    pub end_offset: Option<i64>,
    pub lag_messages: Option<i64>,
    /// The member consuming it, as it last noted (every second), and when (Unix ms). A
    /// member ending in `+rescue` consumes it outside the consumer group because its
    /// member stopped noting it: a failover in progress.
    pub owner: Option<String>,
    pub owner_seen_at: Option<i64>,
}

const PARTITIONS: &str = "SELECT topic, kafka_partition, next_offset, position, owner, owner_seen_at FROM generation_partitions
     WHERE projection = $1 AND generation = $2 ORDER BY topic, kafka_partition";

const HEALTH: &str = "SELECT events_last_minute, failing, last_error, last_error_at, reported_at FROM projection_health WHERE projection = $1";
const DEAD_LETTERS: &str = "SELECT count(*) FROM dead_letters WHERE projection = $1 AND generation = $2";

/// The status of every projection in `projections`. A projection with events waiting
/// that applied nothing for `stall` is stalled.
pub async fn collect(
    projections: &[std::sync::Arc<dyn Projection>],
    db: &dyn ReadModelDb,
    store: &dyn EventStore,
    stall: Duration,
) -> anyhow::Result<Vec<ProjectionStatus>> {
    let head = store.head().await?;
    let mut out = Vec::with_capacity(projections.len());
    for projection in projections {
        let all = generations::generations(db, projection.name()).await?;
        out.push(status_of(projection.as_ref(), &all, db, store, head, stall).await?);
    }
    Ok(out)
}

async fn status_of(
    projection: &dyn Projection,
    all: &[Generation],
    db: &dyn ReadModelDb,
    store: &dyn EventStore,
    head: u64,
    stall: Duration,
) -> anyhow::Result<ProjectionStatus> {
    let now = crate::generations::now_millis();
    let live = all.iter().find(|g| g.state == State::Live);
    let rebuild = all.iter().find(|g| g.state == State::Building).map(|g| BuildStatus {
        generation: g.generation,
        version: g.version,
        applied_position: g.position,
        started_at: g.started_at,
    });
    let mut partitions = Vec::new();
    if let Some(live) = live {
        for row in db.query(PARTITIONS, vec![projection.name().into(), SqlValue::Int(live.generation as i64)]).await? {
            partitions.push(PartitionStatus {
                topic: row.text(0)?.to_owned(),
                partition: row.int(1)?,
                next_offset: row.int(2)?,
                position: row.int(3)? as u64,
                end_offset: None,
                lag_messages: None,
                owner: row.opt_text(4)?.map(str::to_owned),
                owner_seen_at: row.int(5).ok(),
            });
        }
    }
    let applied = match (live, partitions.iter().map(|p| p.position).min()) {
        (Some(_), Some(lowest)) => lowest,
        (Some(live), None) => live.position,
        (None, _) => 0,
    };
    let lag_events = head.saturating_sub(applied);
    let lag_seconds = match lag_events {
        0 => 0.0,
        _ => match store.read_all(applied, 1).await?.first() {
            Some(oldest) => {
                let written: SystemTime = oldest.occurred_at.into();
                SystemTime::now().duration_since(written).unwrap_or_default().as_secs_f64()
            }
            None => 0.0,
        },
    };
    let paused = live.is_some_and(|g| g.paused);
    let last_applied = live.and_then(|g| g.applied_at.or(g.live_at)).unwrap_or(now);
    let stalled = lag_events > 0 && !paused && now - last_applied >= stall.as_millis() as i64;
    let (mut events_last_minute, mut failing, mut last_error) = (0, false, None::<(String, i64)>);
    for row in db.query(HEALTH, vec![projection.name().into()]).await? {
        let fresh = row.int(4)? >= now - crate::health::REPORT_STALE_MS;
        if fresh {
            events_last_minute += row.int(0)?;
            failing |= row.int(1)? != 0;
        }
        if let (Some(error), Ok(at)) = (row.opt_text(2)?, row.int(3))
            && last_error.as_ref().is_none_or(|(_, newest)| at > *newest)
        {
            last_error = Some((error.to_owned(), at));
        }
    }
    let dead_letters = match live {
        Some(live) => db.query(DEAD_LETTERS, vec![projection.name().into(), SqlValue::Int(live.generation as i64)]).await?[0].int(0)? as u64,
        None => 0,
    };
    let state = if live.is_none() {
        "missing"
    } else if paused {
        "paused"
    } else if rebuild.is_some() {
        "rebuilding"
    } else if failing {
        "failed"
    } else if stalled {
        "stalled"
    } else if lag_seconds >= CATCHING_UP_AFTER.as_secs_f64() {
        "catching_up"
    } else {
        "running"
    };
    Ok(ProjectionStatus {
        name: projection.name().to_owned(),
        state,
        version: live.map(|g| g.version),
        code_version: projection.version(),
        generation: live.map(|g| g.generation),
        applied_position: applied,
        head_position: head,
        lag_events,
        lag_seconds: (lag_seconds * 10.0).round() / 10.0,
        paused,
        stalled,
        events_per_sec: (events_last_minute as f64 / 6.0).round() / 10.0,
        dead_letters,
        last_error_at: last_error.as_ref().map(|(_, at)| *at),
        last_error: last_error.map(|(error, _)| error),
        rebuild,
        partitions,
    })
}

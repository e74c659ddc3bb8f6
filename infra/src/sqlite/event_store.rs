use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use plaza_domain::{Appended, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Snapshot, StoreError};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use tracing::error;
use uuid::Uuid;

use super::{ReaderPool, open_connection};
use crate::head::Head;
use crate::recent::Recent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id TEXT    PRIMARY KEY,
    version   INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    schema    INTEGER NOT NULL,
    state     TEXT    NOT NULL
);";

/// The columns `row_to_event` reads, in its order.
macro_rules! select_events {
    ($where:literal) => {
        concat!("SELECT position, event_id, stream_id, version, event_type, schema_version, data, metadata, occurred_at FROM events ", $where)
    };
}

/// Appends waiting for the writer thread are taken together, up to this many, into
/// one transaction and one fsync.
const MAX_BATCH: usize = 512;

/// What the writer thread writes: appends, and snapshots (so one thread holds
/// SQLite's write lock and nobody waits on a busy handler).
enum Write {
    Append { stream: String, expected: ExpectedVersion, events: Vec<NewEvent>, reply: oneshot::Sender<Result<Appended, StoreError>> },
    Snapshot { snapshot: Snapshot, reply: oneshot::Sender<Result<(), StoreError>> },
}

impl Write {
    /// Sends the result of this write to whoever waits for it.
    fn answer(self, result: Result<Option<Appended>, StoreError>) {
        match self {
            Write::Append { reply, .. } => {
                let _ = reply.send(result.and_then(|a| a.ok_or_else(|| unavailable("append reported no position"))));
            }
            Write::Snapshot { reply, .. } => {
                let _ = reply.send(result.map(|_| ()));
            }
        }
    }
}

/// The embedded event store: one SQLite file in WAL mode with `synchronous=FULL`.
/// A single writer thread drains every pending append into one transaction (group
/// commit); positions are SQLite row ids, assigned in commit order.
pub struct SqliteEventStore {
    jobs: mpsc::Sender<Write>,
    readers: Arc<ReaderPool>,
    head: Arc<Head>,
    commits: Arc<AtomicU64>,
    /// What the writer committed last, for the projectors following the head.
    recent: Arc<Recent>,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl SqliteEventStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_connection(path, "FULL", None).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        let head: i64 = conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| r.get(0)).map_err(unavailable)?;
        let head = Arc::new(Head::new(head as u64));
        let readers = Arc::new(ReaderPool::open(path, 4).map_err(unavailable)?);
        let (jobs, rx) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let recent = Arc::new(Recent::default());
        let (writer_head, writer_commits, writer_recent) = (head.clone(), commits.clone(), recent.clone());
        std::thread::Builder::new()
            .name("sqlite-event-writer".into())
            .spawn(move || writer_loop(conn, rx, &writer_head, &writer_commits, &writer_recent))
            .map_err(unavailable)?;
        Ok(Self { jobs, readers, head, commits, recent })
    }

    /// How many transactions the writer has committed (group commit makes this far
    /// smaller than the number of appends under concurrency).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    async fn read(&self, sql: &'static str, args: Vec<Value>) -> Result<Vec<RecordedEvent>, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            readers.with(|conn| {
                let mut stmt = conn.prepare_cached(sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_event)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl EventStore for SqliteEventStore {
    async fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Write::Append { stream: stream.to_owned(), expected, events, reply })
            .map_err(|_| unavailable("the writer thread has stopped"))?;
        answer.await.map_err(|_| unavailable("the writer thread dropped the append"))?
    }

    async fn read_stream(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        const SQL: &str = select_events!("WHERE stream_id = ?1 AND version >= ?2 ORDER BY version LIMIT ?3");
        self.read(SQL, vec![Value::Text(stream.to_owned()), Value::Integer(from_version as i64), Value::Integer(limit as i64)]).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Some(events) = self.recent.read(after, limit) {
            return Ok(events);
        }
        const SQL: &str = select_events!("WHERE position > ?1 ORDER BY position LIMIT ?2");
        self.read(SQL, vec![Value::Integer(after as i64), Value::Integer(limit as i64)]).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let readers = self.readers.clone();
        let head: i64 = tokio::task::spawn_blocking(move || {
            readers.with(|conn| conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| r.get(0)))
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(head as u64)
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, StoreError> {
        Ok(self.head.wait_above(after, timeout).await)
    }

    async fn read_event(&self, stream: &str, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        const SQL: &str = select_events!("WHERE event_id = ?1 AND stream_id = ?2");
        Ok(self.read(SQL, vec![Value::Text(event_id.to_string()), Value::Text(stream.to_owned())]).await?.pop())
    }

    async fn read_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let readers = self.readers.clone();
        let stream = stream.to_owned();
        tokio::task::spawn_blocking(move || {
            readers.with(|conn| {
                conn.prepare_cached("SELECT version, position, schema, state FROM snapshots WHERE stream_id = ?1")?
                    .query_row([&stream], |r| {
                        Ok(Snapshot {
                            stream_id: stream.clone(),
                            version: r.get::<_, i64>(0)? as u64,
                            position: r.get::<_, i64>(1)? as u64,
                            schema: r.get(2)?,
                            state: r.get(3)?,
                        })
                    })
                    .optional()
            })
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }

    async fn write_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Write::Snapshot { snapshot, reply }).map_err(|_| unavailable("the writer thread has stopped"))?;
        answer.await.map_err(|_| unavailable("the writer thread dropped the snapshot"))?
    }

    fn shared(&self) -> bool {
        false
    }
}

fn writer_loop(mut conn: Connection, jobs: mpsc::Receiver<Write>, head: &Head, commits: &AtomicU64, recent: &Recent) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        match write_batch(&mut conn, &batch) {
            Ok((results, committed)) => {
                recent.committed(committed);
                commits.fetch_add(1, Ordering::Relaxed);
                let events = batch.iter().map(|w| if let Write::Append { events, .. } = w { events.len() } else { 0 }).sum::<usize>();
                crate::record_append(started.elapsed(), batch.len(), events);
                if let Some(last) = results.iter().filter_map(|r| r.as_ref().ok().copied().flatten()).map(|a| a.last_position).max() {
                    head.advance(last);
                }
                for (write, result) in batch.into_iter().zip(results) {
                    write.answer(result);
                }
            }
            Err(e) => {
                error!(error = %e, writes = batch.len(), "event store batch failed");
                for write in batch {
                    write.answer(Err(unavailable(&e)));
                }
            }
        }
    }
}

/// What a batch's writes answer, and the events it stored, in position order.
type Written = (Vec<Result<Option<Appended>, StoreError>>, Vec<RecordedEvent>);

/// Writes the whole batch in one transaction. A write that fails (version conflict,
/// or an error inside its own savepoint) fails alone. Appends answer where they landed.
fn write_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<Written> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut stored = Vec::new();
    for write in batch {
        let mut savepoint = tx.savepoint()?;
        let kept = stored.len();
        let outcome = match write {
            Write::Append { stream, expected, events, .. } => append_one(&savepoint, stream, *expected, events, &mut stored).map(Some),
            Write::Snapshot { snapshot, .. } => save_snapshot(&savepoint, snapshot).map(|()| None).map_err(AppendFailure::Sql),
        };
        match outcome {
            Ok(done) => {
                savepoint.commit()?;
                results.push(Ok(done));
            }
            Err(AppendFailure::Refused(error)) => results.push(Err(error)),
            Err(AppendFailure::Sql(error)) => {
                savepoint.rollback()?;
                stored.truncate(kept);
                results.push(Err(unavailable(error)));
            }
        }
    }
    tx.commit()?;
    Ok((results, stored))
}

enum AppendFailure {
    Refused(StoreError),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for AppendFailure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

fn save_snapshot(conn: &Connection, snapshot: &Snapshot) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO snapshots (stream_id, version, position, schema, state) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, position = excluded.position,
             schema = excluded.schema, state = excluded.state
         WHERE excluded.version > snapshots.version",
    )?
    .execute(params![snapshot.stream_id, snapshot.version as i64, snapshot.position as i64, snapshot.schema, snapshot.state])?;
    Ok(())
}

/// Appends `events` to `stream`, pushing each one it stores to `stored` as a read
/// would return it.
fn append_one(
    conn: &Connection,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    stored: &mut Vec<RecordedEvent>,
) -> Result<Appended, AppendFailure> {
    // Events already stored (a retried append) are not stored again.
    let mut existing = Vec::new();
    let mut fresh = Vec::new();
    {
        let mut find = conn.prepare_cached("SELECT position, version FROM events WHERE event_id = ?1")?;
        for event in events {
            match find.query_row([event.event_id.to_string()], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))).optional()? {
                Some(found) => existing.push(found),
                None => fresh.push(event),
            }
        }
    }
    if fresh.is_empty() {
        return Ok(Appended {
            first_position: existing.iter().map(|e| e.0).min().unwrap_or(0),
            last_position: existing.iter().map(|e| e.0).max().unwrap_or(0),
            stream_version: existing.iter().map(|e| e.1).max().unwrap_or(0),
        });
    }

    let current: Option<i64> = conn.prepare_cached("SELECT max(version) FROM events WHERE stream_id = ?1")?.query_row([stream], |r| r.get(0))?;
    let current = current.map(|v| v as u64);
    if !expected.matches(current) {
        return Err(AppendFailure::Refused(StoreError::WrongExpectedVersion { stream: stream.to_owned(), expected, actual: current }));
    }

    let mut insert = conn.prepare_cached(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, data, metadata, occurred_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut version = current.map_or(0, |v| v + 1);
    let mut first_position = None;
    for event in &fresh {
        insert.execute(params![
            event.event_id.to_string(),
            stream,
            version as i64,
            event.event_type,
            event.schema_version,
            event.data,
            serde_json::to_string(&event.metadata).expect("metadata serializes"),
            event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        ])?;
        let position = conn.last_insert_rowid() as u64;
        first_position.get_or_insert(position);
        stored.push(RecordedEvent {
            event_id: event.event_id,
            stream_id: stream.to_owned(),
            version,
            position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            // Stored with microseconds, as reads return it.
            occurred_at: event.occurred_at.trunc_subsecs(6),
        });
        version += 1;
    }
    Ok(Appended { first_position: first_position.unwrap_or(0), last_position: conn.last_insert_rowid() as u64, stream_version: version - 1 })
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let bad =
        |index: usize, e: Box<dyn std::error::Error + Send + Sync>| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e);
    // Read in place: only what the event keeps as text is copied.
    let text = move |index: usize| row.get_ref(index)?.as_str().map_err(|e| bad(index, e.into()));
    let (event_id, metadata, occurred_at) = (text(1)?, text(7)?, text(8)?);
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0)? as u64,
        event_id: Uuid::parse_str(event_id).map_err(|e| bad(1, e.into()))?,
        stream_id: row.get(2)?,
        version: row.get::<_, i64>(3)? as u64,
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        data: row.get(6)?,
        metadata: serde_json::from_str::<Metadata>(metadata).map_err(|e| bad(7, e.into()))?,
        occurred_at: DateTime::parse_from_rfc3339(occurred_at).map_err(|e| bad(8, e.into()))?.with_timezone(&Utc),
    })
}

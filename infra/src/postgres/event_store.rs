use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Pool;
use plaza_domain::{Appended, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Snapshot, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use tracing::{error, warn};
use uuid::Uuid;

use crate::head::Head;
use crate::recent::Recent;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position       BIGINT      PRIMARY KEY,
    event_id       UUID        NOT NULL UNIQUE,
    stream_id      TEXT        NOT NULL,
    version        BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version INT         NOT NULL,
    data           JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id TEXT   PRIMARY KEY,
    version   BIGINT NOT NULL,
    position  BIGINT NOT NULL,
    schema    INT    NOT NULL,
    state     JSONB  NOT NULL
);";

/// Serialises appenders (of every process) so positions are handed out in commit
/// order: a reader never sees position `p + 1` before `p` has committed.
const APPEND_LOCK: i64 = 0x0070_6c61_7a61; // "plaza"
const NOTIFY_CHANNEL: &str = "plaza_events";
const MAX_BATCH: usize = 512;

/// The columns [`row_to_event`] reads, as every read (and the insert's `RETURNING`) selects them.
macro_rules! columns {
    () => {
        "position, event_id::text, stream_id, version, event_type, schema_version, data::text, metadata::text,
         (extract(epoch FROM occurred_at) * 1000000)::int8"
    };
}
const SELECT: &str = concat!("SELECT ", columns!(), " FROM events");

struct Job {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The PostgreSQL event store. One writer task per process drains pending appends
/// into one transaction (group commit) under a transaction-level advisory lock, so
/// positions are gap-free in commit order across processes. Commits `NOTIFY`
/// listeners, which wake waiting readers in every process.
///
/// The writer keeps the events it committed last ([`Recent`]), as PostgreSQL hands
/// them back (the insert returns each row as `SELECT` reads it: JSONB's text, the
/// timestamp to the microsecond), and `read_all` answers from them when it can.
pub struct PgEventStore {
    jobs: mpsc::UnboundedSender<Job>,
    pool: Pool,
    head: Arc<Head>,
    commits: Arc<AtomicU64>,
    recent: Arc<Recent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PgEventStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn pg_unavailable(error: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(super::describe(&error))
}

impl PgEventStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = super::parse_url(url).map_err(StoreError::Unavailable)?;
        let pool = super::pool(&config, 8).map_err(StoreError::Unavailable)?;
        let mut client = pool.get().await.map_err(pg_unavailable)?;
        let tx = client.transaction().await.map_err(pg_unavailable)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK]).await.map_err(pg_unavailable)?;
        tx.batch_execute(SCHEMA).await.map_err(pg_unavailable)?;
        tx.commit().await.map_err(pg_unavailable)?;
        let head: i64 = client.query_one("SELECT coalesce(max(position), 0) FROM events", &[]).await.map_err(pg_unavailable)?.get(0);
        drop(client);

        let head = Arc::new(Head::new(head as u64));
        let (jobs, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        let recent = Arc::new(Recent::default());
        let tasks = vec![
            tokio::spawn(writer_task(config.clone(), rx, head.clone(), commits.clone(), recent.clone())),
            tokio::spawn(listen_task(config, head.clone())),
        ];
        Ok(Self { jobs, pool, head, commits, recent, tasks })
    }

    /// How many append transactions this process has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    async fn read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await.map_err(pg_unavailable)?;
        let statement = client.prepare_cached(sql).await.map_err(pg_unavailable)?;
        let rows = client.query(&statement, params).await.map_err(pg_unavailable)?;
        rows.iter().map(row_to_event).collect()
    }
}

#[async_trait::async_trait]
impl EventStore for PgEventStore {
    async fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { stream: stream.to_owned(), expected, events, reply }).map_err(|_| unavailable("the writer task has stopped"))?;
        answer.await.map_err(|_| unavailable("the writer task dropped the append"))?
    }

    async fn read_stream(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("{SELECT} WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3");
        self.read(&sql, &[&stream, &(from_version as i64), &(limit as i64)]).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if let Some(events) = self.recent.read(after, limit) {
            return Ok(events);
        }
        let sql = format!("{SELECT} WHERE position > $1 ORDER BY position LIMIT $2");
        self.read(&sql, &[&(after as i64), &(limit as i64)]).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pg_unavailable)?;
        let row = client.query_one("SELECT coalesce(max(position), 0) FROM events", &[]).await.map_err(pg_unavailable)?;
        let head = row.get::<_, i64>(0) as u64;
        self.head.advance(head);
        Ok(head)
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, StoreError> {
        Ok(self.head.wait_above(after, timeout).await)
    }

    async fn read_event(&self, stream: &str, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let sql = format!("{SELECT} WHERE event_id = $1::text::uuid AND stream_id = $2");
        Ok(self.read(&sql, &[&event_id.to_string(), &stream]).await?.pop())
    }

    async fn read_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let client = self.pool.get().await.map_err(pg_unavailable)?;
        let statement = client
            .prepare_cached("SELECT version, position, schema, state::text FROM snapshots WHERE stream_id = $1")
            .await
            .map_err(pg_unavailable)?;
        let row = client.query_opt(&statement, &[&stream]).await.map_err(pg_unavailable)?;
        Ok(row.map(|row| Snapshot {
            stream_id: stream.to_owned(),
            version: row.get::<_, i64>(0) as u64,
            position: row.get::<_, i64>(1) as u64,
            schema: row.get::<_, i32>(2) as u32,
            state: row.get(3),
        }))
    }

    async fn write_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pg_unavailable)?;
        let statement = client
            .prepare_cached(
                "INSERT INTO snapshots (stream_id, version, position, schema, state) VALUES ($1, $2, $3, $4, $5::text::jsonb)
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, position = excluded.position,
                     schema = excluded.schema, state = excluded.state
                 WHERE excluded.version > snapshots.version",
            )
            .await
            .map_err(pg_unavailable)?;
        let params: [&(dyn ToSql + Sync); 5] =
            [&snapshot.stream_id, &(snapshot.version as i64), &(snapshot.position as i64), &(snapshot.schema as i32), &snapshot.state];
        client.execute(&statement, &params).await.map_err(pg_unavailable)?;
        Ok(())
    }
}

fn row_to_event(row: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    let micros: i64 = row.get(8);
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0) as u64,
        event_id: Uuid::parse_str(row.get(1)).map_err(|e| corrupt(&e))?,
        stream_id: row.get(2),
        version: row.get::<_, i64>(3) as u64,
        event_type: row.get(4),
        schema_version: row.get::<_, i32>(5) as u32,
        data: row.get(6),
        metadata: serde_json::from_str::<Metadata>(row.get(7)).map_err(|e| corrupt(&e))?,
        occurred_at: DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| corrupt(&"timestamp out of range"))?,
    })
}

/// The writer's connection and its statements, prepared once, so each step of a
/// batch is one round trip and independent steps are pipelined.
struct Writer {
    client: Client,
    lock: Statement,
    known: Statement,
    versions: Statement,
    head: Statement,
    insert: Statement,
    notify: Statement,
}

impl Writer {
    async fn connect(config: &tokio_postgres::Config) -> Result<Self, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                warn!(%error, "event store connection closed");
            }
        });
        // The look-ups filter with `= ANY($1)`: a cached generic plan could scan the
        // whole table, so plan each execution for its actual arguments.
        client.batch_execute("SET plan_cache_mode = force_custom_plan").await?;
        Ok(Self {
            lock: client.prepare("SELECT pg_advisory_xact_lock($1)").await?,
            known: client.prepare("SELECT event_id::text, position, version FROM events WHERE event_id = ANY($1::text[]::uuid[])").await?,
            // Each stream's last version off the end of its index, whatever the table's
            // statistics say: on a young log (before autovacuum first analyzed it) the
            // planner took `stream_id = ANY($1)` for a good part of the table and scanned
            // all of it, 18 ms at 60,000 events, on every batch.
            versions: client
                .prepare(
                    "SELECT s, (SELECT version FROM events WHERE stream_id = s ORDER BY version DESC LIMIT 1)
                     FROM unnest($1::text[]) AS s",
                )
                .await?,
            head: client.prepare("SELECT coalesce(max(position), 0) FROM events").await?,
            insert: client
                .prepare(concat!(
                    "INSERT INTO events (position, event_id, stream_id, version, event_type, schema_version, data, metadata, occurred_at)
                         SELECT p, e::uuid, s, v, t, sv, d::jsonb, m::jsonb, o::timestamptz
                         FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int4[], $7::text[], $8::text[], $9::text[])
                              AS r(p, e, s, v, t, sv, d, m, o)
                         RETURNING ",
                    columns!()
                ))
                .await?,
            notify: client.prepare("SELECT pg_notify($1, $2)").await?,
            client,
        })
    }
}

async fn writer_task(
    config: tokio_postgres::Config,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    head: Arc<Head>,
    commits: Arc<AtomicU64>,
    recent: Arc<Recent>,
) {
    let mut writer: Option<Writer> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if writer.as_ref().is_none_or(|w| w.client.is_closed()) {
            writer = Writer::connect(&config).await.inspect_err(|error| error!(%error, "cannot connect the event store writer")).ok();
        }
        let started = std::time::Instant::now();
        let outcome = match writer.as_mut() {
            Some(writer) => write_batch(writer, &batch).await.map_err(pg_unavailable),
            None => Err(unavailable("cannot connect to PostgreSQL")),
        };
        match outcome {
            Ok((results, stored)) => {
                recent.committed(stored);
                commits.fetch_add(1, Ordering::Relaxed);
                crate::record_append(started.elapsed(), batch.len(), batch.iter().map(|job| job.events.len()).sum());
                if let Some(last) = results.iter().filter_map(|r| r.as_ref().ok()).map(|a| a.last_position).max() {
                    head.advance(last);
                }
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(failure) => {
                error!(error = %failure, appends = batch.len(), "event store batch failed");
                for job in batch {
                    let _ = job.reply.send(Err(unavailable(&failure)));
                }
            }
        }
    }
}

/// Column arrays for one multi-row insert.
#[derive(Default)]
struct Rows {
    position: Vec<i64>,
    event_id: Vec<String>,
    stream_id: Vec<String>,
    version: Vec<i64>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    data: Vec<String>,
    metadata: Vec<String>,
    occurred_at: Vec<String>,
}

/// What a batch's appends answer, and the events it stored, in position order.
type Written = (Vec<Result<Appended, StoreError>>, Vec<RecordedEvent>);

/// Writes the batch in one transaction with four round trips whatever its size:
/// BEGIN; the lock and the look-ups of known ids, stream versions and the head,
/// pipelined; the insert of every row (one `unnest`, returning them as stored) and the
/// notify, pipelined; COMMIT.
async fn write_batch(writer: &mut Writer, batch: &[Job]) -> Result<Written, tokio_postgres::Error> {
    let ids: Vec<String> = batch.iter().flat_map(|job| job.events.iter().map(|e| e.event_id.to_string())).collect();
    let mut streams: Vec<&str> = batch.iter().map(|job| job.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();

    let tx = writer.client.transaction().await?;
    let lock_params: [&(dyn ToSql + Sync); 1] = [&APPEND_LOCK];
    let ids_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let streams_params: [&(dyn ToSql + Sync); 1] = [&streams];
    // Sent in this order and run in this order: the look-ups run under the lock.
    let (_, known_rows, version_rows, head) = tokio::try_join!(
        tx.execute(&writer.lock, &lock_params),
        tx.query(&writer.known, &ids_params),
        tx.query(&writer.versions, &streams_params),
        tx.query_one(&writer.head, &[]),
    )?;
    let mut known: HashMap<String, (u64, u64)> =
        known_rows.iter().map(|row| (row.get(0), (row.get::<_, i64>(1) as u64, row.get::<_, i64>(2) as u64))).collect();
    let mut versions: HashMap<String, Option<u64>> = streams.iter().map(|s| ((*s).to_owned(), None)).collect();
    for row in &version_rows {
        versions.insert(row.get(0), row.get::<_, Option<i64>>(1).map(|v| v as u64));
    }
    let mut position = head.get::<_, i64>(0) as u64;

    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let (existing, fresh): (Vec<_>, Vec<_>) = job.events.iter().partition(|e| known.contains_key(&e.event_id.to_string()));
        if fresh.is_empty() {
            let found: Vec<(u64, u64)> = existing.iter().map(|e| known[&e.event_id.to_string()]).collect();
            results.push(Ok(Appended {
                first_position: found.iter().map(|f| f.0).min().unwrap_or(0),
                last_position: found.iter().map(|f| f.0).max().unwrap_or(0),
                stream_version: found.iter().map(|f| f.1).max().unwrap_or(0),
            }));
            continue;
        }
        let current = versions[&job.stream];
        if !job.expected.matches(current) {
            results.push(Err(StoreError::WrongExpectedVersion { stream: job.stream.clone(), expected: job.expected, actual: current }));
            continue;
        }
        let mut version = current.map_or(0, |v| v + 1);
        let first_position = position + 1;
        for event in fresh {
            position += 1;
            known.insert(event.event_id.to_string(), (position, version));
            rows.position.push(position as i64);
            rows.event_id.push(event.event_id.to_string());
            rows.stream_id.push(job.stream.clone());
            rows.version.push(version as i64);
            rows.event_type.push(event.event_type.clone());
            rows.schema_version.push(event.schema_version as i32);
            rows.data.push(event.data.clone());
            rows.metadata.push(serde_json::to_string(&event.metadata).expect("metadata serializes"));
            rows.occurred_at.push(event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true));
            version += 1;
        }
        versions.insert(job.stream.clone(), Some(version - 1));
        results.push(Ok(Appended { first_position, last_position: position, stream_version: version - 1 }));
    }

    let mut inserted = Vec::new();
    if !rows.position.is_empty() {
        let last = position.to_string();
        let columns: [&(dyn ToSql + Sync); 9] = [
            &rows.position,
            &rows.event_id,
            &rows.stream_id,
            &rows.version,
            &rows.event_type,
            &rows.schema_version,
            &rows.data,
            &rows.metadata,
            &rows.occurred_at,
        ];
        let notice: [&(dyn ToSql + Sync); 2] = [&NOTIFY_CHANNEL, &last];
        (inserted, _) = tokio::try_join!(tx.query(&writer.insert, &columns), tx.execute(&writer.notify, &notice))?;
    }
    tx.commit().await?;
    // Decoded after the commit, so the lock every process appends under is not held for
    // it. Rows that do not read back are left for the store's readers to report.
    let mut stored: Vec<RecordedEvent> = inserted.iter().map(row_to_event).collect::<Result<_, _>>().unwrap_or_default();
    stored.sort_unstable_by_key(|e| e.position);
    Ok((results, stored))
}

/// Listens for commits of every process and moves the head, so waiting readers wake.
async fn listen_task(config: tokio_postgres::Config, head: Arc<Head>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (notices, mut received) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if let Ok(position) = n.payload().parse::<u64>() {
                                    let _ = notices.send(position);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await.is_ok() {
                    // Commits between the last read and LISTEN would go unheard: catch up once.
                    if let Ok(row) = client.query_one("SELECT coalesce(max(position), 0) FROM events", &[]).await {
                        head.advance(row.get::<_, i64>(0) as u64);
                    }
                    while let Some(position) = received.recv().await {
                        head.advance(position);
                    }
                }
                driver.abort();
                warn!("event store listener disconnected, reconnecting");
            }
            Err(error) => warn!(%error, "event store listener cannot connect"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait::async_trait]
impl crate::kafka::RelayCheckpoints for PgEventStore {
    async fn load(&self, name: &str) -> anyhow::Result<u64> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT position FROM relay_checkpoints WHERE name = $1", &[&name]).await?;
        Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    async fn save(&self, name: &str, position: u64) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO relay_checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                &[&name, &(position as i64)],
            )
            .await?;
        Ok(())
    }
}

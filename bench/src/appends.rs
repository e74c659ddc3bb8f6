//! Section 1: event store append throughput and latency, per adapter and number of
//! concurrent writers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent};
use plaza_infra::postgres::PgEventStore;
use plaza_infra::sqlite::SqliteEventStore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::Settings;
use crate::pg::FreshDatabase;
use crate::stats::{Measurement, Window, WorkerLog};

pub const WRITER_COUNTS: [usize; 3] = [1, 16, 64];

pub struct AppendResult {
    pub adapter: &'static str,
    pub writers: usize,
    pub measurement: Measurement,
    /// Transactions the store committed during the whole case (warm-up included).
    pub commits: u64,
}

impl AppendResult {
    /// Appends per committed transaction (group commit), warm-up included.
    pub fn appends_per_commit(&self) -> f64 {
        if self.commits == 0 { 0.0 } else { self.measurement.total_ops as f64 / self.commits as f64 }
    }
}

pub async fn run_all(settings: &Settings, admin: &str) -> anyhow::Result<Vec<AppendResult>> {
    let mut results = Vec::new();
    for writers in WRITER_COUNTS {
        results.push(report(sqlite_case(writers, settings).await?));
    }
    for writers in WRITER_COUNTS {
        results.push(report(postgres_case(writers, settings, admin).await?));
    }
    Ok(results)
}

fn report(result: AppendResult) -> AppendResult {
    eprintln!(
        "[appends] {}, {} writers: {} ({:.1} appends/commit)",
        result.adapter,
        result.writers,
        result.measurement.summary("events"),
        result.appends_per_commit()
    );
    result
}

async fn sqlite_case(writers: usize, settings: &Settings) -> anyhow::Result<AppendResult> {
    eprintln!("[appends] SQLite, {writers} writers...");
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).context("cannot open the SQLite event store")?);
    let measurement = run_writers(store.clone(), writers, settings).await?;
    Ok(AppendResult { adapter: "SQLite", writers, measurement, commits: store.commits() })
}

async fn postgres_case(writers: usize, settings: &Settings, admin: &str) -> anyhow::Result<AppendResult> {
    eprintln!("[appends] PostgreSQL, {writers} writers...");
    let database = FreshDatabase::create(admin).await?;
    let result = postgres_case_in(&database.url, writers, settings).await;
    let dropped = database.drop_now().await;
    let result = result?;
    dropped?;
    Ok(result)
}

async fn postgres_case_in(url: &str, writers: usize, settings: &Settings) -> anyhow::Result<AppendResult> {
    let store = Arc::new(PgEventStore::connect(url).await.context("cannot open the PostgreSQL event store")?);
    let measurement = run_writers(store.clone(), writers, settings).await?;
    Ok(AppendResult { adapter: "PostgreSQL", writers, measurement, commits: store.commits() })
}

/// Runs `writers` concurrent tasks appending to their own streams until the window closes.
async fn run_writers(store: Arc<dyn EventStore>, writers: usize, settings: &Settings) -> anyhow::Result<Measurement> {
    let window = Window::starting_now(settings.warmup, settings.store_case);
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        tasks.spawn(writer(store.clone(), window));
    }
    let mut logs = Vec::with_capacity(writers);
    while let Some(joined) = tasks.join_next().await {
        logs.push(joined.context("a writer task panicked")??);
    }
    Ok(Measurement::finish(&window, logs))
}

/// One writer: appends one event at a time to its own `follow-{a}-{b}` stream with the
/// expected version a command would use. Follows and unfollows alternate, so the
/// stream stays a valid history. Any failure stops the case.
async fn writer(store: Arc<dyn EventStore>, window: Window) -> anyhow::Result<WorkerLog> {
    let (follower, followee) = (Uuid::new_v4(), Uuid::new_v4());
    let stream = format!("follow-{follower}-{followee}");
    let metadata = Metadata { actor: Some(follower), ..Metadata::default() };
    let mut version: Option<u64> = None;
    let mut log = WorkerLog::default();
    loop {
        let started = Instant::now();
        if !window.is_open(started) {
            return Ok(log);
        }
        let following = version.is_some_and(|v| v % 2 == 0);
        let event = if following {
            Event::UserUnfollowed { follower_id: follower, followee_id: followee }
        } else {
            Event::UserFollowed { follower_id: follower, followee_id: followee }
        };
        let metadata = Metadata { correlation_id: Some(Uuid::now_v7()), ..metadata.clone() };
        let new = NewEvent::new(Uuid::now_v7(), &event, metadata, Utc::now());
        let appended = store.append(&stream, ExpectedVersion::from_current(version), vec![new]).await.context("append failed")?;
        log.record(&window, started, started.elapsed(), true);
        version = Some(appended.stream_version);
    }
}

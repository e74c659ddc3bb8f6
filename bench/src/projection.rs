//! Section 3: projection throughput. A SQLite event store is prefilled with users and
//! follow/unfollow histories, then the accounts projection catches up from zero into
//! SQLite and into PostgreSQL read models.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent};
use plaza_infra::postgres::PgReadModels;
use plaza_infra::sqlite::{SqliteEventStore, SqliteReadModels};
use plaza_projections::accounts::AccountsProjection;
use plaza_projections::{Progress, Projector, ReadModelDb};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::Settings;
use crate::pg::FreshDatabase;

pub const USERS: usize = 1_000;
/// Events per follow stream: follow, unfollow, follow, ... An odd count leaves every
/// pair following at the end.
pub const EVENTS_PER_PAIR: usize = 25;
/// The projector's default batch size (events read and applied per transaction).
pub const BATCH_SIZE: usize = 500;

pub struct ProjectionResult {
    pub read_models: &'static str,
    pub events: u64,
    pub elapsed: Duration,
}

impl ProjectionResult {
    pub fn per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.events as f64 / seconds } else { 0.0 }
    }
}

/// What the prefilled log holds, to check the read models against.
pub struct Prefill {
    pub events: u64,
    pub users: usize,
    pub pairs: usize,
}

pub async fn run_all(settings: &Settings, admin: &str) -> anyhow::Result<Vec<ProjectionResult>> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).context("cannot open the SQLite event store")?);
    eprintln!("[projection] prefilling a SQLite event store with about {} events...", settings.projection_events);
    let started = Instant::now();
    let prefill = prefill(store.clone(), settings.projection_events).await?;
    eprintln!("[projection] prefilled {} events in {:.1} s", prefill.events, started.elapsed().as_secs_f64());

    eprintln!("[projection] catching up into SQLite read models...");
    let sqlite = SqliteReadModels::open(&dir.path().join("read.db")).context("cannot open the SQLite read models")?;
    let mut results = vec![report(catch_up("SQLite", store.clone(), Arc::new(sqlite), &prefill).await?)];

    eprintln!("[projection] catching up into PostgreSQL read models...");
    let database = FreshDatabase::create(admin).await?;
    let postgres = match PgReadModels::connect(&database.url) {
        Ok(db) => catch_up("PostgreSQL", store.clone(), Arc::new(db), &prefill).await,
        Err(error) => Err(anyhow::Error::new(error).context("cannot open the PostgreSQL read models")),
    };
    let dropped = database.drop_now().await;
    results.push(report(postgres?));
    dropped?;
    Ok(results)
}

fn report(result: ProjectionResult) -> ProjectionResult {
    eprintln!(
        "[projection] {}: {} events in {:.2} s = {:.0} events/s",
        result.read_models,
        result.events,
        result.elapsed.as_secs_f64(),
        result.per_second()
    );
    result
}

/// Appends `USERS` registrations, then follow/unfollow histories between them until
/// about `total` events are stored. Each follow stream is written in one append; the
/// appends run concurrently so the store commits them in large groups.
pub async fn prefill(store: Arc<dyn EventStore>, total: usize) -> anyhow::Result<Prefill> {
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    let mut appends = JoinSet::new();
    for (i, &user) in users.iter().enumerate() {
        let event = Event::UserRegistered {
            user_id: user,
            username: format!("user_{i:04}"),
            email: format!("user_{i:04}@bench.example"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2htYXJrc2FsdA$not-a-real-hash-only-for-the-benchmark".into(),
        };
        let events = vec![new_event(user, &event)];
        let store = store.clone();
        appends.spawn(async move { store.append(&format!("user-{user}"), ExpectedVersion::NoStream, events).await });
    }
    wait_for(&mut appends).await.context("cannot store the registrations")?;

    let pairs = total.saturating_sub(USERS) / EVENTS_PER_PAIR;
    if pairs > USERS * (USERS - 1) {
        bail!("{total} events need more follow pairs than {USERS} users have");
    }
    for i in 0..pairs {
        // Pair i: user a follows user b; distinct pairs, never a user with itself.
        let a = i % USERS;
        let b = (a + 1 + i / USERS) % USERS;
        let (follower, followee) = (users[a], users[b]);
        let events = (0..EVENTS_PER_PAIR)
            .map(|n| {
                let event = if n % 2 == 0 {
                    Event::UserFollowed { follower_id: follower, followee_id: followee }
                } else {
                    Event::UserUnfollowed { follower_id: follower, followee_id: followee }
                };
                new_event(follower, &event)
            })
            .collect();
        let store = store.clone();
        appends.spawn(async move { store.append(&format!("follow-{follower}-{followee}"), ExpectedVersion::NoStream, events).await });
    }
    wait_for(&mut appends).await.context("cannot store the follow histories")?;

    let events = store.head().await?;
    let expected = (USERS + pairs * EVENTS_PER_PAIR) as u64;
    if events != expected {
        bail!("the prefilled store holds {events} events, expected {expected}");
    }
    Ok(Prefill { events, users: USERS, pairs })
}

pub fn new_event(actor: Uuid, event: &Event) -> NewEvent {
    let metadata = Metadata { actor: Some(actor), correlation_id: Some(Uuid::now_v7()), ..Metadata::default() };
    NewEvent::new(Uuid::now_v7(), event, metadata, Utc::now())
}

async fn wait_for(appends: &mut JoinSet<Result<plaza_domain::Appended, plaza_domain::StoreError>>) -> anyhow::Result<()> {
    while let Some(joined) = appends.join_next().await {
        joined.context("an append task panicked")??;
    }
    Ok(())
}

/// Times the accounts projection catching up from zero, then checks the read model.
async fn catch_up(
    read_models: &'static str,
    store: Arc<SqliteEventStore>,
    db: Arc<dyn ReadModelDb>,
    prefill: &Prefill,
) -> anyhow::Result<ProjectionResult> {
    let projector = Projector::new(Arc::new(AccountsProjection), store, db.clone(), Progress::default()).with_batch_size(BATCH_SIZE);
    let started = Instant::now();
    let checkpoint = projector.catch_up().await.with_context(|| format!("the projection into {read_models} failed"))?;
    let elapsed = started.elapsed();
    if checkpoint != prefill.events {
        bail!("the projection into {read_models} stopped at {checkpoint}, expected {}", prefill.events);
    }
    check_count(db.as_ref(), "SELECT count(*) FROM users", prefill.users, read_models).await?;
    check_count(db.as_ref(), "SELECT count(*) FROM follows", prefill.pairs, read_models).await?;
    Ok(ProjectionResult { read_models, events: prefill.events, elapsed })
}

pub async fn check_count(db: &dyn ReadModelDb, sql: &'static str, expected: usize, read_models: &str) -> anyhow::Result<()> {
    let rows = db.query(sql, vec![]).await?;
    let found = rows.first().context("a count returned no row")?.int(0)?;
    if found != expected as i64 {
        bail!("{read_models} read models: `{sql}` is {found}, expected {expected}");
    }
    Ok(())
}

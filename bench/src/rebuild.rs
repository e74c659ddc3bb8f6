//! Section 7: what operators and analysts wait for. A SQLite event store is prefilled
//! with a day of a small platform (registrations, follows, videos, likes, favorites,
//! comments, direct messages, view counters; about `rebuild_events` in all), then:
//!
//! - the no-op baseline reads the whole log and decodes every event (what any rebuild
//!   or export must at least do);
//! - every projection is rebuilt from zero (`plaza projections rebuild`'s code path:
//!   a new generation, built batch by batch, then switched over) into SQLite and into
//!   PostgreSQL read models;
//! - the real `plaza events export` writes the log as JSON Lines and as Parquet.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use plaza_domain::conversations::{Kind, direct_conversation_id};
use plaza_domain::{Event, EventStore, ExpectedVersion, Increment, NewEvent};
use plaza_infra::postgres::PgReadModels;
use plaza_infra::sqlite::{SqliteEventStore, SqliteReadModels};
use plaza_projections::rebuild::Rebuild;
use plaza_projections::{Projection, ReadModelDb};
use uuid::Uuid;

use crate::Settings;
use crate::pg::FreshDatabase;
use crate::projection::new_event;

/// Events read and applied per transaction (the rebuild's default).
pub const BATCH_SIZE: usize = 50_000;

pub struct RebuildResults {
    pub events: u64,
    pub prefill: Duration,
    pub baseline: Duration,
    pub rebuilds: Vec<Timed>,
    pub exports: Vec<Timed>,
}

/// One timed run over the whole log.
pub struct Timed {
    pub what: String,
    pub target: &'static str,
    pub elapsed: Duration,
    /// Rows the run left in its main table (a check that it did the work).
    pub rows: u64,
}

impl RebuildResults {
    pub fn rate(&self, elapsed: Duration) -> f64 {
        self.events as f64 / elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run_all(plaza: &Path, settings: &Settings, admin: &str) -> anyhow::Result<RebuildResults> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let store = Arc::new(SqliteEventStore::open(&data.join("events.db")).context("cannot open the SQLite event store")?);
    eprintln!("[rebuild] prefilling a SQLite event store with about {} events...", settings.rebuild_events);
    let started = Instant::now();
    let events = prefill(store.clone(), settings.rebuild_events).await?;
    let prefill = started.elapsed();
    eprintln!("[rebuild] prefilled {events} events in {:.1} s", prefill.as_secs_f64());

    let baseline = read_and_decode(store.as_ref(), events).await?;
    eprintln!("[rebuild] no-op baseline (read + decode the log): {:.2} s", baseline.as_secs_f64());

    let mut rebuilds = Vec::new();
    for projection in plaza_projections::all(Default::default()) {
        let name = projection.name();
        if !settings.rebuild_projections.is_empty() && !settings.rebuild_projections.iter().any(|p| p == name) {
            continue;
        }
        let sqlite = Arc::new(SqliteReadModels::open(&dir.path().join(format!("read-{name}.db")))?);
        rebuilds.push(report(rebuild(projection.clone(), store.clone(), sqlite, "SQLite").await?, events));
        let database = FreshDatabase::create(admin).await?;
        let result = match PgReadModels::connect(&database.url) {
            Ok(db) => rebuild(projection, store.clone(), Arc::new(db), "PostgreSQL").await,
            Err(error) => Err(anyhow::Error::new(error).context("cannot open the PostgreSQL read models")),
        };
        let dropped = database.drop_now().await;
        rebuilds.push(report(result?, events));
        dropped?;
    }

    let mut exports = Vec::new();
    for format in ["jsonl", "parquet"] {
        exports.push(report(export(plaza, &data, &dir.path().join(format), format, events)?, events));
    }
    Ok(RebuildResults { events, prefill, baseline, rebuilds, exports })
}

fn report(timed: Timed, events: u64) -> Timed {
    eprintln!(
        "[rebuild] {} into {}: {:.2} s = {:.0} events/s ({} rows)",
        timed.what,
        timed.target,
        timed.elapsed.as_secs_f64(),
        events as f64 / timed.elapsed.as_secs_f64().max(1e-9),
        timed.rows
    );
    timed
}

/// The floor of every rebuild and export: every event read from the store and decoded.
async fn read_and_decode(store: &dyn EventStore, events: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (mut position, mut decoded) = (0, 0u64);
    loop {
        let page = store.read_all(position, BATCH_SIZE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for event in &page {
            event.decode().with_context(|| format!("event {} does not decode", event.position))?;
            decoded += 1;
        }
    }
    if decoded != events {
        bail!("the baseline read {decoded} events, expected {events}");
    }
    Ok(started.elapsed())
}

/// One projection rebuilt from zero to the head; its main table counted afterwards.
async fn rebuild(
    projection: Arc<dyn Projection>,
    store: Arc<SqliteEventStore>,
    db: Arc<dyn ReadModelDb>,
    target: &'static str,
) -> anyhow::Result<Timed> {
    let name = projection.name();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let rebuild = Rebuild::new(projection, store.clone(), db.clone()).with_batch_size(BATCH_SIZE);
    let started = Instant::now();
    let live = rebuild.run(&mut |_| {}, shutdown).await.with_context(|| format!("the rebuild of {name} into {target} failed"))?;
    let elapsed = started.elapsed();
    let live = live.context("the rebuild stopped early")?;
    if live.position != store.head().await? {
        bail!("the rebuild of {name} into {target} stopped at {}", live.position);
    }
    let table = match name {
        "accounts" => "SELECT count(*) FROM follows",
        "content" => "SELECT count(*) FROM likes",
        "counters" => "SELECT count(*) FROM counters",
        "conversations" => "SELECT count(*) FROM messages",
        "feeds" => "SELECT count(*) FROM timelines",
        other => bail!("no row check for projection {other}"),
    };
    let rows = db.query(table, vec![]).await?.first().context("a count returned no row")?.int(0)?;
    Ok(Timed { what: format!("rebuild {name}"), target, elapsed, rows: rows as u64 })
}

/// The real `plaza events export` on the prefilled store.
fn export(plaza: &Path, data: &Path, out: &Path, format: &str, events: u64) -> anyhow::Result<Timed> {
    let started = Instant::now();
    let output = Command::new(plaza)
        .args(["events", "export", "--format", format, "--out"])
        .arg(out)
        .env("PLAZA_DATA_DIR", data)
        .env("PLAZA_STORE_URL", "sqlite")
        .env("PLAZA_LOG", "warn")
        .output()
        .context("cannot run plaza events export")?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!("plaza events export --format {format} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    let exported = manifest["events"].as_u64().unwrap_or(0);
    if exported != events {
        bail!("the {format} export holds {exported} events, expected {events}");
    }
    let bytes: u64 = std::fs::read_dir(out)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    Ok(Timed { what: format!("export {format} ({:.0} MB)", bytes as f64 / 1e6), target: "files", elapsed, rows: exported })
}

/// Appends a day of a platform with `total / 100` users: per 100 events about 1
/// registration, 10 follows, 2 videos, 50 likes, 5 favorites, 10 comments, 20 direct
/// messages and 2 view-counter events. Returns the events stored.
pub async fn prefill(store: Arc<SqliteEventStore>, total: usize) -> anyhow::Result<u64> {
    let users: Vec<Uuid> = (0..(total / 100).max(10)).map(|_| Uuid::new_v4()).collect();
    let n = users.len();
    let user = |i: usize| users[i % n];
    let mut appends: Vec<(String, Vec<NewEvent>)> = Vec::new();
    for (i, &id) in users.iter().enumerate() {
        let event = Event::UserRegistered {
            user_id: id,
            username: format!("user_{i:06}"),
            email: format!("user_{i:06}@bench.example"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2htYXJrc2FsdA$not-a-real-hash".into(),
        };
        appends.push((format!("user-{id}"), vec![new_event(id, &event)]));
    }
    append_all(&store, std::mem::take(&mut appends)).await.context("cannot store the registrations")?;

    // Follows and videos before what refers to them.
    for i in 0..total / 10 {
        let (follower, followee) = (user(i), user(i + 1 + i / n));
        appends.push((
            format!("follow-{follower}-{followee}"),
            vec![new_event(follower, &Event::UserFollowed { follower_id: follower, followee_id: followee })],
        ));
    }
    let videos: Vec<Uuid> = (0..total / 50).map(|_| Uuid::new_v4()).collect();
    for (i, &video_id) in videos.iter().enumerate() {
        let author_id = user(i * 7);
        let event = Event::VideoPublished {
            video_id,
            author_id,
            title: format!("Video {i}"),
            description: format!("A day at the beach #summer #tag{}", i % 100),
            media_url: format!("https://cdn.example/videos/{video_id}.mp4"),
            hashtags: vec!["summer".into(), format!("tag{}", i % 100)],
        };
        appends.push((format!("video-{video_id}"), vec![new_event(author_id, &event)]));
    }
    let conversations = (total / 1000).max(1);
    for c in 0..conversations {
        let (a, b) = (user(c), user(c + 1));
        let conversation_id = direct_conversation_id(a, b);
        let started = Event::ConversationStarted {
            conversation_id,
            kind: Kind::Direct,
            title: String::new(),
            description: String::new(),
            created_by: a,
            member_ids: vec![b],
        };
        appends.push((format!("conversation-{conversation_id}"), vec![new_event(a, &started)]));
    }
    append_all(&store, std::mem::take(&mut appends)).await.context("cannot store follows, videos and conversations")?;

    let v = videos.len();
    for i in 0..total / 2 {
        // Pair (video i % v, user i / v): distinct while total / 2 <= videos * users.
        let (video_id, user_id) = (videos[i % v], user(i / v));
        appends.push((format!("like-{video_id}-{user_id}"), vec![new_event(user_id, &Event::VideoLiked { video_id, user_id })]));
    }
    for i in 0..total / 20 {
        let (video_id, user_id) = (videos[(i * 3) % v], user(i / v + 1));
        appends.push((format!("favorite-{video_id}-{user_id}"), vec![new_event(user_id, &Event::VideoFavorited { video_id, user_id })]));
    }
    for i in 0..total / 10 {
        let (comment_id, video_id, author_id) = (Uuid::new_v4(), videos[i % v], user(i * 13));
        let event = Event::CommentPosted { comment_id, video_id, author_id, parent_id: None, body: format!("Nice one! comment {i}") };
        appends.push((format!("comment-{comment_id}"), vec![new_event(author_id, &event)]));
    }
    let per_conversation = total / 5 / conversations;
    for c in 0..conversations {
        let (a, b) = (user(c), user(c + 1));
        let conversation_id = direct_conversation_id(a, b);
        let messages = (0..per_conversation)
            .map(|m| {
                let sender_id = if m % 2 == 0 { a } else { b };
                let event = Event::MessageSent {
                    message_id: Uuid::now_v7(),
                    conversation_id,
                    sender_id,
                    body: format!("message {m}: see you tomorrow?"),
                    reply_to: None,
                    attachment_url: None,
                };
                new_event(sender_id, &event)
            })
            .collect();
        appends.push((format!("conversation-{conversation_id}-messages"), messages));
    }
    let shards = 16;
    let mut counters: Vec<Vec<NewEvent>> = (0..shards).map(|_| Vec::new()).collect();
    for i in 0..total / 50 {
        let increment = Increment { resource_id: videos[i % v].to_string(), counter_type: "views".into(), delta: 1, request_id: None };
        counters[i % shards].push(new_event(user(i), &Event::CountersIncremented { increments: vec![increment] }));
    }
    for (shard, events) in counters.into_iter().enumerate() {
        appends.push((format!("counters-{shard}"), events));
    }
    // Interleave the kinds in the log, as a real day would.
    appends.sort_by_key(|(stream, _)| stream.bytes().rev().take(8).collect::<Vec<u8>>());
    append_all(&store, appends).await.context("cannot store likes, comments, messages and views")?;
    Ok(store.head().await?)
}

/// Appends every stream (each new) with many appends in flight, so the store commits
/// them in large groups.
pub async fn append_all(store: &Arc<SqliteEventStore>, appends: Vec<(String, Vec<NewEvent>)>) -> anyhow::Result<()> {
    let mut results = futures_util::stream::iter(appends)
        .map(|(stream, events)| {
            let store = store.clone();
            async move { store.append(&stream, ExpectedVersion::NoStream, events).await }
        })
        .buffer_unordered(512);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

//! Section 8: notifications. How fast the notifications projection applies a burst of
//! likes (100,000 on one video, and one on each of 100,000 videos) into SQLite and
//! PostgreSQL read models, beside a no-op projection over the same events (the
//! projector reading and decoding the log and moving its checkpoint, nothing else);
//! then how long a notification takes from a like's acknowledgment to a
//! `notificationAdded` subscriber, on the embedded profile.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use plaza_domain::{Event, NewEvent};
use plaza_infra::postgres::PgReadModels;
use plaza_infra::sqlite::{SqliteEventStore, SqliteReadModels};
use plaza_projections::notifications::NotificationsProjection;
use plaza_projections::processes::Checkpoint;
use plaza_projections::{Progress, Projection, Projector, ReadModelDb};
use serde_json::json;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::Settings;
use crate::http::{Server, agent, register};
use crate::pg::FreshDatabase;
use crate::projection::{BATCH_SIZE, check_count, new_event};
use crate::rebuild::append_all;
use crate::stats::thousands;

pub struct Burst {
    pub case: &'static str,
    pub read_models: &'static str,
    pub likes: u64,
    pub elapsed: Duration,
    /// The no-op projection over the same likes.
    pub baseline: Duration,
}

pub struct Delivery {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub struct NotificationResults {
    pub bursts: Vec<Burst>,
    pub delivery: Delivery,
}

#[derive(Clone, Copy)]
enum Spread {
    /// Every like on one video.
    OneVideo,
    /// One like on each of as many videos.
    EachVideo,
}

pub fn run_all(runtime: &Runtime, plaza: &Path, settings: &Settings, admin: &str) -> anyhow::Result<NotificationResults> {
    let likes = if settings.quick { 5_000 } else { 100_000 };
    let mut bursts = Vec::new();
    for (case, spread) in [("all on one video", Spread::OneVideo), ("one on each of as many videos", Spread::EachVideo)] {
        for engine in ["SQLite", "PostgreSQL"] {
            let burst = runtime.block_on(burst(case, spread, engine, likes, admin))?;
            eprintln!(
                "[notifications] {case} into {engine}: {:.0} likes/s ({:.2} s; no-op {:.0}/s)",
                likes as f64 / burst.elapsed.as_secs_f64(),
                burst.elapsed.as_secs_f64(),
                likes as f64 / burst.baseline.as_secs_f64()
            );
            bursts.push(burst);
        }
    }
    let delivery = delivery(runtime, plaza, if settings.quick { 20 } else { 300 })?;
    eprintln!("[notifications] like -> subscriber: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", delivery.p50_ms, delivery.p99_ms, delivery.max_ms);
    Ok(NotificationResults { bursts, delivery })
}

/// Prefills the videos and their authors (applied, not timed), appends the likes, then
/// times the notifications projection and a no-op projection catching up over them.
async fn burst(case: &'static str, spread: Spread, engine: &'static str, likes: usize, admin: &str) -> anyhow::Result<Burst> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db"))?);
    let videos: Vec<Uuid> = match spread {
        Spread::OneVideo => vec![Uuid::new_v4()],
        Spread::EachVideo => (0..likes).map(|_| Uuid::new_v4()).collect(),
    };
    let authors: Vec<Uuid> = (0..videos.len().min(1000)).map(|_| Uuid::new_v4()).collect();
    let mut setup: Vec<(String, Vec<NewEvent>)> = authors
        .iter()
        .enumerate()
        .map(|(i, &user_id)| {
            let event =
                Event::UserRegistered { user_id, username: format!("author_{i}"), email: format!("a{i}@bench.example"), password_hash: "x".into() };
            (format!("user-{user_id}"), vec![new_event(user_id, &event)])
        })
        .collect();
    for (i, &video_id) in videos.iter().enumerate() {
        let author_id = authors[i % authors.len()];
        let event = Event::VideoPublished {
            video_id,
            author_id,
            title: format!("Video {i}"),
            description: "no mentions here".into(),
            media_url: format!("https://cdn.example/{video_id}.mp4"),
            hashtags: vec![],
        };
        setup.push((format!("video-{video_id}"), vec![new_event(author_id, &event)]));
    }
    append_all(&store, setup).await?;

    let (db, database): (Arc<dyn ReadModelDb>, _) = match engine {
        "SQLite" => (Arc::new(SqliteReadModels::open(&dir.path().join("read.db"))?), None),
        _ => {
            let database = FreshDatabase::create(admin).await?;
            (Arc::new(PgReadModels::connect(&database.url)?), Some(database))
        }
    };
    let notifications: Arc<dyn Projection> = Arc::new(NotificationsProjection { settings: Default::default() });
    let noop: Arc<dyn Projection> = Arc::new(Checkpoint("noop"));
    let projector = |projection: &Arc<dyn Projection>| {
        Projector::new(projection.clone(), store.clone(), db.clone(), Progress::default()).with_batch_size(BATCH_SIZE)
    };
    projector(&notifications).catch_up().await.context("cannot apply the videos")?;
    projector(&noop).catch_up().await?;

    let like_events = (0..likes).map(|i| {
        let (video_id, user_id) = (videos[i % videos.len()], Uuid::new_v4());
        (format!("like-{video_id}-{user_id}"), vec![new_event(user_id, &Event::VideoLiked { video_id, user_id })])
    });
    append_all(&store, like_events.collect()).await?;

    let started = Instant::now();
    projector(&notifications).catch_up().await.context("the notifications projection failed")?;
    let elapsed = started.elapsed();
    let started = Instant::now();
    projector(&noop).catch_up().await?;
    let baseline = started.elapsed();

    let (groups, actors) = match spread {
        Spread::OneVideo => (1, likes),
        Spread::EachVideo => (likes, likes),
    };
    check_count(db.as_ref(), "SELECT count(*) FROM notifications", groups, engine).await?;
    check_count(db.as_ref(), "SELECT count(*) FROM notification_actors", actors, engine).await?;
    check_count(db.as_ref(), "SELECT CAST(COALESCE(SUM(actor_count), 0) AS BIGINT) FROM notifications", actors, engine).await?;
    drop(db);
    if let Some(database) = database {
        database.drop_now().await?;
    }
    Ok(Burst { case, read_models: engine, likes: likes as u64, elapsed, baseline })
}

/// Likes one video `samples` times, one at a time, each by a new liker, and times each
/// from the `POST` until the author's `notificationAdded` subscription hears the group
/// grow.
fn delivery(runtime: &Runtime, plaza: &Path, samples: usize) -> anyhow::Result<Delivery> {
    eprintln!("[notifications] delivery: starting plaza serve, registering {samples} likers...");
    let server = Server::start_role(plaza, "serve", &[])?;
    let http = agent(Duration::from_secs(30));
    let (_, author) = register(&http, &server.base, "author")?;
    let likers: Vec<String> =
        (0..samples + 20).map(|i| register(&http, &server.base, &format!("liker{i}")).map(|(_, t)| t)).collect::<Result<_, _>>()?;
    let video = http
        .post(&format!("{}/api/v1/videos", server.base))
        .header("Authorization", &format!("Bearer {author}"))
        .send_json(json!({ "title": "Hot", "media_url": "https://cdn.example/hot.mp4" }))?
        .body_mut()
        .read_json::<serde_json::Value>()?["video_id"]
        .as_str()
        .context("no video id")?
        .to_owned();
    let like = |token: &str| -> anyhow::Result<()> {
        let response =
            http.post(&format!("{}/api/v1/videos/{video}/like", server.base)).header("Authorization", &format!("Bearer {token}")).send_empty()?;
        if response.status() != 200 {
            bail!("like answered {}", response.status());
        }
        Ok(())
    };
    let ws = format!("{}/graphql/ws", server.base.replacen("http", "ws", 1));
    runtime.block_on(async {
        let mut request = ws.into_client_request()?;
        request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        socket.send(Message::Text(json!({ "type": "connection_init", "payload": { "token": author } }).to_string().into())).await?;
        socket.next().await.context("no connection_ack")??;
        let subscribe = json!({ "id": "n", "type": "subscribe", "payload": { "query": "subscription { notificationAdded { id groupCount } }" } });
        socket.send(Message::Text(subscribe.to_string().into())).await?;
        // Warm up: likes until the subscription hears one (it listens from then on).
        let mut spare = likers[samples..].iter();
        loop {
            like(spare.next().context("the subscription never heard a like")?)?;
            if tokio::time::timeout(Duration::from_secs(1), socket.next()).await.is_ok() {
                break;
            }
        }
        while tokio::time::timeout(Duration::from_millis(500), socket.next()).await.is_ok() {}
        let mut latencies = Vec::with_capacity(samples);
        for token in &likers[..samples] {
            let sent = Instant::now();
            like(token)?;
            loop {
                let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.context("no notification within 10 s")?;
                if let Some(Ok(Message::Text(text))) = message
                    && text.contains("notificationAdded")
                {
                    break;
                }
            }
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        let at = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
        Ok(Delivery { samples, p50_ms: at(0.50), p99_ms: at(0.99), max_ms: latencies[latencies.len() - 1] })
    })
}

pub fn render(r: &NotificationResults, out: &mut String) {
    let _ = writeln!(out, "## 8. Notifications\n");
    let _ = writeln!(out, "| Burst | Into | Likes | Time (s) | Likes/s | No-op likes/s | vs no-op |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for b in &r.bursts {
        let (rate, noop) = (b.likes as f64 / b.elapsed.as_secs_f64(), b.likes as f64 / b.baseline.as_secs_f64());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} | {:.1} % |",
            b.case,
            b.read_models,
            thousands(b.likes),
            b.elapsed.as_secs_f64(),
            thousands(rate.round() as u64),
            thousands(noop.round() as u64),
            100.0 * rate / noop
        );
    }
    let d = &r.delivery;
    let _ = writeln!(
        out,
        "\n| Like -> `notificationAdded` (embedded) | Samples | p50 (ms) | p99 (ms) | max (ms) |\n|---|---:|---:|---:|---:|\n| one like at a time on one video | {} | {:.2} | {:.2} | {:.2} |",
        d.samples, d.p50_ms, d.p99_ms, d.max_ms
    );
    let _ = writeln!(
        out,
        "\n**Method.** A SQLite event store is prefilled (not measured) with the videos and their authors, and the notifications \
         projection applies them; then the likes are appended (each its own `like-{{video}}-{{user}}` stream, a new user each) and \
         the projector catches up over them as it does live (`Projector`, batches of {}), timed; the no-op baseline is a \
         projection with no tables over the same likes (read, decode, move the checkpoint). One video: every like joins one \
         group (one `notifications` row, one `notification_actors` row per liker); each of 100,000 videos: one group per like. \
         The counts are checked afterwards. Delivery: `plaza serve` (release, embedded), the author subscribed to \
         `notificationAdded` over `/graphql/ws`; each sample `POST`s a like (a new liker each, one at a time) and waits for the \
         grown group to arrive; the time is from before the `POST` to the message.\n",
        thousands(BATCH_SIZE as u64)
    );
}

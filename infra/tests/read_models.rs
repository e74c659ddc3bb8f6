//! The projection suite: the same projection code runs on SQLite and PostgreSQL read
//! models, commits its checkpoint with its changes, and resumes exactly after a restart.

mod common;

use std::sync::Arc;

use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use plaza_infra::postgres::PgReadModels;
use plaza_infra::sqlite::{SqliteEventStore, SqliteReadModels};
use plaza_projections::accounts::AccountsProjection;
use plaza_projections::db::APPLIED_POSITIONS;
use plaza_projections::partitions::{Consumed, Message};
use plaza_projections::{Progress, Projection, Projector, ReadModelDb, SqlValue, Statement};
use uuid::Uuid;

async fn append(store: &dyn EventStore, stream: &str, event: Event) -> u64 {
    let new = NewEvent::new(Uuid::now_v7(), &event, Metadata::default(), Utc::now());
    store.append(stream, ExpectedVersion::Any, vec![new]).await.unwrap().last_position
}

async fn register(store: &dyn EventStore, name: &str) -> Uuid {
    let user_id = Uuid::now_v7();
    let event = Event::UserRegistered { user_id, username: name.into(), email: format!("{name}@example.com"), password_hash: "h".into() };
    append(store, &format!("user-{user_id}"), event).await;
    user_id
}

async fn follow(store: &dyn EventStore, follower: Uuid, followee: Uuid, on: bool) {
    let event = if on {
        Event::UserFollowed { follower_id: follower, followee_id: followee }
    } else {
        Event::UserUnfollowed { follower_id: follower, followee_id: followee }
    };
    append(store, &format!("follow-{follower}-{followee}"), event).await;
}

async fn counts(db: &dyn ReadModelDb, user: Uuid) -> (i64, i64) {
    let rows = db.query("SELECT followers_count, following_count FROM user_counts WHERE user_id = $1", vec![user.to_string().into()]).await.unwrap();
    (rows[0].int(0).unwrap(), rows[0].int(1).unwrap())
}

async fn follow_edges(db: &dyn ReadModelDb) -> i64 {
    db.query("SELECT count(*) FROM follows", vec![]).await.unwrap()[0].int(0).unwrap()
}

fn projector(store: &Arc<SqliteEventStore>, db: &Arc<dyn ReadModelDb>, projection: Arc<dyn Projection>) -> Projector {
    Projector::new(projection, store.clone(), db.clone(), Progress::default()).with_batch_size(3)
}

async fn the_accounts_projection_builds_users_and_follows(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let (a, b, c) = (register(&*store, "a").await, register(&*store, "b").await, register(&*store, "c").await);
    follow(&*store, a, b, true).await;
    follow(&*store, c, b, true).await;
    follow(&*store, a, c, true).await;
    follow(&*store, a, c, false).await;
    let profile = Event::ProfileUpdated { user_id: a, display_name: Some("A".into()), bio: None, avatar_url: Some("https://x.org/a.png".into()) };
    append(&*store, &format!("user-{a}"), profile).await;

    let head = projector(&store, &db, Arc::new(AccountsProjection)).catch_up().await.unwrap();
    assert_eq!(head, store.head().await.unwrap());
    assert_eq!(db.checkpoint("accounts").await.unwrap(), head);
    assert_eq!(counts(&*db, a).await, (0, 1));
    assert_eq!(counts(&*db, b).await, (2, 0));
    assert_eq!(counts(&*db, c).await, (0, 1));
    assert_eq!(follow_edges(&*db).await, 2);
    let rows = db.query("SELECT display_name, bio, avatar_url FROM users WHERE id = $1", vec![a.to_string().into()]).await.unwrap();
    assert_eq!(rows[0].0, vec![SqlValue::Text("A".into()), SqlValue::Null, SqlValue::Text("https://x.org/a.png".into())]);

    // A restarted projector resumes after its checkpoint: nothing is applied twice.
    let restarted = projector(&store, &db, Arc::new(AccountsProjection));
    assert_eq!(restarted.catch_up().await.unwrap(), head);
    follow(&*store, c, a, true).await;
    let head = restarted.catch_up().await.unwrap();
    assert_eq!(db.checkpoint("accounts").await.unwrap(), head);
    assert_eq!(counts(&*db, a).await, (1, 1));
    assert_eq!(follow_edges(&*db).await, 3);
}

/// A projection whose statement fails on one kind of event.
struct FailsOnUnfollow;

impl Projection for FailsOnUnfollow {
    fn name(&self) -> &'static str {
        "fails_on_unfollow"
    }

    fn schema(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS seen (position BIGINT PRIMARY KEY)"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        out.push(Statement::new("INSERT INTO seen (position) VALUES ($1)", [SqlValue::Int(envelope.position as i64)]));
        if let Event::UserUnfollowed { .. } = event {
            out.push(Statement::new("INSERT INTO no_such_table (x) VALUES ($1)", [SqlValue::Int(1)]));
        }
    }
}

async fn a_failed_batch_changes_nothing(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    follow(&*store, a, b, true).await; // 1
    follow(&*store, a, b, false).await; // 2: breaks the batch it is in
    follow(&*store, b, a, true).await; // 3
    let projector = Projector::new(Arc::new(FailsOnUnfollow), store.clone(), db.clone(), Progress::default()).with_batch_size(10);
    assert!(projector.catch_up().await.is_err());
    assert_eq!(db.checkpoint("fails_on_unfollow").await.unwrap(), 0);
    assert!(db.query("SELECT position FROM seen", vec![]).await.unwrap().is_empty(), "no partial batch");
}

/// A projection that records every event it applies, for the Kafka bookkeeping tests.
struct Recorder;

impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn schema(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS applied (position BIGINT NOT NULL)"]
    }

    fn apply(&self, _: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        out.push(Statement::new("INSERT INTO applied (position) VALUES ($1)", [SqlValue::Int(envelope.position as i64)]));
    }
}

fn consumed(partition: i32, offset: i64, position: u64) -> Consumed {
    let statement = Statement::new("INSERT INTO applied (position) VALUES ($1)", [SqlValue::Int(position as i64)]);
    Consumed { partition, offset, message: Message::Event { position, statements: vec![statement] } }
}

async fn applied(db: &dyn ReadModelDb) -> Vec<i64> {
    let rows = db.query("SELECT position FROM applied ORDER BY position", vec![]).await.unwrap();
    rows.iter().map(|r| r.int(0).unwrap()).collect()
}

async fn applied_positions(db: &dyn ReadModelDb, topic: &str) -> Vec<(String, i64)> {
    let rows = db.query(APPLIED_POSITIONS, vec![topic.into()]).await.unwrap();
    rows.iter().map(|r| (r.text(0).unwrap().to_owned(), r.int(1).unwrap())).collect()
}

async fn consumed_batches_apply_once_with_their_offsets(db: Arc<dyn ReadModelDb>) {
    db.migrate("recorder", Recorder.schema()).await.unwrap();
    db.track_partitions("recorder", "events", 2).await.unwrap();
    assert_eq!(applied_positions(&*db, "events").await, vec![("recorder".to_owned(), 0)]);

    let first = vec![consumed(0, 0, 1), consumed(1, 0, 2), consumed(0, 1, 3)];
    let tally = db.apply_consumed("recorder", "events", first.clone()).await.unwrap();
    assert_eq!((tally.applied, tally.skipped), (3, 0));
    // Partition 1 holds nothing above 2 yet: the projection has applied the log up to 2.
    assert_eq!(applied_positions(&*db, "events").await, vec![("recorder".to_owned(), 2)]);

    // Read again after a crash (from older Kafka offsets), with one new message: only
    // the new one applies. A relay re-send (position 2 again, at a new offset) is skipped.
    let mut again = first;
    again.push(consumed(1, 1, 2));
    again.push(consumed(1, 2, 5));
    let tally = db.apply_consumed("recorder", "events", again).await.unwrap();
    assert_eq!((tally.applied, tally.skipped), (1, 4));
    assert_eq!(applied(&*db).await, vec![1, 2, 3, 5]);

    // A watermark moves an idle partition.
    let mark = Consumed { partition: 0, offset: 2, message: Message::Watermark { position: 5 } };
    db.apply_consumed("recorder", "events", vec![mark]).await.unwrap();
    assert_eq!(applied_positions(&*db, "events").await, vec![("recorder".to_owned(), 5)]);
    // Another topic's partitions are not this one's.
    assert_eq!(applied_positions(&*db, "other").await, vec![("recorder".to_owned(), 0)]);
}

/// Two consumers of one partition at once (a rebalance in progress): every message is
/// applied exactly once, whoever gets there first.
async fn racing_consumers_of_a_partition_apply_each_message_once(db: Arc<dyn ReadModelDb>) {
    db.migrate("recorder", Recorder.schema()).await.unwrap();
    db.track_partitions("recorder", "events", 1).await.unwrap();
    let batches: Vec<Vec<Consumed>> = (0..20).map(|b| (0..10).map(|i| consumed(0, b * 10 + i, (b * 10 + i + 1) as u64)).collect()).collect();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (db, batches) = (db.clone(), batches.clone());
            tokio::spawn(async move {
                for batch in batches {
                    db.apply_consumed("recorder", "events", batch).await.unwrap();
                }
            })
        })
        .collect();
    for racer in racers {
        racer.await.unwrap();
    }
    assert_eq!(applied(&*db).await, (1..=200).collect::<Vec<i64>>());
}

/// Two members of a consumer group apply different partitions at once: a follow on
/// one, the followee's new video on the other. Whichever commits second must see the
/// first, or the video reaches neither the fan-out nor the follow's backfill.
async fn members_applying_other_partitions_see_each_others_changes(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::feeds::FeedsProjection;
    let feeds = Arc::new(FeedsProjection { settings: Default::default() });
    db.migrate(feeds.name(), feeds.schema()).await.unwrap();
    db.track_partitions(feeds.name(), "events", 2).await.unwrap();
    let consumed = |partition: i32, offset: i64, position: u64, event: Event| {
        let envelope = RecordedEvent {
            event_id: Uuid::now_v7(),
            stream_id: "any".into(),
            version: 0,
            position,
            event_type: event.event_type().into(),
            schema_version: 1,
            data: String::new(),
            metadata: Metadata::default(),
            occurred_at: Utc::now(),
        };
        let mut statements = Vec::new();
        feeds.apply(&event, &envelope, &mut statements);
        Consumed { partition, offset, message: Message::Event { position, statements } }
    };
    const PAIRS: i64 = 60;
    for i in 0..PAIRS {
        let (follower, author) = (Uuid::now_v7(), Uuid::now_v7());
        let follow = consumed(0, i, 2 * i as u64 + 1, Event::UserFollowed { follower_id: follower, followee_id: author });
        let video = Event::VideoPublished {
            video_id: Uuid::now_v7(),
            author_id: author,
            title: "t".into(),
            description: String::new(),
            media_url: "https://cdn.example.com/v.mp4".into(),
            hashtags: vec![],
        };
        let video = consumed(1, i, 2 * i as u64 + 2, video);
        let (a, b) = (db.clone(), db.clone());
        let (first, second) = tokio::join!(
            tokio::spawn(async move { a.apply_consumed("feeds", "events", vec![follow]).await }),
            tokio::spawn(async move { b.apply_consumed("feeds", "events", vec![video]).await }),
        );
        first.unwrap().unwrap();
        second.unwrap().unwrap();
    }
    let timelines = db.query("SELECT count(*) FROM timelines", vec![]).await.unwrap()[0].int(0).unwrap();
    assert_eq!(timelines, PAIRS, "every video reached its follower's timeline");
}

async fn counter_value(db: &dyn ReadModelDb, resource: &str) -> i64 {
    db.query("SELECT value FROM counters WHERE resource_id = $1", vec![resource.into()]).await.unwrap()[0].int(0).unwrap()
}

/// Counters stop at the bounds of i64 (never wrap, never fail the batch), and skip the
/// increments that break the rules, as the write side's totals do.
async fn counters_stay_in_range_and_skip_what_breaks_the_rules(db: Arc<dyn ReadModelDb>) {
    use plaza_domain::Increment;
    use plaza_projections::counters::CountersProjection;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let increment = |resource: &str, delta: i64| Increment { resource_id: resource.into(), counter_type: "clicks".into(), delta, request_id: None };
    let batch = |increments: Vec<Increment>| Event::CountersIncremented { increments };
    append(&*store, "counters-0", batch(vec![increment("up", 1_000_000), increment("down", -1_000_000), increment("odd", 5)])).await;
    // Written before the delta rule existed: skipped on both sides.
    append(&*store, "counters-0", batch(vec![increment("odd", i64::MIN), increment("odd", 1)])).await;
    let projector = projector(&store, &db, Arc::new(CountersProjection));
    projector.prepare().await.unwrap();
    projector.catch_up().await.unwrap();
    assert_eq!(counter_value(&*db, "odd").await, 6);
    db.execute(Statement::new("UPDATE counters SET value = $1 WHERE resource_id = 'up'", [SqlValue::Int(i64::MAX - 10)])).await.unwrap();
    db.execute(Statement::new("UPDATE counters SET value = $1 WHERE resource_id = 'down'", [SqlValue::Int(i64::MIN + 10)])).await.unwrap();
    append(&*store, "counters-0", batch(vec![increment("up", 1_000_000), increment("down", -1_000_000)])).await;
    projector.catch_up().await.unwrap();
    assert_eq!((counter_value(&*db, "up").await, counter_value(&*db, "down").await), (i64::MAX, i64::MIN));
}

macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$test(Arc::new(SqliteReadModels::open(&dir.path().join("read.db")).unwrap())).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let url = common::fresh_database().await;
                    super::$test(Arc::new(PgReadModels::connect(&url).unwrap())).await;
                }
            )*
        }
    };
}

on_both_engines!(
    the_accounts_projection_builds_users_and_follows,
    a_failed_batch_changes_nothing,
    consumed_batches_apply_once_with_their_offsets,
    racing_consumers_of_a_partition_apply_each_message_once,
    members_applying_other_partitions_see_each_others_changes,
    counters_stay_in_range_and_skip_what_breaks_the_rules,
);

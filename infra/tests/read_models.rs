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
use plaza_projections::generations::{self, Step, Tables};
use plaza_projections::partitions::{Consumed, Message};
use plaza_projections::{Changes, Progress, Projection, Projector, ReadModelDb, SqlValue, Statement};
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

/// The live generation's checkpoint.
async fn checkpoint(db: &dyn ReadModelDb, projection: &str) -> u64 {
    generations::live(db, projection).await.unwrap().map_or(0, |g| g.position)
}

/// The tables of the projection's live generation (created if needed).
async fn live_tables(db: &dyn ReadModelDb, projection: &dyn Projection) -> Arc<Tables> {
    let live = generations::ensure_live(db, projection).await.unwrap();
    Arc::new(Tables::of(projection, live.generation))
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
    assert_eq!(checkpoint(&*db, "accounts").await, head);
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
    assert_eq!(checkpoint(&*db, "accounts").await, head);
    assert_eq!(counts(&*db, a).await, (1, 1));
    assert_eq!(follow_edges(&*db).await, 3);
}

/// A projection whose statement fails on one kind of event.
struct FailsOnUnfollow;

impl Projection for FailsOnUnfollow {
    fn name(&self) -> &'static str {
        "fails_on_unfollow"
    }

    fn version(&self) -> u64 {
        1
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
    assert_eq!(checkpoint(&*db, "fails_on_unfollow").await, 0);
    assert!(db.query("SELECT position FROM seen", vec![]).await.unwrap().is_empty(), "no partial batch");
}

/// A projection that records every event it applies, for the Kafka bookkeeping tests.
struct Recorder;

impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn version(&self) -> u64 {
        1
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
    let changes = Changes { position, stream_id: format!("s{position}"), event_type: "E".into(), statements: vec![statement], dead_letter: false };
    Consumed { partition, offset, message: Message::Event(changes) }
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
    let tables = live_tables(&*db, &Recorder).await;
    db.track_partitions(tables.clone(), "events", 2).await.unwrap();
    assert_eq!(applied_positions(&*db, "events").await, vec![("recorder".to_owned(), 0)]);

    let first = vec![consumed(0, 0, 1), consumed(1, 0, 2), consumed(0, 1, 3)];
    let tally = db.apply_consumed(tables.clone(), "events", first.clone()).await.unwrap();
    assert_eq!((tally.applied, tally.skipped), (3, 0));
    // Partition 1 holds nothing above 2 yet: the projection has applied the log up to 2.
    assert_eq!(applied_positions(&*db, "events").await, vec![("recorder".to_owned(), 2)]);

    // Read again after a crash (from older Kafka offsets), with one new message: only
    // the new one applies. A relay re-send (position 2 again, at a new offset) is skipped.
    let mut again = first;
    again.push(consumed(1, 1, 2));
    again.push(consumed(1, 2, 5));
    let tally = db.apply_consumed(tables.clone(), "events", again).await.unwrap();
    assert_eq!((tally.applied, tally.skipped), (1, 4));
    assert_eq!(applied(&*db).await, vec![1, 2, 3, 5]);

    // A watermark moves an idle partition.
    let mark = Consumed { partition: 0, offset: 2, message: Message::Watermark { position: 5 } };
    db.apply_consumed(tables.clone(), "events", vec![mark]).await.unwrap();
    assert_eq!(applied_positions(&*db, "events").await, vec![("recorder".to_owned(), 5)]);
    // Another topic's partitions are not this one's.
    assert_eq!(applied_positions(&*db, "other").await, vec![("recorder".to_owned(), 0)]);
}

/// Two consumers of one partition at once (a rebalance in progress): every message is
/// applied exactly once, whoever gets there first.
async fn racing_consumers_of_a_partition_apply_each_message_once(db: Arc<dyn ReadModelDb>) {
    let tables = live_tables(&*db, &Recorder).await;
    db.track_partitions(tables.clone(), "events", 1).await.unwrap();
    let batches: Vec<Vec<Consumed>> = (0..20).map(|b| (0..10).map(|i| consumed(0, b * 10 + i, (b * 10 + i + 1) as u64)).collect()).collect();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (db, batches, tables) = (db.clone(), batches.clone(), tables.clone());
            tokio::spawn(async move {
                for batch in batches {
                    db.apply_consumed(tables.clone(), "events", batch).await.unwrap();
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
    let tables = live_tables(&*db, feeds.as_ref()).await;
    db.track_partitions(tables.clone(), "events", 2).await.unwrap();
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
        let changes = Changes { position, stream_id: envelope.stream_id, event_type: envelope.event_type, statements, dead_letter: false };
        Consumed { partition, offset, message: Message::Event(changes) }
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
        let (ta, tb) = (tables.clone(), tables.clone());
        let (first, second) = tokio::join!(
            tokio::spawn(async move { a.apply_consumed(ta, "events", vec![follow]).await }),
            tokio::spawn(async move { b.apply_consumed(tb, "events", vec![video]).await }),
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
    let counters = live_tables(&*db, &CountersProjection).await.physical("counters");
    let set = |resource: &str, value: i64| {
        Statement::owned(format!("UPDATE {counters} SET value = $1 WHERE resource_id = '{resource}'"), [SqlValue::Int(value)])
    };
    db.execute(set("up", i64::MAX - 10)).await.unwrap();
    db.execute(set("down", i64::MIN + 10)).await.unwrap();
    append(&*store, "counters-0", batch(vec![increment("up", 1_000_000), increment("down", -1_000_000)])).await;
    projector.catch_up().await.unwrap();
    assert_eq!((counter_value(&*db, "up").await, counter_value(&*db, "down").await), (i64::MAX, i64::MIN));
}

/// Every row of a table, sorted, as text.
async fn rows_of(db: &dyn ReadModelDb, sql: &'static str) -> Vec<String> {
    let mut rows: Vec<String> = db.query(sql, vec![]).await.unwrap().iter().map(|r| format!("{:?}", r.0)).collect();
    rows.sort();
    rows
}

async fn accounts_tables(db: &dyn ReadModelDb) -> Vec<Vec<String>> {
    vec![
        rows_of(db, "SELECT id, username, display_name, created_at FROM users").await,
        rows_of(db, "SELECT user_id, followers_count, following_count FROM user_counts").await,
        rows_of(db, "SELECT follower_id, followee_id, position FROM follows").await,
    ]
}

/// A rebuild under continuous load: the live generation keeps answering (its counts
/// never go backwards), the rebuilt one takes over, equal to a fresh build, and the
/// old tables are gone.
async fn a_rebuild_under_load_switches_to_tables_equal_to_a_fresh_build(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let mut users = Vec::new();
    for i in 0..40 {
        users.push(register(&*store, &format!("user{i}")).await);
    }
    for (i, a) in users.iter().enumerate() {
        for b in users.iter().skip(i + 1).take(5) {
            follow(&*store, *a, *b, true).await;
        }
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let live = projector(&store, &db, Arc::new(AccountsProjection));
    live.prepare().await.unwrap();
    let live = tokio::spawn(live.run(shutdown.clone()));
    // Load: more follows while the rebuild runs.
    let writer = {
        let (store, users, shutdown) = (store.clone(), users.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !*shutdown.borrow() {
                let newcomer = register(&*store, &format!("newcomer{n}")).await;
                follow(&*store, newcomer, users[n % users.len()], true).await;
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    // Readers: always an answer, never fewer follows than before.
    let reader = {
        let (db, shutdown) = (db.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            let mut reads = 0;
            while !*shutdown.borrow() {
                let count = db.query("SELECT count(*) FROM follows", vec![]).await.expect("the read model answers").first().unwrap().int(0).unwrap();
                assert!(count >= seen, "follows went from {seen} to {count}");
                seen = count;
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let rebuild = plaza_projections::Rebuild::new(Arc::new(AccountsProjection), store.clone(), db.clone()).with_batch_size(50);
    let rebuilt = rebuild.run(&mut |_| {}, shutdown.clone()).await.unwrap().expect("switched over");
    assert_eq!(rebuilt.generation, 2);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    writer.await.unwrap();
    assert!(reader.await.unwrap() > 10);
    live.await.unwrap();

    // The live projector moved on to the new generation and applied the rest.
    let head = store.head().await.unwrap();
    projector(&store, &db, Arc::new(AccountsProjection)).catch_up().await.unwrap();
    assert_eq!(checkpoint(&*db, "accounts").await, head);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh: Arc<dyn ReadModelDb> = Arc::new(SqliteReadModels::open(&fresh_dir.path().join("read.db")).unwrap());
    projector(&store, &fresh, Arc::new(AccountsProjection)).catch_up().await.unwrap();
    assert_eq!(accounts_tables(&*db).await, accounts_tables(&*fresh).await);
    let generations: Vec<u64> = generations::generations(&*db, "accounts").await.unwrap().iter().map(|g| g.generation).collect();
    assert_eq!(generations, vec![2], "the old generation is forgotten");
    assert!(db.query("SELECT count(*) FROM follows__g1", vec![]).await.is_err(), "and its tables dropped");
}

/// A rebuild refuses to start while another holds its lock, and an interrupted one
/// continues from its own checkpoint.
async fn a_rebuild_runs_once_at_a_time_and_resumes(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    for i in 0..30 {
        register(&*store, &format!("user{i}")).await;
    }
    projector(&store, &db, Arc::new(AccountsProjection)).catch_up().await.unwrap();
    let rebuild = plaza_projections::Rebuild::new(Arc::new(AccountsProjection), store.clone(), db.clone()).with_batch_size(10);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    {
        let _held = db.try_lock("rebuild.accounts").await.unwrap().expect("free");
        let busy = rebuild.run(&mut |_| {}, shutdown.clone()).await;
        assert!(matches!(busy, Err(plaza_projections::rebuild::RebuildError::Busy)), "{busy:?}");
    }
    // Interrupted after its first batch. (PostgreSQL frees a session's lock once it sees
    // the session's connection closed, which the guard's drop starts: moments later.)
    let mut tries = 0;
    let interrupted = loop {
        match rebuild.run(&mut |_| _ = stop.send_replace(true), shutdown.clone()).await {
            Err(plaza_projections::rebuild::RebuildError::Busy) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            outcome => break outcome.unwrap(),
        }
    };
    assert!(interrupted.is_none());
    let building = generations::generations(&*db, "accounts").await.unwrap();
    assert_eq!(building.iter().map(|g| (g.generation, g.state.as_str(), g.position)).collect::<Vec<_>>(), vec![(1, "live", 30), (2, "building", 10)]);
    // Run again: from position 10, not from the start.
    let mut first_report = None;
    let (_, shutdown) = tokio::sync::watch::channel(false);
    let live = rebuild.run(&mut |p| _ = first_report.get_or_insert((p.position, p.events)), shutdown).await.unwrap().unwrap();
    assert_eq!(first_report, Some((20, 10)));
    assert_eq!((live.generation, live.position), (2, 30));
    assert_eq!(rows_of(&*db, "SELECT count(*) FROM users").await, vec!["[Int(30)]"]);
}

/// A paused generation takes no changes until resumed.
async fn a_paused_projection_applies_nothing_until_resumed(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    register(&*store, "a").await;
    let projector = projector(&store, &db, Arc::new(AccountsProjection));
    projector.prepare().await.unwrap();
    assert!(generations::set_paused(&*db, "accounts", true).await.unwrap());
    let stopped = projector.catch_up().await;
    assert!(
        matches!(stopped, Err(plaza_projections::runtime::ProjectorError::ReadModel(plaza_projections::ReadModelError::Stopped(..)))),
        "{stopped:?}"
    );
    assert_eq!(checkpoint(&*db, "accounts").await, 0);
    generations::set_paused(&*db, "accounts", false).await.unwrap();
    assert_eq!(projector.catch_up().await.unwrap(), 1);
}

/// PostgreSQL's read models commit asynchronously: a crash can take back a commit it
/// acknowledged, checkpoint and all, while the projector goes on. Its next batch is
/// then refused (the stored checkpoint is behind the one the batch follows), and it
/// goes on from the stored checkpoint: the events the crash took back are applied
/// again, none is skipped.
async fn a_projector_applies_again_what_a_crash_took_back(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    register(&*store, "a").await;
    let progress = Progress::default();
    progress.watch("accounts"); // so that waiting for it waits
    let projector = Projector::new(Arc::new(AccountsProjection), store.clone(), db.clone(), progress.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(projector.run(shutdown));
    assert!(progress.wait_for(1, std::time::Duration::from_secs(10)).await);
    register(&*store, "b").await;
    assert!(progress.wait_for(2, std::time::Duration::from_secs(10)).await);

    // The crash takes back the last commit: b's row and the checkpoint's move to 2.
    let live = generations::live(&*db, "accounts").await.unwrap().unwrap();
    let users = Tables::of(&AccountsProjection, live.generation).physical("users");
    let lost = [
        Step::run(Statement::owned(format!("DELETE FROM {users} WHERE username = 'b'"), [])),
        Step::run(Statement::new("UPDATE projection_generations SET position = 1 WHERE projection = 'accounts'", [])),
    ];
    assert!(db.transact(lost.into()).await.unwrap());

    register(&*store, "c").await;
    assert!(progress.wait_for(3, std::time::Duration::from_secs(10)).await);
    assert_eq!(rows_of(&*db, "SELECT username FROM users ORDER BY username").await, ["[Text(\"a\")]", "[Text(\"b\")]", "[Text(\"c\")]"]);
    assert_eq!(checkpoint(&*db, "accounts").await, 3);
    stop.send(true).unwrap();
    running.await.unwrap();
}

/// The accounts projection at a newer version, as a newer Plaza would have it.
struct AccountsV2;

impl Projection for AccountsV2 {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn version(&self) -> u64 {
        2
    }

    fn schema(&self) -> &'static [&'static str] {
        AccountsProjection.schema()
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        AccountsProjection.apply(event, envelope, out)
    }
}

/// A projector whose code is newer than the live generation rebuilds beside it by
/// itself; the old generation serves until the switch.
async fn a_newer_projection_version_rebuilds_by_itself(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    for i in 0..10 {
        register(&*store, &format!("user{i}")).await;
    }
    projector(&store, &db, Arc::new(AccountsProjection)).catch_up().await.unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let upgraded = tokio::spawn(projector(&store, &db, Arc::new(AccountsV2)).run(shutdown));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let live = generations::live(&*db, "accounts").await.unwrap().unwrap();
        assert_eq!(rows_of(&*db, "SELECT count(*) FROM users").await, vec!["[Int(10)]"], "always served");
        if live.version == 2 {
            assert_eq!((live.generation, live.position), (2, 10));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no switch to version 2");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    register(&*store, "after").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while checkpoint(&*db, "accounts").await < 11 {
        assert!(std::time::Instant::now() < deadline, "the upgraded projector does not apply new events");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    upgraded.await.unwrap();
}

/// A read-model database written before generations existed is adopted as generation 0,
/// keeps serving, and is rebuilt beside as the current version.
async fn read_models_from_before_generations_are_kept_then_rebuilt(db: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let a = register(&*store, "a").await;
    // The old layout: plain tables and a checkpoint row.
    let mut legacy = vec![
        plaza_projections::generations::Step::run(Statement::new(
            "CREATE TABLE projection_checkpoints (projection TEXT PRIMARY KEY, position BIGINT NOT NULL)",
            [],
        )),
        plaza_projections::generations::Step::run(Statement::new(
            "CREATE TABLE projection_partitions (projection TEXT NOT NULL, topic TEXT NOT NULL, kafka_partition BIGINT NOT NULL,
             next_offset BIGINT NOT NULL, position BIGINT NOT NULL, owner TEXT, owner_seen_at BIGINT, PRIMARY KEY (projection, topic, kafka_partition))",
            [],
        )),
        plaza_projections::generations::Step::run(Statement::new("INSERT INTO projection_checkpoints VALUES ('accounts', 1)", [])),
    ];
    legacy.extend(AccountsProjection.schema().iter().map(|ddl| plaza_projections::generations::Step::run(Statement::new(ddl, []))));
    legacy.push(plaza_projections::generations::Step::run(Statement::new(
        "INSERT INTO users (id, username, created_at) VALUES ($1, 'a', 0)",
        [a.to_string().into()],
    )));
    assert!(db.transact(legacy).await.unwrap());

    let adopted = generations::ensure_live(&*db, &AccountsProjection).await.unwrap();
    assert_eq!((adopted.generation, adopted.version, adopted.position), (0, 0, 1));
    assert_eq!(rows_of(&*db, "SELECT username FROM users").await, vec!["[Text(\"a\")]"], "still served");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let upgrading = tokio::spawn(projector(&store, &db, Arc::new(AccountsProjection)).run(shutdown));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while generations::live(&*db, "accounts").await.unwrap().unwrap().version != 1 {
        assert!(std::time::Instant::now() < deadline, "not rebuilt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    upgrading.await.unwrap();
    assert_eq!(rows_of(&*db, "SELECT id, username FROM users").await, vec![format!("[Text(\"{a}\"), Text(\"a\")]")]);
}

async fn update_bio(store: &dyn EventStore, user: Uuid, bio: &str) -> u64 {
    append(store, &format!("user-{user}"), Event::ProfileUpdated { user_id: user, display_name: None, bio: Some(bio.into()), avatar_url: None }).await
}

/// An event the projection keeps failing on is parked with the later events of its
/// stream; other streams go on; after the fix, a retry applies them in order.
async fn a_poison_event_is_parked_with_its_streams_later_events(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::dead_letters::{self, Selection};
    use plaza_projections::poison::PoisonTestProjection;
    use plaza_projections::runtime::FailurePolicy;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    update_bio(&*store, a, "one").await;
    let poison = update_bio(&*store, a, "poison").await;
    let behind = update_bio(&*store, a, "three").await;
    let head = update_bio(&*store, b, "other").await;

    let projector = projector(&store, &db, Arc::new(PoisonTestProjection)).with_failure_policy(FailurePolicy { max_attempts: 2, park: true });
    projector.prepare().await.unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(projector.run(shutdown));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while checkpoint(&*db, "poison_test").await < head {
        assert!(std::time::Instant::now() < deadline, "the projection does not get past the poison");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let letters = dead_letters::list(&*db).await.unwrap();
    let parked: Vec<(u64, &str)> = letters.iter().map(|d| (d.position, d.state.as_str())).collect();
    assert_eq!(parked, vec![(poison, "failed"), (behind, "blocked")]);
    assert!(letters[0].error.to_lowercase().contains("null"), "{}", letters[0].error);
    assert_eq!(rows_of(&*db, "SELECT bio FROM poison_log").await, vec!["[Text(\"one\")]", "[Text(\"other\")]"]);

    // Not fixed yet: the retry fails again and keeps both.
    let outcome = dead_letters::retry(&*db, &*store, &PoisonTestProjection, Selection::All).await.unwrap();
    assert_eq!((outcome.applied, outcome.still_parked, outcome.errors.len()), (0, 2, 1));
    // A later event of the stream queues behind them.
    let later = update_bio(&*store, a, "five").await;
    while checkpoint(&*db, "poison_test").await < later {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(dead_letters::count(&*db, "poison_test", Selection::All).await.unwrap(), 3);

    // Fixed: the retry applies them in order.
    let fixes = live_tables(&*db, &PoisonTestProjection).await.physical("poison_fixes");
    db.execute(Statement::owned(format!("INSERT INTO {fixes} (fixed) VALUES (1)"), [])).await.unwrap();
    let outcome = dead_letters::retry(&*db, &*store, &PoisonTestProjection, Selection::All).await.unwrap();
    assert_eq!((outcome.applied, outcome.still_parked), (3, 0), "{outcome:?}");
    let log = db.query("SELECT bio FROM poison_log ORDER BY seq", vec![]).await.unwrap();
    let bios: Vec<&str> = log.iter().map(|r| r.text(0).unwrap()).collect();
    assert_eq!(bios, ["one", "other", "poison", "three", "five"]);
    // And the stream flows again.
    let last = update_bio(&*store, a, "six").await;
    while checkpoint(&*db, "poison_test").await < last {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows_of(&*db, "SELECT count(*) FROM poison_log").await, vec!["[Int(6)]"]);
    stop.send(true).unwrap();
    running.await.unwrap();
}

/// A rebuild parks a poison event like a projector does, and builds everything else
/// (on SQLite, the batches it held uncommitted with it are rolled back and applied
/// again, one commit each).
async fn a_rebuild_parks_a_poison_event_and_builds_the_rest(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::dead_letters;
    use plaza_projections::poison::PoisonTestProjection;
    use plaza_projections::runtime::FailurePolicy;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for i in 0..12 {
        update_bio(&*store, b, &format!("b{i}")).await;
    }
    let poison = update_bio(&*store, a, "poison").await;
    let behind = update_bio(&*store, a, "after").await;
    for i in 12..20 {
        update_bio(&*store, b, &format!("b{i}")).await;
    }
    let rebuild = plaza_projections::Rebuild::new(Arc::new(PoisonTestProjection), store.clone(), db.clone())
        .with_batch_size(4)
        .with_failure_policy(FailurePolicy { max_attempts: 2, park: true });
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let live = rebuild.run(&mut |_| {}, shutdown).await.unwrap().expect("switched over");
    assert_eq!(live.position, store.head().await.unwrap());
    let parked: Vec<(u64, String)> = dead_letters::list(&*db).await.unwrap().iter().map(|d| (d.position, d.state.as_str().to_owned())).collect();
    assert_eq!(parked, vec![(poison, "failed".to_owned()), (behind, "blocked".to_owned())]);
    let log = db.query("SELECT bio FROM poison_log ORDER BY seq", vec![]).await.unwrap();
    let bios: Vec<&str> = log.iter().map(|r| r.text(0).unwrap()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    assert_eq!(bios, expected, "every other event once, in order");
}

/// Configured to stop on failure, a projection stays before the failing event, says it
/// has failed, and goes on by itself once fixed.
async fn a_projection_set_to_stop_on_failure_waits_for_the_fix(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::poison::PoisonTestProjection;
    use plaza_projections::runtime::FailurePolicy;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let a = Uuid::now_v7();
    let first = update_bio(&*store, a, "one").await;
    update_bio(&*store, a, "poison").await;
    let head = update_bio(&*store, Uuid::now_v7(), "other").await;
    let projector = projector(&store, &db, Arc::new(PoisonTestProjection)).with_failure_policy(FailurePolicy { max_attempts: 1, park: false });
    projector.prepare().await.unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(projector.run(shutdown));
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(PoisonTestProjection)];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = plaza_projections::status::collect(&projections, &*db, &*store, std::time::Duration::from_secs(60)).await.unwrap();
        // Failing on the poison (a busy machine may fail an attempt for other reasons),
        // stopped right before it. (The status reads its parts one after another, so
        // one read may see the failure before the checkpoint it follows.)
        let on_poison = status[0].last_error.as_deref().is_some_and(|e| e.to_lowercase().contains("null"));
        if status[0].state == "failed" && on_poison && status[0].applied_position == first {
            assert_eq!(status[0].dead_letters, 0, "nothing parked");
            break;
        }
        assert!(status[0].applied_position <= first, "went past the failing event: {:?}", status[0]);
        assert!(std::time::Instant::now() < deadline, "never reported failed: {status:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fixes = live_tables(&*db, &PoisonTestProjection).await.physical("poison_fixes");
    db.execute(Statement::owned(format!("INSERT INTO {fixes} (fixed) VALUES (1)"), [])).await.unwrap();
    while checkpoint(&*db, "poison_test").await < head {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(15), "not going on after the fix");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
}

/// A small platform's history touching every projection, with the orders that make
/// set-based statements hard: a like undone and redone, a parent comment deleted under
/// its replies, a video updated then deleted, a follow undone and redone.
async fn a_mixed_history(store: &dyn EventStore) {
    use plaza_domain::Increment;
    use plaza_domain::conversations::{Kind, direct_conversation_id};
    let mut users = Vec::new();
    for name in ["ann", "bob", "cat", "dan", "eve", "fay"] {
        users.push(register(store, name).await);
    }
    let user = |i: usize| users[i % users.len()];
    for i in 0..12 {
        follow(store, user(i), user(i + 1 + i / 6), true).await;
    }
    follow(store, user(0), user(1), false).await;
    follow(store, user(0), user(1), true).await;
    let mut videos = Vec::new();
    for i in 0..4 {
        let video_id = Uuid::now_v7();
        let hashtags = vec!["summer".to_owned(), format!("tag{i}")];
        let event = Event::VideoPublished {
            video_id,
            author_id: user(i),
            title: format!("Video {i}"),
            description: "#summer".into(),
            media_url: "https://cdn.example/v.mp4".into(),
            hashtags,
        };
        append(store, &format!("video-{video_id}"), event).await;
        videos.push(video_id);
    }
    for i in 0..24 {
        let (video_id, user_id) = (videos[i % 4], user(i / 4));
        append(store, &format!("like-{video_id}-{user_id}"), Event::VideoLiked { video_id, user_id }).await;
        if i % 5 == 0 {
            append(store, &format!("like-{video_id}-{user_id}"), Event::VideoUnliked { video_id, user_id }).await;
        }
        if i % 10 == 0 {
            append(store, &format!("like-{video_id}-{user_id}"), Event::VideoLiked { video_id, user_id }).await;
        }
        if i % 3 == 0 {
            append(store, &format!("favorite-{video_id}-{user_id}"), Event::VideoFavorited { video_id, user_id }).await;
        }
        if i % 9 == 0 {
            append(store, &format!("favorite-{video_id}-{user_id}"), Event::VideoUnfavorited { video_id, user_id }).await;
        }
    }
    let mut comments = Vec::new();
    for i in 0..16 {
        let (comment_id, video_id) = (Uuid::now_v7(), videos[i % 2]);
        let parent_id = (i >= 4).then(|| comments[i % 4]);
        let event = Event::CommentPosted { comment_id, video_id, author_id: user(i), parent_id, body: format!("comment {i}") };
        append(store, &format!("comment-{comment_id}"), event).await;
        comments.push(comment_id);
        if i == 9 {
            let deleted = Event::CommentDeleted { comment_id: comments[1], video_id: videos[1], deleted_by: user(1) };
            append(store, &format!("comment-{}", comments[1]), deleted).await;
        }
        let liked = Event::CommentLiked { comment_id: comments[i / 2], video_id: videos[(i / 2) % 2], user_id: user(i) };
        append(store, &format!("comment-like-{}-{}", comments[i / 2], user(i)), liked).await;
    }
    let unliked = Event::CommentUnliked { comment_id: comments[0], video_id: videos[0], user_id: user(0) };
    append(store, &format!("comment-like-{}-{}", comments[0], user(0)), unliked).await;
    let updated =
        Event::VideoUpdated { video_id: videos[2], author_id: user(2), title: "New".into(), description: "".into(), hashtags: vec!["winter".into()] };
    append(store, &format!("video-{}", videos[2]), updated).await;
    append(store, &format!("video-{}", videos[3]), Event::VideoDeleted { video_id: videos[3], author_id: user(3) }).await;
    let conversation_id = direct_conversation_id(user(0), user(1));
    let started = Event::ConversationStarted {
        conversation_id,
        kind: Kind::Direct,
        title: String::new(),
        description: String::new(),
        created_by: user(0),
        member_ids: vec![user(1)],
    };
    append(store, &format!("conversation-{conversation_id}"), started).await;
    for m in 0..10 {
        let sender_id = user(m % 2);
        let event = Event::MessageSent {
            message_id: Uuid::now_v7(),
            conversation_id,
            sender_id,
            body: format!("message {m}"),
            reply_to: None,
            attachment_url: None,
        };
        append(store, &format!("conversation-{conversation_id}-messages"), event).await;
    }
    for i in 0..20 {
        let increment = Increment { resource_id: videos[i % 4].to_string(), counter_type: "views".into(), delta: 1 + i as i64, request_id: None };
        append(store, &format!("counters-{}", i % 3), Event::CountersIncremented { increments: vec![increment] }).await;
    }
}

/// Every table of every projection, each row as text, sorted.
async fn every_table(db: &dyn ReadModelDb) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for projection in plaza_projections::all(Default::default()) {
        for table in Tables::of(projection.as_ref(), 1).tables() {
            let sql: &'static str = Box::leak(format!("SELECT * FROM {table}").into_boxed_str());
            let mut rows: Vec<String> = db.query(sql, vec![]).await.unwrap().into_iter().map(|row| format!("{:?}", row.0)).collect();
            rows.sort();
            out.push((table.to_string(), rows));
        }
    }
    out
}

/// Set-based statements ([`plaza_projections::coalesce`]) change nothing: a history
/// applied in one batch leaves every table as applying it event by event does.
async fn one_batch_leaves_the_tables_event_by_event_does(by_event: Arc<dyn ReadModelDb>, in_one: Arc<dyn ReadModelDb>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    a_mixed_history(&*store).await;
    let head = store.head().await.unwrap();
    for projection in plaza_projections::all(Default::default()) {
        for (db, batch) in [(&by_event, 1), (&in_one, 10_000)] {
            let projector = Projector::new(projection.clone(), store.clone(), db.clone(), Progress::default()).with_batch_size(batch);
            assert_eq!(projector.catch_up().await.unwrap(), head);
        }
    }
    let (expected, found) = (every_table(&*by_event).await, every_table(&*in_one).await);
    assert!(expected.iter().any(|(table, rows)| table == "likes" && rows.len() > 10), "the history fills the tables: {expected:?}");
    for ((table, expected), (_, found)) in expected.iter().zip(&found) {
        assert_eq!(found, expected, "table {table} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_batch_leaves_the_tables_event_by_event_does() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| Arc::new(SqliteReadModels::open(&dir.path().join(name)).unwrap()) as Arc<dyn ReadModelDb>;
    one_batch_leaves_the_tables_event_by_event_does(open("by-event.db"), open("in-one.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_batch_leaves_the_tables_event_by_event_does() {
    let (by_event, in_one) = (common::fresh_database().await, common::fresh_database().await);
    let open = |url: &str| Arc::new(PgReadModels::connect(url).unwrap()) as Arc<dyn ReadModelDb>;
    one_batch_leaves_the_tables_event_by_event_does(open(&by_event), open(&in_one)).await;
}

/// The conversations change log is news, not history: a rebuild writes none of it and
/// the new generation takes the live one's, so the change numbers subscribers hold go on.
async fn a_rebuild_carries_the_change_log_over(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::conversations::ConversationsProjection;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    a_mixed_history(&*store).await;
    projector(&store, &db, Arc::new(ConversationsProjection)).catch_up().await.unwrap();
    const LOG: &str = "SELECT id, conversation_id, kind, seq, message_id, user_ids, detail, position FROM conversation_changes";
    let before = rows_of(&*db, LOG).await;
    assert_eq!(before.len(), 11, "a conversation started and 10 messages: {before:?}");

    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let rebuild = plaza_projections::Rebuild::new(Arc::new(ConversationsProjection), store.clone(), db.clone()).with_batch_size(4);
    assert_eq!(rebuild.run(&mut |_| {}, shutdown).await.unwrap().expect("switched over").generation, 2);
    assert_eq!(rows_of(&*db, LOG).await, before, "the live log, as it was");
    assert_eq!(rows_of(&*db, "SELECT count(*) FROM messages").await, vec!["[Int(10)]"]);

    // The next change is numbered after the carried ones.
    let conversation = db.query("SELECT id FROM conversations", vec![]).await.unwrap()[0].text(0).unwrap().parse::<Uuid>().unwrap();
    let sender_id = db.query("SELECT user_id FROM conversation_members", vec![]).await.unwrap()[0].text(0).unwrap().parse::<Uuid>().unwrap();
    let event = Event::MessageSent {
        message_id: Uuid::now_v7(),
        conversation_id: conversation,
        sender_id,
        body: "after".into(),
        reply_to: None,
        attachment_url: None,
    };
    append(&*store, &format!("conversation-{conversation}-messages"), event).await;
    projector(&store, &db, Arc::new(ConversationsProjection)).catch_up().await.unwrap();
    assert_eq!(rows_of(&*db, "SELECT MAX(id), count(*) FROM conversation_changes").await, vec!["[Int(12), Int(12)]"]);
}

/// A notification group takes likes while it is unread and idle for less than the group
/// window; a like after that, or after the owner read it, opens a new group. The owner's
/// own like, and likes while the kind is switched off, count nowhere; an unlike takes
/// its liker out of the unread group, and a group left with nobody goes.
async fn notification_groups_close_when_read_or_idle(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::notifications::{NotificationsProjection, Settings};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let start = Utc::now() - chrono::Duration::hours(1);
    let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
    let append_at = |stream: String, event: Event, seconds: i64| {
        let store = store.clone();
        async move {
            let new = NewEvent::new(Uuid::now_v7(), &event, Metadata::default(), at(seconds));
            store.append(&stream, ExpectedVersion::Any, vec![new]).await.unwrap();
        }
    };
    let owner = register(&*store, "owner").await;
    let mut fans = Vec::new();
    for name in ["fan0", "fan1", "fan2", "fan3", "fan4"] {
        fans.push(register(&*store, name).await);
    }
    let video_id = Uuid::now_v7();
    let video = Event::VideoPublished {
        video_id,
        author_id: owner,
        title: "V".into(),
        description: String::new(),
        media_url: "https://cdn.example/v.mp4".into(),
        hashtags: vec![],
    };
    append_at(format!("video-{video_id}"), video, 0).await;
    let like = |user_id: Uuid, seconds: i64| append_at(format!("like-{video_id}-{user_id}"), Event::VideoLiked { video_id, user_id }, seconds);
    like(fans[0], 0).await;
    like(fans[1], 50).await; // joins: idle 50 s of 60
    like(owner, 60).await; // nobody is told of their own like
    like(fans[2], 111).await; // idle 61 s: a new group
    append_at(format!("notifications-{owner}"), Event::NotificationsRead { user_id: owner, up_to: None }, 112).await;
    like(fans[3], 113).await; // the group was read: a new group
    let off = Event::NotificationSettingsChanged { user_id: owner, settings: [("video_liked".to_owned(), false)].into() };
    append_at(format!("notifications-{owner}"), off, 114).await;
    like(fans[4], 115).await; // switched off: counted nowhere
    let unlike = |user_id: Uuid, seconds: i64| append_at(format!("like-{video_id}-{user_id}"), Event::VideoUnliked { video_id, user_id }, seconds);
    unlike(fans[2], 116).await; // its group was read: it stays
    unlike(fans[3], 117).await; // its unread group is left with nobody

    let projection = Arc::new(NotificationsProjection { settings: Settings { group_window: std::time::Duration::from_secs(60) } });
    projector(&store, &db, projection).catch_up().await.unwrap();
    let groups = rows_of(&*db, "SELECT kind, actor_count, recipient_id FROM notifications").await;
    let group = |count: i64| format!("[Text(\"video_liked\"), Int({count}), Text(\"{owner}\")]");
    assert_eq!(groups, vec![group(1), group(2)], "fan0 and fan1 in one group, fan2 in the next; fan3's group went");
    let actors = rows_of(&*db, "SELECT n.actor_count, a.actor_id FROM notification_actors a JOIN notifications n ON n.recipient_id = a.recipient_id AND n.id = a.notification_id").await;
    let actor = |count: i64, user: Uuid| format!("[Int({count}), Text(\"{user}\")]");
    let mut expected = vec![actor(2, fans[0]), actor(2, fans[1]), actor(1, fans[2])];
    expected.sort();
    assert_eq!(actors, expected);
}

/// Whether the read-model database has an index of that (physical) name.
async fn has_index(db: &dyn ReadModelDb, name: &str) -> bool {
    let name = SqlValue::from(name);
    let rows = match db.query("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = $1", vec![name.clone()]).await {
        Ok(rows) => rows,
        Err(_) => db.query("SELECT count(*) FROM pg_indexes WHERE indexname = $1", vec![name]).await.unwrap(),
    };
    rows[0].int(0).unwrap() == 1
}

/// A rebuild leaves the indexes only queries use to the end: the generation being built
/// has none, the one it switches to has them all.
async fn a_rebuild_creates_the_query_indexes_once_caught_up(db: Arc<dyn ReadModelDb>) {
    use plaza_projections::content::ContentProjection;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    a_mixed_history(&*store).await;
    projector(&store, &db, Arc::new(ContentProjection)).catch_up().await.unwrap();
    let indexes = ContentProjection.query_indexes();
    assert!(indexes.contains(&"likes_by_user"));
    for index in indexes {
        assert!(has_index(&*db, &format!("{index}__g1")).await, "the first generation is created with {index}");
    }
    let rebuild = plaza_projections::Rebuild::new(Arc::new(ContentProjection), store.clone(), db.clone()).with_batch_size(10);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    assert!(rebuild.run(&mut |_| _ = stop.send_replace(true), shutdown).await.unwrap().is_none(), "interrupted");
    for index in indexes {
        assert!(!has_index(&*db, &format!("{index}__g2")).await, "{index} is not kept up while building");
    }
    assert!(has_index(&*db, "video_hashtags_by_video__g2").await, "an index the projection's statements use is");
    // (PostgreSQL lets go of the first run's lock once it sees its connection closed)
    let resumed = loop {
        let (_, shutdown) = tokio::sync::watch::channel(false);
        match rebuild.run(&mut |_| {}, shutdown).await {
            Err(plaza_projections::rebuild::RebuildError::Busy) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            other => break other.unwrap(),
        }
    };
    assert_eq!(resumed.expect("switched over").generation, 2);
    for index in indexes {
        assert!(has_index(&*db, &format!("{index}__g2")).await, "{index} is there once it serves");
    }
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
    a_rebuild_under_load_switches_to_tables_equal_to_a_fresh_build,
    a_rebuild_runs_once_at_a_time_and_resumes,
    a_paused_projection_applies_nothing_until_resumed,
    a_projector_applies_again_what_a_crash_took_back,
    a_newer_projection_version_rebuilds_by_itself,
    read_models_from_before_generations_are_kept_then_rebuilt,
    a_poison_event_is_parked_with_its_streams_later_events,
    a_rebuild_parks_a_poison_event_and_builds_the_rest,
    a_projection_set_to_stop_on_failure_waits_for_the_fix,
    a_rebuild_carries_the_change_log_over,
    a_rebuild_creates_the_query_indexes_once_caught_up,
    notification_groups_close_when_read_or_idle,
);

/// A new SQLite read model file has 8 KiB pages; one made with other pages keeps them.
#[tokio::test]
async fn new_sqlite_read_models_have_8_kib_pages() {
    let dir = tempfile::tempdir().unwrap();
    let new = SqliteReadModels::open(&dir.path().join("read.db")).unwrap();
    assert_eq!(page_size(&new).await, 8192);
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old).unwrap().execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (a)").unwrap();
    assert_eq!(page_size(&SqliteReadModels::open(&old).unwrap()).await, 4096);
}

async fn page_size(db: &dyn ReadModelDb) -> i64 {
    db.query("PRAGMA page_size", vec![]).await.unwrap()[0].int(0).unwrap()
}

/// A generation of the accounts projection being built (its tables set to hold commits),
/// and a store holding four registrations.
struct Building {
    db: Arc<dyn ReadModelDb>,
    tables: Arc<Tables>,
    events: Vec<RecordedEvent>,
    _dirs: [tempfile::TempDir; 2],
}

impl Building {
    async fn new() -> Self {
        let (store_dir, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = SqliteEventStore::open(&store_dir.path().join("events.db")).unwrap();
        for name in ["a", "b", "c", "d"] {
            register(&store, name).await;
        }
        let db: Arc<dyn ReadModelDb> = Arc::new(SqliteReadModels::open(&db_dir.path().join("read.db")).unwrap());
        generations::ensure_live(&*db, &AccountsProjection).await.unwrap();
        let building = generations::start_building(&*db, &AccountsProjection).await.unwrap();
        let tables = Arc::new(Tables::of(&AccountsProjection, building.generation).with_held_commits(std::time::Duration::from_secs(3600)));
        Self { db, tables, events: store.read_all(0, 10).await.unwrap(), _dirs: [store_dir, db_dir] }
    }

    async fn apply(&self, range: std::ops::Range<usize>) -> Result<(), plaza_projections::ReadModelError> {
        let changes = self.events[range.clone()].iter().map(|event| Changes::of(&AccountsProjection, event)).collect();
        let after = range.start.checked_sub(1).map_or(0, |i| self.events[i].position);
        self.db.apply(self.tables.clone(), changes, after, self.events[range.end - 1].position).await
    }

    /// What readers see: the generation's users and checkpoint.
    async fn committed(&self) -> (Vec<String>, u64) {
        let building = generations::generations(&*self.db, "accounts").await.unwrap().into_iter().find(|g| g.generation == 2).unwrap();
        (rows_of(&*self.db, "SELECT count(*) FROM users__g2").await, building.position)
    }
}

/// SQLite commits a rebuild's batches together: readers see none of them until
/// something else writes (or the rebuild asks), and then all of them with their
/// checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_a_rebuilds_batches_together() {
    let building = Building::new().await;
    building.apply(0..2).await.unwrap();
    building.apply(2..4).await.unwrap();
    assert_eq!(building.committed().await, (vec!["[Int(0)]".to_string()], 0));
    building.db.execute(Statement::new("UPDATE projection_health SET failing = 0 WHERE reporter = 'nobody'", [])).await.unwrap();
    assert_eq!(building.committed().await, (vec!["[Int(4)]".to_string()], 4));

    building.db.commit_held(&building.tables).await.unwrap();
    assert_eq!(building.committed().await, (vec!["[Int(4)]".to_string()], 4), "nothing was held");
}

/// A failing batch takes the batches held with it along (here SQLite rolls the whole
/// transaction back itself): the rebuild hears of it, and the generation's checkpoint is
/// where its rows are, so it can go on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reports_a_rebuilds_batches_rolled_back() {
    let building = Building::new().await;
    building
        .db
        .execute(Statement::new(
            "CREATE TRIGGER refuse_d AFTER INSERT ON users__g2 WHEN NEW.username = 'd' BEGIN SELECT RAISE(ROLLBACK, 'refused'); END",
            [],
        ))
        .await
        .unwrap();
    building.apply(0..2).await.unwrap();
    let lost = building.apply(2..4).await;
    assert!(matches!(lost, Err(plaza_projections::ReadModelError::Uncommitted("accounts", 2))), "{lost:?}");
    assert_eq!(building.committed().await, (vec!["[Int(0)]".to_string()], 0), "the first batch went too, checkpoint and all");

    building.db.execute(Statement::new("DROP TRIGGER refuse_d", [])).await.unwrap();
    building.apply(0..4).await.unwrap();
    building.db.commit_held(&building.tables).await.unwrap();
    assert_eq!(building.committed().await, (vec!["[Int(4)]".to_string()], 4));
}

/// Live writes checkpoint SQLite's log every 1,000 pages (8 MB), also after a rebuild's
/// held batches (which checkpoint every 10,000): however much they write, the log file
/// stays near 8 MB. (It keeps the largest size it reached.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_live_writes_keep_the_log_small_after_a_rebuild() {
    let building = Building::new().await;
    building.apply(0..4).await.unwrap();
    building.db.execute(Statement::new("CREATE TABLE blobs (b BLOB)", [])).await.unwrap();
    // 30 commits of 100 rows of 8,000 bytes (a page each): 3,000 pages, about 24 MB.
    let insert = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO blobs SELECT randomblob(8000) FROM n";
    for _ in 0..30 {
        building.db.execute(Statement::new(insert, [])).await.unwrap();
    }
    let log = std::fs::metadata(building._dirs[1].path().join("read.db-wal")).unwrap().len();
    assert!(log < 12 << 20, "the log grew to {log} bytes");
    assert_eq!(building.committed().await, (vec!["[Int(4)]".to_string()], 4), "the rebuild's batches were committed");
}

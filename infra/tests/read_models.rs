//! The projection suite: the same projection code runs on SQLite and PostgreSQL read
//! models, commits its checkpoint with its changes, and resumes exactly after a restart.

mod common;

use std::sync::Arc;

use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent};
use plaza_infra::postgres::PgReadModels;
use plaza_infra::sqlite::{SqliteEventStore, SqliteReadModels};
use plaza_projections::accounts::AccountsProjection;
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
    let rows = db.query("SELECT followers_count, following_count FROM users WHERE id = $1", vec![user.to_string().into()]).await.unwrap();
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

on_both_engines!(the_accounts_projection_builds_users_and_follows, a_failed_batch_changes_nothing);

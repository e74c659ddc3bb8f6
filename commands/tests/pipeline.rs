//! The command pipeline against a real (SQLite) event store: retries after version
//! conflicts, uniqueness under races, recovery of interrupted registrations.

use std::sync::Arc;

use chrono::{Duration, Utc};
use plaza_commands::{Accounts, CommandContext, CommandError};
use plaza_domain::reservation::{Kind, reservation_stream};
use plaza_domain::{DomainError, Event, EventStore, ExpectedVersion, Metadata, NewEvent};
use plaza_infra::sqlite::SqliteEventStore;
use uuid::Uuid;

fn store() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    (dir, store)
}

async fn register(accounts: &Accounts, name: &str) -> Uuid {
    accounts.register(name, &format!("{name}@example.com"), "long enough".into(), &CommandContext::new(None)).await.unwrap().user_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_follows_of_one_pair_record_one_follow() {
    let (_dir, store) = store();
    let accounts = Accounts::new(store.clone());
    let (a, b) = (register(&accounts, "alice").await, register(&accounts, "bob").await);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let accounts = accounts.clone();
            tokio::spawn(async move { accounts.follow(b, &CommandContext::new(Some(a))).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CommandError::Domain(DomainError::AlreadyFollowing)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(store.read_stream(&format!("follow-{a}-{b}"), 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_registration_interrupted_after_reserving_resumes_with_its_key() {
    let (_dir, store) = store();
    let accounts = Accounts::new(store.clone());
    let ctx = CommandContext::new(None).with_idempotency_key("k1".into(), "POST /register {...}");
    // The first attempt crashed after reserving the username (same derived user id).
    let user_id = ctx.derived_id("user-id").unwrap();
    let reserved = Event::UsernameReserved { username: "dana".into(), user_id, reserved_at: Utc::now() };
    let new = NewEvent::new(Uuid::now_v7(), &reserved, Metadata::default(), Utc::now());
    store.append(&reservation_stream(Kind::Username, "dana"), ExpectedVersion::NoStream, vec![new]).await.unwrap();

    let first = accounts.register("dana", "dana@example.com", "long enough".into(), &ctx).await.unwrap();
    assert_eq!(first.user_id, user_id);
    let retry = accounts.register("dana", "dana@example.com", "long enough".into(), &ctx).await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(accounts.login("dana", "long enough").await.unwrap(), user_id);
}

#[tokio::test]
async fn a_stale_reservation_of_an_abandoned_registration_is_taken_over() {
    let (_dir, store) = store();
    let accounts = Accounts::new(store.clone());
    let abandoned = Event::UsernameReserved { username: "erin".into(), user_id: Uuid::now_v7(), reserved_at: Utc::now() - Duration::minutes(5) };
    let new = NewEvent::new(Uuid::now_v7(), &abandoned, Metadata::default(), Utc::now());
    store.append(&reservation_stream(Kind::Username, "erin"), ExpectedVersion::NoStream, vec![new]).await.unwrap();
    let erin = register(&accounts, "erin").await;
    assert_eq!(accounts.login("erin@example.com", "long enough").await.unwrap(), erin);
    // A registered user's name is never taken over, however old.
    let again = accounts.register("erin", "erin2@example.com", "long enough".into(), &CommandContext::new(None)).await;
    assert!(matches!(again, Err(CommandError::Domain(DomainError::UsernameTaken))));
}

#[tokio::test]
async fn a_failed_registration_releases_its_username() {
    let (_dir, store) = store();
    let accounts = Accounts::new(store.clone());
    register(&accounts, "frank").await;
    let clash = accounts.register("gina", "frank@example.com", "long enough".into(), &CommandContext::new(None)).await;
    assert!(matches!(clash, Err(CommandError::Domain(DomainError::EmailTaken))));
    register(&accounts, "gina").await;
}

#[tokio::test]
async fn updating_someone_else_is_forbidden_and_no_op_updates_append_nothing() {
    let (_dir, store) = store();
    let accounts = Accounts::new(store.clone());
    let (a, b) = (register(&accounts, "hana").await, register(&accounts, "ivan").await);
    let changes = || plaza_domain::accounts::ProfileChanges::parse(Some(Some("Hana".into())), None, None).unwrap();
    let forbidden = accounts.update_profile(a, changes(), &CommandContext::new(Some(b))).await;
    assert!(matches!(forbidden, Err(CommandError::Forbidden)));
    let first = accounts.update_profile(a, changes(), &CommandContext::new(Some(a))).await.unwrap();
    let same = accounts.update_profile(a, changes(), &CommandContext::new(Some(a))).await.unwrap();
    assert_eq!(first, same, "an unchanged profile answers the position of the last change");
    assert_eq!(store.head().await.unwrap(), first.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_load_from_a_snapshot_and_keep_their_rules() {
    let (_dir, store) = store();
    let accounts = Accounts::new(store.clone());
    let (a, b) = (register(&accounts, "joan").await, register(&accounts, "kim").await);
    let ctx = CommandContext::new(Some(a));
    let keyed = CommandContext::new(Some(a)).with_idempotency_key("first-follow".into(), "POST follow");
    let first = accounts.follow(b, &keyed).await.unwrap();
    accounts.unfollow(b, &ctx).await.unwrap();
    for _ in 0..60 {
        accounts.follow(b, &ctx).await.unwrap();
        accounts.unfollow(b, &ctx).await.unwrap();
    }
    let stream = format!("follow-{a}-{b}");
    let mut snapshot = None;
    for _ in 0..100 {
        snapshot = store.read_snapshot(&stream).await.unwrap();
        if snapshot.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let snapshot = snapshot.expect("a snapshot of the long stream");
    assert!(snapshot.version >= 49, "snapshot at version {}", snapshot.version);

    // The rules still hold on top of the snapshot.
    let unfollow_again = accounts.unfollow(b, &ctx).await;
    assert!(matches!(unfollow_again, Err(CommandError::Domain(DomainError::NotFollowing))));
    accounts.follow(b, &ctx).await.unwrap();
    let twice = accounts.follow(b, &ctx).await;
    assert!(matches!(twice, Err(CommandError::Domain(DomainError::AlreadyFollowing))));
    // A retry of the very first request, long folded into the snapshot, answers as it did.
    assert_eq!(accounts.follow(b, &keyed).await.unwrap(), first);
}

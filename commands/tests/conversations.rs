//! Conversations against real event stores: seq without gaps under concurrent senders,
//! also from two writers (as two write-API processes), membership taking effect at
//! once, edits, deletions and read markers.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use plaza_commands::{CommandContext, CommandError, ConversationSettings, Conversations, Draft, MessageIndex};
use plaza_domain::accounts::user_stream;
use plaza_domain::conversations::messages_stream;
use plaza_domain::{DomainError, Event, EventStore, ExpectedVersion, Metadata, NewEvent};
use plaza_infra::postgres::PgEventStore;
use plaza_infra::sqlite::SqliteEventStore;
use uuid::Uuid;

/// An index that knows nothing: messages are found through the sending process's memory.
struct NoIndex;

#[async_trait::async_trait]
impl MessageIndex for NoIndex {
    async fn locate(&self, _: Uuid) -> Result<Option<(Uuid, u64)>, CommandError> {
        Ok(None)
    }
}

async fn user(store: &dyn EventStore) -> Uuid {
    let user_id = Uuid::now_v7();
    let event =
        Event::UserRegistered { user_id, username: format!("u{}", user_id.simple()), email: format!("{user_id}@x.org"), password_hash: "h".into() };
    let new = NewEvent::new(Uuid::now_v7(), &event, Metadata::default(), Utc::now());
    store.append(&user_stream(user_id), ExpectedVersion::NoStream, vec![new]).await.unwrap();
    user_id
}

fn ctx(actor: Uuid) -> CommandContext {
    CommandContext::new(Some(actor))
}

fn text(body: &str) -> Draft<'_> {
    Draft { body, reply_to: None, attachment_url: None }
}

fn code<T: std::fmt::Debug>(result: Result<T, CommandError>) -> &'static str {
    match result {
        Err(CommandError::Domain(error)) => error.code(),
        other => panic!("expected a domain error, got {other:?}"),
    }
}

/// 20 senders, 10 messages each, spread over `writers`: seqs 1..=200, each once, and
/// the stream's versions agree.
async fn seq_has_no_gaps(stores: Vec<Arc<dyn EventStore>>) {
    let writers: Vec<Conversations> =
        stores.iter().map(|s| Conversations::new(s.clone(), Arc::new(NoIndex), ConversationSettings::default())).collect();
    let owner = user(&*stores[0]).await;
    let mut senders = Vec::new();
    for _ in 0..19 {
        senders.push(user(&*stores[0]).await);
    }
    let group = writers[0].start_group("busy", "", &senders, &ctx(owner)).await.unwrap().conversation_id;
    senders.push(owner);
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, sender)| {
            let (writer, sender) = (writers[i % writers.len()].clone(), *sender);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for n in 0..10 {
                    seqs.push(writer.send(group, text(&format!("{n}")), &ctx(sender)).await.unwrap().seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one sender's messages keep their order: {seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
    let stored = stores[0].read_stream(&messages_stream(group), 0, 1000).await.unwrap();
    assert!(stored.iter().all(|r| matches!(r.decode().unwrap(), Event::MessageSent { .. })), "only messages");
    assert_eq!(stored.len(), 200);
    assert_eq!(stored.iter().map(|r| r.event_id).collect::<HashSet<_>>().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_seq_has_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    seq_has_no_gaps(vec![Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_seq_has_no_gaps_across_writers() {
    let admin = std::env::var("PLAZA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("PostgreSQL runs (make services)");
    tokio::spawn(connection);
    let name = format!("plaza_test_{}", Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let first: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(&url).await.unwrap());
    let second: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(&url).await.unwrap());
    seq_has_no_gaps(vec![first, second]).await;
}

async fn postgres_store() -> Arc<dyn EventStore> {
    let admin = std::env::var("PLAZA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("PostgreSQL runs (make services)");
    tokio::spawn(connection);
    let name = format!("plaza_test_{}", Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    Arc::new(PgEventStore::connect(&format!("{}/{name}", admin.rsplit_once('/').unwrap().0)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_membership_edits_deletions_and_read_markers() {
    let dir = tempfile::tempdir().unwrap();
    membership_edits_deletions_and_read_markers(Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_membership_edits_deletions_and_read_markers() {
    membership_edits_deletions_and_read_markers(postgres_store().await).await;
}

/// On a shared store (PostgreSQL) a second writer stands for another write-API
/// process; an SQLite store has one process, whose own commands tell its senders.
async fn membership_edits_deletions_and_read_markers(store: Arc<dyn EventStore>) {
    let settings = ConversationSettings { max_members: 3, edit_window: std::time::Duration::from_millis(300) };
    let chats = Conversations::new(store.clone(), Arc::new(NoIndex), settings);
    // Another writer (process) that has not seen the removal below.
    let other = Conversations::new(store.clone(), Arc::new(NoIndex), settings);
    let (owner, member, outsider, extra) = (user(&*store).await, user(&*store).await, user(&*store).await, user(&*store).await);

    let direct = chats.start_direct(member, &ctx(owner)).await.unwrap();
    let again = chats.start_direct(owner, &ctx(member)).await.unwrap();
    assert_eq!((direct.created, again.created, again.conversation_id), (true, false, direct.conversation_id));
    assert_eq!(code(chats.start_direct(Uuid::now_v7(), &ctx(owner)).await), "user_not_found");

    let group = chats.start_group("team", "", &[member], &ctx(owner)).await.unwrap().conversation_id;
    assert_eq!(code(chats.send(group, text("hi"), &ctx(outsider)).await), "conversation_not_found");
    assert_eq!(code(chats.add_members(group, &[outsider], &ctx(member)).await), "forbidden");
    assert_eq!(code(chats.add_members(group, &[outsider], &ctx(outsider)).await), "conversation_not_found");
    chats.add_members(group, &[outsider], &ctx(owner)).await.unwrap();
    assert_eq!(code(chats.add_members(group, &[extra], &ctx(owner)).await), "group_full");
    assert_eq!(code(chats.add_members(group, &[member], &ctx(owner)).await), "already_member");

    let sender = if store.shared() { &other } else { &chats };
    let sent = sender.send(group, text("from the other writer"), &ctx(outsider)).await.unwrap();
    assert_eq!(sent.seq, 1);
    chats.remove_member(group, outsider, &ctx(owner)).await.unwrap();
    assert_eq!(code(sender.send(group, text("still here?"), &ctx(outsider)).await), "conversation_not_found", "removed from the removal on");
    assert_eq!(code(chats.remove_member(group, owner, &ctx(owner)).await), "forbidden", "the owner hands over first");

    let hello = chats.send(group, text("hello"), &ctx(member)).await.unwrap();
    assert_eq!(hello.seq, 2);
    assert_eq!(code(chats.edit(hello.message_id, "hullo", &ctx(owner)).await), "forbidden");
    chats.edit(hello.message_id, "hullo", &ctx(member)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(code(chats.edit(hello.message_id, "too late", &ctx(member)).await), "edit_window_passed");
    chats.delete_message(hello.message_id, &ctx(owner)).await.unwrap();
    assert_eq!(code(chats.delete_message(hello.message_id, &ctx(owner)).await), "message_not_found");
    assert_eq!(code(chats.edit(Uuid::now_v7(), "x", &ctx(member)).await), "message_not_found");

    assert_eq!(code(chats.mark_read(group, 3, &ctx(member)).await), "invalid_conversation");
    let read = chats.mark_read(group, 2, &ctx(member)).await.unwrap();
    assert_eq!(chats.mark_read(group, 1, &ctx(member)).await.unwrap(), read, "a lower seq changes nothing");
    assert_eq!(code(chats.mark_read(group, 1, &ctx(outsider)).await), "conversation_not_found");

    // Keyed sends: a repeat answers the stored message.
    let keyed = ctx(member).with_idempotency_key("k1".into(), "POST /messages\nsame");
    let first = chats.send(group, text("once"), &keyed).await.unwrap();
    let repeat = chats.send(group, text("once"), &keyed).await.unwrap();
    assert_eq!((repeat.message_id, repeat.seq), (first.message_id, first.seq));
    let next = chats.send(group, text("next"), &ctx(member)).await.unwrap();
    assert_eq!(next.seq, first.seq + 1);
    assert!(matches!(chats.membership(group, member).await, Ok(m) if m.last_seq == next.seq));
    assert_eq!(DomainError::GroupFull.code(), "group_full");
}

/// Many requests at once about a conversation that does not exist: each gets
/// `conversation_not_found`, none is dropped by the task stopping under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_conversations_answer_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let chats = Conversations::new(store.clone(), Arc::new(NoIndex), ConversationSettings::default());
    let sender = user(&*store).await;
    for _ in 0..5 {
        let unknown = Uuid::now_v7();
        let requests: Vec<_> = (0..200)
            .map(|i| {
                let chats = chats.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        code(chats.send(unknown, text("hello?"), &ctx(sender)).await)
                    } else {
                        code(chats.membership(unknown, sender).await)
                    }
                })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap(), "conversation_not_found");
        }
    }
}

//! Idempotency keys against a real event store: the first request claims its key, a
//! repeat is recognised (with a counter's recorded answer), any other request with the
//! key is refused, also when requests race for the key.

use std::sync::Arc;

use plaza_commands::{Claim, CommandContext, CommandError, IdempotencyKeys};
use plaza_domain::EventStore;
use plaza_infra::sqlite::SqliteEventStore;
use uuid::Uuid;

fn context(actor: Option<Uuid>, key: &str, request: &str) -> CommandContext {
    CommandContext::new(actor).with_idempotency_key(key.to_owned(), request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_belongs_to_the_first_request_that_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).unwrap());
    let keys = IdempotencyKeys::new(store);
    let alice = Some(Uuid::new_v4());

    assert_eq!(keys.claim(&CommandContext::new(alice)).await.unwrap(), Claim::First, "no key, nothing to claim");
    let first = context(alice, "k1", "POST /api/v1/counter/increment\n{\"delta\":1}");
    assert_eq!(keys.claim(&first).await.unwrap(), Claim::First);
    assert!(matches!(keys.claim(&first).await.unwrap(), Claim::Repeat { answer: None, .. }));
    keys.record_answer(&first, 42).await.unwrap();
    keys.record_answer(&first, 43).await.unwrap();
    assert!(matches!(keys.claim(&first).await.unwrap(), Claim::Repeat { answer: Some(42), .. }), "the first answer stays");

    let other_body = context(alice, "k1", "POST /api/v1/counter/increment\n{\"delta\":2}");
    assert!(matches!(keys.claim(&other_body).await, Err(CommandError::IdempotencyKeyReused)));
    let other_path = context(alice, "k1", "POST /api/v1/hashtags\n{}");
    assert!(matches!(keys.claim(&other_path).await, Err(CommandError::IdempotencyKeyReused)));
    let someone_else = context(Some(Uuid::new_v4()), "k1", "POST /api/v1/hashtags\n{}");
    assert_eq!(keys.claim(&someone_else).await.unwrap(), Claim::First, "keys are per sender");

    // Two different requests race for a key: exactly one claims it.
    let racing: Vec<_> = (0..8)
        .map(|i| {
            let (keys, ctx) = (keys.clone(), context(alice, "k2", &format!("request {i}")));
            tokio::spawn(async move { keys.claim(&ctx).await })
        })
        .collect();
    let mut first_claims = 0;
    for race in racing {
        match race.await.unwrap() {
            Ok(Claim::First) => first_claims += 1,
            Err(CommandError::IdempotencyKeyReused) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(first_claims, 1);
}

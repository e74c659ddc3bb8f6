//! `Idempotency-Key`s. The first request to carry a key claims it: an
//! `IdempotencyKeyUsed` event, naming the request (a hash of who sent what), in the
//! key's own `idempotency-{id}` stream, whose id depends on who sent the key and the key.
//! A repeat of that request is recognised and runs again as a no-op (commands derive
//! their event ids from the key, so the store keeps their events once); any other
//! request with the key is refused with [`CommandError::IdempotencyKeyReused`], whatever
//! its path. Counter increments, which are not decided from a stream, record their
//! answer in the key's stream too, so a repeat answers what the first one did.

use std::sync::Arc;

use chrono::Utc;
use plaza_domain::{Event, EventStore, ExpectedVersion, NewEvent, StoreError};
use uuid::Uuid;

use crate::CommandError;
use crate::pipeline::CommandContext;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No key, or its first use: run the command.
    First,
    /// The same request again; `answer` is what a counter increment answered, if it
    /// recorded one, and `age` how long ago the key was claimed.
    Repeat { answer: Option<i64>, age: std::time::Duration },
}

#[derive(Clone)]
pub struct IdempotencyKeys {
    store: Arc<dyn EventStore>,
}

impl IdempotencyKeys {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// Claims the context's key for its request (nothing to do without a key).
    pub async fn claim(&self, ctx: &CommandContext) -> Result<Claim, CommandError> {
        let (Some(stream), Some(idempotency)) = (ctx.key_stream(), &ctx.idempotency) else { return Ok(Claim::First) };
        let used = Event::IdempotencyKeyUsed { request: idempotency.scope };
        let claim = NewEvent::new(ctx.derived_id("claim").unwrap_or_else(Uuid::now_v7), &used, ctx.metadata(), Utc::now());
        // Twice at most: a claim that loses a race reads the winner's.
        for _ in 0..2 {
            let recorded = self.store.read_stream(&stream, 0, 2).await?;
            if let Some(first) = recorded.first() {
                let decode = |i: usize| recorded.get(i).map(|e| e.decode().map_err(|e| StoreError::Corrupt(e.to_string()))).transpose();
                return match decode(0)? {
                    Some(Event::IdempotencyKeyUsed { request }) if request == idempotency.scope => {
                        let answer = match decode(1)? {
                            Some(Event::IdempotentIncrementAnswered { value }) => Some(value),
                            _ => None,
                        };
                        let age = (Utc::now() - first.occurred_at).to_std().unwrap_or_default();
                        Ok(Claim::Repeat { answer, age })
                    }
                    Some(_) => Err(CommandError::IdempotencyKeyReused),
                    None => Err(StoreError::Corrupt(format!("{} has no event {}", first.stream_id, first.version)).into()),
                };
            }
            // The claim's id is derived from the key and the request: a retried append of
            // this same claim is stored once.
            match self.store.append(&stream, ExpectedVersion::NoStream, vec![claim.clone()]).await {
                Ok(_) => return Ok(Claim::First),
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(CommandError::Contention)
    }

    /// Records what an increment answered under the context's key, after its claim.
    pub async fn record_answer(&self, ctx: &CommandContext, value: i64) -> Result<(), CommandError> {
        let Some(stream) = ctx.key_stream() else { return Ok(()) };
        let answered = Event::IdempotentIncrementAnswered { value };
        let event = NewEvent::new(ctx.derived_id("answer").unwrap_or_else(Uuid::now_v7), &answered, ctx.metadata(), Utc::now());
        match self.store.append(&stream, ExpectedVersion::Exact(0), vec![event]).await {
            // Recorded by a concurrent repeat already: the first answer stays.
            Ok(_) | Err(StoreError::WrongExpectedVersion { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

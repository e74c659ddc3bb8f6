use std::sync::Arc;

use chrono::Utc;
use plaza_domain::{Aggregate, Event, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError};
use tracing::debug;
use uuid::Uuid;

use crate::CommandError;

/// How often a command is re-decided after losing an expected-version race.
const MAX_ATTEMPTS: usize = 5;

/// Namespace for event ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x8c1f_4a4e_7b1d_4f0a_9d52_2a3e_6f7b_1c90);

/// Who asks, and how to recognise a repeated request.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub actor: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    /// `Idempotency-Key` header and the request it came with.
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    /// The key is scoped to who sent it and what was sent (method, path and body), so
    /// the same key on another request is another command.
    pub scope: String,
}

impl CommandContext {
    pub fn new(actor: Option<Uuid>) -> Self {
        Self { actor, correlation_id: Some(Uuid::now_v7()), idempotency: None }
    }

    pub fn with_idempotency_key(mut self, key: String, request: &str) -> Self {
        let actor = self.actor.map_or_else(|| "anonymous".to_owned(), |a| a.to_string());
        self.idempotency = Some(Idempotency { scope: format!("{actor}\n{request}"), key });
        self
    }

    /// The same context without its idempotency key (for compensating actions).
    pub fn without_idempotency(&self) -> Self {
        Self { idempotency: None, ..self.clone() }
    }

    /// A deterministic id for `purpose` when the request carries an idempotency key.
    pub fn derived_id(&self, purpose: &str) -> Option<Uuid> {
        self.idempotency.as_ref().map(|i| Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("{}\n{}\n{purpose}", i.key, i.scope).as_bytes()))
    }

    fn event_id(&self, stream: &str, index: usize) -> Uuid {
        self.derived_id(&format!("{stream}#{index}")).unwrap_or_else(Uuid::now_v7)
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            actor: self.actor,
            correlation_id: self.correlation_id,
            causation_id: None,
            idempotency_key: self.idempotency.as_ref().map(|i| i.key.clone()),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Global position of the command's last event: the consistency token. For a
    /// command that changed nothing, the position of the stream's last event.
    pub position: u64,
}

/// A stream loaded and folded.
pub(crate) struct Loaded<A> {
    pub state: A,
    pub version: Option<u64>,
    pub events: Vec<RecordedEvent>,
}

#[derive(Clone)]
pub(crate) struct Pipeline {
    pub store: Arc<dyn EventStore>,
}

impl Pipeline {
    pub async fn load<A: Aggregate>(&self, stream: &str) -> Result<Loaded<A>, CommandError> {
        const PAGE: usize = 1000;
        let mut events = Vec::new();
        loop {
            let page = self.store.read_stream(stream, events.len() as u64, PAGE).await?;
            let done = page.len() < PAGE;
            events.extend(page);
            if done {
                break;
            }
        }
        let decoded = events.iter().map(|e| e.decode().map_err(|e| StoreError::Corrupt(e.to_string()))).collect::<Result<Vec<Event>, _>>()?;
        Ok(Loaded { state: A::replay(&decoded), version: events.last().map(|e| e.version), events })
    }

    /// Whether a stream has any event.
    pub async fn exists(&self, stream: &str) -> Result<bool, CommandError> {
        Ok(!self.store.read_stream(stream, 0, 1).await?.is_empty())
    }

    /// Load -> decide -> append with the loaded version; on a version conflict, reload
    /// and decide again, up to [`MAX_ATTEMPTS`] times.
    pub async fn execute<A: Aggregate>(
        &self,
        stream: &str,
        ctx: &CommandContext,
        command: impl Fn(&A) -> A::Command,
    ) -> Result<Outcome, CommandError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let loaded = self.load::<A>(stream).await?;
            if let Some(done) = already_applied(ctx, stream, &loaded.events) {
                return Ok(done);
            }
            let events = loaded.state.decide(&command(&loaded.state))?;
            if events.is_empty() {
                return Ok(Outcome { position: loaded.events.last().map_or(0, |e| e.position) });
            }
            let now = Utc::now();
            let metadata = ctx.metadata();
            let new: Vec<NewEvent> =
                events.iter().enumerate().map(|(i, event)| NewEvent::new(ctx.event_id(stream, i), event, metadata.clone(), now)).collect();
            match self.store.append(stream, ExpectedVersion::from_current(loaded.version), new).await {
                Ok(appended) => return Ok(Outcome { position: appended.last_position }),
                Err(StoreError::WrongExpectedVersion { .. }) => debug!(stream, attempt, "version conflict, deciding again"),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Contention)
    }
}

/// A repeated request whose events are already in the stream answers as the first did.
fn already_applied(ctx: &CommandContext, stream: &str, events: &[RecordedEvent]) -> Option<Outcome> {
    ctx.idempotency.as_ref()?;
    let first = ctx.event_id(stream, 0);
    let start = events.iter().position(|e| e.event_id == first)?;
    // The command's events were appended together: the run of derived ids from `start`.
    let run = events[start..].iter().enumerate().take_while(|(i, e)| e.event_id == ctx.event_id(stream, *i)).count();
    Some(Outcome { position: events[start + run - 1].position })
}

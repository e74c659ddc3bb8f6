use std::sync::Arc;

use chrono::Utc;
use plaza_domain::{Aggregate, Appended, Event, EventStore, ExpectedVersion, Metadata, NewEvent, Snapshot, StoreError};
use tracing::{debug, warn};
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
    /// The event that caused the command (a process manager's).
    pub causation_id: Option<Uuid>,
    /// `Idempotency-Key` header and the request it came with.
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    /// The key is scoped to who sent it and what was sent (method, path and body), so
    /// the same key on another request is another command. Kept as a hash: the body
    /// may hold a password, and contexts get logged.
    pub scope: Uuid,
}

impl CommandContext {
    pub fn new(actor: Option<Uuid>) -> Self {
        Self { actor, correlation_id: Some(Uuid::now_v7()), causation_id: None, idempotency: None }
    }

    pub fn with_idempotency_key(mut self, key: String, request: &str) -> Self {
        let actor = self.actor.map_or_else(|| "anonymous".to_owned(), |a| a.to_string());
        let scope = Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("{actor}\n{request}").as_bytes());
        self.idempotency = Some(Idempotency { scope, key });
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

    /// The stream that records who used the idempotency key first: one per sender and
    /// key, whatever the request.
    pub fn key_stream(&self) -> Option<String> {
        let key = &self.idempotency.as_ref()?.key;
        let sender = self.actor.map_or_else(|| "anonymous".to_owned(), |a| a.to_string());
        Some(format!("idempotency-{}", Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("{sender}\n{key}").as_bytes())))
    }

    fn event_id(&self, stream: &str, index: usize) -> Uuid {
        self.derived_id(&format!("{stream}#{index}")).unwrap_or_else(Uuid::now_v7)
    }

    pub(crate) fn metadata(&self) -> Metadata {
        Metadata {
            actor: self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
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

/// A stream loaded and folded: from its snapshot, if any, plus the events after it.
pub(crate) struct Loaded<A> {
    pub state: A,
    /// Version and global position of the stream's last event.
    pub version: Option<u64>,
    pub position: u64,
    /// Events folded on top of the snapshot (or from the start).
    pub replayed: usize,
}

/// A snapshot is written once this many events were replayed on top of the last one,
/// so loading any stream reads at most about this many events.
const SNAPSHOT_EVERY: usize = 50;

#[derive(Clone)]
pub(crate) struct Pipeline {
    pub store: Arc<dyn EventStore>,
}

impl Pipeline {
    pub async fn load<A: Aggregate>(&self, stream: &str) -> Result<Loaded<A>, CommandError> {
        const PAGE: usize = 500;
        let snapshot = self.store.read_snapshot(stream).await?.filter(|s| s.schema == A::SNAPSHOT_SCHEMA);
        let mut loaded = match snapshot.and_then(|s| serde_json::from_str::<A>(&s.state).ok().map(|state| (state, s))) {
            Some((state, s)) => Loaded { state, version: Some(s.version), position: s.position, replayed: 0 },
            None => Loaded { state: A::default(), version: None, position: 0, replayed: 0 },
        };
        loop {
            let from = loaded.version.map_or(0, |v| v + 1);
            let page = self.store.read_stream(stream, from, PAGE).await?;
            for recorded in &page {
                let event = recorded.decode().map_err(|e| StoreError::Corrupt(e.to_string()))?;
                loaded.state = loaded.state.evolve(&event);
                (loaded.version, loaded.position) = (Some(recorded.version), recorded.position);
            }
            loaded.replayed += page.len();
            if page.len() < PAGE {
                return Ok(loaded);
            }
        }
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
        if let Some(done) = self.already_applied(ctx, stream).await? {
            return Ok(done);
        }
        for attempt in 1..=MAX_ATTEMPTS {
            let loaded = self.load::<A>(stream).await?;
            let events = loaded.state.decide(&command(&loaded.state))?;
            if events.is_empty() {
                return Ok(Outcome { position: loaded.position });
            }
            match self.store.append(stream, ExpectedVersion::from_current(loaded.version), self.new_events(stream, ctx, &events)).await {
                Ok(appended) => {
                    if loaded.replayed + events.len() >= SNAPSHOT_EVERY {
                        self.snapshot_later(stream, loaded.state, &events, appended);
                    }
                    return Ok(Outcome { position: appended.last_position });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => debug!(stream, attempt, "version conflict, deciding again"),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Contention)
    }

    /// [`Self::execute`] for a stream that is most likely new (a like, a follow, a new
    /// comment): decides on the empty state and appends expecting no stream, without
    /// reading it. If the stream exists after all (a version conflict), or the empty
    /// state decides nothing or refuses, it loads the stream and decides as `execute` does.
    pub async fn execute_new<A: Aggregate>(
        &self,
        stream: &str,
        ctx: &CommandContext,
        command: impl Fn(&A) -> A::Command,
    ) -> Result<Outcome, CommandError> {
        if ctx.idempotency.is_none()
            && let Ok(events) = A::default().decide(&command(&A::default()))
            && !events.is_empty()
        {
            match self.store.append(stream, ExpectedVersion::NoStream, self.new_events(stream, ctx, &events)).await {
                Ok(appended) => return Ok(Outcome { position: appended.last_position }),
                Err(StoreError::WrongExpectedVersion { .. }) => debug!(stream, "the stream exists, deciding on it"),
                Err(other) => return Err(other.into()),
            }
        }
        self.execute(stream, ctx, command).await
    }

    fn new_events(&self, stream: &str, ctx: &CommandContext, events: &[Event]) -> Vec<NewEvent> {
        let (now, metadata) = (Utc::now(), ctx.metadata());
        events.iter().enumerate().map(|(i, event)| NewEvent::new(ctx.event_id(stream, i), event, metadata.clone(), now)).collect()
    }

    /// Appends `events` to `stream` without loading it or checking its version, for
    /// streams nothing is decided from. A repeated request (same idempotency key)
    /// appends nothing again.
    pub async fn append(&self, stream: &str, ctx: &CommandContext, events: &[Event]) -> Result<Outcome, CommandError> {
        if let Some(done) = self.already_applied(ctx, stream).await? {
            return Ok(done);
        }
        Ok(Outcome { position: self.store.append(stream, ExpectedVersion::Any, self.new_events(stream, ctx, events)).await?.last_position })
    }

    /// A repeated request (same idempotency key) whose events are already stored
    /// answers as the first did: with the position of its last event.
    async fn already_applied(&self, ctx: &CommandContext, stream: &str) -> Result<Option<Outcome>, CommandError> {
        if ctx.idempotency.is_none() {
            return Ok(None);
        }
        // The command's events were appended together, with derived ids 0, 1, ...
        let mut position = None;
        for index in 0.. {
            match self.store.read_event(stream, ctx.event_id(stream, index)).await? {
                Some(found) => position = Some(found.position),
                None => break,
            }
        }
        Ok(position.map(|position| Outcome { position }))
    }

    /// Writes a snapshot of the state after `events` in the background; a failure only
    /// means the next load replays more.
    fn snapshot_later<A: Aggregate>(&self, stream: &str, state: A, events: &[Event], appended: Appended) {
        let state = events.iter().fold(state, A::evolve);
        let snapshot = Snapshot {
            stream_id: stream.to_owned(),
            version: appended.stream_version,
            position: appended.last_position,
            schema: A::SNAPSHOT_SCHEMA,
            state: serde_json::to_string(&state).expect("aggregate state serializes"),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.write_snapshot(snapshot).await {
                warn!(%error, "could not write a snapshot");
            }
        });
    }
}

use std::time::Duration;

use uuid::Uuid;

use crate::{NewEvent, RecordedEvent};

/// What the appender believes about the stream's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this (zero-based) version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation matching a stream whose last version is `current`.
    pub fn from_current(current: Option<u64>) -> Self {
        current.map_or(Self::NoStream, Self::Exact)
    }

    pub fn matches(self, current: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::Exact(v) => current == Some(v),
        }
    }
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Global position of the first and last event of this append.
    pub first_position: u64,
    pub last_position: u64,
    /// The stream's version after the append (use it as the next `Exact` expectation).
    pub stream_version: u64,
}

/// An aggregate's folded state at a stream version, so loading reads only the events
/// after it. Snapshots are a cache: losing one costs a longer replay, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stream_id: String,
    /// Version and global position of the last event folded into `state`.
    pub version: u64,
    pub position: u64,
    /// The aggregate's snapshot schema; a mismatch means "replay from the start".
    pub schema: u32,
    /// JSON text.
    pub state: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream} is at version {actual:?}, expected {expected:?}")]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, actual: Option<u64> },
    #[error("an append must carry at least one event")]
    EmptyAppend,
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
}

/// The event store port. Every adapter passes the same conformance suite
/// (`infra/tests/event_store.rs`).
///
/// Contract:
/// - `append` is atomic per call; the expected version is checked against the stream.
/// - Events whose ids are already stored are not stored again. An append whose events
///   are all already stored succeeds without a version check and reports where they are,
///   so a retried append is harmless.
/// - Global positions are above 0 and strictly increase in commit order: a reader that
///   has seen position `p` will never later find a new event below `p`. SQLite and
///   PostgreSQL hand out 1, 2, 3, ...; EventStoreDB's log positions leave gaps.
/// - Concurrent appends share transactions and fsyncs (group commit); an `Ok` answer
///   means the events are durable.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    async fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Appended, StoreError>;

    /// Reads up to `limit` events of a stream, starting at version `from_version`.
    async fn read_stream(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events of the global log with a position above `after`.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last committed event (0 when the store is empty).
    async fn head(&self) -> Result<u64, StoreError>;

    /// Waits until the log holds an event above `after`, or the timeout passes, and
    /// returns the head position then.
    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, StoreError>;

    /// Finds an event of `stream` by id (how a retried command recognises its own
    /// events). Naming the stream lets an engine without a global id index (EventStoreDB)
    /// look in the one stream the event can be in.
    async fn read_event(&self, stream: &str, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError>;

    /// The latest snapshot of a stream, if any.
    async fn read_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Stores a snapshot unless a newer one (higher version) is already stored.
    async fn write_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// Whether other processes may append to this store. PostgreSQL and EventStoreDB are
    /// shared by every write API; an SQLite store belongs to the one process that opened
    /// it, which may then trust what it appended itself.
    fn shared(&self) -> bool {
        true
    }
}

//! The EventStoreDB event store (gRPC, crate `eventstore`).
//!
//! How Plaza's port maps onto the engine:
//!
//! - Streams: every Plaza stream `s` is the EventStoreDB stream `{namespace}s`, so several
//!   deployments (or test runs) can share one server. The adapter's own bookkeeping
//!   (snapshots, relay checkpoints) lives in `{namespace}plaza-meta-...` streams, which the
//!   global log hides like system (`$`) streams.
//! - Versions: a stream revision is a Plaza version (both zero-based), and the expected
//!   version is the server's expected revision.
//! - Positions: Plaza's global position is the event's *prepare* position in the `$all`
//!   log: unique per event, increasing in log order, with gaps (the port allows gaps).
//! - Envelope: the data is the event's JSON; schema version, occurrence time and
//!   [`Metadata`] travel in the event's custom metadata (JSON).
//!
//! Where the engine differs from SQL, the adapter scans a bounded window instead of using
//! an index: ids already stored (the last [`RECENT_EVENTS_WINDOW`] events of the stream),
//! `read_event` (same window) and `head` (the last [`HEAD_SCAN_WINDOW`] events of `$all`).
//! The crate reads `$all` without a server-side filter, so `read_all` skips other
//! namespaces' and system events client-side; the live subscription behind
//! `wait_for_events` does filter on the server.
//!
//! Requirements: the credentials in the connection string may read `$all` (an admin, on a
//! secured server), and the server reports the log position of events read from a stream
//! (recent servers do; older ones send none, which this adapter reports as corrupt data).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ExpectedRevision, Position, ReadAllOptions, ReadStream,
    ReadStreamOptions, ResolvedEvent, StreamMetadata, StreamPosition, SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter,
};
use plaza_domain::{Appended, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, Snapshot, StoreError};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::warn;
use uuid::Uuid;

use crate::head::Head;

/// How many of a stream's last events an append searches for ids already stored, and
/// `read_event` for the id it is asked for. A retried append whose events lie further
/// back is stored again: the same kind of window as the server's own idempotency check.
const RECENT_EVENTS_WINDOW: usize = 1024;

/// How many of the last events of `$all` (every namespace, system events included)
/// `head` looks through for the namespace's last event before falling back to the last
/// position this process saw.
const HEAD_SCAN_WINDOW: usize = 4096;

/// The bookkeeping streams' prefix, after the namespace.
const META_PREFIX: &str = "plaza-meta-";
const SNAPSHOT_EVENT_TYPE: &str = "PlazaSnapshot";
const CHECKPOINT_EVENT_TYPE: &str = "PlazaRelayCheckpoint";

/// How often `write_snapshot` retries when another writer changed the snapshot stream
/// between its read and its append.
const SNAPSHOT_WRITE_ATTEMPTS: usize = 5;

/// The pause before the live subscription reconnects.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);

/// The EventStoreDB event store. Appends go straight to the server (which group-commits
/// concurrent writes itself); a background task holds a filtered subscription to `$all`
/// and moves the head so waiting readers wake, also for other processes' appends.
pub struct EsdbEventStore {
    client: Client,
    namespace: Arc<Namespace>,
    head: Arc<Head>,
    follower: JoinHandle<()>,
}

impl Drop for EsdbEventStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

fn unavailable(error: impl Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn corrupt(reason: impl Display) -> StoreError {
    StoreError::Corrupt(reason.to_string())
}

/// What the custom metadata of every Plaza event holds, beside the JSON data.
#[derive(Serialize, Deserialize)]
struct Envelope {
    schema_version: u32,
    /// RFC 3339 with microseconds, the precision the other adapters keep.
    occurred_at: String,
    #[serde(flatten)]
    metadata: Metadata,
}

/// The data of a snapshot stream's event.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    version: u64,
    position: u64,
    schema: u32,
    state: String,
}

/// The data of a relay checkpoint stream's event.
#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    position: u64,
}

/// Which EventStoreDB streams belong to this store, and their Plaza names.
struct Namespace {
    prefix: String,
}

impl Namespace {
    /// The EventStoreDB name of a Plaza stream.
    fn stream(&self, stream: &str) -> String {
        format!("{}{stream}", self.prefix)
    }

    /// The EventStoreDB name of a bookkeeping stream, e.g. `{namespace}plaza-meta-snapshot-{stream}`.
    fn meta_stream(&self, kind: &str, name: &str) -> String {
        format!("{}{META_PREFIX}{kind}-{name}", self.prefix)
    }

    /// The Plaza stream name of an event of this namespace's global log; `None` for
    /// other namespaces' events, system events and the bookkeeping streams.
    fn plaza_stream<'a>(&self, event: &'a eventstore::RecordedEvent) -> Option<&'a str> {
        if event.stream_id.starts_with('$') || event.event_type.starts_with('$') {
            return None;
        }
        let stream = event.stream_id.strip_prefix(self.prefix.as_str())?;
        if stream.starts_with(META_PREFIX) {
            return None;
        }
        Some(stream)
    }

    /// The server-side filter of the live subscription: the namespace's streams, or
    /// every non-system stream when the namespace is empty. Bookkeeping streams pass it
    /// and are dropped client-side.
    fn subscription_filter(&self) -> SubscriptionFilter {
        if self.prefix.is_empty() {
            SubscriptionFilter::on_stream_name().exclude_system_events()
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(&self.prefix)
        }
    }
}

/// The event a read returned: the link itself for a link event (links are never
/// resolved here), else the event. `None` only for a malformed answer.
fn original(resolved: ResolvedEvent) -> Option<eventstore::RecordedEvent> {
    resolved.link.or(resolved.event)
}

/// Plaza's global position of an event: its prepare position in `$all`. Servers that do
/// not know it (older servers reading a stream) send `u64::MAX`.
fn log_position(event: &eventstore::RecordedEvent) -> Result<u64, StoreError> {
    match event.position.prepare {
        u64::MAX => Err(corrupt(format!(
            "the server did not report the log position of event {} in {}; this adapter needs a server that does on stream reads",
            event.id, event.stream_id
        ))),
        position => Ok(position),
    }
}

/// The `$all` position to start a forward read at so that no event above `after` is missed.
///
/// `after` is the prepare position of an event already seen (or 0). The server starts a
/// forward read of `$all` at the first event whose (commit, prepare) position is at or
/// above the one given, and every event's commit position is at or above its prepare
/// position (a commit follows its prepares in the log; Plaza's single-call appends are
/// self-committed, commit = prepare). So an unseen event, whose prepare position is above
/// `after`, has a commit position above `after` too, and comes at or after
/// (after, after). The read may still return events at or below `after` (the seen event
/// itself): the caller skips those.
fn read_all_start(after: u64) -> StreamPosition<Position> {
    if after == 0 {
        return StreamPosition::Start;
    }
    StreamPosition::Position(Position { commit: after, prepare: after })
}

fn to_expected_revision(expected: ExpectedVersion) -> ExpectedRevision {
    match expected {
        ExpectedVersion::Any => ExpectedRevision::Any,
        ExpectedVersion::NoStream => ExpectedRevision::NoStream,
        ExpectedVersion::Exact(version) => ExpectedRevision::Exact(version),
    }
}

/// The event as sent to the server: JSON data, the envelope as custom metadata, Plaza's
/// event id as the server's (which the server's own idempotency check also uses).
fn event_data(event: &NewEvent) -> Result<EventData, StoreError> {
    // The crate serializes the payload itself, so the JSON text goes through a value.
    let data: serde_json::Value =
        serde_json::from_str(&event.data).map_err(|e| corrupt(format!("the data of event {} is not JSON: {e}", event.event_id)))?;
    let envelope = Envelope {
        schema_version: event.schema_version,
        occurred_at: event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        metadata: event.metadata.clone(),
    };
    let encoded = EventData::json(&event.event_type, &data).and_then(|payload| payload.metadata_as_json(&envelope));
    Ok(encoded.map_err(|e| corrupt(format!("cannot encode event {}: {e}", event.event_id)))?.id(event.event_id))
}

/// A bookkeeping event (snapshot, checkpoint): JSON data, no envelope.
fn meta_event_data(event_type: &str, data: &impl Serialize) -> Result<EventData, StoreError> {
    EventData::json(event_type, data).map_err(|e| corrupt(format!("cannot encode a {event_type} event: {e}")))
}

/// Rebuilds Plaza's recorded event; `stream_id` is the Plaza stream name.
fn to_recorded(stream_id: &str, event: &eventstore::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let what = || format!("event {} of {}", event.id, event.stream_id);
    let envelope: Envelope = serde_json::from_slice(&event.custom_metadata).map_err(|e| corrupt(format!("{} has no Plaza envelope: {e}", what())))?;
    let occurred_at = DateTime::parse_from_rfc3339(&envelope.occurred_at)
        .map_err(|e| corrupt(format!("{} has a bad occurred_at: {e}", what())))?
        .with_timezone(&Utc);
    let data = String::from_utf8(event.data.to_vec()).map_err(|e| corrupt(format!("{} has data that is not UTF-8: {e}", what())))?;
    Ok(RecordedEvent {
        event_id: event.id,
        stream_id: stream_id.to_owned(),
        version: event.revision,
        position: log_position(event)?,
        event_type: event.event_type.clone(),
        schema_version: envelope.schema_version,
        data,
        metadata: envelope.metadata,
        occurred_at,
    })
}

/// Reads the head of the global log backwards: the position of the last event of
/// `$all` (any stream; where the live subscription starts) and the prepare position of
/// the namespace's last event, if it is among the last [`HEAD_SCAN_WINDOW`] events.
async fn scan_head(client: &Client, namespace: &Namespace) -> Result<(Option<Position>, Option<u64>), StoreError> {
    let options = ReadAllOptions::default().position(StreamPosition::End).max_count(HEAD_SCAN_WINDOW);
    let mut reader = client.read_all(&options).await.map_err(unavailable)?;
    let mut last_of_log = None;
    while let Some(resolved) = reader.next().await.map_err(unavailable)? {
        let Some(event) = original(resolved) else { continue };
        last_of_log.get_or_insert(event.position);
        if namespace.plaza_stream(&event).is_some() {
            return Ok((last_of_log, Some(log_position(&event)?)));
        }
    }
    Ok((last_of_log, None))
}

/// Follows `$all` live from `resume_from` (filtered to the namespace on the server) and
/// moves the head to every namespace event's position, so waiters wake for appends of
/// every process. Reconnects after a pause when the subscription drops, from the last
/// position the server reported, so no event goes unheard.
async fn follow_log(client: Client, namespace: Arc<Namespace>, head: Arc<Head>, mut resume_from: StreamPosition<Position>) {
    loop {
        let options = SubscribeToAllOptions::default().position(resume_from).filter(namespace.subscription_filter());
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    let Some(event) = original(resolved) else { continue };
                    resume_from = StreamPosition::Position(event.position);
                    if namespace.plaza_stream(&event).is_some() {
                        head.advance(event.position.prepare);
                    }
                }
                // The server's progress through events the filter dropped.
                Ok(SubscriptionEvent::Checkpoint(position)) => resume_from = StreamPosition::Position(position),
                Ok(_) => {}
                Err(error) => {
                    warn!(%error, "EventStoreDB subscription dropped, resubscribing");
                    break;
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
    }
}

impl EsdbEventStore {
    /// Connects to the server of an `esdb://` or `esdb+discover://` connection string.
    /// Every stream is stored as `{namespace}{stream}`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, StoreError> {
        if namespace.starts_with('$') {
            return Err(unavailable(format!("store_namespace {namespace:?} must not start with `$` (EventStoreDB's system streams)")));
        }
        let settings: ClientSettings = url.parse().map_err(|e| unavailable(format!("bad EventStoreDB connection string: {e}")))?;
        let client = Client::new(settings).map_err(unavailable)?;
        let namespace = Arc::new(Namespace { prefix: namespace.to_owned() });

        // One backward read finds where the subscription starts and the head so far:
        // everything after that start reaches the subscription, everything before it
        // was in the read.
        let (last_of_log, namespace_head) = scan_head(&client, &namespace).await?;
        let head = Arc::new(Head::new(namespace_head.unwrap_or(0)));
        let resume_from = last_of_log.map_or(StreamPosition::Start, StreamPosition::Position);
        let follower = tokio::spawn(follow_log(client.clone(), namespace.clone(), head.clone(), resume_from));
        Ok(Self { client, namespace, head, follower })
    }

    /// The last position this process has seen (appended, heard or read as the head).
    fn known_head(&self) -> u64 {
        self.head.current()
    }

    /// Opens a read of one stream; `None` when the stream does not exist (or was deleted).
    async fn open_stream(&self, stream: &str, options: &ReadStreamOptions) -> Result<Option<ReadStream>, StoreError> {
        match self.client.read_stream(stream, options).await {
            Ok(reader) => Ok(Some(reader)),
            Err(eventstore::Error::ResourceNotFound | eventstore::Error::ResourceDeleted) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Reads the events of one EventStoreDB stream the options select; a missing or
    /// deleted stream has none.
    async fn read_raw(&self, stream: &str, options: &ReadStreamOptions) -> Result<Vec<eventstore::RecordedEvent>, StoreError> {
        let Some(mut reader) = self.open_stream(stream, options).await? else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(resolved)) => events.extend(original(resolved)),
                Ok(None) => return Ok(events),
                // The server reports a missing stream as the read's first answer.
                Err(eventstore::Error::ResourceNotFound | eventstore::Error::ResourceDeleted) => return Ok(Vec::new()),
                Err(error) => return Err(unavailable(error)),
            }
        }
    }

    /// The last `count` events of a stream, newest first.
    async fn read_tail(&self, stream: &str, count: usize) -> Result<Vec<eventstore::RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default().position(StreamPosition::End).max_count(count);
        self.read_raw(stream, &options).await
    }

    /// The newest event of a stream, if any.
    async fn read_last(&self, stream: &str) -> Result<Option<eventstore::RecordedEvent>, StoreError> {
        Ok(self.read_tail(stream, 1).await?.into_iter().next())
    }

    /// Limits a bookkeeping stream to its newest event. Called by the append that created
    /// the stream; a crash in between leaves a stream that merely keeps old events.
    async fn keep_only_last_event(&self, stream: &str) -> Result<(), StoreError> {
        let metadata = StreamMetadata::builder().max_count(1).build();
        self.client.set_stream_metadata(stream, &AppendToStreamOptions::default(), &metadata).await.map_err(unavailable)?;
        Ok(())
    }

    /// Appends one bookkeeping event; sets the stream's metadata when this created it.
    async fn append_meta(&self, stream: &str, expected: ExpectedRevision, event: EventData) -> Result<(), eventstore::Error> {
        let options = AppendToStreamOptions::default().expected_revision(expected);
        let written = self.client.append_to_stream(stream, &options, event).await?;
        if written.next_expected_version == 0 {
            // Best effort: the stream works without it, it just keeps every event.
            if let Err(error) = self.keep_only_last_event(stream).await {
                warn!(%error, stream, "cannot limit a bookkeeping stream to its last event");
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventStore for EsdbEventStore {
    async fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let full_name = self.namespace.stream(stream);

        // Ids already stored (a retried append), among the stream's recent events.
        let mut stored: HashMap<Uuid, (u64, u64)> = HashMap::new();
        for event in self.read_tail(&full_name, RECENT_EVENTS_WINDOW).await? {
            stored.insert(event.id, (log_position(&event)?, event.revision));
        }
        let (known, fresh): (Vec<&NewEvent>, Vec<&NewEvent>) = events.iter().partition(|e| stored.contains_key(&e.event_id));
        if fresh.is_empty() {
            // All stored already: no version check, answer where they are.
            let found: Vec<(u64, u64)> = known.iter().filter_map(|e| stored.get(&e.event_id).copied()).collect();
            return Ok(Appended {
                first_position: found.iter().map(|f| f.0).min().unwrap_or(0),
                last_position: found.iter().map(|f| f.0).max().unwrap_or(0),
                stream_version: found.iter().map(|f| f.1).max().unwrap_or(0),
            });
        }

        let payload = fresh.iter().map(|e| event_data(e)).collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().expected_revision(to_expected_revision(expected));
        let written = match self.client.append_to_stream(full_name.as_str(), &options, payload).await {
            Ok(written) => written,
            Err(eventstore::Error::WrongExpectedVersion { current, .. }) => {
                let actual = match current {
                    CurrentRevision::Current(version) => Some(version),
                    CurrentRevision::NoStream => None,
                };
                return Err(StoreError::WrongExpectedVersion { stream: stream.to_owned(), expected, actual });
            }
            Err(error) => return Err(unavailable(error)),
        };

        // The answer names the stream's last revision, not each event's log position:
        // read the appended events back for those.
        let stream_version = written.next_expected_version;
        let first_version = (stream_version + 1)
            .checked_sub(fresh.len() as u64)
            .ok_or_else(|| corrupt(format!("{full_name} is at revision {stream_version} after appending {} events", fresh.len())))?;
        let read_back = ReadStreamOptions::default().position(StreamPosition::Position(first_version)).max_count(fresh.len());
        let positions: HashMap<Uuid, u64> =
            self.read_raw(&full_name, &read_back).await?.iter().map(|e| Ok((e.id, log_position(e)?))).collect::<Result<_, StoreError>>()?;
        let mut appended_positions = Vec::with_capacity(fresh.len());
        for event in &fresh {
            let position = positions
                .get(&event.event_id)
                .ok_or_else(|| corrupt(format!("event {} is not in {full_name} where the server appended it", event.event_id)))?;
            appended_positions.push(*position);
        }
        let first_position = appended_positions.iter().copied().min().unwrap_or(0);
        let last_position = appended_positions.iter().copied().max().unwrap_or(0);
        self.head.advance(last_position);
        Ok(Appended { first_position, last_position, stream_version })
    }

    async fn read_stream(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let options = ReadStreamOptions::default().position(StreamPosition::Position(from_version)).max_count(limit);
        self.read_raw(&self.namespace.stream(stream), &options).await?.iter().map(|event| to_recorded(stream, event)).collect()
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // No count: the read streams the log until `limit` events of the namespace are
        // found (other namespaces' and system events are skipped here) or the log ends;
        // dropping the reader cancels the rest.
        let options = ReadAllOptions::default().forwards().position(read_all_start(after));
        let mut reader = self.client.read_all(&options).await.map_err(unavailable)?;
        let mut found = Vec::new();
        while found.len() < limit {
            let Some(resolved) = reader.next().await.map_err(unavailable)? else { break };
            let Some(event) = original(resolved) else { continue };
            if event.position.prepare <= after {
                continue;
            }
            if let Some(stream) = self.namespace.plaza_stream(&event) {
                found.push(to_recorded(stream, &event)?);
            }
        }
        Ok(found)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let (_, namespace_head) = scan_head(&self.client, &self.namespace).await?;
        match namespace_head {
            Some(position) => {
                self.head.advance(position);
                Ok(position)
            }
            // Not among the log's last events (others wrote many since): the last
            // position this process saw, which the subscription keeps current.
            None => Ok(self.known_head()),
        }
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, StoreError> {
        Ok(self.head.wait_above(after, timeout).await)
    }

    async fn read_event(&self, stream: &str, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        // No index by id: look through the stream's recent events (a retried command
        // looks for events it has just written).
        let recent = self.read_tail(&self.namespace.stream(stream), RECENT_EVENTS_WINDOW).await?;
        recent.iter().find(|event| event.id == event_id).map(|event| to_recorded(stream, event)).transpose()
    }

    async fn read_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        let Some(event) = self.read_last(&self.namespace.meta_stream("snapshot", stream)).await? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = serde_json::from_slice(&event.data).map_err(|e| corrupt(format!("bad snapshot of {stream}: {e}")))?;
        Ok(Some(Snapshot {
            stream_id: stream.to_owned(),
            version: stored.version,
            position: stored.position,
            schema: stored.schema,
            state: stored.state,
        }))
    }

    async fn write_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let snapshot_stream = self.namespace.meta_stream("snapshot", &snapshot.stream_id);
        let stored = StoredSnapshot { version: snapshot.version, position: snapshot.position, schema: snapshot.schema, state: snapshot.state };
        // Compare and append: the append expects the revision just read, so a newer
        // snapshot written in between is never overwritten by an older one.
        for _ in 0..SNAPSHOT_WRITE_ATTEMPTS {
            let expected = match self.read_last(&snapshot_stream).await? {
                None => ExpectedRevision::NoStream,
                Some(current) => {
                    let current_version = serde_json::from_slice::<StoredSnapshot>(&current.data).map(|s| s.version).ok();
                    if current_version.is_some_and(|version| version >= stored.version) {
                        return Ok(());
                    }
                    ExpectedRevision::Exact(current.revision)
                }
            };
            match self.append_meta(&snapshot_stream, expected, meta_event_data(SNAPSHOT_EVENT_TYPE, &stored)?).await {
                Ok(()) => return Ok(()),
                Err(eventstore::Error::WrongExpectedVersion { .. }) => continue,
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(unavailable(format!("the snapshot of {} kept changing while it was written", snapshot.stream_id)))
    }
}

#[async_trait::async_trait]
impl crate::kafka::RelayCheckpoints for EsdbEventStore {
    async fn load(&self, name: &str) -> anyhow::Result<u64> {
        let Some(event) = self.read_last(&self.namespace.meta_stream("relay", name)).await? else {
            return Ok(0);
        };
        let stored: StoredCheckpoint = serde_json::from_slice(&event.data).map_err(|e| corrupt(format!("bad relay checkpoint {name}: {e}")))?;
        Ok(stored.position)
    }

    async fn save(&self, name: &str, position: u64) -> anyhow::Result<()> {
        let event = meta_event_data(CHECKPOINT_EVENT_TYPE, &StoredCheckpoint { position })?;
        self.append_meta(&self.namespace.meta_stream("relay", name), ExpectedRevision::Any, event).await.map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(stream: &str, event_type: &str) -> eventstore::RecordedEvent {
        eventstore::RecordedEvent {
            stream_id: stream.to_owned(),
            id: Uuid::new_v4(),
            revision: 0,
            event_type: event_type.to_owned(),
            data: Default::default(),
            metadata: Default::default(),
            custom_metadata: Default::default(),
            is_json: true,
            position: Position { commit: 10, prepare: 10 },
            created: Utc::now(),
        }
    }

    #[test]
    fn the_namespace_hides_other_namespaces_system_events_and_bookkeeping() {
        let namespace = Namespace { prefix: "t1-".into() };
        assert_eq!(namespace.plaza_stream(&recorded("t1-user-1", "UserRegistered")), Some("user-1"));
        assert_eq!(namespace.plaza_stream(&recorded("t2-user-1", "UserRegistered")), None);
        assert_eq!(namespace.plaza_stream(&recorded("$$t1-user-1", "$metadata")), None);
        assert_eq!(namespace.plaza_stream(&recorded("t1-user-1", "$>")), None);
        assert_eq!(namespace.plaza_stream(&recorded(&namespace.meta_stream("snapshot", "user-1"), SNAPSHOT_EVENT_TYPE)), None);

        let everything = Namespace { prefix: String::new() };
        assert_eq!(everything.plaza_stream(&recorded("user-1", "UserRegistered")), Some("user-1"));
        assert_eq!(everything.plaza_stream(&recorded("$stats-127.0.0.1:2113", "$statsCollected")), None);
        assert_eq!(everything.plaza_stream(&recorded("plaza-meta-relay-relay:plaza.events", CHECKPOINT_EVENT_TYPE)), None);
    }

    #[test]
    fn the_envelope_round_trips_through_custom_metadata() {
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "UserFollowed".into(),
            schema_version: 1,
            data: r#"{"type":"UserFollowed","follower_id":"a","followee_id":"b"}"#.into(),
            metadata: Metadata { actor: Some(Uuid::new_v4()), idempotency_key: Some("k".into()), ..Metadata::default() },
            occurred_at: Utc::now(),
        };
        let envelope = Envelope {
            schema_version: event.schema_version,
            occurred_at: event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            metadata: event.metadata.clone(),
        };
        let mut stored = recorded("t1-user-1", &event.event_type);
        stored.id = event.event_id;
        stored.data = event.data.clone().into_bytes().into();
        stored.custom_metadata = serde_json::to_vec(&envelope).unwrap().into();
        let back = to_recorded("user-1", &stored).unwrap();
        assert_eq!((back.event_id, back.stream_id.as_str(), back.position), (event.event_id, "user-1", 10));
        assert_eq!(back.metadata, event.metadata);
        assert_eq!(back.occurred_at.timestamp_micros(), event.occurred_at.timestamp_micros());
        assert!(event_data(&event).is_ok());
    }

    #[test]
    fn an_unknown_log_position_is_reported_not_used() {
        let mut event = recorded("t1-user-1", "UserFollowed");
        event.position = Position::end();
        assert!(matches!(log_position(&event), Err(StoreError::Corrupt(_))));
        assert_eq!(read_all_start(0), StreamPosition::Start);
        assert_eq!(read_all_start(42), StreamPosition::Position(Position { commit: 42, prepare: 42 }));
    }
}

//! `plaza events ...`: the event history for analysts. JSON Lines to pipe anywhere
//! (`tail`), chunked exports with a manifest for incremental pulls (`export`), and one
//! stream with its aggregate's state (`stream`).
//!
//! Every event is written as its envelope (position, stream, version, type, schema
//! version, occurred-at, event id, metadata) with the event's JSON as `data`. Password
//! hashes never leave: they are replaced by `"[redacted]"`.

use std::fs;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use plaza_domain::{Aggregate, Event, EventStore, RecordedEvent};
use plaza_infra::Config;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Events read from the store per call.
const PAGE: usize = 5_000;

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Print events as JSON Lines on stdout, in position order; with --follow, keep
    /// printing new ones as they are appended.
    Tail {
        #[command(flatten)]
        range: Range,
        #[arg(long)]
        follow: bool,
    },
    /// Write events into DIR as JSON Lines or Parquet files of at most --chunk-events each, plus
    /// manifest.json (the range, the counts, the last position). Run again on the same
    /// DIR to continue an interrupted export; --since-manifest DIR exports only what is
    /// newer than that export.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        range: Range,
        /// Start after the last position of the export in DIR.
        #[arg(long, value_name = "DIR")]
        since_manifest: Option<PathBuf>,
        #[arg(long, default_value_t = 100_000)]
        chunk_events: usize,
    },
    /// Produce a range of events to a Kafka topic (`kafka_brokers`; created if needed)
    /// for an external consumer, keyed by stream id with the relay's envelope headers.
    Replay {
        #[arg(long, value_name = "NAME")]
        to_topic: String,
        #[command(flatten)]
        range: Range,
    },
    /// Print one stream's events (up to --to-version) as JSON Lines, then the state of
    /// its aggregate after them.
    Stream {
        stream_id: String,
        /// The last version to include (versions start at 0).
        #[arg(long)]
        to_version: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Parquet,
}

/// Which events: a position range and filters.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Range {
    /// Only events after this position.
    #[arg(long, value_name = "P")]
    pub from_position: Option<u64>,
    /// Only events up to and including this position.
    #[arg(long, value_name = "Q")]
    pub to_position: Option<u64>,
    /// Only these event types (comma-separated), e.g. VideoLiked,VideoUnliked.
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub types: Vec<String>,
    /// Only streams whose id starts with this, e.g. video-.
    #[arg(long, value_name = "PREFIX")]
    pub stream_prefix: Option<String>,
}

impl Range {
    fn check(&self) -> anyhow::Result<()> {
        if let (Some(from), Some(to)) = (self.from_position, self.to_position) {
            anyhow::ensure!(from <= to, "--from-position ({from}) is after --to-position ({to})");
        }
        Ok(())
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        (self.types.is_empty() || self.types.contains(&event.event_type))
            && self.stream_prefix.as_deref().is_none_or(|prefix| event.stream_id.starts_with(prefix))
    }
}

pub async fn command(config: &Config, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Tail { range, follow } => {
            range.check()?;
            let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
            tail(store.as_ref(), &range, follow).await
        }
        EventsCommand::Export { format, out, range, since_manifest, chunk_events } => {
            range.check()?;
            anyhow::ensure!(chunk_events > 0, "--chunk-events must be at least 1");
            let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
            export(&store, &out, format, range, since_manifest.as_deref(), chunk_events).await
        }
        EventsCommand::Replay { to_topic, range } => {
            range.check()?;
            anyhow::ensure!(!to_topic.trim().is_empty(), "--to-topic must name a topic");
            let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
            let head = store.head().await?;
            let (from, to) = (range.from_position.unwrap_or(0), range.to_position.map_or(head, |to| to.min(head)));
            let settings = plaza_infra::kafka::KafkaSettings { topic: to_topic.clone(), ..plaza_infra::kafka_settings(config) };
            let progress = Progress::new(to.saturating_sub(from));
            let produced = plaza_infra::kafka::replay(&settings, store.as_ref(), from, to, &|e| range.wants(e), &mut |p| progress.set(p - from))
                .await
                .with_context(|| format!("cannot replay to topic {to_topic} at {}", settings.brokers))?;
            progress.finish();
            println!("{to_topic}: produced {produced} events, positions {}..={to}", from + 1);
            Ok(())
        }
        EventsCommand::Stream { stream_id, to_version } => {
            let store = plaza_infra::open_event_store(config).await.context("cannot open the event store")?;
            stream(store.as_ref(), &stream_id, to_version).await
        }
    }
}

/// One event as analysts get it.
/// Writes the envelope as one line of JSON, with the event's JSON as it is stored
/// (checked, not re-parsed into a tree: exports write hundreds of thousands a second).
fn write_envelope(out: &mut impl std::io::Write, event: &RecordedEvent) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &Envelope::of(event, &exported_data(event)))?;
    out.write_all(b"\n")
}

#[derive(Serialize)]
struct Envelope<'a> {
    position: u64,
    stream_id: &'a str,
    version: u64,
    event_type: &'a str,
    schema_version: u32,
    occurred_at: String,
    event_id: uuid::Uuid,
    metadata: &'a plaza_domain::Metadata,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a serde_json::value::RawValue),
    /// Stored text that is not JSON (never written by Plaza), as a string.
    Text(&'a str),
}

impl<'a> Envelope<'a> {
    fn of(event: &'a RecordedEvent, data: &'a str) -> Self {
        Self {
            position: event.position,
            stream_id: &event.stream_id,
            version: event.version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            occurred_at: event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            event_id: event.event_id,
            metadata: &event.metadata,
            data: serde_json::from_str(data).map_or(Data::Text(data), Data::Json),
        }
    }
}

/// Replaces every `password_hash` in a JSON value.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "password_hash" {
                    *inner = Value::String("[redacted]".into());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

async fn tail(store: &dyn EventStore, range: &Range, follow: bool) -> anyhow::Result<()> {
    let mut position = range.from_position.unwrap_or(0);
    let stdout = std::io::stdout();
    loop {
        let events = store.read_all(position, PAGE).await?;
        let mut out = stdout.lock();
        for event in &events {
            if range.to_position.is_some_and(|to| event.position > to) {
                return Ok(());
            }
            if range.wants(event) {
                // A closed pipe (`| head`) ends the tail quietly.
                if write_envelope(&mut out, event).is_err() {
                    return Ok(());
                }
            }
            position = event.position;
        }
        if out.flush().is_err() {
            return Ok(());
        }
        drop(out);
        if events.len() < PAGE {
            if !follow || range.to_position.is_some_and(|to| position >= to) {
                return Ok(());
            }
            store.wait_for_events(position, Duration::from_secs(1)).await?;
        }
    }
}

/// `manifest.json` of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: Format,
    /// Events after this position...
    pub from_position: u64,
    /// ...up to this one (the store's head when the export started, or --to-position).
    pub to_position: u64,
    /// The last position read so far: equal to `to_position` when complete.
    pub last_position: u64,
    pub complete: bool,
    pub events: u64,
    pub filters: Range,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chunk {
    pub file: String,
    pub first_position: u64,
    pub last_position: u64,
    pub events: u64,
}

fn read_manifest(dir: &Path) -> anyhow::Result<Option<Manifest>> {
    let path = dir.join("manifest.json");
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is not a Plaza export manifest", path.display()))?)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the manifest atomically (a new file renamed over the old).
fn write_manifest(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let tmp = dir.join("manifest.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(manifest)?)?;
    fs::rename(&tmp, dir.join("manifest.json"))?;
    Ok(())
}

async fn export(
    store: &Arc<dyn EventStore>,
    out: &Path,
    format: Format,
    range: Range,
    since: Option<&Path>,
    chunk_events: usize,
) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("cannot create the directory {}", out.display()))?;
    let mut manifest = match read_manifest(out)? {
        // An export in this directory: continue it (same range and filters).
        Some(existing) if existing.complete => {
            println!("{}: already complete up to position {} ({} events)", out.display(), existing.last_position, existing.events);
            return Ok(());
        }
        Some(existing) => {
            anyhow::ensure!(
                existing.format == format,
                "{} holds an unfinished {:?} export; continue it with that format or choose another --out",
                out.display(),
                existing.format
            );
            existing
        }
        None => {
            let from = match since {
                Some(dir) => {
                    let previous = read_manifest(dir)?.with_context(|| format!("no manifest.json in {}", dir.display()))?;
                    anyhow::ensure!(previous.complete, "the export in {} is not complete; finish it first", dir.display());
                    previous.last_position.max(range.from_position.unwrap_or(0))
                }
                None => range.from_position.unwrap_or(0),
            };
            let head = store.head().await?;
            let to = range.to_position.map_or(head, |to| to.min(head));
            Manifest {
                format,
                from_position: from,
                to_position: to.max(from),
                last_position: from,
                complete: false,
                events: 0,
                filters: range,
                chunks: vec![],
            }
        }
    };
    let progress = Progress::new(manifest.to_position - manifest.from_position);
    let started = Instant::now();
    let (from, to, filters) = (manifest.from_position, manifest.to_position, manifest.filters.clone());
    let mut position = manifest.last_position;
    // Chunks are written (encoded, synced, recorded in the manifest) on a thread of their
    // own while the next ones are read: an export takes about as long as the slower of
    // the two, not their sum.
    let (chunks, mut to_write) = tokio::sync::mpsc::channel::<(Vec<RecordedEvent>, u64)>(1);
    let writer = {
        let out = out.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Manifest> {
            while let Some((mut chunk, position)) = to_write.blocking_recv() {
                flush_chunk(&out, &mut manifest, &mut chunk, position)?;
            }
            Ok(manifest)
        })
    };
    let read = async {
        let mut chunk: Vec<RecordedEvent> = Vec::with_capacity(chunk_events.min(PAGE));
        let mut next = (position < to).then(|| read_ahead(store, position));
        while let Some(reading) = next.take() {
            let events = reading.await.context("the export's reader stopped")??;
            // The page after this one is read on another task while this one is chunked.
            if events.len() == PAGE && events.last().is_some_and(|e| e.position < to) {
                next = events.last().map(|e| read_ahead(store, e.position));
            }
            for event in events {
                if event.position > to {
                    break;
                }
                position = event.position;
                if filters.wants(&event) {
                    chunk.push(event);
                }
                if chunk.len() >= chunk_events {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_events.min(PAGE)));
                    if chunks.send((full, position)).await.is_err() {
                        // The writer failed: its error is the one to report.
                        return Ok(());
                    }
                }
            }
            progress.set(position - from);
        }
        // The rest, and the end of the range as the last position read.
        let _ = chunks.send((chunk, to)).await;
        Ok::<(), anyhow::Error>(())
    };
    let read = read.await;
    drop(chunks);
    let mut manifest = writer.await.context("the export's writer stopped")??;
    read?;
    manifest.complete = true;
    write_manifest(out, &manifest)?;
    progress.finish();
    if manifest.to_position == manifest.from_position {
        println!("{}: nothing new after position {} (no files written)", out.display(), manifest.from_position);
        return Ok(());
    }
    let rate = manifest.events as f64 / started.elapsed().as_secs_f64().max(0.001);
    println!(
        "{}: {} events in {} files, positions {}..={} ({rate:.0} events/s)",
        out.display(),
        manifest.events,
        manifest.chunks.len(),
        manifest.from_position + 1,
        manifest.to_position
    );
    Ok(())
}

/// Reads the page after `position` on a task of its own.
fn read_ahead(store: &Arc<dyn EventStore>, position: u64) -> tokio::task::JoinHandle<Result<Vec<RecordedEvent>, plaza_domain::StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.read_all(position, PAGE).await })
}

/// Writes the chunk in hand (renamed into place whole) and records it, with `position`
/// as the last one read, in the manifest.
fn flush_chunk(dir: &Path, manifest: &mut Manifest, chunk: &mut Vec<RecordedEvent>, position: u64) -> anyhow::Result<()> {
    if let Some(first) = chunk.first() {
        let first_position = first.position;
        let last_position = position;
        let extension = match manifest.format {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        };
        let file = format!("events-{first_position:012}-{last_position:012}.{extension}");
        let tmp = dir.join(format!("{file}.tmp"));
        let written = match manifest.format {
            Format::Jsonl => write_jsonl(&tmp, chunk),
            Format::Parquet => parquet_file::write(&tmp, chunk),
        };
        written.with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, dir.join(&file))?;
        manifest.events += chunk.len() as u64;
        manifest.chunks.push(Chunk { file, first_position, last_position, events: chunk.len() as u64 });
        chunk.clear();
    }
    manifest.last_position = position;
    write_manifest(dir, manifest)
}

fn write_jsonl(path: &Path, events: &[RecordedEvent]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(fs::File::create(path)?);
    for event in events {
        write_envelope(&mut out, event)?;
    }
    out.into_inner().map_err(|error| error.into_error())?.sync_all()?;
    Ok(())
}

/// The event's JSON as exported: as stored, unless it holds a password hash.
fn exported_data(event: &RecordedEvent) -> std::borrow::Cow<'_, str> {
    if !event.data.contains("password_hash") {
        return event.data.as_str().into();
    }
    match serde_json::from_str::<Value>(&event.data) {
        Ok(mut data) => {
            redact(&mut data);
            data.to_string().into()
        }
        Err(_) => event.data.as_str().into(),
    }
}

/// Parquet chunks: the envelope in typed columns, the event as JSON text.
mod parquet_file {
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;

    use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use plaza_domain::RecordedEvent;

    /// Rows per record batch (and so at most per row group).
    const BATCH: usize = 65_536;

    pub fn schema() -> Arc<Schema> {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        Arc::new(Schema::new(vec![
            Field::new("position", DataType::Int64, false),
            text("stream_id", false),
            Field::new("version", DataType::Int64, false),
            text("event_type", false),
            Field::new("schema_version", DataType::Int32, false),
            Field::new("occurred_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            text("event_id", false),
            text("actor", true),
            text("correlation_id", true),
            text("causation_id", true),
            text("metadata", false),
            text("data", false),
        ]))
    }

    pub fn write(path: &Path, events: &[RecordedEvent]) -> anyhow::Result<()> {
        let schema = schema();
        let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer = ArrowWriter::try_new(fs::File::create(path)?, schema.clone(), Some(properties))?;
        for rows in events.chunks(BATCH) {
            writer.write(&batch(&schema, rows)?)?;
        }
        writer.into_inner()?.sync_all()?;
        Ok(())
    }

    fn batch(schema: &Arc<Schema>, rows: &[RecordedEvent]) -> anyhow::Result<RecordBatch> {
        let n = rows.len();
        let mut position = Int64Builder::with_capacity(n);
        let mut stream_id = StringBuilder::new();
        let mut version = Int64Builder::with_capacity(n);
        let mut event_type = StringBuilder::new();
        let mut schema_version = Int32Builder::with_capacity(n);
        let mut occurred_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut event_id = StringBuilder::new();
        let mut actor = StringBuilder::new();
        let mut correlation_id = StringBuilder::new();
        let mut causation_id = StringBuilder::new();
        let mut metadata = StringBuilder::new();
        let mut data = StringBuilder::new();
        for event in rows {
            position.append_value(i64::try_from(event.position)?);
            stream_id.append_value(&event.stream_id);
            version.append_value(i64::try_from(event.version)?);
            event_type.append_value(&event.event_type);
            schema_version.append_value(i32::try_from(event.schema_version)?);
            occurred_at.append_value(event.occurred_at.timestamp_micros());
            event_id.append_value(event.event_id.to_string());
            actor.append_option(event.metadata.actor.map(|id| id.to_string()));
            correlation_id.append_option(event.metadata.correlation_id.map(|id| id.to_string()));
            causation_id.append_option(event.metadata.causation_id.map(|id| id.to_string()));
            metadata.append_value(serde_json::to_string(&event.metadata)?);
            data.append_value(super::exported_data(event));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(position.finish()),
            Arc::new(stream_id.finish()),
            Arc::new(version.finish()),
            Arc::new(event_type.finish()),
            Arc::new(schema_version.finish()),
            Arc::new(occurred_at.finish()),
            Arc::new(event_id.finish()),
            Arc::new(actor.finish()),
            Arc::new(correlation_id.finish()),
            Arc::new(causation_id.finish()),
            Arc::new(metadata.finish()),
            Arc::new(data.finish()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Export progress on stderr: a bar on a terminal, else nothing until the summary.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(total: u64) -> Self {
        Self(std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("export [{bar:40}] {pos}/{len} positions, {per_sec}, ETA {eta}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar
        }))
    }

    fn set(&self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

async fn stream(store: &dyn EventStore, stream_id: &str, to_version: Option<u64>) -> anyhow::Result<()> {
    let mut recorded = Vec::new();
    loop {
        let page = store.read_stream(stream_id, recorded.len() as u64, PAGE).await?;
        let done = page.len() < PAGE;
        recorded.extend(page.into_iter().filter(|e| to_version.is_none_or(|to| e.version <= to)));
        if done || to_version.is_some_and(|to| recorded.len() as u64 > to) {
            break;
        }
    }
    anyhow::ensure!(!recorded.is_empty(), "stream {stream_id:?} has no events");
    let mut out = std::io::stdout().lock();
    let mut events = Vec::with_capacity(recorded.len());
    for event in &recorded {
        write_envelope(&mut out, event)?;
        events.push(event.decode()?);
    }
    let (aggregate, mut state) = state_of(stream_id, &events);
    redact(&mut state);
    writeln!(out, "{}", json!({ "stream_id": stream_id, "version": recorded.last().map(|e| e.version), "aggregate": aggregate, "state": state }))?;
    Ok(())
}

/// The aggregate a stream belongs to (by its id's prefix) and its state after `events`.
fn state_of(stream_id: &str, events: &[Event]) -> (&'static str, Value) {
    use plaza_domain::{accounts, conversations, feeds, follows, reservation, videos};
    fn fold<A: Aggregate>(events: &[Event]) -> Value {
        serde_json::to_value(A::replay(events)).unwrap_or(Value::Null)
    }
    /// (stream id prefix, aggregate, its fold)
    type Kind = (&'static str, &'static str, fn(&[Event]) -> Value);
    let prefixes: [Kind; 14] = [
        ("user-", "Account", fold::<accounts::Account>),
        ("username-", "Reservation", fold::<reservation::Reservation>),
        ("email-", "Reservation", fold::<reservation::Reservation>),
        ("follow-", "Follow", fold::<follows::Follow>),
        ("video-", "Video", fold::<videos::Video>),
        ("like-", "ReactionState", fold::<videos::ReactionState>),
        ("favorite-", "ReactionState", fold::<videos::ReactionState>),
        ("comment-like-", "ReactionState", fold::<videos::ReactionState>),
        ("comment-", "Comment", fold::<videos::Comment>),
        ("hashtag-", "HashtagPage", fold::<videos::HashtagPage>),
        ("message-", "MessageChanges", fold::<conversations::MessageChanges>),
        ("read-", "ReadMarker", fold::<conversations::ReadMarker>),
        ("recommendations-", "Recommendations", fold::<feeds::Recommendations>),
        ("conversation-", "Conversation", fold::<conversations::Conversation>),
    ];
    if stream_id.starts_with("conversation-") && stream_id.ends_with("-messages") {
        return ("Messages", json!({ "messages": events.len() }));
    }
    // The longest matching prefix (comment-like- before comment-).
    match prefixes.iter().filter(|(prefix, _, _)| stream_id.starts_with(prefix)).max_by_key(|(prefix, _, _)| prefix.len()) {
        Some((_, name, fold)) => (name, fold(events)),
        None => ("none", json!({ "events": events.len() })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_never_leave() {
        let mut value = json!({ "user_id": "u", "password_hash": "$argon2id$...", "nested": [{ "password_hash": "x" }] });
        redact(&mut value);
        assert_eq!(value, json!({ "user_id": "u", "password_hash": "[redacted]", "nested": [{ "password_hash": "[redacted]" }] }));
    }

    #[test]
    fn a_range_from_after_its_end_is_refused() {
        let range = Range { from_position: Some(5), to_position: Some(4), ..Default::default() };
        assert!(range.check().unwrap_err().to_string().contains("--from-position (5) is after --to-position (4)"));
    }
}

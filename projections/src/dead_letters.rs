//! Dead letters: an event a projection keeps failing on is parked, with its error, so
//! the projection goes on; later events of the same stream are parked behind it, so
//! that stream's order holds when they are retried. Other streams go on.
//!
//! Parking happens in the applying transaction: the adapter reads which streams of the
//! generation have dead letters ([`PARKED_STREAMS`]) and [`plan`] turns each event of
//! those streams into a dead letter instead of its statements. A retry applies the
//! parked events in position order and deletes their rows in the same transaction
//! ([`retry`]); while a stream still has one, new events of it keep queueing behind.

use std::collections::HashSet;

use plaza_domain::{EventStore, RecordedEvent};
use serde::Serialize;

use crate::generations::{Step, Tables};
use crate::{Projection, ReadModelDb, ReadModelError, SqlValue, Statement};

/// What one event changes in a projection's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub position: u64,
    pub stream_id: String,
    pub event_type: String,
    pub statements: Vec<Statement>,
    /// The statements park the event as a dead letter instead of applying it.
    pub dead_letter: bool,
}

impl Changes {
    /// What `envelope` changes in `projection`; none when this build cannot decode it
    /// (written by a newer Plaza: skipped rather than stopping the read model).
    pub fn of(projection: &dyn Projection, envelope: &RecordedEvent) -> Self {
        // With the command's correlation id (its request's `X-Request-Id`) in the logs.
        // (Only when debug logs are on: a rebuild projects a million events.)
        let _span = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            let correlation_id = envelope.metadata.correlation_id.map(|id| id.to_string());
            let span = tracing::debug_span!("project", projection = projection.name(), position = envelope.position, correlation_id).entered();
            tracing::debug!(event_type = %envelope.event_type, stream = %envelope.stream_id, "projecting event");
            span
        });
        let mut statements = Vec::new();
        match envelope.decode() {
            Ok(event) => projection.apply(&event, envelope, &mut statements),
            Err(error) => tracing::warn!(projection = projection.name(), position = envelope.position, %error, "skipping undecodable event"),
        }
        Self {
            position: envelope.position,
            stream_id: envelope.stream_id.clone(),
            event_type: envelope.event_type.clone(),
            statements,
            dead_letter: false,
        }
    }

    /// This event parked as a dead letter of `tables`' generation instead of applied.
    pub fn parked(&self, tables: &Tables, state: &str, error: &str, attempts: u32) -> Self {
        let park = Statement::new(
            "INSERT INTO dead_letters (projection, generation, position, stream_id, event_type, state, error, attempts, parked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            [
                tables.projection().into(),
                SqlValue::Int(tables.generation() as i64),
                SqlValue::Int(self.position as i64),
                self.stream_id.as_str().into(),
                self.event_type.as_str().into(),
                state.into(),
                error.into(),
                SqlValue::Int(attempts.into()),
                SqlValue::Int(crate::generations::now_millis()),
            ],
        );
        Self {
            position: self.position,
            stream_id: self.stream_id.clone(),
            event_type: self.event_type.clone(),
            statements: vec![park],
            dead_letter: true,
        }
    }
}

/// A dead letter's state: the event that failed, or one queued behind it.
pub const FAILED: &str = "failed";
pub const BLOCKED: &str = "blocked";

/// The streams of a generation (`$1` projection, `$2` generation) with dead letters.
pub const PARKED_STREAMS: &str = "SELECT DISTINCT stream_id FROM dead_letters WHERE projection = $1 AND generation = $2";

/// The statements that apply `changes`, events of a parked stream parked behind it.
pub fn plan(tables: &Tables, changes: Vec<Changes>, parked: &mut HashSet<String>) -> Vec<Statement> {
    let mut statements = Vec::with_capacity(changes.iter().map(|change| change.statements.len()).sum());
    for change in changes {
        let change = match parked.contains(&change.stream_id) {
            true => change.parked(tables, BLOCKED, "an earlier event of its stream is a dead letter", 0),
            false => change,
        };
        if change.dead_letter {
            parked.insert(change.stream_id.clone());
        }
        statements.extend(change.statements);
    }
    statements
}

/// One row of `dead_letters`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub projection: String,
    pub generation: u64,
    pub position: u64,
    pub stream_id: String,
    pub event_type: String,
    pub state: String,
    pub error: String,
    pub attempts: u64,
    /// Unix milliseconds.
    pub parked_at: i64,
}

const LIST: &str = "SELECT d.projection, d.generation, d.position, d.stream_id, d.event_type, d.state, d.error, d.attempts, d.parked_at
     FROM dead_letters d JOIN projection_generations g ON g.projection = d.projection AND g.generation = d.generation AND g.state = 'live'
     ORDER BY d.projection, d.position";

/// The dead letters of every projection's live generation, in position order.
pub async fn list(db: &dyn ReadModelDb) -> Result<Vec<DeadLetter>, ReadModelError> {
    db.query(LIST, vec![])
        .await?
        .iter()
        .map(|row| {
            Ok(DeadLetter {
                projection: row.text(0)?.to_owned(),
                generation: row.int(1)? as u64,
                position: row.int(2)? as u64,
                stream_id: row.text(3)?.to_owned(),
                event_type: row.text(4)?.to_owned(),
                state: row.text(5)?.to_owned(),
                error: row.text(6)?.to_owned(),
                attempts: row.int(7)? as u64,
                parked_at: row.int(8)?,
            })
        })
        .collect()
}

/// Which dead letters a retry or skip takes: one (by position) or all of a projection.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    One(u64),
    All,
}

fn selected(letters: Vec<DeadLetter>, projection: &str, selection: Selection) -> Vec<DeadLetter> {
    let wanted = |d: &DeadLetter| match selection {
        Selection::All => true,
        Selection::One(position) => d.position == position,
    };
    letters.into_iter().filter(|d| d.projection == projection && wanted(d)).collect()
}

/// What a retry did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RetryOutcome {
    pub applied: u64,
    /// Still parked: failed again, or behind one that did.
    pub still_parked: u64,
    pub errors: Vec<String>,
}

/// Applies the selected dead letters of `projection`'s live generation in position order,
/// each in a transaction that deletes its row; a stream whose letter fails again keeps
/// the rest of its letters. Events parked behind meanwhile are taken too.
pub async fn retry(
    db: &dyn ReadModelDb,
    store: &dyn EventStore,
    projection: &dyn Projection,
    selection: Selection,
) -> Result<RetryOutcome, ReadModelError> {
    let mut outcome = RetryOutcome::default();
    let mut failed_streams = HashSet::new();
    let mut tried = HashSet::new();
    loop {
        let letters: Vec<DeadLetter> = selected(list(db).await?, projection.name(), selection)
            .into_iter()
            .filter(|d| !tried.contains(&d.position) && !failed_streams.contains(&d.stream_id))
            .collect();
        let Some(letter) = letters.into_iter().next() else { break };
        tried.insert(letter.position);
        let envelope = store.read_all(letter.position - 1, 1).await.map_err(|e| ReadModelError::Database(e.to_string()))?;
        let Some(envelope) = envelope.into_iter().find(|e| e.position == letter.position) else {
            return Err(ReadModelError::Database(format!("the event store has no event at position {}", letter.position)));
        };
        let tables = Tables::of(projection, letter.generation);
        let changes = Changes::of(projection, &envelope);
        let key = [projection.name().into(), SqlValue::Int(letter.generation as i64), SqlValue::Int(letter.position as i64)];
        let mut steps = vec![
            // Still the live generation (and holds its row, as applies do).
            Step::require(Statement::new(
                "UPDATE projection_generations SET position = position WHERE projection = $1 AND generation = $2 AND state = 'live'",
                [key[0].clone(), key[1].clone()],
            )),
            Step::require(Statement::new("DELETE FROM dead_letters WHERE projection = $1 AND generation = $2 AND position = $3", key.clone())),
        ];
        steps.extend(changes.statements.iter().map(|s| Step::run(Statement::owned(tables.sql(s).to_string(), s.params.clone()))));
        match db.transact(steps).await {
            Ok(true) => outcome.applied += 1,
            Ok(false) => {}
            Err(error) => {
                outcome.errors.push(format!("position {}: {error}", letter.position));
                failed_streams.insert(letter.stream_id.clone());
                let note = Statement::new(
                    "UPDATE dead_letters SET state = 'failed', error = $4, attempts = attempts + 1 WHERE projection = $1 AND generation = $2 AND position = $3",
                    [key[0].clone(), key[1].clone(), key[2].clone(), error.to_string().into()],
                );
                db.execute(note).await?;
            }
        }
        if let Selection::One(_) = selection {
            break;
        }
    }
    outcome.still_parked = selected(list(db).await?, projection.name(), Selection::All).len() as u64;
    Ok(outcome)
}

/// Deletes the selected dead letters without applying them; returns how many. The
/// events stay in the event store; the read model goes on without them.
pub async fn skip(db: &dyn ReadModelDb, projection: &str, selection: Selection) -> Result<u64, ReadModelError> {
    let mut skipped = 0;
    for letter in selected(list(db).await?, projection, selection) {
        skipped += db
            .execute(Statement::new(
                "DELETE FROM dead_letters WHERE projection = $1 AND generation = $2 AND position = $3",
                [projection.into(), SqlValue::Int(letter.generation as i64), SqlValue::Int(letter.position as i64)],
            ))
            .await?;
    }
    Ok(skipped)
}

/// How many dead letters a retry of `selection` would replay now.
pub async fn count(db: &dyn ReadModelDb, projection: &str, selection: Selection) -> Result<u64, ReadModelError> {
    Ok(selected(list(db).await?, projection, selection).len() as u64)
}

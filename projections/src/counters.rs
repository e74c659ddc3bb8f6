//! The `counters` read model: every counter's value (views, generic counters), and for
//! each `counters-{shard}` stream the last version applied, which the write side's
//! counter batcher reads with a value to know which increments the value includes.

use std::collections::BTreeMap;

use plaza_domain::{Event, RecordedEvent};

use crate::{Projection, SqlValue, Statement};

pub struct CountersProjection;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS counters (
        resource_id TEXT NOT NULL,
        counter_type TEXT NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (resource_id, counter_type)
    )",
    "CREATE INDEX IF NOT EXISTS counters_by_type ON counters (counter_type, value)",
    "CREATE TABLE IF NOT EXISTS counter_streams (stream_id TEXT PRIMARY KEY, version BIGINT NOT NULL)",
];

/// A counter's value and the version of its shard's stream that value includes, read in
/// one statement (one snapshot). `$1` shard stream, `$2` resource, `$3` counter type.
pub const BASELINE: &str = "SELECT (SELECT version FROM counter_streams WHERE stream_id = $1),
        (SELECT value FROM counters WHERE resource_id = $2 AND counter_type = $3)";

impl Projection for CountersProjection {
    fn name(&self) -> &'static str {
        "counters"
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let Event::CountersIncremented { increments } = event else { return };
        // One statement per counter of the batch, however many requests hit it.
        let mut sums: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for increment in increments {
            *sums.entry((increment.resource_id.as_str(), increment.counter_type.as_str())).or_default() += increment.delta;
        }
        for ((resource_id, counter_type), delta) in sums {
            out.push(Statement::new(
                "INSERT INTO counters (resource_id, counter_type, value) VALUES ($1, $2, $3)
                 ON CONFLICT (resource_id, counter_type) DO UPDATE SET value = counters.value + excluded.value",
                [resource_id.into(), counter_type.into(), SqlValue::Int(delta)],
            ));
        }
        out.push(Statement::new(
            "INSERT INTO counter_streams (stream_id, version) VALUES ($1, $2) ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
            [envelope.stream_id.as_str().into(), SqlValue::Int(envelope.version as i64)],
        ));
    }
}

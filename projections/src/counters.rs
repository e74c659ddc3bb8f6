//! The `counters` read model: every counter's value (views, generic counters), and for
//! each `counters-{shard}` stream the last version applied, which the write side's
//! counter batcher reads with a value to know which increments the value includes.

use std::collections::BTreeMap;

use plaza_domain::counters::CounterKey;
use plaza_domain::{Event, Increment, RecordedEvent};

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

/// Adds `$3` to a counter, stopping at the bounds of i64 as the write side's totals do
/// (they only get there when writers of several processes race at a bound; the write
/// side refuses any other increment that would cross one). Nested CASEs, because SQL
/// does not promise to evaluate `AND` left to right, and the subtraction guarding one
/// sign would overflow for the other.
const ADD: &str = "INSERT INTO counters (resource_id, counter_type, value) VALUES ($1, $2, $3)
    ON CONFLICT (resource_id, counter_type) DO UPDATE SET value = CASE
        WHEN excluded.value > 0 THEN
            CASE WHEN counters.value > 9223372036854775807 - excluded.value THEN 9223372036854775807 ELSE counters.value + excluded.value END
        ELSE
            CASE WHEN counters.value < (-9223372036854775807 - 1) - excluded.value THEN -9223372036854775807 - 1 ELSE counters.value + excluded.value END
    END";

impl Projection for CountersProjection {
    fn name(&self) -> &'static str {
        "counters"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["counters_by_type"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let Event::CountersIncremented { increments } = event else { return };
        // One statement per counter of the batch, however many requests hit it. Increments
        // that break the rules are skipped, as the write side skips them.
        let mut sums: BTreeMap<CounterKey, i64> = BTreeMap::new();
        for (key, delta) in increments.iter().filter_map(Increment::checked) {
            let sum = sums.entry(key).or_default();
            *sum = sum.saturating_add(delta);
        }
        for (key, delta) in sums {
            out.push(Statement::new(ADD, [key.resource_id().into(), key.counter_type().into(), SqlValue::Int(delta)]));
        }
        out.push(Statement::new(
            "INSERT INTO counter_streams (stream_id, version) VALUES ($1, $2) ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
            [envelope.stream_id.as_str().into(), SqlValue::Int(envelope.version as i64)],
        ));
    }
}

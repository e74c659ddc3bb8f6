//! A projection for tests only (`test_poison_projection = true`): it fails on a profile
//! update whose bio is "poison" until its `poison_fixes` table holds a row, which is how
//! the end-to-end tests make an event fail and then fix the projection. It logs every
//! profile update it applies, numbered in the order applied.

use plaza_domain::{Event, RecordedEvent};

use crate::{Projection, SqlValue, Statement};

pub struct PoisonTestProjection;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS poison_log (
        seq BIGINT PRIMARY KEY,
        position BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        bio TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS poison_fixes (fixed BIGINT NOT NULL)",
];

impl Projection for PoisonTestProjection {
    fn name(&self) -> &'static str {
        "poison_test"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        if let Event::ProfileUpdated { user_id, bio, .. } = event {
            // A NULL bio breaks the NOT NULL constraint: the "poison".
            out.push(Statement::new(
                "INSERT INTO poison_log (seq, position, user_id, bio)
                 SELECT COALESCE(MAX(seq), 0) + 1, CAST($1 AS BIGINT), CAST($2 AS TEXT),
                        CASE WHEN CAST($3 AS TEXT) = 'poison' AND NOT EXISTS (SELECT 1 FROM poison_fixes) THEN NULL ELSE CAST($3 AS TEXT) END
                 FROM poison_log",
                [SqlValue::Int(envelope.position as i64), SqlValue::Text(user_id.to_string()), SqlValue::Text(bio.clone().unwrap_or_default())],
            ));
        }
    }
}

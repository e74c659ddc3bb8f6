//! What each projector says of itself: how many events it applied in the last minute,
//! whether it is failing and its last error. Kept in memory and written to
//! `projection_health` every few seconds, one row per projector (process), so
//! `plaza projections status` in another process can read it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{ReadModelDb, SqlValue, Statement};

/// How often a projector writes its row.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Rows older than this belong to projectors that are gone.
pub const REPORT_STALE_MS: i64 = 30_000;

const UPSERT: &str = "INSERT INTO projection_health (projection, reporter, events_last_minute, failing, last_error, last_error_at, reported_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (projection, reporter) DO UPDATE SET events_last_minute = excluded.events_last_minute, failing = excluded.failing,
         last_error = excluded.last_error, last_error_at = excluded.last_error_at, reported_at = excluded.reported_at";

pub struct Health {
    projection: &'static str,
    reporter: String,
    /// Events applied, per batch, in the last minute.
    applied: VecDeque<(Instant, u64)>,
    failing: bool,
    last_error: Option<(String, i64)>,
    reported: Option<Instant>,
}

impl Health {
    pub fn new(projection: &'static str) -> Self {
        let reporter = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Self { projection, reporter, applied: VecDeque::new(), failing: false, last_error: None, reported: None }
    }

    /// A batch of `events` committed.
    pub fn applied(&mut self, events: u64) {
        self.applied.push_back((Instant::now(), events));
        self.failing = false;
        metrics::counter!("plaza_projection_events_applied_total", "projection" => self.projection).increment(events);
    }

    /// An attempt failed (reported at the next [`report`](Self::report), however soon).
    pub fn failed(&mut self, error: &impl std::fmt::Display) {
        metrics::counter!("plaza_projection_failures_total", "projection" => self.projection).increment(1);
        self.failing = true;
        self.reported = None;
        self.last_error = Some((error.to_string(), crate::generations::now_millis()));
    }

    pub fn events_last_minute(&mut self) -> u64 {
        while self.applied.front().is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(60)) {
            self.applied.pop_front();
        }
        self.applied.iter().map(|(_, n)| n).sum()
    }

    /// Writes this projector's row if the last write is [`REPORT_EVERY`] old or an
    /// attempt failed since; a failure to write is only logged.
    pub async fn report(&mut self, db: &dyn ReadModelDb) {
        if self.reported.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            return;
        }
        self.reported = Some(Instant::now());
        let (error, error_at) = match &self.last_error {
            Some((error, at)) => (SqlValue::Text(error.clone()), SqlValue::Int(*at)),
            None => (SqlValue::Null, SqlValue::Null),
        };
        let params = [
            self.projection.into(),
            self.reporter.as_str().into(),
            SqlValue::Int(self.events_last_minute() as i64),
            SqlValue::Int(self.failing.into()),
            error,
            error_at,
            SqlValue::Int(crate::generations::now_millis()),
        ];
        if let Err(error) = db.execute(Statement::new(UPSERT, params)).await {
            tracing::debug!(projection = self.projection, %error, "cannot report the projector's health");
        }
    }
}

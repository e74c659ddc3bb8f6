//! The `searches` read model: each signed-in user's search history, and the hot
//! searches of everyone's.
//!
//! **History.** One row per user and query (`search_history`), stamped with when it was
//! last searched; the newest [`HISTORY_KEPT`] per user are kept. Clearing a query, or
//! all of it, deletes rows. A user's searches and clearings are one stream
//! (`searches-{user}`), so they arrive in order.
//!
//! **Hot searches.** Searchers are counted per query and hour of the day they searched
//! (`search_hot`), each user once per query and hour: `search_searchers` remembers who
//! was counted, so one client repeating a query counts once an hour whatever it sends.
//! The read side weighs each hour by its age ([`hot_weights`]). Hours older than
//! [`HOT_WINDOW_HOURS`] are dropped at every [`TRIM_EVERY`]th position, relative to that
//! event's time (so a replay trims alike). Clearing one's history does not take one's
//! searches out of the counts: they are anonymous there.

use plaza_domain::{Event, RecordedEvent};

use crate::{Projection, SqlValue, Statement};

pub struct SearchesProjection;

/// Queries kept in each user's history.
pub const HISTORY_KEPT: i64 = 100;
/// Hot searches count the searches of this many hours.
pub const HOT_WINDOW_HOURS: i64 = 24;
/// An hour's searchers weigh half as much this many hours later.
pub const HOT_HALF_LIFE_HOURS: f64 = 6.0;
const TRIM_EVERY: u64 = 256;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS search_history (
        user_id TEXT NOT NULL,
        query TEXT NOT NULL,
        searched_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, query)
    )",
    "CREATE INDEX IF NOT EXISTS search_history_by_time ON search_history (user_id, searched_at)",
    "CREATE TABLE IF NOT EXISTS search_hot (
        query TEXT NOT NULL,
        hour BIGINT NOT NULL,
        searchers BIGINT NOT NULL,
        PRIMARY KEY (query, hour)
    )",
    "CREATE INDEX IF NOT EXISTS search_hot_by_hour ON search_hot (hour)",
    "CREATE TABLE IF NOT EXISTS search_searchers (
        query TEXT NOT NULL,
        hour BIGINT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (query, hour, user_id)
    )",
    "CREATE INDEX IF NOT EXISTS search_searchers_by_hour ON search_searchers (hour)",
];

const REMEMBER: &str = "INSERT INTO search_history (user_id, query, searched_at) VALUES ($1, $2, $3)
     ON CONFLICT (user_id, query) DO UPDATE SET searched_at = excluded.searched_at";
/// Forgets the user's queries older than their [`HISTORY_KEPT`]th newest.
const FORGET_OLDEST: &str = "DELETE FROM search_history WHERE user_id = $1 AND searched_at <
     (SELECT searched_at FROM search_history WHERE user_id = $1 ORDER BY searched_at DESC LIMIT 1 OFFSET $2)";
/// Counts user `$3` among query `$1`'s searchers of hour `$2`, unless counted already.
const COUNT_SEARCHER: &str = "INSERT INTO search_hot (query, hour, searchers)
     SELECT $1, $2, 1 WHERE NOT EXISTS (SELECT 1 FROM search_searchers WHERE query = $1 AND hour = $2 AND user_id = $3)
     ON CONFLICT (query, hour) DO UPDATE SET searchers = search_hot.searchers + 1";
const REMEMBER_SEARCHER: &str =
    "INSERT INTO search_searchers (query, hour, user_id) VALUES ($1, $2, $3) ON CONFLICT (query, hour, user_id) DO NOTHING";

/// The weight of searchers `age` hours old (0: this hour), in thousandths: halved every
/// [`HOT_HALF_LIFE_HOURS`], for ages 0 to [`HOT_WINDOW_HOURS`].
pub fn hot_weights() -> Vec<i64> {
    (0..=HOT_WINDOW_HOURS).map(|age| (1000.0 * 0.5f64.powf(age as f64 / HOT_HALF_LIFE_HOURS)).round() as i64).collect()
}

/// The hour (since the epoch) of a time in Unix microseconds.
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_HOUR)
}

fn text(value: impl ToString) -> SqlValue {
    SqlValue::Text(value.to_string())
}

impl Projection for SearchesProjection {
    fn name(&self) -> &'static str {
        "searches"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["search_hot_by_hour"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let at = envelope.occurred_at.timestamp_micros();
        match event {
            Event::SearchPerformed { user_id, query, .. } => {
                out.push(Statement::new(REMEMBER, [text(user_id), text(query), SqlValue::Int(at)]));
                out.push(Statement::new(FORGET_OLDEST, [text(user_id), SqlValue::Int(HISTORY_KEPT - 1)]));
                let searcher = [text(query), SqlValue::Int(hour_of(at)), text(user_id)];
                out.push(Statement::new(COUNT_SEARCHER, searcher.clone()));
                out.push(Statement::new(REMEMBER_SEARCHER, searcher));
            }
            Event::SearchHistoryCleared { user_id, query: Some(query) } => {
                out.push(Statement::new("DELETE FROM search_history WHERE user_id = $1 AND query = $2", [text(user_id), text(query)]));
            }
            Event::SearchHistoryCleared { user_id, query: None } => {
                out.push(Statement::new("DELETE FROM search_history WHERE user_id = $1", [text(user_id)]));
            }
            _ => {}
        }
        if envelope.position.is_multiple_of(TRIM_EVERY) {
            let oldest = SqlValue::Int(hour_of(at) - HOT_WINDOW_HOURS);
            out.push(Statement::new("DELETE FROM search_hot WHERE hour < $1", [oldest.clone()]));
            out.push(Statement::new("DELETE FROM search_searchers WHERE hour < $1", [oldest]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_weigh_half_as_much_every_six_hours() {
        let weights = hot_weights();
        assert_eq!((weights[0], weights[6], weights[12], weights[24]), (1000, 500, 250, 63));
        assert_eq!(weights.len(), 25);
    }

    #[test]
    fn hours_count_from_the_epoch() {
        assert_eq!((hour_of(0), hour_of(MICROS_PER_HOUR - 1), hour_of(MICROS_PER_HOUR), hour_of(-1)), (0, 0, 1, -1));
    }
}

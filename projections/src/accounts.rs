//! The `accounts` read model: `users` (profiles), `user_counts` (follower and
//! following counts) and `follows` (edges). One projection owns the three tables so
//! counts and edges always agree.
//!
//! Each table row is written by one stream's events only, or by increments that
//! commute: Kafka keeps one stream's events in order but interleaves streams
//! differently from the log, so a follow may be applied before its followee's
//! registration. Counts therefore live apart from profiles, as upserted increments.

use plaza_domain::{Event, RecordedEvent};

use crate::{Projection, SqlValue, Statement};

pub struct AccountsProjection;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT,
        bio TEXT,
        avatar_url TEXT,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS user_counts (
        user_id TEXT PRIMARY KEY,
        followers_count BIGINT NOT NULL DEFAULT 0,
        following_count BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS follows (
        follower_id TEXT NOT NULL,
        followee_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (follower_id, followee_id)
    )",
    "CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee_id, position)",
    "CREATE INDEX IF NOT EXISTS follows_by_follower ON follows (follower_id, position)",
];

fn text(value: impl ToString) -> SqlValue {
    SqlValue::Text(value.to_string())
}

/// Adds `$2` followers and `$3` followings to user `$1`. One text for both counts, so a
/// batch's count changes go in a few multi-row statements ([`crate::coalesce`]).
const ADD_COUNTS: &str = "INSERT INTO user_counts (user_id, followers_count, following_count) VALUES ($1, $2, $3)
     ON CONFLICT (user_id) DO UPDATE SET followers_count = user_counts.followers_count + excluded.followers_count,
                                         following_count = user_counts.following_count + excluded.following_count";

/// Adds `delta` to the follower's following count and the followee's follower count.
fn count_follow(follower: &impl std::fmt::Display, followee: &impl std::fmt::Display, delta: i64) -> [Statement; 2] {
    [
        Statement::new(ADD_COUNTS, [text(follower), SqlValue::Int(0), SqlValue::Int(delta)]),
        Statement::new(ADD_COUNTS, [text(followee), SqlValue::Int(delta), SqlValue::Int(0)]),
    ]
}

impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["follows_by_followee", "follows_by_follower"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let at = SqlValue::Int(envelope.occurred_at.timestamp_micros());
        match event {
            Event::UserRegistered { user_id, username, .. } => out.push(Statement::new(
                "INSERT INTO users (id, username, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                [text(user_id), text(username), at],
            )),
            Event::ProfileUpdated { user_id, display_name, bio, avatar_url } => out.push(Statement::new(
                "UPDATE users SET display_name = $2, bio = $3, avatar_url = $4 WHERE id = $1",
                [text(user_id), display_name.as_deref().into(), bio.as_deref().into(), avatar_url.as_deref().into()],
            )),
            Event::UserFollowed { follower_id, followee_id } => {
                out.push(Statement::new(
                    "INSERT INTO follows (follower_id, followee_id, position, created_at) VALUES ($1, $2, $3, $4)",
                    [text(follower_id), text(followee_id), SqlValue::Int(envelope.position as i64), at],
                ));
                out.extend(count_follow(follower_id, followee_id, 1));
            }
            Event::UserUnfollowed { follower_id, followee_id } => {
                out.push(Statement::new("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2", [text(follower_id), text(followee_id)]));
                out.extend(count_follow(follower_id, followee_id, -1));
            }
            _ => {}
        }
    }
}

//! The `accounts` read model: `users` (profile and follow counts) and `follows`.
//! One projection owns both tables so counts and edges always agree.

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
        followers_count BIGINT NOT NULL DEFAULT 0,
        following_count BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
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

impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
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
            Event::UserFollowed { follower_id, followee_id } => out.extend([
                Statement::new(
                    "INSERT INTO follows (follower_id, followee_id, position, created_at) VALUES ($1, $2, $3, $4)",
                    [text(follower_id), text(followee_id), SqlValue::Int(envelope.position as i64), at],
                ),
                Statement::new("UPDATE users SET following_count = following_count + 1 WHERE id = $1", [text(follower_id)]),
                Statement::new("UPDATE users SET followers_count = followers_count + 1 WHERE id = $1", [text(followee_id)]),
            ]),
            Event::UserUnfollowed { follower_id, followee_id } => out.extend([
                Statement::new("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2", [text(follower_id), text(followee_id)]),
                Statement::new("UPDATE users SET following_count = following_count - 1 WHERE id = $1", [text(follower_id)]),
                Statement::new("UPDATE users SET followers_count = followers_count - 1 WHERE id = $1", [text(followee_id)]),
            ]),
            Event::UsernameReserved { .. } | Event::UsernameReleased { .. } | Event::EmailReserved { .. } | Event::EmailReleased { .. } => {}
        }
    }
}

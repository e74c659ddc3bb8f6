//! The `feeds` read model: per-user timelines for the FOLLOWING feed, and the viewers'
//! recommendation seeds.
//!
//! Fan-out on write: a published video is inserted into the timeline of each of its
//! author's followers, in the projector's transaction, unless the author has
//! [`Settings::fanout_limit`] followers or more at that moment. Such a video is marked
//! `fanned_out = 0` and not copied: the read side pulls those videos of the authors a
//! viewer follows from `feed_videos`, so one post never writes millions of rows inline,
//! and an author whose follower count later drops keeps every video in the feeds.
//! Following someone copies their latest videos into the timeline; unfollowing removes
//! them.
//!
//! The projection keeps its own copies of follows and videos (`feed_follows`,
//! `feed_videos`): a projection reads only its own tables, whatever the others have
//! applied. Follows and videos are different streams, so either may be applied first;
//! both orders fill the timeline the same way (the follow copies the video, or the video
//! is fanned out to the follow). The fan-out decision reads the author's follower count
//! at the moment the video is applied.

use plaza_domain::{Event, RecordedEvent};

use crate::{Projection, SqlValue, Statement};

/// How the feeds are built.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Authors with this many followers or more are not fanned out on write.
    pub fanout_limit: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { fanout_limit: 1000 }
    }
}

/// Videos of a followee copied into a new follower's timeline.
pub const BACKFILL: i64 = 50;

pub struct FeedsProjection {
    pub settings: Settings,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS feed_follows (
        follower_id TEXT NOT NULL,
        followee_id TEXT NOT NULL,
        PRIMARY KEY (follower_id, followee_id)
    )",
    "CREATE INDEX IF NOT EXISTS feed_follows_by_followee ON feed_follows (followee_id)",
    "CREATE TABLE IF NOT EXISTS feed_follower_counts (user_id TEXT PRIMARY KEY, followers BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS feed_videos (
        id TEXT PRIMARY KEY,
        author_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        fanned_out BIGINT NOT NULL,
        deleted BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS feed_videos_by_author ON feed_videos (author_id, fanned_out, position)",
    "CREATE TABLE IF NOT EXISTS timelines (
        user_id TEXT NOT NULL,
        video_id TEXT NOT NULL,
        author_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (user_id, video_id)
    )",
    "CREATE INDEX IF NOT EXISTS timelines_by_position ON timelines (user_id, position)",
    "CREATE INDEX IF NOT EXISTS timelines_by_video ON timelines (video_id)",
    "CREATE TABLE IF NOT EXISTS recommendation_seeds (user_id TEXT PRIMARY KEY, seed BIGINT NOT NULL)",
];

/// Adds `$2` followers to user `$1` (one text for follows and unfollows, so a batch's
/// changes add up, [`crate::coalesce`]).
const ADD_FOLLOWERS: &str = "INSERT INTO feed_follower_counts (user_id, followers) VALUES ($1, $2)
     ON CONFLICT (user_id) DO UPDATE SET followers = feed_follower_counts.followers + excluded.followers";

fn text(value: impl ToString) -> SqlValue {
    SqlValue::Text(value.to_string())
}

impl Projection for FeedsProjection {
    fn name(&self) -> &'static str {
        "feeds"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["timelines_by_position"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        match event {
            Event::UserFollowed { follower_id, followee_id } => out.extend([
                Statement::new("INSERT INTO feed_follows (follower_id, followee_id) VALUES ($1, $2)", [text(follower_id), text(followee_id)]),
                Statement::new(ADD_FOLLOWERS, [text(followee_id), SqlValue::Int(1)]),
                Statement::new(
                    "INSERT INTO timelines (user_id, video_id, author_id, position)
                     SELECT CAST($1 AS TEXT), id, author_id, position FROM feed_videos WHERE author_id = $2 AND deleted = 0
                     ORDER BY position DESC LIMIT $3
                     ON CONFLICT (user_id, video_id) DO NOTHING",
                    [text(follower_id), text(followee_id), SqlValue::Int(BACKFILL)],
                ),
            ]),
            Event::UserUnfollowed { follower_id, followee_id } => out.extend([
                Statement::new("DELETE FROM feed_follows WHERE follower_id = $1 AND followee_id = $2", [text(follower_id), text(followee_id)]),
                Statement::new(ADD_FOLLOWERS, [text(followee_id), SqlValue::Int(-1)]),
                Statement::new("DELETE FROM timelines WHERE user_id = $1 AND author_id = $2", [text(follower_id), text(followee_id)]),
            ]),
            Event::VideoPublished { video_id, author_id, .. } => {
                let position = SqlValue::Int(envelope.position as i64);
                out.extend([
                    Statement::new(
                        "INSERT INTO feed_videos (id, author_id, position, fanned_out)
                         VALUES ($1, $2, $3, CASE WHEN COALESCE((SELECT followers FROM feed_follower_counts WHERE user_id = $2), 0) < $4 THEN 1 ELSE 0 END)",
                        [text(video_id), text(author_id), position.clone(), SqlValue::Int(self.settings.fanout_limit)],
                    ),
                    Statement::new(
                        "INSERT INTO timelines (user_id, video_id, author_id, position)
                         SELECT follower_id, CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT) FROM feed_follows
                         WHERE followee_id = $2 AND (SELECT fanned_out FROM feed_videos WHERE id = $1) = 1
                         ON CONFLICT (user_id, video_id) DO NOTHING",
                        [text(video_id), text(author_id), position],
                    ),
                ]);
            }
            Event::VideoDeleted { video_id, .. } => out.extend([
                Statement::new("UPDATE feed_videos SET deleted = 1 WHERE id = $1", [text(video_id)]),
                Statement::new("DELETE FROM timelines WHERE video_id = $1", [text(video_id)]),
            ]),
            Event::RecommendationsRefreshed { user_id, seed } => out.push(Statement::new(
                "INSERT INTO recommendation_seeds (user_id, seed) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET seed = excluded.seed",
                [text(user_id), SqlValue::Int(*seed as i64)],
            )),
            _ => {}
        }
    }
}

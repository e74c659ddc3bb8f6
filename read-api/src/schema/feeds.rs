//! `feed(kind: FOLLOWING | HOT | RECOMMENDED)`. How each is built is in
//! docs/architecture.md ("Feeds").

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, Object, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use plaza_projections::SqlValue;

use super::content::{Video, VideoConnection, count, video_from_row, video_page, videos_by_id, viewer};
use super::{ConnectionFields, bad_request, db, decode_cursor, page_size};
use crate::Viewer;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum FeedKind {
    /// Newest videos of the people the viewer follows.
    Following,
    /// Time-decayed engagement over the last 7 days.
    Hot,
    /// Personalised for the viewer (HOT for anonymous viewers).
    Recommended,
}

/// HOT ranks live videos of the last `HOT_WINDOW_DAYS` days, at most `HOT_CANDIDATES`
/// of the newest.
const HOT_WINDOW_DAYS: i64 = 7;
const HOT_CANDIDATES: i64 = 2000;

/// The HOT score of a video `age_hours` old:
/// `(1 + likes + 2 comments + 3 favorites + views / 10) / (age_hours + 2)^1.5`,
/// Hacker News' gravity over Plaza's kinds of engagement.
pub fn hot_score(likes: i64, comments: i64, favorites: i64, views: i64, age_hours: f64) -> f64 {
    let engagement = 1.0 + likes as f64 + 2.0 * comments as f64 + 3.0 * favorites as f64 + views as f64 / 10.0;
    engagement / (age_hours.max(0.0) + 2.0).powf(1.5)
}

/// A ranked list's cursor: the ranking's parameter (HOT's clock, RECOMMENDED's seed)
/// and the last item's score and id, so later pages rank the same way.
struct RankCursor {
    kind: char,
    parameter: i64,
    score: f64,
    id: String,
}

impl RankCursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}:{}:{}", self.kind, self.parameter, self.score.to_bits(), self.id))
    }

    fn decode(kind: char, cursor: &str) -> Result<Self> {
        let invalid = || bad_request("`after` is not a cursor of this feed", "invalid_cursor");
        let text = URL_SAFE_NO_PAD.decode(cursor).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
        let mut parts = text.splitn(4, ':');
        let (Some(k), Some(parameter), Some(score), Some(id)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        if k != kind.to_string() {
            return Err(invalid());
        }
        let parameter = parameter.parse().map_err(|_| invalid())?;
        let score = f64::from_bits(score.parse().map_err(|_| invalid())?);
        Ok(Self { kind, parameter, score, id: id.to_owned() })
    }
}

/// Sorts by score, highest first, then id.
fn rank(ranked: &mut [(f64, Video)]) {
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
}

/// The page after the cursor of a list sorted by [`rank`].
fn ranked_page(kind: char, parameter: i64, ranked: &[(f64, Video)], first: Option<i32>, after: Option<&RankCursor>) -> Result<VideoConnection> {
    let total = ranked.len() as i64;
    let start = match after {
        Some(cursor) => ranked
            .iter()
            .position(|(score, video)| score.total_cmp(&cursor.score).is_lt() || (*score == cursor.score && video.id.as_str() > cursor.id.as_str()))
            .unwrap_or(ranked.len()),
        None => 0,
    };
    let limit = page_size(first)? as usize;
    let has_next = ranked.len() > start + limit;
    let mut connection = Connection::with_additional_fields(after.is_some(), has_next, ConnectionFields { total_count: total });
    for (score, video) in ranked.iter().skip(start).take(limit) {
        let cursor = RankCursor { kind, parameter, score: *score, id: video.id.to_string() };
        connection.edges.push(Edge::new(cursor.encode(), video.clone()));
    }
    Ok(connection)
}

fn signed_in(ctx: &Context<'_>) -> Option<String> {
    Viewer::of(ctx).map(|id| id.to_string())
}

async fn following(ctx: &Context<'_>, user: String, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
    // Fanned-out videos from the viewer's timeline, and the followees' videos that were
    // not fanned out (their authors had too many followers), pulled here; UNION drops a
    // video found both ways.
    const SQL: &str = concat!(
        "SELECT ",
        video_columns!(),
        ", t.position AS feed_position FROM timelines t JOIN videos v ON v.id = t.video_id",
        video_counts!(),
        " WHERE t.user_id = $1 AND v.deleted = 0 AND t.position < $2",
        " UNION SELECT ",
        video_columns!(),
        ", v.position AS feed_position FROM feed_follows fo",
        " JOIN feed_videos fv ON fv.author_id = fo.followee_id AND fv.fanned_out = 0",
        " JOIN videos v ON v.id = fv.id",
        video_counts!(),
        " WHERE fo.follower_id = $1 AND v.deleted = 0 AND v.position < $2",
        " ORDER BY feed_position DESC LIMIT $3"
    );
    const COUNT: &str = "SELECT count(*) FROM (
        SELECT t.video_id FROM timelines t JOIN videos v ON v.id = t.video_id WHERE t.user_id = $1 AND v.deleted = 0
        UNION SELECT v.id FROM feed_follows fo JOIN feed_videos fv ON fv.author_id = fo.followee_id AND fv.fanned_out = 0
              JOIN videos v ON v.id = fv.id WHERE fo.follower_id = $1 AND v.deleted = 0) feed";
    let limit = page_size(first)?;
    let before = after.as_deref().map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
    let params = vec![user.as_str().into(), SqlValue::Int(before), SqlValue::Int(limit + 1)];
    let rows = db(ctx).query(SQL, params).await?;
    let total = count(ctx, COUNT, vec![user.as_str().into()]).await?;
    video_page(rows, limit, after.is_some(), total)
}

/// What the fields of one request share: one clock, so every first page of HOT ranks as
/// of the same moment, and the HOT candidates per clock, so aliases of HOT and
/// RECOMMENDED read them once.
pub struct RequestCache {
    now: i64,
    hot: tokio::sync::Mutex<HashMap<i64, Ranked>>,
}

/// Videos with their scores, best first.
type Ranked = Arc<Vec<(f64, Video)>>;

impl Default for RequestCache {
    fn default() -> Self {
        Self { now: Utc::now().timestamp_micros(), hot: Default::default() }
    }
}

fn request_cache<'a>(ctx: &'a Context<'_>) -> &'a RequestCache {
    ctx.data_unchecked::<RequestCache>()
}

/// [`hot_candidates`] as of `as_of`, ranked, read once per request.
async fn cached_hot_candidates(ctx: &Context<'_>, as_of: i64) -> Result<Ranked> {
    let mut hot = request_cache(ctx).hot.lock().await;
    if let Some(found) = hot.get(&as_of) {
        return Ok(found.clone());
    }
    let mut candidates = hot_candidates(ctx, as_of).await?;
    rank(&mut candidates);
    let candidates = Arc::new(candidates);
    hot.insert(as_of, candidates.clone());
    Ok(candidates)
}

/// Live videos of the last days with their HOT scores as of `as_of` (microseconds).
async fn hot_candidates(ctx: &Context<'_>, as_of: i64) -> Result<Vec<(f64, Video)>> {
    const SQL: &str = concat!(
        "SELECT ",
        video_columns!(),
        ", v.position FROM videos v",
        video_counts!(),
        " WHERE v.deleted = 0 AND v.created_at >= $2 ORDER BY v.position DESC LIMIT $3"
    );
    let since = as_of - HOT_WINDOW_DAYS * 24 * 3_600_000_000;
    let rows = db(ctx).query(SQL, vec![viewer(ctx), SqlValue::Int(since), SqlValue::Int(HOT_CANDIDATES)]).await?;
    rows.iter()
        .map(|row| {
            let video = video_from_row(row)?;
            let age_hours = (as_of - video.created_at.timestamp_micros()) as f64 / 3.6e9;
            Ok((hot_score(video.like_count, video.comment_count, video.favorite_count, video.view_count, age_hours), video))
        })
        .collect()
}

async fn hot(ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
    let cursor = after.as_deref().map(|c| RankCursor::decode('h', c)).transpose()?;
    // Later pages rank as of the first page's clock, so the order holds still.
    let as_of = cursor.as_ref().map_or(request_cache(ctx).now, |c| c.parameter);
    let ranked = cached_hot_candidates(ctx, as_of).await?;
    ranked_page('h', as_of, &ranked, first, cursor.as_ref())
}

/// Candidate sources of RECOMMENDED, each `(video_id, strength)`, and their weights.
const CO_LIKED: &str = "SELECT theirs.video_id, count(*) FROM likes mine
      JOIN likes others ON others.video_id = mine.video_id AND others.user_id <> $1
      JOIN likes theirs ON theirs.user_id = others.user_id
     WHERE mine.user_id = $1 GROUP BY theirs.video_id ORDER BY count(*) DESC LIMIT 300";
const SAME_HASHTAGS: &str = "SELECT x.video_id, count(*) FROM video_hashtags x
     WHERE x.hashtag IN (SELECT h.hashtag FROM video_hashtags h WHERE h.video_id IN (
            SELECT video_id FROM likes WHERE user_id = $1
            UNION SELECT video_id FROM favorites WHERE user_id = $1
            UNION SELECT video_id FROM comments WHERE author_id = $1 AND deleted = 0))
     GROUP BY x.video_id ORDER BY count(*) DESC LIMIT 300";
const FOLLOWEES_LIKE: &str = "SELECT l.video_id, count(*) FROM follows f JOIN likes l ON l.user_id = f.followee_id
     WHERE f.follower_id = $1 GROUP BY l.video_id ORDER BY count(*) DESC LIMIT 300";
const SOURCES: [(&str, f64); 3] = [(CO_LIKED, 3.0), (SAME_HASHTAGS, 2.0), (FOLLOWEES_LIKE, 2.0)];
/// Hot videos join the candidates with a bonus from 2 (the hottest) down.
const HOT_IN_RECOMMENDED: usize = 100;
/// How many of the best candidates are looked up and ranked.
const RECOMMENDED_CANDIDATES: usize = 200;

/// A small, stable tie-breaker in [0, 0.5) from the seed and the video: a refresh (new
/// seed) reorders videos of similar scores.
fn jitter(seed: i64, video_id: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed as u64;
    for byte in video_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 1000) as f64 / 2000.0
}

async fn recommended(ctx: &Context<'_>, user: String, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
    const SEED: &str = "SELECT seed FROM recommendation_seeds WHERE user_id = $1";
    let cursor = after.as_deref().map(|c| RankCursor::decode('r', c)).transpose()?;
    let seed = match &cursor {
        Some(cursor) => cursor.parameter,
        None => db(ctx).query(SEED, vec![user.as_str().into()]).await?.first().map(|row| row.int(0)).transpose()?.unwrap_or(0),
    };

    let mut scores: HashMap<String, f64> = HashMap::new();
    for (sql, weight) in SOURCES {
        for row in db(ctx).query(sql, vec![user.as_str().into()]).await? {
            *scores.entry(row.text(0)?.to_owned()).or_default() += weight * row.int(1)? as f64;
        }
    }
    let hot = cached_hot_candidates(ctx, request_cache(ctx).now).await?;
    for (rank, (_, video)) in hot.iter().take(HOT_IN_RECOMMENDED).enumerate() {
        *scores.entry(video.id.to_string()).or_default() += 2.0 * (1.0 - rank as f64 / HOT_IN_RECOMMENDED as f64);
    }

    let mut best: Vec<(String, f64)> = scores
        .into_iter()
        .map(|(id, score)| {
            let jittered = score + jitter(seed, &id);
            (id, jittered)
        })
        .collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    best.truncate(RECOMMENDED_CANDIDATES);
    let ids: Vec<String> = best.iter().map(|(id, _)| id.clone()).collect();
    let mut videos = videos_by_id(ctx, &ids).await?;
    let found = best.into_iter().filter_map(|(id, score)| videos.remove(&id).map(|video| (score, video)));
    // Never the viewer's own videos, nor ones the viewer already likes.
    let mut ranked: Vec<(f64, Video)> = found.filter(|(_, video)| video.author_id != user && !video.viewer_has_liked).collect();
    rank(&mut ranked);
    ranked_page('r', seed, &ranked, first, cursor.as_ref())
}

#[derive(Default)]
pub struct FeedQuery;

#[Object]
impl FeedQuery {
    /// A feed of live videos. FOLLOWING needs a signed-in viewer; RECOMMENDED is HOT for
    /// anonymous viewers.
    #[graphql(complexity = "super::list_complexity(super::FEED_COST, first, child_complexity)")]
    async fn feed(&self, ctx: &Context<'_>, kind: FeedKind, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
        match (kind, signed_in(ctx)) {
            (FeedKind::Following, Some(user)) => following(ctx, user, first, after).await,
            (FeedKind::Following, None) => Err(bad_request("sign in to read the FOLLOWING feed", "unauthenticated")),
            (FeedKind::Recommended, Some(user)) => recommended(ctx, user, first, after).await,
            (FeedKind::Hot, _) | (FeedKind::Recommended, None) => hot(ctx, first, after).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engagement_raises_and_age_lowers_the_hot_score() {
        assert!(hot_score(10, 0, 0, 0, 1.0) > hot_score(1, 0, 0, 0, 1.0));
        assert!(hot_score(10, 0, 0, 0, 1.0) > hot_score(10, 0, 0, 0, 48.0));
        assert!(hot_score(0, 0, 1, 0, 1.0) > hot_score(1, 0, 0, 0, 1.0), "a favorite weighs more than a like");
    }

    #[test]
    fn cursors_round_trip_and_reject_other_feeds() {
        let cursor = RankCursor { kind: 'h', parameter: 42, score: 1.25, id: "abc".into() };
        let decoded = RankCursor::decode('h', &cursor.encode()).unwrap();
        assert_eq!((decoded.parameter, decoded.score, decoded.id.as_str()), (42, 1.25, "abc"));
        assert!(RankCursor::decode('r', &cursor.encode()).is_err());
        assert!(RankCursor::decode('h', "garbage").is_err());
    }
}

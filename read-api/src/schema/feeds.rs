//! `feed(kind: FOLLOWING | HOT | RECOMMENDED)`. How each is built is in
//! docs/architecture.md ("Feeds").

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, Object, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use plaza_projections::SqlValue;

use super::content::{Video, VideoConnection, total_count, video_page, videos_by_id};
use super::{ConnectionFields, IDS_PER_QUERY, bad_request, db, decode_cursor, id_params, page_size};
use crate::{MinPosition, Viewer};

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
fn rank(ranked: &mut [(f64, String)]) {
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
}

/// The page after the cursor of a list sorted by [`rank`]: its videos read with the
/// viewer's reactions (one deleted since it was ranked is left out). `top`, when given,
/// keeps the videos of the list's first [`IDS_PER_QUERY`] as an anonymous reader sees
/// them, for first pages read without a consistency token.
async fn ranked_page(
    ctx: &Context<'_>,
    kind: char,
    parameter: i64,
    ranked: &[(f64, String)],
    first: Option<i32>,
    after: Option<&RankCursor>,
    top: Option<&TopVideos>,
) -> Result<VideoConnection> {
    let total = ranked.len() as i64;
    let start = match after {
        Some(cursor) => ranked
            .iter()
            .position(|(score, id)| score.total_cmp(&cursor.score).is_lt() || (*score == cursor.score && id.as_str() > cursor.id.as_str()))
            .unwrap_or(ranked.len()),
        None => 0,
    };
    let limit = page_size(first)? as usize;
    let has_next = ranked.len() > start + limit;
    let page = &ranked[start.min(ranked.len())..(start + limit).min(ranked.len())];
    let kept_fits = after.is_none() && page.len() <= IDS_PER_QUERY && Viewer::of(ctx).is_none() && ctx.data_opt::<MinPosition>().is_none();
    let read;
    let videos = match top {
        Some(top) if kept_fits => {
            let read_top = || async {
                let ids: Vec<String> = ranked.iter().take(IDS_PER_QUERY).map(|(_, id)| id.clone()).collect();
                videos_by_id(ctx, &ids).await
            };
            top.0.get_or_try_init(read_top).await?
        }
        _ => {
            let ids: Vec<String> = page.iter().map(|(_, id)| id.clone()).collect();
            read = videos_by_id(ctx, &ids).await?;
            &read
        }
    };
    let mut connection = Connection::with_additional_fields(after.is_some(), has_next, ConnectionFields { total_count: total });
    for (score, id) in page {
        // A RECOMMENDED ranking may be older than a like of the viewer's.
        if let Some(video) = videos.get(id).filter(|video| kind != 'r' || !video.viewer_has_liked) {
            let cursor = RankCursor { kind, parameter, score: *score, id: id.clone() };
            connection.edges.push(Edge::new(cursor.encode(), video.clone()));
        }
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
    let total = total_count(ctx, COUNT, vec![user.as_str().into()]).await?;
    video_page(rows, limit, after.is_some(), total)
}

/// What the fields of one request share: one clock, for RECOMMENDED's use of HOT, and
/// the HOT ranking per clock, so aliases of HOT and RECOMMENDED use the same one.
pub struct RequestCache {
    now: i64,
    hot: tokio::sync::Mutex<HashMap<i64, Arc<Ranking>>>,
}

impl Default for RequestCache {
    fn default() -> Self {
        Self { now: Utc::now().timestamp_micros(), hot: Default::default() }
    }
}

fn request_cache<'a>(ctx: &'a Context<'_>) -> &'a RequestCache {
    ctx.data_unchecked::<RequestCache>()
}

/// The HOT ranking of live videos (ids and scores) as of a clock.
pub struct Ranking {
    as_of: i64,
    ranked: Vec<(f64, String)>,
    /// Its first videos as anonymous readers see them, read once by the first of them:
    /// HOT's first page is the most read page of all, and reading its ten videos was
    /// most of its cost (issue 13). Its counts (and a deletion) then show as late as a
    /// new ranking does; a reader with a consistency token reads them anew.
    top: TopVideos,
}

/// The videos of the top of a ranking, read once.
#[derive(Default)]
struct TopVideos(tokio::sync::OnceCell<HashMap<String, Video>>);

/// The HOT rankings a process computed last, shared by its requests: a first page of
/// HOT uses the newest while it is younger than [`HOT_FOR`] (a request with a
/// consistency token ranks anew, so it sees its own writes), and a later page the one
/// of its first page's clock while it is kept. Ranking reads some 2,000 videos with
/// their counts; a page then reads only its own videos.
#[derive(Clone, Default)]
pub struct HotRankings(Arc<Mutex<HotCache>>);

#[derive(Default)]
struct HotCache {
    /// Newest last, with when each was computed.
    kept: VecDeque<(Instant, Arc<Ranking>)>,
    /// Since when a request has been ranking anew: the others keep using the newest
    /// meanwhile (for [`HOT_FOR`] at most, should that request have been dropped).
    refreshing: Option<Instant>,
}

/// How long a HOT ranking serves first pages.
const HOT_FOR: Duration = Duration::from_secs(1);
/// Rankings kept for the later pages of first pages served from them.
const HOT_KEPT: usize = 16;

impl HotRankings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HotCache> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn keep(&self, ranking: Arc<Ranking>) {
        let mut cache = self.lock();
        cache.kept.push_back((Instant::now(), ranking));
        while cache.kept.len() > HOT_KEPT {
            cache.kept.pop_front();
        }
    }
}

/// The HOT ranking for a page: of the cursor's clock for a later page, else the newest.
async fn hot_ranking(ctx: &Context<'_>, as_of: Option<i64>) -> Result<Arc<Ranking>> {
    let mut in_request = request_cache(ctx).hot.lock().await;
    let key = as_of.unwrap_or(0);
    if let Some(found) = in_request.get(&key) {
        return Ok(found.clone());
    }
    let shared = ctx.data_unchecked::<HotRankings>();
    let fresh_wanted = ctx.data_opt::<MinPosition>().is_some();
    let reused = {
        let mut cache = shared.lock();
        match as_of {
            Some(as_of) => cache.kept.iter().rev().find(|(_, r)| r.as_of == as_of).map(|(_, r)| r.clone()),
            None if fresh_wanted => None,
            None => match cache.kept.back() {
                Some((at, ranking)) if at.elapsed() < HOT_FOR => Some(ranking.clone()),
                // Stale: one request ranks anew, the others use the stale one meanwhile.
                Some((_, ranking)) if cache.refreshing.is_some_and(|since| since.elapsed() < HOT_FOR) => Some(ranking.clone()),
                _ => {
                    cache.refreshing = Some(Instant::now());
                    None
                }
            },
        }
    };
    let ranking = match reused {
        Some(ranking) => ranking,
        None => {
            let clock = as_of.unwrap_or(request_cache(ctx).now);
            let ranked = hot_candidates(ctx, clock).await;
            if as_of.is_none() && !fresh_wanted {
                shared.lock().refreshing = None;
            }
            let ranking = Arc::new(Ranking { as_of: clock, ranked: ranked?, top: TopVideos::default() });
            // A ranking as of an old cursor's clock is this request's alone: first pages
            // take the newest kept.
            if as_of.is_none() {
                shared.keep(ranking.clone());
            }
            ranking
        }
    };
    in_request.insert(key, ranking.clone());
    Ok(ranking)
}

/// Live videos of the last days ranked by their HOT scores as of `as_of` (microseconds).
async fn hot_candidates(ctx: &Context<'_>, as_of: i64) -> Result<Vec<(f64, String)>> {
    const SQL: &str = "SELECT v.id, v.created_at, COALESCE(vc.likes, 0), COALESCE(vc.favorites, 0),
            COALESCE(vc.top_comments, 0) + COALESCE(vc.visible_replies, 0), COALESCE(k.value, 0)
       FROM videos v LEFT JOIN video_counts vc ON vc.video_id = v.id
       LEFT JOIN counters k ON k.resource_id = v.id AND k.counter_type = 'views'
      WHERE v.deleted = 0 AND v.created_at >= $1 ORDER BY v.position DESC LIMIT $2";
    let since = as_of - HOT_WINDOW_DAYS * 24 * 3_600_000_000;
    let rows = db(ctx).query(SQL, vec![SqlValue::Int(since), SqlValue::Int(HOT_CANDIDATES)]).await?;
    let mut ranked = rows
        .iter()
        .map(|row| {
            let age_hours = (as_of - row.int(1)?) as f64 / 3.6e9;
            let score = hot_score(row.int(2)?, row.int(4)?, row.int(3)?, row.int(5)?, age_hours);
            Ok((score, row.text(0)?.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    rank(&mut ranked);
    Ok(ranked)
}

async fn hot(ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
    let cursor = after.as_deref().map(|c| RankCursor::decode('h', c)).transpose()?;
    // Later pages rank as of the first page's clock, so the order holds still.
    let ranking = hot_ranking(ctx, cursor.as_ref().map(|c| c.parameter)).await?;
    ranked_page(ctx, 'h', ranking.as_of, &ranking.ranked, first, cursor.as_ref(), Some(&ranking.top)).await
}

/// Videos liked by up to 100 people who like what the viewer liked last (20 likes), from
/// up to 3,000 of their likes: the work stays bounded however much everyone likes.
const CO_LIKED: &str = "SELECT video_id, count(*) FROM (
       SELECT theirs.video_id FROM
         (SELECT DISTINCT others.user_id FROM
            (SELECT video_id FROM likes WHERE user_id = $1 ORDER BY position DESC LIMIT 20) mine
            JOIN likes others ON others.video_id = mine.video_id AND others.user_id <> $1
          LIMIT 100) peers
         JOIN likes theirs ON theirs.user_id = peers.user_id
       LIMIT 3000) picked
     GROUP BY video_id ORDER BY count(*) DESC LIMIT 300";
/// The 10 hashtags most common among what the viewer liked, favorited and commented
/// on last (50 of each).
const VIEWER_HASHTAGS: &str = "SELECT h.hashtag FROM video_hashtags h WHERE h.video_id IN (
            SELECT video_id FROM (SELECT video_id FROM likes WHERE user_id = $1 ORDER BY position DESC LIMIT 50) l
            UNION SELECT video_id FROM (SELECT video_id FROM favorites WHERE user_id = $1 ORDER BY position DESC LIMIT 50) f
            UNION SELECT video_id FROM (SELECT video_id FROM comments WHERE author_id = $1 AND deleted = 0 ORDER BY position DESC LIMIT 50) c)
     GROUP BY h.hashtag ORDER BY count(*) DESC, h.hashtag LIMIT 10";
/// The newest 100 videos of a hashtag that the viewer does not like: newest first from
/// its index, so a popular hashtag costs no more than a rare one, and a viewer who
/// liked its newest videos gets the next ones.
const TAGGED_UNLIKED: &str = "SELECT x.video_id FROM video_hashtags x
     WHERE x.hashtag = $1 AND NOT EXISTS (SELECT 1 FROM likes l WHERE l.video_id = x.video_id AND l.user_id = $2)
     ORDER BY x.position DESC LIMIT 100";
/// What a video gains per hashtag it shares with the viewer's.
const SAME_HASHTAG_WEIGHT: f64 = 2.0;
/// Videos liked by the 100 people the viewer followed last, from up to 3,000 likes.
const FOLLOWEES_LIKE: &str = "SELECT video_id, count(*) FROM (
       SELECT l.video_id FROM (SELECT followee_id FROM follows WHERE follower_id = $1 ORDER BY position DESC LIMIT 100) f
         JOIN likes l ON l.user_id = f.followee_id
       LIMIT 3000) picked
     GROUP BY video_id ORDER BY count(*) DESC LIMIT 300";
/// Candidate sources of RECOMMENDED, each `(video_id, strength)`, and their weights
/// (beside the viewer's hashtags and HOT).
const SOURCES: [(&str, f64); 2] = [(CO_LIKED, 3.0), (FOLLOWEES_LIKE, 2.0)];
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

/// Viewers' RECOMMENDED rankings, by viewer and seed: a viewer's pages use theirs for
/// [`RECOMMENDED_FOR`] (a request with a consistency token ranks anew, so a like shows at
/// once), and a refresh (a new seed) ranks anew. Forgotten all at once past
/// [`RECOMMENDED_KEPT`] viewers.
#[derive(Clone, Default)]
pub struct RecommendedRankings(Arc<Mutex<KeptRecommendations>>);

/// By (viewer, seed): when ranked, and the ranking.
type KeptRecommendations = HashMap<(String, i64), (Instant, Arc<Vec<(f64, String)>>)>;

const RECOMMENDED_FOR: Duration = Duration::from_secs(30);
const RECOMMENDED_KEPT: usize = 10_000;

impl RecommendedRankings {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeptRecommendations> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn recommended(ctx: &Context<'_>, user: String, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
    const SEED: &str = "SELECT seed FROM recommendation_seeds WHERE user_id = $1";
    let cursor = after.as_deref().map(|c| RankCursor::decode('r', c)).transpose()?;
    let seed = match &cursor {
        Some(cursor) => cursor.parameter,
        None => db(ctx).query(SEED, vec![user.as_str().into()]).await?.first().map(|row| row.int(0)).transpose()?.unwrap_or(0),
    };
    let shared = ctx.data_unchecked::<RecommendedRankings>();
    let key = (user.clone(), seed);
    if ctx.data_opt::<MinPosition>().is_none() {
        let kept = shared.lock().get(&key).filter(|(at, _)| at.elapsed() < RECOMMENDED_FOR).map(|(_, ranked)| ranked.clone());
        if let Some(ranked) = kept {
            return ranked_page(ctx, 'r', seed, &ranked, first, cursor.as_ref(), None).await;
        }
    }
    let ranked = Arc::new(rank_recommended(ctx, &user, seed).await?);
    {
        let mut kept = shared.lock();
        if kept.len() >= RECOMMENDED_KEPT {
            kept.clear();
        }
        kept.insert(key, (Instant::now(), ranked.clone()));
    }
    ranked_page(ctx, 'r', seed, &ranked, first, cursor.as_ref(), None).await
}

/// The viewer's candidates (liked by people who like what they like, sharing hashtags
/// with what they engaged with, liked by whom they follow, hot), scored and ranked;
/// never their own videos nor ones they already like.
async fn rank_recommended(ctx: &Context<'_>, user: &str, seed: i64) -> Result<Vec<(f64, String)>> {
    let mut scores: HashMap<String, f64> = HashMap::new();
    for (sql, weight) in SOURCES {
        for row in db(ctx).query(sql, vec![user.into()]).await? {
            *scores.entry(row.text(0)?.to_owned()).or_default() += weight * row.int(1)? as f64;
        }
    }
    for hashtag in db(ctx).query(VIEWER_HASHTAGS, vec![user.into()]).await? {
        for row in db(ctx).query(TAGGED_UNLIKED, vec![hashtag.text(0)?.into(), user.into()]).await? {
            *scores.entry(row.text(0)?.to_owned()).or_default() += SAME_HASHTAG_WEIGHT;
        }
    }
    let hot = hot_ranking(ctx, None).await?;
    for (rank, (_, id)) in hot.ranked.iter().take(HOT_IN_RECOMMENDED).enumerate() {
        *scores.entry(id.clone()).or_default() += 2.0 * (1.0 - rank as f64 / HOT_IN_RECOMMENDED as f64);
    }

    let mut best: Vec<(String, f64)> = scores
        .into_iter()
        .map(|(id, score)| {
            let jittered = score + jitter(seed, &id);
            (id, jittered)
        })
        .collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // The best 200 the viewer may be shown: the sources offer videos the viewer likes
    // too (what their peers like is mostly what they like), and those may fill the
    // first 200.
    let mut ranked: Vec<(f64, String)> = Vec::with_capacity(RECOMMENDED_CANDIDATES);
    for chunk in best.chunks(RECOMMENDED_CANDIDATES) {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let shown = shown_to(ctx, user, &ids).await?;
        ranked.extend(chunk.iter().filter(|(id, _)| shown.contains(id)).map(|(id, score)| (*score, id.clone())));
        if ranked.len() >= RECOMMENDED_CANDIDATES {
            break;
        }
    }
    ranked.truncate(RECOMMENDED_CANDIDATES);
    rank(&mut ranked);
    Ok(ranked)
}

/// Which of `ids` RECOMMENDED may show `user`: live videos, never their own nor ones
/// they already like. Only ids, not whole videos with their counts: a page reads its
/// own ten.
async fn shown_to(ctx: &Context<'_>, user: &str, ids: &[String]) -> Result<HashSet<String>> {
    const SQL: &str = concat!(
        "SELECT v.id FROM videos v WHERE v.deleted = 0 AND v.author_id <> $1 AND v.id IN ",
        id_slots!(2),
        " AND NOT EXISTS (SELECT 1 FROM likes l WHERE l.video_id = v.id AND l.user_id = $1)"
    );
    let mut shown = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let params = std::iter::once(SqlValue::from(user)).chain(id_params(chunk)).collect();
        for row in db(ctx).query(SQL, params).await? {
            shown.insert(row.text(0)?.to_owned());
        }
    }
    Ok(shown)
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

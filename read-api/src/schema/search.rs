//! `search`: videos, users and hashtags from the search index ([`SearchIndex`]), each
//! hit resolved to the object as the read models have it now (a video deleted since the
//! index was written is left out). A signed-in user's search is recorded
//! (`SearchPerformed`), for their `searchHistory` and everyone's `hotSearches`
//! (`plaza_projections::searches`); `searchSuggestions` completes what is typed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use plaza_domain::search::{self as domain, MAX_PAGE, MAX_RESULTS, MAX_SUGGESTIONS, SearchIndex, SearchRequest, searches_stream};
use plaza_domain::{Event, EventStore, ExpectedVersion, Metadata, NewEvent};
use plaza_projections::SqlValue;
use plaza_projections::searches::{HISTORY_KEPT, HOT_WINDOW_HOURS, hot_weights, hour_of};
use tokio::sync::{Notify, watch};
use tracing::warn;
use uuid::Uuid;

use super::accounts::{User, user_by_id};
use super::content::{Hashtag, Video, hashtag_by_name, video_by_id};
use super::{ConnectionFields, bad_request, cursor_body, db, tagged_cursor};
use crate::{MinPosition, Viewer};

/// The search engine of this process, if it has one.
#[derive(Clone, Default)]
pub struct Search {
    pub engine: Option<SearchEngine>,
    /// How long a search with a consistency token waits for the index to reach it.
    pub timeout: Duration,
    /// Where signed-in searches are recorded (not recorded without).
    pub store: Option<Arc<dyn EventStore>>,
    /// The hot searches, kept a while for suggestions.
    pub popular: PopularQueries,
}

/// The position of a search's `SearchPerformed`, for the response's
/// `extensions.position` (a consistency token, as a command's position is).
#[derive(Clone, Default)]
pub struct Recorded(pub Arc<AtomicU64>);

/// The hot searches as last read, for suggestions: read again when older than
/// [`POPULAR_FOR`], or for a request with a consistency token.
#[derive(Clone, Default)]
pub struct PopularQueries(Arc<Mutex<Option<ReadAt>>>);

/// Hot searches and when they were read.
type ReadAt = (Instant, Arc<Vec<HotSearch>>);

/// How long suggestions use the hot searches they read.
const POPULAR_FOR: Duration = Duration::from_secs(30);
/// Hot searches suggestions choose from.
const POPULAR_KEPT: i64 = 1_000;

#[derive(Clone)]
pub struct SearchEngine {
    pub index: Arc<dyn SearchIndex>,
    /// The position the index has applied.
    pub applied: watch::Receiver<u64>,
    /// Told when a reader waits for a position not applied yet (an index that commits
    /// on a timer then commits sooner).
    pub hurry: Option<Arc<Notify>>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "plaza_domain::search::SearchKind")]
pub enum SearchKind {
    Videos,
    Users,
    Hashtags,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "plaza_domain::search::SearchSort")]
pub enum SearchSort {
    /// Best match first.
    Relevance,
    /// Newest first.
    Newest,
    /// Most liked first (hashtags: most videos; users: newest).
    MostLiked,
}

/// A field of the result that matched, HTML escaped, the matched words in `<em>`.
#[derive(SimpleObject)]
pub struct SearchHighlight {
    pub field: String,
    pub fragment: String,
}

/// One result: the object it found (one of `video`, `user`, `hashtag`, by the kind
/// searched), its score (0 unless sorted by relevance) and highlighted fragments.
#[derive(SimpleObject)]
pub struct SearchResult {
    pub score: f64,
    pub highlights: Vec<SearchHighlight>,
    pub video: Option<Video>,
    pub user: Option<User>,
    pub hashtag: Option<Hashtag>,
}

pub type SearchConnection = Connection<String, SearchResult, ConnectionFields, EmptyFields>;

/// A query in your search history.
#[derive(SimpleObject)]
pub struct SearchHistoryEntry {
    /// As searched, normalized (folded to lower case, spaces collapsed).
    pub query: String,
    /// When you last searched it.
    pub searched_at: DateTime<Utc>,
}

/// A query many people searched lately.
#[derive(SimpleObject, Clone)]
pub struct HotSearch {
    pub query: String,
    /// Distinct searchers per hour over the last 24 hours, each hour weighed by its age
    /// (halved every 6 hours), in thousandths: the list's order.
    pub score: i64,
    /// Distinct searchers per hour over the last 24 hours, unweighed.
    pub searchers: i64,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SuggestionKind {
    /// A query people searched lately.
    Query,
    /// A video's title.
    Video,
    /// A username.
    User,
    /// A hashtag's name.
    Hashtag,
}

/// A completion of a typed prefix.
#[derive(SimpleObject)]
pub struct SearchSuggestion {
    pub text: String,
    pub kind: SuggestionKind,
    /// A query's hot score, a video's likes, a user's followers, a hashtag's videos.
    pub popularity: i64,
}

/// Records a signed-in user's search. Nothing is decided from these events, so they go
/// to the user's stream without a version check.
async fn record(store: &dyn EventStore, user_id: Uuid, query: &str, kind: domain::SearchKind) -> Result<u64, plaza_domain::StoreError> {
    let event = Event::SearchPerformed { user_id, query: query.to_owned(), kind };
    let metadata = Metadata { actor: Some(user_id), correlation_id: Some(Uuid::now_v7()), ..Metadata::default() };
    let new = NewEvent::new(Uuid::now_v7(), &event, metadata, Utc::now());
    Ok(store.append(&searches_stream(user_id), ExpectedVersion::Any, vec![new]).await?.last_position)
}

/// The hot searches now: the last [`HOT_WINDOW_HOURS`] hours' searchers per query,
/// each hour weighed by its age ([`hot_weights`]).
async fn hot_searches(ctx: &Context<'_>, first: i64) -> Result<Vec<HotSearch>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let weights: String = hot_weights().iter().enumerate().map(|(age, weight)| format!(" WHEN {age} THEN {weight}")).collect();
        format!(
            "SELECT query, CAST(SUM(searchers * CASE $1 - hour{weights} ELSE 0 END) AS BIGINT) AS score, CAST(SUM(searchers) AS BIGINT)
             FROM search_hot WHERE hour >= $2 AND hour <= $1 GROUP BY query ORDER BY score DESC, query LIMIT $3"
        )
    });
    let now = hour_of(Utc::now().timestamp_micros());
    let rows = db(ctx).query(&SQL, vec![SqlValue::Int(now), SqlValue::Int(now - HOT_WINDOW_HOURS), SqlValue::Int(first)]).await?;
    rows.iter().map(|row| Ok(HotSearch { query: row.text(0)?.to_owned(), score: row.int(1)?, searchers: row.int(2)? })).collect()
}

/// A consistency token covers the index too (the read models were waited for before
/// the request ran).
async fn wait_for_index(ctx: &Context<'_>, search: &Search, engine: &SearchEngine) -> Result<()> {
    let Some(MinPosition(position)) = ctx.data_opt::<MinPosition>() else { return Ok(()) };
    let mut applied = engine.applied.clone();
    if let Some(hurry) = engine.hurry.as_ref().filter(|_| *applied.borrow() < *position) {
        hurry.notify_one();
    }
    let reached = tokio::time::timeout(search.timeout, applied.wait_for(|at| at >= position)).await;
    if !matches!(reached, Ok(Ok(_))) {
        let message = format!("the search index has not reached position {position} within {} ms; retry", search.timeout.as_millis());
        return Err(bad_request(&message, "consistency_timeout"));
    }
    Ok(())
}

/// The signed-in viewer, or the error for a field only they may read.
fn searcher(ctx: &Context<'_>) -> Result<Uuid> {
    Viewer::of(ctx).ok_or_else(|| bad_request("sign in to read your search history", "unauthenticated"))
}

fn bounded(first: i32, max: usize) -> Result<i64> {
    match usize::try_from(first) {
        Ok(first) if (1..=max).contains(&first) => Ok(first as i64),
        _ => Err(bad_request(&format!("`first` must be between 1 and {max}"), "invalid_page_size")),
    }
}

/// A result's cursor: its rank in the list (results are ranked, not keyed).
fn encode_cursor(rank: usize) -> String {
    tagged_cursor("s", rank)
}

fn decode_cursor(cursor: &str) -> Result<usize> {
    cursor_body(cursor, "s", |rank| rank.parse().ok().filter(|rank| *rank < MAX_RESULTS))
}

#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// Searches videos (title, hashtags, description), users (username, display name,
    /// bio) or hashtags. Every word must match; words of 5+ letters also match one typo
    /// away; the last word also matches as a prefix; Chinese is segmented into words.
    /// Results go at most 1,000 deep.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        ctx: &Context<'_>,
        query: String,
        #[graphql(desc = "VIDEOS unless given")] kind: Option<SearchKind>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "RELEVANCE unless given")] sort: Option<SearchSort>,
        since: Option<DateTime<Utc>>,
    ) -> Result<SearchConnection> {
        let (kind, sort) = (kind.unwrap_or(SearchKind::Videos), sort.unwrap_or(SearchSort::Relevance));
        let query = domain::normalize_query(&query).map_err(|e| bad_request(&e.to_string(), e.code()))?;
        let first = super::page_size(first)? as usize;
        let offset = after.as_deref().map(decode_cursor).transpose()?.map_or(0, |rank| rank + 1);
        let search = ctx.data_unchecked::<Search>();
        let Some(engine) = &search.engine else {
            return Err(bad_request("search is not available from this process", "search_unavailable"));
        };
        wait_for_index(ctx, search, engine).await?;
        let index = &engine.index;
        let request = SearchRequest {
            query,
            kind: kind.into(),
            sort: sort.into(),
            since: since.map(|at| at.timestamp_micros()),
            offset,
            first: first.min(MAX_PAGE),
            count: ctx.look_ahead().field("totalCount").exists(),
        };
        // A signed-in user's search is recorded as it runs (a later page is the same search).
        let recording = async {
            match (Viewer::of(ctx), &search.store, offset) {
                (Some(user_id), Some(store), 0) => Some(record(&**store, user_id, &request.query, request.kind).await),
                _ => None,
            }
        };
        let (page, recorded) = tokio::join!(index.search(request.clone()), recording);
        match recorded {
            Some(Ok(position)) => {
                if let Some(Recorded(at)) = ctx.data_opt::<Recorded>() {
                    at.fetch_max(position, Ordering::Relaxed);
                }
            }
            Some(Err(error)) => warn!(%error, "could not record a search in its user's history"),
            None => {}
        }
        let page = page.map_err(|e| async_graphql::Error::new(e.to_string()))?;
        // `totalCount` is counted only when selected (0 otherwise).
        let total_count = page.total.unwrap_or_default() as i64;
        let mut connection = SearchConnection::with_additional_fields(offset > 0, page.more, ConnectionFields { total_count });
        for (rank, hit) in (offset..).zip(page.hits) {
            let (mut video, mut user, mut hashtag) = (None, None, None);
            match kind {
                SearchKind::Videos => video = video_by_id(ctx, &hit.id).await?,
                SearchKind::Users => user = user_by_id(ctx, &hit.id).await?,
                SearchKind::Hashtags => hashtag = hashtag_by_name(ctx, hit.id.clone()).await?,
            }
            if video.is_none() && user.is_none() && hashtag.is_none() {
                continue; // gone from the read models since the index was written
            }
            let highlights = hit.highlights.into_iter().map(|h| SearchHighlight { field: h.field, fragment: h.fragment }).collect();
            let result = SearchResult { score: f64::from(hit.score), highlights, video, user, hashtag };
            connection.edges.push(Edge::new(encode_cursor(rank), result));
        }
        Ok(connection)
    }

    /// Your searches, most recent first, each query once (the last 100 are kept).
    async fn search_history(&self, ctx: &Context<'_>, #[graphql(default = 20)] first: i32) -> Result<Vec<SearchHistoryEntry>> {
        const SQL: &str = "SELECT query, searched_at FROM search_history WHERE user_id = $1 ORDER BY searched_at DESC, query LIMIT $2";
        let user_id = searcher(ctx)?;
        let first = bounded(first, HISTORY_KEPT as usize)?;
        let rows = db(ctx).query(SQL, vec![SqlValue::Text(user_id.to_string()), SqlValue::Int(first)]).await?;
        rows.iter()
            .map(|row| {
                let searched_at = DateTime::from_timestamp_micros(row.int(1)?).ok_or_else(|| async_graphql::Error::new("timestamp out of range"))?;
                Ok(SearchHistoryEntry { query: row.text(0)?.to_owned(), searched_at })
            })
            .collect()
    }

    /// What people searched most over the last 24 hours, recent hours weighing more;
    /// each person counts once per query and hour however often they search it.
    async fn hot_searches(&self, ctx: &Context<'_>, #[graphql(default = 10)] first: i32) -> Result<Vec<HotSearch>> {
        hot_searches(ctx, bounded(first, MAX_PAGE)?).await
    }

    /// Completions of `prefix`: queries people searched lately (hottest first), then
    /// video titles, usernames and hashtags (most liked, followed or used first).
    async fn search_suggestions(&self, ctx: &Context<'_>, prefix: String, #[graphql(default = 10)] first: i32) -> Result<Vec<SearchSuggestion>> {
        let prefix = domain::normalize_query(&prefix).map_err(|e| bad_request(&e.to_string(), e.code()))?;
        let first = bounded(first, MAX_SUGGESTIONS)? as usize;
        let search = ctx.data_unchecked::<Search>();
        let Some(engine) = &search.engine else {
            return Err(bad_request("search is not available from this process", "search_unavailable"));
        };
        wait_for_index(ctx, search, engine).await?;
        let index = &engine.index;
        let popular = self.popular(ctx, search).await?;
        let mut out: Vec<SearchSuggestion> = popular
            .iter()
            .filter(|hot| hot.query.starts_with(&prefix))
            .take(first)
            .map(|hot| SearchSuggestion { text: hot.query.clone(), kind: SuggestionKind::Query, popularity: hot.score })
            .collect();
        let completions = index.suggest(&prefix, first).await.map_err(|e| async_graphql::Error::new(e.to_string()))?;
        for completion in completions {
            if out.len() == first {
                break;
            }
            if out.iter().any(|known| known.kind == SuggestionKind::Query && known.text == domain::fold(&completion.text)) {
                continue; // already suggested as a query
            }
            let kind = match completion.kind {
                domain::SearchKind::Videos => SuggestionKind::Video,
                domain::SearchKind::Users => SuggestionKind::User,
                domain::SearchKind::Hashtags => SuggestionKind::Hashtag,
            };
            out.push(SearchSuggestion { text: completion.text, kind, popularity: completion.popularity });
        }
        Ok(out)
    }
}

impl SearchQuery {
    /// The hot searches suggestions choose from: as read less than [`POPULAR_FOR`] ago,
    /// unless the request carries a consistency token.
    async fn popular(&self, ctx: &Context<'_>, search: &Search) -> Result<Arc<Vec<HotSearch>>> {
        let may_reuse = ctx.data_opt::<MinPosition>().is_none();
        if may_reuse
            && let Some((at, hot)) = search.popular.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < POPULAR_FOR
        {
            return Ok(hot.clone());
        }
        let hot = Arc::new(hot_searches(ctx, POPULAR_KEPT).await?);
        *search.popular.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), hot.clone()));
        Ok(hot)
    }
}

//! `search`: videos, users and hashtags from the search index ([`SearchIndex`]), each
//! hit resolved to the object as the read models have it now (a video deleted since the
//! index was written is left out).

use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use plaza_domain::search::{self as domain, MAX_PAGE, MAX_RESULTS, SearchIndex, SearchRequest};
use tokio::sync::watch;

use super::accounts::{User, user_by_id};
use super::content::{Hashtag, Video, hashtag_by_name, video_by_id};
use super::{ConnectionFields, bad_request, cursor_body, tagged_cursor};
use crate::MinPosition;

/// The search engine of this process, if it has one.
#[derive(Clone, Default)]
pub struct Search {
    pub engine: Option<SearchEngine>,
    /// How long a search with a consistency token waits for the index to reach it.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct SearchEngine {
    pub index: Arc<dyn SearchIndex>,
    /// The position the index has applied.
    pub applied: watch::Receiver<u64>,
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
        let Some(SearchEngine { index, applied }) = &search.engine else {
            return Err(bad_request("search is not available from this process", "search_unavailable"));
        };
        // A consistency token covers the index too (the read models were waited for
        // before the request ran).
        if let Some(MinPosition(position)) = ctx.data_opt::<MinPosition>() {
            let mut applied = applied.clone();
            let reached = tokio::time::timeout(search.timeout, applied.wait_for(|at| at >= position)).await;
            if !matches!(reached, Ok(Ok(_))) {
                let message = format!("the search index has not reached position {position} within {} ms; retry", search.timeout.as_millis());
                return Err(bad_request(&message, "consistency_timeout"));
            }
        }
        let request = SearchRequest {
            query,
            kind: kind.into(),
            sort: sort.into(),
            since: since.map(|at| at.timestamp_micros()),
            offset,
            first: first.min(MAX_PAGE),
            count: ctx.look_ahead().field("totalCount").exists(),
        };
        let page = index.search(request).await.map_err(|e| async_graphql::Error::new(e.to_string()))?;
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
}

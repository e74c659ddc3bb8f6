//! The GraphQL schema: one query type merged from a part per read model.

/// A video's columns with its counts and the viewer's reactions; `$1` is the viewer's
/// id ('' when anonymous). Column 13 is free for a list's cursor.
macro_rules! video_columns {
    () => {
        "v.id, v.author_id, v.title, v.description, v.media_url, v.hashtags, v.created_at,
         COALESCE(vc.likes, 0), COALESCE(vc.favorites, 0), COALESCE(vc.top_comments, 0) + COALESCE(vc.visible_replies, 0), COALESCE(k.value, 0),
         CASE WHEN EXISTS (SELECT 1 FROM likes l WHERE l.video_id = v.id AND l.user_id = $1) THEN 1 ELSE 0 END,
         CASE WHEN EXISTS (SELECT 1 FROM favorites fv WHERE fv.video_id = v.id AND fv.user_id = $1) THEN 1 ELSE 0 END"
    };
}

/// The counts joined to videos `v`.
macro_rules! video_counts {
    () => {
        " LEFT JOIN video_counts vc ON vc.video_id = v.id LEFT JOIN counters k ON k.resource_id = v.id AND k.counter_type = 'views'"
    };
}

/// The `IN` list of a batched look-up: [`IDS_PER_QUERY`] placeholders from `$first`.
macro_rules! id_slots {
    (2) => {
        "($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    };
    (1) => {
        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    };
}

mod accounts;
mod content;
mod conversations;
mod feeds;
pub(crate) mod notifications;
pub(crate) mod realtime;
mod search;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, EmptyMutation, Error, ErrorExtensions, MergedObject, Result, Schema, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plaza_projections::{ReadModelDb, SqlValue};

pub use accounts::UserLoader;
pub(crate) use accounts::user_from_row;
pub use conversations::Live;
pub(crate) use conversations::{message_from_row, role as role_from_str};
pub use feeds::RequestCache;
pub use realtime::Subscription;
pub use search::{Recorded, Search, SearchEngine};

#[derive(MergedObject, Default)]
pub struct Query(
    accounts::AccountsQuery,
    content::ContentQuery,
    feeds::FeedQuery,
    conversations::ConversationsQuery,
    notifications::NotificationsQuery,
    search::SearchQuery,
);

pub type PlazaSchema = Schema<Query, EmptyMutation, Subscription>;

/// The schema over the read models. Limits: selection depth 12, recursion (fragments
/// included) 32, and complexity [`MAX_COMPLEXITY`], where a field costs what it costs to
/// answer: 1 for a value, [`LIST_COST`] plus its items for a list, [`FEED_COST`] plus its
/// items for a ranked feed. With `introspection` off, `__schema`/`__type` are refused and
/// errors suggest no field names.
pub fn build_schema(db: Arc<dyn ReadModelDb>, live: Live, hub: crate::hub::Hub, search: Search, introspection: bool) -> PlazaSchema {
    let builder = Schema::build(Query::default(), EmptyMutation, Subscription)
        .data(hub)
        .data(search)
        .data(feeds::HotRankings::default())
        .data(feeds::RecommendedRankings::default())
        .data(DataLoader::new(UserLoader(db.clone()), tokio::spawn))
        .data(db)
        .data(live)
        .limit_depth(12)
        .limit_recursive_depth(32)
        .limit_complexity(MAX_COMPLEXITY);
    match introspection {
        true => builder.finish(),
        false => builder.disable_introspection().disable_suggestions().finish(),
    }
}

pub const MAX_COMPLEXITY: usize = 5000;
/// What a list read from the read models costs before its items.
pub const LIST_COST: usize = 10;
/// What a ranked feed (HOT, RECOMMENDED: some 2,000 candidates scored) costs before its
/// items; aliases of one feed in one request share its candidates, but are each charged.
pub const FEED_COST: usize = 250;

/// The complexity of a list field: its base cost plus `first` (default 20, at most 100)
/// times the cost of one item.
pub fn list_complexity(base: usize, first: Option<i32>, item: usize) -> usize {
    base.saturating_add(first.unwrap_or(DEFAULT_PAGE).clamp(0, MAX_PAGE) as usize * item)
}

const DEFAULT_PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

/// Extra fields on connections.
#[derive(SimpleObject)]
pub struct ConnectionFields {
    /// How many items the whole list holds.
    pub total_count: i64,
}

/// How many ids the batched look-ups (`... IN ($n, ...)`) take per statement.
const IDS_PER_QUERY: usize = 20;

/// A chunk of ids as the parameters of a statement with [`IDS_PER_QUERY`] slots: the
/// first id repeats in the slots the chunk does not fill.
fn id_params(chunk: &[String]) -> impl Iterator<Item = SqlValue> + '_ {
    (0..IDS_PER_QUERY).map(move |i| SqlValue::Text(chunk.get(i).unwrap_or(&chunk[0]).clone()))
}

/// Whether the connection being resolved is asked for its `totalCount`: counting a long
/// list costs more than reading its page, so it is skipped when nobody looks.
fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

fn db<'a>(ctx: &'a Context<'_>) -> &'a Arc<dyn ReadModelDb> {
    ctx.data_unchecked::<Arc<dyn ReadModelDb>>()
}

fn bad_request(message: &str, code: &str) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code.to_owned()))
}

/// A cursor: `tag:body` in URL-safe base64, opaque to clients. Each list has its tag.
fn tagged_cursor(tag: &str, body: impl std::fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{body}"))
}

/// The body of a cursor with that tag, read by `parse`; `invalid_cursor` otherwise.
fn cursor_body<T>(cursor: &str, tag: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(tag)?.strip_prefix(':').and_then(parse))
        .ok_or_else(|| bad_request("`after` is not a cursor this API returned", "invalid_cursor"))
}

/// Keyset cursors: a global position (of a follow, a like, a video, a comment ...).
fn encode_cursor(position: i64) -> String {
    tagged_cursor("f", position)
}

fn decode_cursor(cursor: &str) -> Result<i64> {
    cursor_body(cursor, "f", |position| position.parse().ok())
}

fn page_size(first: Option<i32>) -> Result<i64> {
    match first.unwrap_or(DEFAULT_PAGE) {
        n @ 0..=MAX_PAGE => Ok(n.into()),
        _ => Err(bad_request("`first` must be between 0 and 100", "invalid_page_size")),
    }
}

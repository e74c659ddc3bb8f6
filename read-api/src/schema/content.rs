//! Videos, comments, hashtags and counters.

use std::collections::HashMap;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, Error, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use plaza_projections::{Row, SqlValue};

use super::accounts::{User, UserLoader};
use super::{ConnectionFields, IDS_PER_QUERY, bad_request, db, decode_cursor, encode_cursor, id_params, page_size};
use crate::Viewer;

macro_rules! comment_columns {
    () => {
        "c.id, c.author_id, c.video_id, c.parent_id, c.body, c.created_at, COALESCE(cc.likes, 0), COALESCE(cc.replies, 0), c.position
         FROM comments c LEFT JOIN comment_counts cc ON cc.comment_id = c.id"
    };
}

pub type VideoConnection = Connection<String, Video, ConnectionFields, EmptyFields>;
pub type CommentConnection = Connection<String, Comment, ConnectionFields, EmptyFields>;

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Video {
    pub id: ID,
    #[graphql(skip)]
    pub author_id: String,
    pub title: String,
    pub description: String,
    pub media_url: String,
    pub hashtags: Vec<String>,
    pub like_count: i64,
    pub favorite_count: i64,
    /// Live comments, replies included.
    pub comment_count: i64,
    pub view_count: i64,
    pub created_at: DateTime<Utc>,
    /// Whether the signed-in viewer likes it (false for anonymous viewers).
    pub viewer_has_liked: bool,
    pub viewer_has_favorited: bool,
}

#[ComplexObject]
impl Video {
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        ctx.data_unchecked::<DataLoader<UserLoader>>().load_one(self.author_id.clone()).await
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Comment {
    pub id: ID,
    #[graphql(skip)]
    pub author_id: String,
    pub video_id: ID,
    pub parent_id: Option<ID>,
    pub body: String,
    pub like_count: i64,
    /// Live replies (top-level comments only; replies nest one level).
    pub reply_count: i64,
    pub created_at: DateTime<Utc>,
}

#[ComplexObject]
impl Comment {
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        ctx.data_unchecked::<DataLoader<UserLoader>>().load_one(self.author_id.clone()).await
    }

    /// Replies, oldest first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn replies(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<CommentConnection> {
        const SQL: &str =
            concat!("SELECT ", comment_columns!(), " WHERE c.parent_id = $1 AND c.deleted = 0 AND c.position > $2 ORDER BY c.position LIMIT $3");
        let limit = page_size(first)?;
        let from = after.as_deref().map(decode_cursor).transpose()?.unwrap_or(0);
        let rows = db(ctx).query(SQL, vec![self.id.as_str().into(), SqlValue::Int(from), SqlValue::Int(limit + 1)]).await?;
        let total = if self.parent_id.is_some() { 0 } else { self.reply_count };
        comment_page(rows, limit, after.is_some(), total)
    }
}

#[derive(SimpleObject)]
pub struct Hashtag {
    pub name: String,
    /// From the hashtag's page, if someone created one.
    pub description: Option<String>,
    /// Live videos carrying the hashtag.
    pub video_count: i64,
}

#[derive(SimpleObject)]
pub struct Counter {
    pub resource_id: String,
    pub counter_type: String,
    pub value: i64,
}

#[derive(InputObject)]
pub struct CounterKeyInput {
    pub resource_id: String,
    pub counter_type: String,
}

fn timestamp(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| Error::new("timestamp out of range"))
}

pub(super) fn video_from_row(row: &Row) -> Result<Video> {
    Ok(Video {
        id: ID(row.text(0)?.to_owned()),
        author_id: row.text(1)?.to_owned(),
        title: row.text(2)?.to_owned(),
        description: row.text(3)?.to_owned(),
        media_url: row.text(4)?.to_owned(),
        hashtags: serde_json::from_str(row.text(5)?).map_err(|e| Error::new(format!("hashtags: {e}")))?,
        created_at: timestamp(row.int(6)?)?,
        like_count: row.int(7)?,
        favorite_count: row.int(8)?,
        comment_count: row.int(9)?,
        view_count: row.int(10)?,
        viewer_has_liked: row.int(11)? == 1,
        viewer_has_favorited: row.int(12)? == 1,
    })
}

fn comment_from_row(row: &Row) -> Result<Comment> {
    Ok(Comment {
        id: ID(row.text(0)?.to_owned()),
        author_id: row.text(1)?.to_owned(),
        video_id: ID(row.text(2)?.to_owned()),
        parent_id: row.opt_text(3)?.map(|p| ID(p.to_owned())),
        body: row.text(4)?.to_owned(),
        created_at: timestamp(row.int(5)?)?,
        like_count: row.int(6)?,
        reply_count: row.int(7)?,
    })
}

/// A live video by id.
pub(super) async fn video_by_id(ctx: &Context<'_>, id: &str) -> Result<Option<Video>> {
    const SQL: &str = concat!("SELECT ", video_columns!(), ", v.position FROM videos v", video_counts!(), " WHERE v.id = $2 AND v.deleted = 0");
    let rows = db(ctx).query(SQL, vec![viewer(ctx), id.into()]).await?;
    rows.first().map(video_from_row).transpose()
}

/// A live comment by id.
pub(super) async fn comment_by_id(ctx: &Context<'_>, id: &str) -> Result<Option<Comment>> {
    const SQL: &str = concat!("SELECT ", comment_columns!(), " WHERE c.id = $1 AND c.deleted = 0");
    let rows = db(ctx).query(SQL, vec![id.into()]).await?;
    rows.first().map(comment_from_row).transpose()
}

pub(super) fn viewer(ctx: &Context<'_>) -> SqlValue {
    Viewer::of(ctx).map_or_else(|| SqlValue::Text(String::new()), |id| SqlValue::Text(id.to_string()))
}

/// A page of videos whose 14th column (index 13) is the cursor position.
pub(super) fn video_page(rows: Vec<Row>, limit: i64, has_previous: bool, total: i64) -> Result<VideoConnection> {
    let mut connection = Connection::with_additional_fields(has_previous, rows.len() as i64 > limit, ConnectionFields { total_count: total });
    for row in rows.iter().take(limit as usize) {
        connection.edges.push(Edge::new(encode_cursor(row.int(13)?), video_from_row(row)?));
    }
    Ok(connection)
}

fn comment_page(rows: Vec<Row>, limit: i64, has_previous: bool, total: i64) -> Result<CommentConnection> {
    let mut connection = Connection::with_additional_fields(has_previous, rows.len() as i64 > limit, ConnectionFields { total_count: total });
    for row in rows.iter().take(limit as usize) {
        connection.edges.push(Edge::new(encode_cursor(row.int(8)?), comment_from_row(row)?));
    }
    Ok(connection)
}

/// A connection's `totalCount`, counted by `sql`; 0 (never shown) when the query does
/// not ask for it.
pub(super) async fn total_count(ctx: &Context<'_>, sql: &'static str, params: Vec<SqlValue>) -> Result<i64> {
    if !super::wants_total(ctx) {
        return Ok(0);
    }
    Ok(db(ctx).query(sql, params).await?.first().map(|row| row.int(0)).transpose()?.unwrap_or(0))
}

/// Which list of videos, newest first by the list's own position.
#[derive(Clone, Copy)]
enum VideoList {
    ByAuthor,
    LikedBy,
    FavoritedBy,
    ByHashtag,
}

async fn video_list(ctx: &Context<'_>, list: VideoList, key: &str, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
    const BY_AUTHOR: &str = concat!(
        "SELECT ",
        video_columns!(),
        ", v.position FROM videos v",
        video_counts!(),
        " WHERE v.author_id = $2 AND v.deleted = 0 AND v.position < $3 ORDER BY v.position DESC LIMIT $4"
    );
    const LIKED_BY: &str = concat!(
        "SELECT ",
        video_columns!(),
        ", x.position FROM likes x JOIN videos v ON v.id = x.video_id",
        video_counts!(),
        " WHERE x.user_id = $2 AND v.deleted = 0 AND x.position < $3 ORDER BY x.position DESC LIMIT $4"
    );
    const FAVORITED_BY: &str = concat!(
        "SELECT ",
        video_columns!(),
        ", x.position FROM favorites x JOIN videos v ON v.id = x.video_id",
        video_counts!(),
        " WHERE x.user_id = $2 AND v.deleted = 0 AND x.position < $3 ORDER BY x.position DESC LIMIT $4"
    );
    const BY_HASHTAG: &str = concat!(
        "SELECT ",
        video_columns!(),
        ", x.position FROM video_hashtags x JOIN videos v ON v.id = x.video_id",
        video_counts!(),
        " WHERE x.hashtag = $2 AND v.deleted = 0 AND x.position < $3 ORDER BY x.position DESC LIMIT $4"
    );
    const COUNT_BY_AUTHOR: &str = "SELECT count(*) FROM videos WHERE author_id = $1 AND deleted = 0";
    const COUNT_LIKED_BY: &str = "SELECT count(*) FROM likes x JOIN videos v ON v.id = x.video_id WHERE x.user_id = $1 AND v.deleted = 0";
    const COUNT_FAVORITED_BY: &str = "SELECT count(*) FROM favorites x JOIN videos v ON v.id = x.video_id WHERE x.user_id = $1 AND v.deleted = 0";
    const COUNT_BY_HASHTAG: &str = "SELECT count(*) FROM video_hashtags WHERE hashtag = $1";
    let (sql, count_sql) = match list {
        VideoList::ByAuthor => (BY_AUTHOR, COUNT_BY_AUTHOR),
        VideoList::LikedBy => (LIKED_BY, COUNT_LIKED_BY),
        VideoList::FavoritedBy => (FAVORITED_BY, COUNT_FAVORITED_BY),
        VideoList::ByHashtag => (BY_HASHTAG, COUNT_BY_HASHTAG),
    };
    let limit = page_size(first)?;
    let before = after.as_deref().map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
    let rows = db(ctx).query(sql, vec![viewer(ctx), key.into(), SqlValue::Int(before), SqlValue::Int(limit + 1)]).await?;
    let total = total_count(ctx, count_sql, vec![key.into()]).await?;
    video_page(rows, limit, after.is_some(), total)
}

/// A hashtag (normalised name) with its page or videos; None when it has neither.
pub(super) async fn hashtag_by_name(ctx: &Context<'_>, name: String) -> Result<Option<Hashtag>> {
    const SQL: &str = "SELECT (SELECT description FROM hashtag_pages WHERE name = $1),
                              (SELECT count(*) FROM hashtag_pages WHERE name = $1),
                              (SELECT count(*) FROM video_hashtags WHERE hashtag = $1)";
    let rows = db(ctx).query(SQL, vec![name.as_str().into()]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let (description, has_page, video_count) = (row.opt_text(0)?.map(str::to_owned), row.int(1)? > 0, row.int(2)?);
    Ok((has_page || video_count > 0).then_some(Hashtag { name, description, video_count }))
}

/// A hashtag as the write side normalises it (`#Cats` is `cats`).
fn hashtag_name(name: &str) -> Result<String> {
    plaza_domain::videos::Hashtag::parse(name).map(|tag| tag.as_str().to_owned()).map_err(|e| bad_request(&e.to_string(), e.code()))
}

/// The counters a list of keys names, in the order asked, 0 for unknown ones. One
/// statement per [`IDS_PER_QUERY`] resources.
async fn counter_values(ctx: &Context<'_>, keys: Vec<CounterKeyInput>) -> Result<Vec<Counter>> {
    const SQL: &str = concat!("SELECT resource_id, counter_type, value FROM counters WHERE resource_id IN ", id_slots!(1));
    if keys.len() > 100 {
        return Err(bad_request("ask for at most 100 counters at once", "too_many_keys"));
    }
    let resources: Vec<String> = keys.iter().map(|key| key.resource_id.clone()).collect();
    let mut values: HashMap<(String, String), i64> = HashMap::new();
    for chunk in resources.chunks(IDS_PER_QUERY) {
        for row in db(ctx).query(SQL, id_params(chunk).collect()).await? {
            values.insert((row.text(0)?.to_owned(), row.text(1)?.to_owned()), row.int(2)?);
        }
    }
    Ok(keys
        .into_iter()
        .map(|key| {
            let counter_type = key.counter_type.trim().to_ascii_lowercase();
            let value = values.get(&(key.resource_id.clone(), counter_type.clone())).copied().unwrap_or(0);
            Counter { resource_id: key.resource_id, counter_type, value }
        })
        .collect())
}

/// Live videos by id, with the viewer's reactions: one statement per [`IDS_PER_QUERY`]
/// ids. Unknown and deleted ones are left out.
pub(super) async fn videos_by_id(ctx: &Context<'_>, ids: &[String]) -> Result<HashMap<String, Video>> {
    const SQL: &str =
        concat!("SELECT ", video_columns!(), ", v.position FROM videos v", video_counts!(), " WHERE v.deleted = 0 AND v.id IN ", id_slots!(2));
    let mut found = HashMap::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let params = std::iter::once(viewer(ctx)).chain(id_params(chunk)).collect();
        for row in db(ctx).query(SQL, params).await? {
            let video = video_from_row(&row)?;
            found.insert(video.id.to_string(), video);
        }
    }
    Ok(found)
}

#[derive(Default)]
pub struct ContentQuery;

#[Object]
impl ContentQuery {
    /// A live video by id; null when unknown or deleted.
    async fn video(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Video>> {
        video_by_id(ctx, &id).await
    }

    /// An author's videos, newest first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn videos(&self, ctx: &Context<'_>, author_id: ID, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
        video_list(ctx, VideoList::ByAuthor, &author_id, first, after).await
    }

    /// The videos a user likes, most recently liked first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn liked_videos(&self, ctx: &Context<'_>, user_id: ID, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
        video_list(ctx, VideoList::LikedBy, &user_id, first, after).await
    }

    /// A user's favorites, most recently added first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn favorites(&self, ctx: &Context<'_>, user_id: ID, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
        video_list(ctx, VideoList::FavoritedBy, &user_id, first, after).await
    }

    /// Live videos with a hashtag, newest first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn videos_by_hashtag(&self, ctx: &Context<'_>, name: String, first: Option<i32>, after: Option<String>) -> Result<VideoConnection> {
        video_list(ctx, VideoList::ByHashtag, &hashtag_name(&name)?, first, after).await
    }

    /// A video's top-level comments, newest first (replies under each).
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn comments(&self, ctx: &Context<'_>, video_id: ID, first: Option<i32>, after: Option<String>) -> Result<CommentConnection> {
        const SQL: &str = concat!(
            "SELECT ",
            comment_columns!(),
            " JOIN videos v ON v.id = c.video_id",
            " WHERE c.video_id = $1 AND c.parent_id IS NULL AND c.deleted = 0 AND v.deleted = 0 AND c.position < $2 ORDER BY c.position DESC LIMIT $3"
        );
        const COUNT: &str = "SELECT count(*) FROM comments c JOIN videos v ON v.id = c.video_id
             WHERE c.video_id = $1 AND c.parent_id IS NULL AND c.deleted = 0 AND v.deleted = 0";
        let limit = page_size(first)?;
        let before = after.as_deref().map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
        let rows = db(ctx).query(SQL, vec![video_id.as_str().into(), SqlValue::Int(before), SqlValue::Int(limit + 1)]).await?;
        let total = total_count(ctx, COUNT, vec![video_id.as_str().into()]).await?;
        comment_page(rows, limit, after.is_some(), total)
    }

    /// A hashtag: its page (if any) and how many live videos carry it; null when it has
    /// neither.
    async fn hashtag(&self, ctx: &Context<'_>, name: String) -> Result<Option<Hashtag>> {
        hashtag_by_name(ctx, hashtag_name(&name)?).await
    }

    /// Hashtags with the most live videos published in the last 7 days.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn hot_hashtags(&self, ctx: &Context<'_>, first: Option<i32>) -> Result<Vec<Hashtag>> {
        const SQL: &str = "SELECT x.hashtag, p.description, count(*) AS recent,
                                  (SELECT count(*) FROM video_hashtags a WHERE a.hashtag = x.hashtag)
                           FROM video_hashtags x LEFT JOIN hashtag_pages p ON p.name = x.hashtag
                           WHERE x.created_at >= $1
                           GROUP BY x.hashtag, p.description ORDER BY recent DESC, x.hashtag LIMIT $2";
        let since = (Utc::now() - chrono::Duration::days(7)).timestamp_micros();
        let rows = db(ctx).query(SQL, vec![SqlValue::Int(since), SqlValue::Int(page_size(first)?)]).await?;
        rows.iter()
            .map(|row| Ok(Hashtag { name: row.text(0)?.to_owned(), description: row.opt_text(1)?.map(str::to_owned), video_count: row.int(3)? }))
            .collect()
    }

    /// A counter's value (0 when nothing was counted yet).
    async fn counter(&self, ctx: &Context<'_>, resource_id: String, counter_type: String) -> Result<Counter> {
        let mut values = counter_values(ctx, vec![CounterKeyInput { resource_id, counter_type }]).await?;
        Ok(values.remove(0))
    }

    /// Several counters at once, in the order asked (at most 100).
    #[graphql(complexity = "super::LIST_COST + keys.len() * child_complexity")]
    async fn counters(&self, ctx: &Context<'_>, keys: Vec<CounterKeyInput>) -> Result<Vec<Counter>> {
        counter_values(ctx, keys).await
    }

    /// The highest counters of a type.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn top_counters(&self, ctx: &Context<'_>, counter_type: String, first: Option<i32>) -> Result<Vec<Counter>> {
        const SQL: &str = "SELECT resource_id, counter_type, value FROM counters WHERE counter_type = $1 ORDER BY value DESC, resource_id LIMIT $2";
        let counter_type = counter_type.trim().to_ascii_lowercase();
        let rows = db(ctx).query(SQL, vec![counter_type.as_str().into(), SqlValue::Int(page_size(first)?)]).await?;
        rows.iter()
            .map(|row| Ok(Counter { resource_id: row.text(0)?.to_owned(), counter_type: row.text(1)?.to_owned(), value: row.int(2)? }))
            .collect()
    }
}

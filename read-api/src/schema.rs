use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, EmptyMutation, EmptySubscription, Error, ErrorExtensions, ID, Object, Result, Schema, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use plaza_projections::{ReadModelDb, Row, SqlValue};

use crate::Viewer;

pub type PlazaSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn build_schema(db: Arc<dyn ReadModelDb>) -> PlazaSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription).data(db).limit_depth(12).limit_complexity(2000).finish()
}

const DEFAULT_PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

#[derive(SimpleObject, Clone)]
pub struct User {
    pub id: ID,
    pub username: String,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
    pub followers_count: i64,
    pub following_count: i64,
    pub created_at: DateTime<Utc>,
}

/// Extra fields on connections.
#[derive(SimpleObject)]
pub struct ConnectionFields {
    /// How many items the whole list holds.
    pub total_count: i64,
}

pub type UserConnection = Connection<String, User, ConnectionFields, EmptyFields>;

macro_rules! user_columns {
    () => {
        "u.id, u.username, u.display_name, u.bio, u.avatar_url, COALESCE(c.followers_count, 0), COALESCE(c.following_count, 0), u.created_at"
    };
}

/// Users with their counts, as `u` (and `c`).
macro_rules! users {
    () => {
        "users u LEFT JOIN user_counts c ON c.user_id = u.id"
    };
}

fn user_from_row(row: &Row) -> Result<User> {
    let micros = row.int(7)?;
    Ok(User {
        id: ID(row.text(0)?.to_owned()),
        username: row.text(1)?.to_owned(),
        display_name: row.opt_text(2)?.map(str::to_owned),
        bio: row.opt_text(3)?.map(str::to_owned),
        avatar_url: row.opt_text(4)?.map(str::to_owned),
        followers_count: row.int(5)?,
        following_count: row.int(6)?,
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(|| Error::new("timestamp out of range"))?,
    })
}

fn db<'a>(ctx: &'a Context<'_>) -> &'a Arc<dyn ReadModelDb> {
    ctx.data_unchecked::<Arc<dyn ReadModelDb>>()
}

fn bad_request(message: &str, code: &str) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code.to_owned()))
}

async fn user_by_id(ctx: &Context<'_>, id: &str) -> Result<Option<User>> {
    const SQL: &str = concat!("SELECT ", user_columns!(), " FROM ", users!(), " WHERE u.id = $1");
    let rows = db(ctx).query(SQL, vec![id.into()]).await?;
    rows.first().map(user_from_row).transpose()
}

/// Keyset cursors: the follow's global position, opaque to clients.
fn encode_cursor(position: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("f:{position}"))
}

fn decode_cursor(cursor: &str) -> Result<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("f:").and_then(|p| p.parse().ok()))
        .ok_or_else(|| bad_request("`after` is not a cursor this API returned", "invalid_cursor"))
}

fn page_size(first: Option<i32>) -> Result<i64> {
    match first.unwrap_or(DEFAULT_PAGE) {
        n @ 0..=MAX_PAGE => Ok(n.into()),
        _ => Err(bad_request("`first` must be between 0 and 100", "invalid_page_size")),
    }
}

pub struct Query;

#[derive(Clone, Copy)]
enum Direction {
    Followers,
    Following,
}

async fn follow_page(ctx: &Context<'_>, user_id: &str, first: Option<i32>, after: Option<String>, direction: Direction) -> Result<UserConnection> {
    const FOLLOWERS: &str = concat!(
        "SELECT ",
        user_columns!(),
        ", f.position FROM follows f JOIN users u ON u.id = f.follower_id LEFT JOIN user_counts c ON c.user_id = u.id",
        " WHERE f.followee_id = $1 AND f.position < $2 ORDER BY f.position DESC LIMIT $3"
    );
    const FOLLOWING: &str = concat!(
        "SELECT ",
        user_columns!(),
        ", f.position FROM follows f JOIN users u ON u.id = f.followee_id LEFT JOIN user_counts c ON c.user_id = u.id",
        " WHERE f.follower_id = $1 AND f.position < $2 ORDER BY f.position DESC LIMIT $3"
    );
    let limit = page_size(first)?;
    let before = after.as_deref().map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
    let sql = match direction {
        Direction::Followers => FOLLOWERS,
        Direction::Following => FOLLOWING,
    };
    let rows = db(ctx).query(sql, vec![user_id.into(), SqlValue::Int(before), SqlValue::Int(limit + 1)]).await?;
    let total = match user_by_id(ctx, user_id).await? {
        Some(user) => match direction {
            Direction::Followers => user.followers_count,
            Direction::Following => user.following_count,
        },
        None => 0,
    };
    let mut connection = Connection::with_additional_fields(after.is_some(), rows.len() as i64 > limit, ConnectionFields { total_count: total });
    for row in rows.iter().take(limit as usize) {
        connection.edges.push(Edge::new(encode_cursor(row.int(8)?), user_from_row(row)?));
    }
    Ok(connection)
}

#[Object]
impl Query {
    /// A user by id or by username (give exactly one).
    async fn user(&self, ctx: &Context<'_>, id: Option<ID>, username: Option<String>) -> Result<Option<User>> {
        const BY_USERNAME: &str = concat!("SELECT ", user_columns!(), " FROM ", users!(), " WHERE u.username = $1");
        match (id, username) {
            (Some(id), None) => user_by_id(ctx, &id).await,
            (None, Some(username)) => {
                let rows = db(ctx).query(BY_USERNAME, vec![username.trim().to_ascii_lowercase().into()]).await?;
                rows.first().map(user_from_row).transpose()
            }
            _ => Err(bad_request("give exactly one of `id` or `username`", "invalid_arguments")),
        }
    }

    /// The signed-in user (send `Authorization: Bearer <token>`), or null.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match ctx.data_opt::<Viewer>().and_then(|viewer| viewer.0) {
            Some(user_id) => user_by_id(ctx, &user_id.to_string()).await,
            None => Ok(None),
        }
    }

    /// Who follows the user, newest first.
    async fn followers(&self, ctx: &Context<'_>, user_id: ID, first: Option<i32>, after: Option<String>) -> Result<UserConnection> {
        follow_page(ctx, &user_id, first, after, Direction::Followers).await
    }

    /// Whom the user follows, newest first.
    async fn following(&self, ctx: &Context<'_>, user_id: ID, first: Option<i32>, after: Option<String>) -> Result<UserConnection> {
        follow_page(ctx, &user_id, first, after, Direction::Following).await
    }
}

//! Users and follows.

use std::collections::HashMap;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::Loader;
use async_graphql::{Context, Error, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use plaza_projections::{Row, SqlValue};

use super::{ConnectionFields, IDS_PER_QUERY, bad_request, db, decode_cursor, encode_cursor, id_params, page_size};
use crate::Viewer;

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
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

#[async_graphql::ComplexObject]
impl User {
    /// Your unread messages over all your conversations; null for anyone but you.
    async fn unread_messages_count(&self, ctx: &Context<'_>) -> Result<Option<i64>> {
        match Viewer::of(ctx) {
            Some(viewer) if viewer.to_string() == self.id.as_str() => super::conversations::unread_messages(ctx, &self.id).await.map(Some),
            _ => Ok(None),
        }
    }

    /// Your unread notifications (a group counts once); null for anyone but you.
    async fn unread_notifications_count(&self, ctx: &Context<'_>) -> Result<Option<i64>> {
        match Viewer::of(ctx) {
            Some(viewer) if viewer.to_string() == self.id.as_str() => super::notifications::unread_count(ctx, &self.id).await.map(Some),
            _ => Ok(None),
        }
    }
}

pub type UserConnection = Connection<String, User, ConnectionFields, EmptyFields>;

#[macro_export]
#[doc(hidden)]
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.display_name, u.bio, u.avatar_url, COALESCE(c.followers_count, 0), COALESCE(c.following_count, 0), u.created_at"
    };
}

/// Users with their counts, as `u` (and `c`).
#[macro_export]
#[doc(hidden)]
macro_rules! users {
    () => {
        "users u LEFT JOIN user_counts c ON c.user_id = u.id"
    };
}

pub(crate) fn user_from_row(row: &Row) -> Result<User> {
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

pub(super) async fn user_by_id(ctx: &Context<'_>, id: &str) -> Result<Option<User>> {
    const SQL: &str = concat!("SELECT ", user_columns!(), " FROM ", users!(), " WHERE u.id = $1");
    let rows = db(ctx).query(SQL, vec![id.into()]).await?;
    rows.first().map(user_from_row).transpose()
}

/// Loads users by id in batches (`author` fields of lists): one query per
/// [`IDS_PER_QUERY`] ids instead of one per user.
pub struct UserLoader(pub std::sync::Arc<dyn plaza_projections::ReadModelDb>);

impl Loader<String> for UserLoader {
    type Value = User;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, User>> {
        const SQL: &str = concat!("SELECT ", user_columns!(), " FROM ", users!(), " WHERE u.id IN ", id_slots!(1));
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            for row in self.0.query(SQL, id_params(chunk).collect()).await? {
                let user = user_from_row(&row)?;
                found.insert(user.id.to_string(), user);
            }
        }
        Ok(found)
    }
}

#[derive(Default)]
pub struct AccountsQuery;

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
    let counted = if super::wants_total(ctx) { user_by_id(ctx, user_id).await? } else { None };
    let total = match counted {
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
impl AccountsQuery {
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
        match Viewer::of(ctx) {
            Some(user_id) => user_by_id(ctx, &user_id.to_string()).await,
            None => Ok(None),
        }
    }

    /// Who follows the user, newest first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn followers(&self, ctx: &Context<'_>, user_id: ID, first: Option<i32>, after: Option<String>) -> Result<UserConnection> {
        follow_page(ctx, &user_id, first, after, Direction::Followers).await
    }

    /// Whom the user follows, newest first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn following(&self, ctx: &Context<'_>, user_id: ID, first: Option<i32>, after: Option<String>) -> Result<UserConnection> {
        follow_page(ctx, &user_id, first, after, Direction::Following).await
    }
}

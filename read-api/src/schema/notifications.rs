//! Notifications: the signed-in user's, newest first, grouped
//! (`plaza_projections::notifications`).

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, Enum, Error, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use plaza_projections::{Row, SqlValue};

use super::accounts::{User, UserLoader};
use super::content::{Comment, Video, comment_by_id, video_by_id};
use super::conversations::{Conversation, conversation_for};
use super::{ConnectionFields, bad_request, db, page_size};
use crate::Viewer;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum NotificationKind {
    /// Someone followed you.
    Followed,
    VideoLiked,
    VideoFavorited,
    /// Someone commented on your video.
    VideoCommented,
    /// Someone replied to your comment.
    CommentReplied,
    CommentLiked,
    /// Someone wrote `@you` in a video's description, a comment or a message.
    Mentioned,
    /// A notice from Plaza.
    System,
}

fn kind(text: &str) -> Result<NotificationKind> {
    use plaza_domain::notifications::Kind;
    Ok(match Kind::parse(text).ok_or_else(|| Error::new(format!("unknown notification kind {text:?}")))? {
        Kind::Followed => NotificationKind::Followed,
        Kind::VideoLiked => NotificationKind::VideoLiked,
        Kind::VideoFavorited => NotificationKind::VideoFavorited,
        Kind::VideoCommented => NotificationKind::VideoCommented,
        Kind::CommentReplied => NotificationKind::CommentReplied,
        Kind::CommentLiked => NotificationKind::CommentLiked,
        Kind::Mentioned => NotificationKind::Mentioned,
        Kind::System => NotificationKind::System,
    })
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Notification {
    /// Give it to `POST /api/v1/notifications/read` as `up_to`.
    pub id: ID,
    pub kind: NotificationKind,
    /// How many people it groups ("alice, bob and 12 others"): 1 for kinds that do not
    /// group.
    pub group_count: i64,
    /// A notice's text, or the start of the comment or message it is about.
    pub text: Option<String>,
    /// When the group began.
    pub created_at: DateTime<Utc>,
    /// When someone last joined it.
    pub updated_at: DateTime<Utc>,
    pub read: bool,
    #[graphql(skip)]
    pub recipient_id: String,
    #[graphql(skip)]
    pub video_id: Option<String>,
    #[graphql(skip)]
    pub comment_id: Option<String>,
    #[graphql(skip)]
    pub conversation_id: Option<String>,
    /// Where it is in its recipient's list (position of its last update).
    #[graphql(skip)]
    pub position: i64,
}

/// A notification's columns for recipient `$1` (with whether it is read), from `n`.
#[macro_export]
#[doc(hidden)]
macro_rules! notification_columns {
    () => {
        "n.id, n.kind, n.actor_count, n.body, n.created_at, n.updated_at,
         CASE WHEN n.position <= COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = n.recipient_id), 0) THEN 1 ELSE 0 END,
         n.recipient_id, n.video_id, n.comment_id, n.conversation_id, n.position"
    };
}

fn timestamp(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| Error::new("timestamp out of range"))
}

pub(crate) fn notification_from_row(row: &Row) -> Result<Notification> {
    Ok(Notification {
        id: ID(row.int(0)?.to_string()),
        kind: kind(row.text(1)?)?,
        group_count: row.int(2)?,
        text: row.opt_text(3)?.map(str::to_owned),
        created_at: timestamp(row.int(4)?)?,
        updated_at: timestamp(row.int(5)?)?,
        read: row.int(6)? == 1,
        recipient_id: row.text(7)?.to_owned(),
        video_id: row.opt_text(8)?.map(str::to_owned),
        comment_id: row.opt_text(9)?.map(str::to_owned),
        conversation_id: row.opt_text(10)?.map(str::to_owned),
        position: row.int(11)?,
    })
}

/// Most actors one notification lists.
const MAX_ACTORS: i32 = 20;

#[ComplexObject]
impl Notification {
    /// The people who acted, most recent first (none for a notice).
    #[graphql(complexity = "first.clamp(0, MAX_ACTORS) as usize * child_complexity + super::LIST_COST")]
    async fn actors(&self, ctx: &Context<'_>, #[graphql(default = 3)] first: i32) -> Result<Vec<User>> {
        const SQL: &str = "SELECT actor_id FROM notification_actors WHERE recipient_id = $1 AND notification_id = $2 ORDER BY position DESC LIMIT $3";
        if !(0..=MAX_ACTORS).contains(&first) {
            return Err(bad_request("`first` must be between 0 and 20", "invalid_page_size"));
        }
        let id: i64 = self.id.parse().map_err(|_| Error::new("notification id"))?;
        let rows = db(ctx).query(SQL, vec![self.recipient_id.as_str().into(), SqlValue::Int(id), SqlValue::Int(first.into())]).await?;
        let ids: Vec<String> = rows.iter().map(|row| row.text(0).map(str::to_owned)).collect::<Result<_, _>>()?;
        let mut users = ctx.data_unchecked::<DataLoader<UserLoader>>().load_many(ids.iter().cloned()).await?;
        Ok(ids.iter().filter_map(|id| users.remove(id)).collect())
    }

    /// The video it is about (null when deleted).
    async fn video(&self, ctx: &Context<'_>) -> Result<Option<Video>> {
        match &self.video_id {
            Some(id) => video_by_id(ctx, id).await,
            None => Ok(None),
        }
    }

    /// The comment it is about (null when deleted).
    async fn comment(&self, ctx: &Context<'_>) -> Result<Option<Comment>> {
        match &self.comment_id {
            Some(id) => comment_by_id(ctx, id).await,
            None => Ok(None),
        }
    }

    /// The conversation of the message it is about, while you are a member.
    async fn conversation(&self, ctx: &Context<'_>) -> Result<Option<Conversation>> {
        match &self.conversation_id {
            Some(id) => Ok(conversation_for(ctx, &self.recipient_id, id).await.ok()),
            None => Ok(None),
        }
    }
}

pub type NotificationConnection = Connection<String, Notification, ConnectionFields, EmptyFields>;

/// A page cursor: the position and id of the last notification seen.
fn encode(position: i64, id: i64) -> String {
    super::tagged_cursor("n", format!("{position}:{id}"))
}

fn decode(cursor: &str) -> Result<(i64, i64)> {
    super::cursor_body(cursor, "n", |body| {
        let (position, id) = body.split_once(':')?;
        Some((position.parse().ok()?, id.parse().ok()?))
    })
}

pub(crate) fn signed_in(ctx: &Context<'_>) -> Result<String> {
    Viewer::of(ctx).map(|id| id.to_string()).ok_or_else(|| bad_request("sign in to read your notifications", "unauthenticated"))
}

/// How far `user` has read (a position).
async fn read_position(ctx: &Context<'_>, user: &str) -> Result<i64> {
    const SQL: &str = "SELECT read_position FROM notification_reads WHERE user_id = $1";
    let rows = db(ctx).query(SQL, vec![user.into()]).await?;
    Ok(rows.first().map(|row| row.int(0)).transpose()?.unwrap_or(0))
}

/// The user's unread notifications (groups).
pub(crate) async fn unread_count(ctx: &Context<'_>, user: &str) -> Result<i64> {
    const SQL: &str = "SELECT COUNT(*) FROM notifications WHERE recipient_id = $1 AND position > $2";
    let read = read_position(ctx, user).await?;
    Ok(db(ctx).query(SQL, vec![user.into(), SqlValue::Int(read)]).await?[0].int(0)?)
}

#[derive(Default)]
pub struct NotificationsQuery;

#[Object]
impl NotificationsQuery {
    /// Your notifications, most recently updated first (a group moves up when it grows).
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default)] unread_only: bool,
    ) -> Result<NotificationConnection> {
        const PAGE: &str = concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications n WHERE n.recipient_id = $1 AND n.position > $2 AND (n.position < $3 OR (n.position = $3 AND n.id < $4))
              ORDER BY n.position DESC, n.id DESC LIMIT $5"
        );
        const TOTAL: &str = "SELECT COUNT(*) FROM notifications WHERE recipient_id = $1 AND position > $2";
        let user = signed_in(ctx)?;
        let limit = page_size(first)?;
        let (before, before_id) = after.as_deref().map(decode).transpose()?.unwrap_or((i64::MAX, i64::MAX));
        let above = if unread_only { read_position(ctx, &user).await? } else { -1 };
        let rows = db(ctx)
            .query(PAGE, vec![user.as_str().into(), SqlValue::Int(above), SqlValue::Int(before), SqlValue::Int(before_id), SqlValue::Int(limit + 1)])
            .await?;
        let total = super::content::total_count(ctx, TOTAL, vec![user.as_str().into(), SqlValue::Int(above)]).await?;
        let mut connection = Connection::with_additional_fields(after.is_some(), rows.len() as i64 > limit, ConnectionFields { total_count: total });
        for row in rows.iter().take(limit as usize) {
            let notification = notification_from_row(row)?;
            let id: i64 = row.int(0)?;
            connection.edges.push(Edge::new(encode(notification.position, id), notification));
        }
        Ok(connection)
    }
}

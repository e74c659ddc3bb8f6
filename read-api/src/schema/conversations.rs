//! Conversations, messages, unread counts and presence. Only members see a conversation:
//! anyone else gets the error `conversation_not_found`, as the commands answer.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, Enum, Error, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use plaza_live::Presence;
use plaza_projections::{Row, SqlValue};
use uuid::Uuid;

use super::accounts::{User, UserLoader};
use super::{ConnectionFields, bad_request, db, page_size};
use crate::Viewer;

/// What the conversation queries and subscriptions need besides the read models.
#[derive(Clone)]
pub struct Live {
    pub presence: Arc<dyn Presence>,
    pub typing: Arc<dyn plaza_live::TypingSignals>,
    pub presence_ttl: Duration,
}

/// Users one `presence` query may ask about.
pub const MAX_PRESENCE_IDS: usize = 200;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

pub(crate) fn role(text: &str) -> Role {
    match text {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        _ => Role::Member,
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Conversation {
    pub id: ID,
    pub kind: ConversationKind,
    /// Empty for a direct conversation.
    pub title: String,
    pub description: String,
    pub my_role: Role,
    pub member_count: i64,
    /// Messages after your read marker.
    pub unread_count: i64,
    /// The newest message's seq (0: none yet).
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    last_message_id: Option<String>,
    #[graphql(skip)]
    activity: i64,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Message {
    pub id: ID,
    /// 1, 2, 3, ... within the conversation, without gaps.
    pub seq: i64,
    pub conversation_id: ID,
    /// Null once deleted.
    pub body: Option<String>,
    pub reply_to: Option<ID>,
    pub attachment_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    #[graphql(skip)]
    sender_id: String,
    /// The sender, when whoever built the message loaded it already (the hub does,
    /// once for all subscribers).
    #[graphql(skip)]
    pub(crate) sender: Option<User>,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Member {
    pub role: Role,
    #[graphql(skip)]
    user_id: String,
}

#[derive(SimpleObject)]
pub struct PresenceState {
    pub user_id: ID,
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

pub type ConversationConnection = Connection<String, Conversation, ConnectionFields, EmptyFields>;
pub type MessageConnection = Connection<String, Message, ConnectionFields, EmptyFields>;
pub type MemberConnection = Connection<String, Member, ConnectionFields, EmptyFields>;

fn timestamp(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| Error::new("timestamp out of range"))
}

/// A conversation as member `$1` sees it; column 10 is its activity (the newest
/// message's position, or its start's), the list's order.
macro_rules! conversation_columns {
    () => {
        "SELECT c.id, c.kind, c.title, c.description, me.role, c.member_count, c.created_at,
                COALESCE(a.last_seq, 0), a.last_message_id, COALESCE(r.read_seq, 0), COALESCE(a.last_position, c.position)
         FROM conversation_members me JOIN conversations c ON c.id = me.conversation_id
         LEFT JOIN conversation_activity a ON a.conversation_id = c.id
         LEFT JOIN conversation_reads r ON r.conversation_id = c.id AND r.user_id = me.user_id
         WHERE me.user_id = $1"
    };
}

fn conversation_from_row(row: &Row) -> Result<Conversation> {
    let (last_seq, read_seq) = (row.int(7)?, row.int(9)?);
    Ok(Conversation {
        id: ID(row.text(0)?.to_owned()),
        kind: if row.text(1)? == "group" { ConversationKind::Group } else { ConversationKind::Direct },
        title: row.text(2)?.to_owned(),
        description: row.text(3)?.to_owned(),
        my_role: role(row.text(4)?),
        member_count: row.int(5)?,
        created_at: timestamp(row.int(6)?)?,
        last_seq,
        unread_count: (last_seq - read_seq).max(0),
        last_message_id: row.opt_text(8)?.map(str::to_owned),
        activity: row.int(10)?,
    })
}

/// A message's columns with its edits (`m` joined to `x`).
#[macro_export]
#[doc(hidden)]
macro_rules! message_fields {
    () => {
        "m.id, m.seq, m.conversation_id, CASE WHEN COALESCE(x.deleted, 0) = 1 THEN NULL ELSE COALESCE(x.body, m.body) END,
         m.reply_to, m.attachment_url, m.created_at, x.edited_at, COALESCE(x.deleted, 0), m.sender_id"
    };
}

/// Messages with their edits; `$1` is their conversation.
macro_rules! message_columns {
    () => {
        concat!("SELECT ", message_fields!(), " FROM messages m LEFT JOIN message_changes x ON x.message_id = m.id WHERE m.conversation_id = $1")
    };
}

pub(crate) fn message_from_row(row: &Row) -> Result<Message> {
    let deleted = row.int(8)? == 1;
    Ok(Message {
        id: ID(row.text(0)?.to_owned()),
        seq: row.int(1)?,
        conversation_id: ID(row.text(2)?.to_owned()),
        body: row.opt_text(3)?.map(str::to_owned),
        reply_to: row.opt_text(4)?.map(|id| ID(id.to_owned())),
        attachment_url: if deleted { None } else { row.opt_text(5)?.map(str::to_owned) },
        created_at: timestamp(row.int(6)?)?,
        edited_at: match row.0.get(7) {
            Some(SqlValue::Int(micros)) => Some(timestamp(*micros)?),
            _ => None,
        },
        deleted,
        sender_id: row.text(9)?.to_owned(),
        sender: None,
    })
}

pub(crate) fn viewer(ctx: &Context<'_>) -> Result<String> {
    Viewer::of(ctx).map(|id| id.to_string()).ok_or_else(|| bad_request("sign in to read conversations", "unauthenticated"))
}

fn not_found() -> Error {
    bad_request("conversation not found", "conversation_not_found")
}

/// The conversation as the viewer sees it; `conversation_not_found` unless a member.
pub async fn conversation_for(ctx: &Context<'_>, user: &str, conversation_id: &str) -> Result<Conversation> {
    const SQL: &str = concat!(conversation_columns!(), " AND me.conversation_id = $2");
    let rows = db(ctx).query(SQL, vec![user.into(), conversation_id.into()]).await?;
    rows.first().map(conversation_from_row).transpose()?.ok_or_else(not_found)
}

/// A seq cursor: the seq itself, in decimal.
fn seq_cursor(cursor: Option<&str>, name: &str) -> Result<Option<i64>> {
    cursor
        .map(|c| c.parse::<i64>().ok().filter(|seq| *seq >= 0).ok_or_else(|| bad_request(&format!("`{name}` must be a seq"), "invalid_cursor")))
        .transpose()
}

#[ComplexObject]
impl Conversation {
    async fn last_message(&self, ctx: &Context<'_>) -> Result<Option<Message>> {
        const SQL: &str = concat!(message_columns!(), " AND m.id = $2");
        let Some(id) = &self.last_message_id else { return Ok(None) };
        let rows = db(ctx).query(SQL, vec![self.id.to_string().into(), id.as_str().into()]).await?;
        rows.first().map(message_from_row).transpose()
    }

    /// Members in user id order.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn members(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<MemberConnection> {
        const SQL: &str = "SELECT user_id, role FROM conversation_members WHERE conversation_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3";
        let limit = page_size(first)?;
        let rows = db(ctx).query(SQL, vec![self.id.to_string().into(), after.clone().unwrap_or_default().into(), SqlValue::Int(limit + 1)]).await?;
        let fields = ConnectionFields { total_count: self.member_count };
        let mut connection = Connection::with_additional_fields(after.is_some(), rows.len() as i64 > limit, fields);
        for row in rows.iter().take(limit as usize) {
            let user_id = row.text(0)?.to_owned();
            connection.edges.push(Edge::new(user_id.clone(), Member { role: role(row.text(1)?), user_id }));
        }
        Ok(connection)
    }
}

impl Message {
    pub(crate) fn sender_id(&self) -> &str {
        &self.sender_id
    }
}

#[ComplexObject]
impl Message {
    async fn sender(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        if let Some(sender) = &self.sender {
            return Ok(Some(sender.clone()));
        }
        ctx.data_unchecked::<DataLoader<UserLoader>>().load_one(self.sender_id.clone()).await
    }
}

#[ComplexObject]
impl Member {
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        ctx.data_unchecked::<DataLoader<UserLoader>>().load_one(self.user_id.clone()).await
    }
}

/// The viewer's unread messages over all their conversations.
pub(crate) async fn unread_messages(ctx: &Context<'_>, user: &str) -> Result<i64> {
    // SUM of BIGINT is NUMERIC in PostgreSQL: cast back.
    const SQL: &str = "SELECT CAST(COALESCE(SUM(CASE WHEN COALESCE(a.last_seq, 0) > COALESCE(r.read_seq, 0)
                                                   THEN COALESCE(a.last_seq, 0) - COALESCE(r.read_seq, 0) ELSE 0 END), 0) AS BIGINT)
         FROM conversation_members me
         LEFT JOIN conversation_activity a ON a.conversation_id = me.conversation_id
         LEFT JOIN conversation_reads r ON r.conversation_id = me.conversation_id AND r.user_id = me.user_id
         WHERE me.user_id = $1";
    let rows = db(ctx).query(SQL, vec![user.into()]).await?;
    Ok(rows.first().map(|row| row.int(0)).transpose()?.unwrap_or(0))
}

/// A page of a conversation's messages: `first`/`after` read forwards from a seq
/// (catching up), otherwise `last`/`before` read backwards from the newest (scrolling
/// up). Edges are in seq order either way.
pub(crate) async fn message_page(
    ctx: &Context<'_>,
    conversation: &Conversation,
    (first, after): (Option<i32>, Option<String>),
    (last, before): (Option<i32>, Option<String>),
) -> Result<MessageConnection> {
    const BACKWARDS: &str = concat!(message_columns!(), " AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3");
    let id = conversation.id.to_string();
    let fields = || ConnectionFields { total_count: conversation.last_seq };
    if first.is_some() || after.is_some() {
        if last.is_some() || before.is_some() {
            return Err(bad_request("give first/after or last/before, not both", "invalid_arguments"));
        }
        let limit = page_size(first)?;
        let after_seq = seq_cursor(after.as_deref(), "after")?.unwrap_or(0);
        let messages = messages_after(db(ctx).as_ref(), &id, after_seq, limit + 1).await?;
        let mut connection = Connection::with_additional_fields(after_seq > 0, messages.len() as i64 > limit, fields());
        for message in messages.into_iter().take(limit as usize) {
            connection.edges.push(Edge::new(message.seq.to_string(), message));
        }
        return Ok(connection);
    }
    let limit = page_size(last)?;
    let before_seq = seq_cursor(before.as_deref(), "before")?.unwrap_or(i64::MAX);
    let rows = db(ctx).query(BACKWARDS, vec![id.into(), SqlValue::Int(before_seq), SqlValue::Int(limit + 1)]).await?;
    let mut connection = Connection::with_additional_fields(rows.len() as i64 > limit, before.is_some(), fields());
    for row in rows.iter().take(limit as usize).rev() {
        let message = message_from_row(row)?;
        connection.edges.push(Edge::new(message.seq.to_string(), message));
    }
    Ok(connection)
}

/// Up to `limit` messages of a conversation after seq `after`, in seq order.
pub(crate) async fn messages_after(db: &dyn plaza_projections::ReadModelDb, conversation_id: &str, after: i64, limit: i64) -> Result<Vec<Message>> {
    const FORWARDS: &str = concat!(message_columns!(), " AND m.seq > $2 ORDER BY m.seq LIMIT $3");
    let rows = db.query(FORWARDS, vec![conversation_id.into(), SqlValue::Int(after), SqlValue::Int(limit)]).await?;
    rows.iter().map(message_from_row).collect()
}

#[derive(Default)]
pub struct ConversationsQuery;

#[Object]
impl ConversationsQuery {
    /// Your conversations, most recent activity first.
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first, child_complexity)")]
    async fn conversations(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<ConversationConnection> {
        const PAGE: &str = concat!(conversation_columns!(), " AND COALESCE(a.last_position, c.position) < $2 ORDER BY 11 DESC LIMIT $3");
        const COUNT: &str = "SELECT count(*) FROM conversation_members WHERE user_id = $1";
        let user = viewer(ctx)?;
        let limit = page_size(first)?;
        let before = after.as_deref().map(super::decode_cursor).transpose()?.unwrap_or(i64::MAX);
        let rows = db(ctx).query(PAGE, vec![user.as_str().into(), SqlValue::Int(before), SqlValue::Int(limit + 1)]).await?;
        let total = super::content::total_count(ctx, COUNT, vec![user.as_str().into()]).await?;
        let mut connection = Connection::with_additional_fields(after.is_some(), rows.len() as i64 > limit, ConnectionFields { total_count: total });
        for row in rows.iter().take(limit as usize) {
            let conversation = conversation_from_row(row)?;
            connection.edges.push(Edge::new(super::encode_cursor(conversation.activity), conversation));
        }
        Ok(connection)
    }

    /// One of your conversations.
    async fn conversation(&self, ctx: &Context<'_>, id: ID) -> Result<Conversation> {
        conversation_for(ctx, &viewer(ctx)?, &id).await
    }

    /// A conversation's messages (see `Conversation` cursors: a message's seq).
    #[graphql(complexity = "super::list_complexity(super::LIST_COST, first.or(last), child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<MessageConnection> {
        let conversation = conversation_for(ctx, &viewer(ctx)?, &conversation_id).await?;
        message_page(ctx, &conversation, (first, after), (last, before)).await
    }

    /// Who is online, of at most 200 users.
    #[graphql(complexity = "super::LIST_COST + user_ids.len() * child_complexity")]
    async fn presence(&self, ctx: &Context<'_>, user_ids: Vec<ID>) -> Result<Vec<PresenceState>> {
        viewer(ctx)?;
        if user_ids.len() > MAX_PRESENCE_IDS {
            return Err(bad_request("ask about at most 200 users at once", "invalid_arguments"));
        }
        let ids: Vec<Option<Uuid>> = user_ids.iter().map(|id| plaza_edge::canonical_uuid(id)).collect();
        let known: Vec<Uuid> = ids.iter().flatten().copied().collect();
        let live = ctx.data_unchecked::<Live>();
        let seen = live.presence.last_seen(&known).await.map_err(|e| Error::new(e.to_string()))?;
        let mut seen = seen.into_iter();
        let now = Utc::now();
        Ok(user_ids
            .into_iter()
            .zip(ids)
            .map(|(user_id, id)| {
                let last_seen_at = id.and_then(|_| seen.next().flatten());
                PresenceState { user_id, online: plaza_live::online(last_seen_at, now, live.presence_ttl), last_seen_at }
            })
            .collect())
    }
}

//! Conversation commands over REST: conversations, members, messages, read markers,
//! typing and presence.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use plaza_commands::Draft;
use plaza_domain::DomainError;
use plaza_live::Typing;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::answers::{Answer, ConversationStarted, ErrorBody, MessageStored, Position, position};
use crate::extract::{Caller, JsonBody, PathId, PathIds};
use crate::{ApiError, WriteApi};

fn live_error(error: plaza_live::LiveError) -> ApiError {
    tracing::warn!(%error, "presence or typing unavailable");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "live_unavailable", "presence and typing are unavailable; retry later")
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    kind: ConversationKind,
    /// `direct`: the other person.
    #[serde(default)]
    member_id: Option<Uuid>,
    /// `group`: 1 to 100 characters on one line.
    #[serde(default)]
    #[schema(max_length = 100, example = "Weekend hikes")]
    title: Option<String>,
    /// `group`: at most 1,000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// `group`: the first members besides you (at most 1,000 at once).
    #[serde(default)]
    member_ids: Vec<Uuid>,
}

/// Starts a direct conversation (or finds the one you have with that person: 200) or a
/// group, of which you are the owner.
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations", request_body = StartRequest, security(("bearer" = [])),
    responses(
        (status = 201, description = "Started", body = ConversationStarted),
        (status = 200, description = "The direct conversation you already have with that person", body = ConversationStarted),
        (status = 400, description = "`invalid_conversation`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`group_full`", body = ErrorBody),
    ))]
pub async fn start(State(api): State<Arc<WriteApi>>, caller: Caller, body: JsonBody<StartRequest>) -> Answer<ConversationStarted> {
    caller.require()?;
    let ctx = api.context(&caller, "POST", "/api/v1/conversations", &body.raw).await?;
    let request = &body.value;
    let started = match request.kind {
        ConversationKind::Direct => {
            if request.title.is_some() || request.description.is_some() || !request.member_ids.is_empty() {
                return Err(invalid("a direct conversation takes member_id only"));
            }
            let other = request.member_id.ok_or_else(|| invalid("a direct conversation needs member_id"))?;
            api.conversations.start_direct(other, &ctx).await?
        }
        ConversationKind::Group => {
            if request.member_id.is_some() {
                return Err(invalid("a group takes member_ids, not member_id"));
            }
            let title = request.title.as_deref().ok_or_else(|| invalid("a group needs a title"))?;
            api.conversations.start_group(title, request.description.as_deref().unwrap_or(""), &request.member_ids, &ctx).await?
        }
    };
    let status = if started.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ConversationStarted { conversation_id: started.conversation_id, position: started.position })))
}

fn invalid(message: &'static str) -> ApiError {
    ApiError::from(plaza_commands::CommandError::from(DomainError::InvalidConversation(message)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversationRequest {
    #[serde(default)]
    #[schema(max_length = 100)]
    title: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: Option<String>,
}

/// Changes a group's title or description (its owner or an admin).
#[utoipa::path(put, path = "/api/v1/conversations/{id}", tag = "conversations", request_body = UpdateConversationRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation")),
    responses(
        (status = 200, description = "Changed (or nothing to change)", body = Position),
        (status = 400, description = "`invalid_conversation`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not its owner or an admin", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn update(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<UpdateConversationRequest>) -> Answer<Position> {
    caller.require()?;
    let conversation_id = id.or(DomainError::ConversationNotFound)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/conversations/{conversation_id}"), &body.raw).await?;
    let UpdateConversationRequest { title, description } = &body.value;
    position(api.conversations.update(conversation_id, title.as_deref(), description.as_deref(), &ctx).await?.position)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    /// At most 1,000 at once.
    user_ids: Vec<Uuid>,
}

/// Adds members to a group (its owner or an admin).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/members", tag = "conversations", request_body = MembersRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation")),
    responses(
        (status = 200, description = "Added", body = Position),
        (status = 400, description = "`invalid_conversation`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`, `user_not_found`", body = ErrorBody),
        (status = 409, description = "`already_member`, `group_full`", body = ErrorBody),
    ))]
pub async fn add_members(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<MembersRequest>) -> Answer<Position> {
    caller.require()?;
    let conversation_id = id.or(DomainError::ConversationNotFound)?;
    let ctx = api.context(&caller, "POST", &format!("/api/v1/conversations/{conversation_id}/members"), &body.raw).await?;
    position(api.conversations.add_members(conversation_id, &body.value.user_ids, &ctx).await?.position)
}

/// Removes a member (the owner removes anyone, an admin removes members), or leaves
/// (your own id; the owner hands ownership over first).
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/members/{user_id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation"), ("user_id" = Uuid, Path, description = "the member")),
    responses(
        (status = 200, description = "Removed", body = Position),
        (status = 400, description = "`invalid_conversation`: a direct conversation", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
        (status = 409, description = "`not_member`", body = ErrorBody),
    ))]
pub async fn remove_member(State(api): State<Arc<WriteApi>>, ids: PathIds, caller: Caller) -> Answer<Position> {
    caller.require()?;
    let (conversation_id, user_id) = ids.or(DomainError::ConversationNotFound, DomainError::NotMember)?;
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/conversations/{conversation_id}/members/{user_id}"), b"").await?;
    position(api.conversations.remove_member(conversation_id, user_id, &ctx).await?.position)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// `owner` (hands ownership over: you become an admin), `admin` or `member`.
    #[schema(example = "admin")]
    role: String,
}

/// Sets a member's role (the owner only).
#[utoipa::path(put, path = "/api/v1/conversations/{id}/members/{user_id}", tag = "conversations", request_body = RoleRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation"), ("user_id" = Uuid, Path, description = "the member")),
    responses(
        (status = 200, description = "Set", body = Position),
        (status = 400, description = "`invalid_conversation`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
        (status = 409, description = "`not_member`", body = ErrorBody),
    ))]
pub async fn set_role(State(api): State<Arc<WriteApi>>, ids: PathIds, caller: Caller, body: JsonBody<RoleRequest>) -> Answer<Position> {
    caller.require()?;
    let (conversation_id, user_id) = ids.or(DomainError::ConversationNotFound, DomainError::NotMember)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/conversations/{conversation_id}/members/{user_id}"), &body.raw).await?;
    position(api.conversations.set_role(conversation_id, user_id, &body.value.role, &ctx).await?.position)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// 1 to 4,000 characters.
    #[schema(min_length = 1, max_length = 4000, example = "See you at eight")]
    body: String,
    /// A message of the same conversation.
    #[serde(default)]
    reply_to: Option<Uuid>,
    /// An http(s) URL.
    #[serde(default)]
    attachment_url: Option<String>,
}

/// Sends a message; answers its `seq` (1, 2, 3, ... per conversation) once it is durable.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations", request_body = MessageRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation")),
    responses(
        (status = 201, description = "Stored", body = MessageStored),
        (status = 400, description = "`invalid_message`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn send(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<MessageRequest>) -> Answer<MessageStored> {
    caller.require()?;
    let conversation_id = id.or(DomainError::ConversationNotFound)?;
    let ctx = api.context(&caller, "POST", &format!("/api/v1/conversations/{conversation_id}/messages"), &body.raw).await?;
    let MessageRequest { body: text, reply_to, attachment_url } = &body.value;
    let draft = Draft { body: text, reply_to: *reply_to, attachment_url: attachment_url.as_deref() };
    let sent = api.conversations.send(conversation_id, draft, &ctx).await?;
    Ok((StatusCode::CREATED, Json(MessageStored { message_id: sent.message_id, seq: sent.seq, position: sent.position })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    #[schema(min_length = 1, max_length = 4000)]
    body: String,
}

/// Edits a message (its sender, within `message_edit_window_secs` of sending it).
#[utoipa::path(put, path = "/api/v1/messages/{id}", tag = "conversations", request_body = EditRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the message")),
    responses(
        (status = 200, description = "Edited", body = Position),
        (status = 400, description = "`invalid_message`", body = ErrorBody),
        (status = 403, description = "`forbidden`: someone else's message", body = ErrorBody),
        (status = 404, description = "`message_not_found`", body = ErrorBody),
        (status = 409, description = "`edit_window_passed`", body = ErrorBody),
    ))]
pub async fn edit(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<EditRequest>) -> Answer<Position> {
    caller.require()?;
    let message_id = id.or(DomainError::MessageNotFound)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/messages/{message_id}"), &body.raw).await?;
    position(api.conversations.edit(message_id, &body.value.body, &ctx).await?.position)
}

/// Deletes a message (its sender, or a group's owner or admin); it stays in the history
/// as deleted, without its body.
#[utoipa::path(delete, path = "/api/v1/messages/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the message")),
    responses(
        (status = 200, description = "Deleted", body = Position),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`message_not_found`", body = ErrorBody),
    ))]
pub async fn delete_message(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    caller.require()?;
    let message_id = id.or(DomainError::MessageNotFound)?;
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/messages/{message_id}"), b"").await?;
    position(api.conversations.delete_message(message_id, &ctx).await?.position)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The seq of the newest message read; a lower one than before changes nothing.
    seq: u64,
}

/// Moves your read marker forward.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "conversations", request_body = ReadRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation")),
    responses(
        (status = 200, description = "Moved (or already there)", body = Position),
        (status = 400, description = "`invalid_conversation`: beyond the last message", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn mark_read(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<ReadRequest>) -> Answer<Position> {
    caller.require()?;
    let conversation_id = id.or(DomainError::ConversationNotFound)?;
    let ctx = api.context(&caller, "POST", &format!("/api/v1/conversations/{conversation_id}/read"), &body.raw).await?;
    position(api.conversations.mark_read(conversation_id, body.value.seq, &ctx).await?.position)
}

/// Tells the conversation's `typing` subscribers you are typing (nothing is stored).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/typing", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the conversation")),
    responses(
        (status = 204, description = "Told"),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn typing(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Result<StatusCode, ApiError> {
    let user_id = caller.require()?;
    let conversation_id = id.or(DomainError::ConversationNotFound)?;
    api.conversations.membership(conversation_id, user_id).await?;
    api.typing.publish(Typing { conversation_id, user_id, at: Utc::now() }).await.map_err(live_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Marks you online for `presence_ttl_secs` (nothing is stored).
#[utoipa::path(post, path = "/api/v1/presence/heartbeat", tag = "conversations", security(("bearer" = [])),
    responses((status = 204, description = "Online")))]
pub async fn heartbeat(State(api): State<Arc<WriteApi>>, caller: Caller) -> Result<StatusCode, ApiError> {
    let user_id = caller.require()?;
    api.presence.seen(user_id, Utc::now()).await.map_err(live_error)?;
    Ok(StatusCode::NO_CONTENT)
}

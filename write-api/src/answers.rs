//! What commands answer, as types: the handlers return them and the OpenAPI document
//! describes them, so the two cannot drift apart.

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiError;

/// What a command handler answers: a status and a JSON body, or an error.
pub type Answer<T> = Result<(StatusCode, Json<T>), ApiError>;

/// 200 with the command's position.
pub fn position(position: u64) -> Answer<Position> {
    Ok((StatusCode::OK, Json(Position { position })))
}

/// Every error: `{"error": "snake_case_code", "message": "..."}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code, e.g. `video_not_found`.
    pub error: String,
    /// For people; may change.
    pub message: String,
}

/// The global log position of the command's last event: send it as `Plaza-Min-Position`
/// to read your own write through GraphQL.
#[derive(Serialize, ToSchema)]
pub struct Position {
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user_id: Uuid,
    /// An access token (HS256 JWT) for `Authorization: Bearer`.
    pub token: String,
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    pub user_id: Uuid,
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct VideoCreated {
    pub video_id: Uuid,
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct CommentCreated {
    pub comment_id: Uuid,
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct HashtagCreated {
    /// The hashtag as stored: lowercase, NFC, without `#`.
    pub name: String,
    pub position: u64,
}

/// A counter's value including this increment, once the increment is durable.
#[derive(Serialize, ToSchema)]
pub struct Counted {
    pub success: bool,
    pub current_value: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationStarted {
    pub conversation_id: Uuid,
    pub position: u64,
}

/// A stored message: its id and its `seq` in the conversation (1, 2, 3, ...).
#[derive(Serialize, ToSchema)]
pub struct MessageStored {
    pub message_id: Uuid,
    pub seq: u64,
    pub position: u64,
}

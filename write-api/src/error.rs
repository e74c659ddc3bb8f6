use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use plaza_commands::CommandError;
use plaza_domain::{DomainError, StoreError};

use crate::answers::ErrorBody;
use tracing::error;

/// An error as the API shows it: a status, a stable snake_case code and a message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Headers the answer carries (`Retry-After`, ...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this resource does not accept that method")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.code.to_owned(), message: self.message })).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

fn domain_status(error: &DomainError) -> StatusCode {
    match error {
        DomainError::InvalidUsername
        | DomainError::InvalidRole
        | DomainError::InvalidEmail
        | DomainError::InvalidPassword
        | DomainError::InvalidProfile(_)
        | DomainError::CannotFollowSelf
        | DomainError::InvalidVideo(_)
        | DomainError::InvalidComment(_)
        | DomainError::InvalidParent
        | DomainError::InvalidHashtag(_)
        | DomainError::InvalidCounter(_)
        | DomainError::InvalidConversation(_)
        | DomainError::InvalidMessage(_)
        | DomainError::InvalidNotification(_)
        | DomainError::InvalidSearch(_) => StatusCode::BAD_REQUEST,
        DomainError::NotAllowed(_) | DomainError::ReservedCounter => StatusCode::FORBIDDEN,
        DomainError::UserNotFound
        | DomainError::VideoNotFound
        | DomainError::CommentNotFound
        | DomainError::ConversationNotFound
        | DomainError::MessageNotFound => StatusCode::NOT_FOUND,
        DomainError::UsernameTaken
        | DomainError::EmailTaken
        | DomainError::AlreadyRegistered
        | DomainError::AlreadyFollowing
        | DomainError::NotFollowing
        | DomainError::AlreadyLiked
        | DomainError::NotLiked
        | DomainError::AlreadyFavorited
        | DomainError::NotFavorited
        | DomainError::AlreadyLikedComment
        | DomainError::NotLikedComment
        | DomainError::HashtagExists
        | DomainError::AlreadyMember
        | DomainError::NotMember
        | DomainError::GroupFull
        | DomainError::EditWindowPassed => StatusCode::CONFLICT,
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let message = error.to_string();
        match error {
            CommandError::Domain(domain) => Self::new(domain_status(&domain), domain.code(), message),
            CommandError::InvalidCredentials => Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message),
            CommandError::Unauthenticated => Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message),
            CommandError::Forbidden => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            CommandError::Contention => Self::new(StatusCode::CONFLICT, "contention", message),
            CommandError::IdempotencyKeyReused => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message),
            CommandError::Store(StoreError::Unavailable(detail)) => {
                error!(%detail, "event store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the event store is unavailable; retry later")
            }
            CommandError::Store(_) | CommandError::Internal(_) => {
                error!(%message, "command failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "something went wrong on our side")
            }
        }
    }
}

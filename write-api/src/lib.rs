//! The write side over REST/JSON: `/api/v1/...` commands, bearer-token auth, request
//! validation, and one error shape, `{"error": "snake_case_code", "message": "..."}`.

pub mod admin_forms;
mod answers;
mod content;
mod conversations;
mod error;
mod extract;
pub mod limits;
pub mod login;
mod notifications;
mod openapi;
mod search;
mod users;

/// The request bodies of the commands (for fuzzing their decoding).
pub mod requests {
    pub use crate::content::{CommentRequest, HashtagRequest, IncrementRequest, PublishRequest, UpdateRequest};
    pub use crate::conversations::{EditRequest, MembersRequest, MessageRequest, ReadRequest, RoleRequest, StartRequest, UpdateConversationRequest};
    pub use crate::notifications::{NotificationSettingsRequest, ReadNotificationsRequest};
    pub use crate::users::{LoginRequest, ProfileRequest, RegisterRequest};
}

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use plaza_commands::{Accounts, Claim, CommandContext, Content, Conversations, Counters, IdempotencyKeys, Notifications, SearchHistory};
use plaza_edge::Tokens;

pub use error::ApiError;
pub use extract::decode_json;
use extract::{Caller, request_id};
pub use login::{FailureLog, LocalFailures, LoginPolicy, LoginThrottle};
pub use plaza_edge::{LocalRateLimiter, Quota, RateLimiter, RateLimits};

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct WriteApi {
    pub accounts: Accounts,
    pub content: Content,
    pub counters: Counters,
    pub conversations: Conversations,
    pub notifications: Notifications,
    pub search_history: SearchHistory,
    pub presence: Arc<dyn plaza_live::Presence>,
    pub typing: Arc<dyn plaza_live::TypingSignals>,
    pub keys: IdempotencyKeys,
    pub tokens: Tokens,
    pub limiter: Arc<dyn RateLimiter>,
    pub logins: Arc<LoginThrottle>,
    /// Proxies in front of this API whose `X-Forwarded-For` is trusted (0: none).
    pub proxy_hops: usize,
}

impl WriteApi {
    /// The command context of a request (`method`, `path`, `body`), with its
    /// `Idempotency-Key` claimed: 422 `idempotency_key_reused` when the key was used
    /// for another request.
    async fn context(&self, caller: &Caller, method: &str, path: &str, body: &[u8]) -> Result<CommandContext, ApiError> {
        Ok(self.claimed_context(caller, method, path, body).await?.0)
    }

    /// [`Self::context`] and what the claim found.
    async fn claimed_context(&self, caller: &Caller, method: &str, path: &str, body: &[u8]) -> Result<(CommandContext, Claim), ApiError> {
        let ctx = caller.context(&request_id(method, path, body));
        let claim = self.keys.claim(&ctx).await?;
        Ok((ctx, claim))
    }
}

pub fn router(api: WriteApi) -> Router {
    // Shared, not cloned: every request's extractors and middleware take the state.
    let api = Arc::new(api);
    Router::new()
        .route("/api/v1/users/register", post(users::register))
        .route("/api/v1/users/login", post(users::login))
        .route("/api/v1/users/{id}", put(users::update_profile))
        .route("/api/v1/users/{id}/follow", post(users::follow).delete(users::unfollow))
        .route("/api/v1/users/{id}/notification-settings", put(notifications::settings))
        .route("/api/v1/notifications/read", post(notifications::mark_read))
        .route("/api/v1/search/history", delete(search::clear_all))
        .route("/api/v1/search/history/{query}", delete(search::clear_one))
        .route("/api/v1/videos", post(content::publish))
        .route("/api/v1/videos/{id}", put(content::update).delete(content::delete))
        .route("/api/v1/videos/{id}/like", post(content::like).delete(content::unlike))
        .route("/api/v1/videos/{id}/favorite", post(content::favorite).delete(content::unfavorite))
        .route("/api/v1/videos/{id}/comments", post(content::comment))
        .route("/api/v1/videos/{id}/views", post(content::view))
        .route("/api/v1/comments/{id}", delete(content::delete_comment))
        .route("/api/v1/comments/{id}/like", post(content::like_comment).delete(content::unlike_comment))
        .route("/api/v1/hashtags", post(content::create_hashtag))
        .route("/api/v1/counter/increment", post(content::increment))
        .route("/api/v1/recommend/refresh", post(content::refresh_recommendations))
        .route("/api/v1/conversations", post(conversations::start))
        .route("/api/v1/conversations/{id}", put(conversations::update))
        .route("/api/v1/conversations/{id}/members", post(conversations::add_members))
        .route("/api/v1/conversations/{id}/members/{user_id}", put(conversations::set_role).delete(conversations::remove_member))
        .route("/api/v1/conversations/{id}/messages", post(conversations::send))
        .route("/api/v1/conversations/{id}/read", post(conversations::mark_read))
        .route("/api/v1/conversations/{id}/typing", post(conversations::typing))
        .route("/api/v1/messages/{id}", put(conversations::edit).delete(conversations::delete_message))
        .route("/api/v1/presence/heartbeat", post(conversations::heartbeat))
        .route_layer(middleware::from_fn_with_state(api.clone(), limits::limit))
        .route("/api/v1/openapi.json", get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi::document()) }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

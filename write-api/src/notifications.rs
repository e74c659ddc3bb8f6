//! Notification commands: mark read, and per-kind settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use plaza_domain::DomainError;
use plaza_domain::notifications::Kind;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::answers::{Answer, ErrorBody, Position, position};
use crate::extract::{Caller, JsonBody, PathId};
use crate::{ApiError, WriteApi};

/// A notification's id, as GraphQL gives it (a string of digits) or as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum NotificationId {
    Number(i64),
    Text(String),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadNotificationsRequest {
    /// Read this notification (its GraphQL `id`) and every older one.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "2417")]
    up_to: Option<NotificationId>,
    /// Read every notification so far.
    #[serde(default)]
    all: Option<bool>,
}

fn invalid(message: &'static str) -> ApiError {
    ApiError::from(plaza_commands::CommandError::from(DomainError::InvalidNotification(message)))
}

/// Marks your notifications read: up to one (`{"up_to": id}`) or all (`{"all": true}`).
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", request_body = ReadNotificationsRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "Marked read", body = Position),
        (status = 400, description = "`invalid_notification`: give exactly one of `up_to` (a notification id) and `all: true`", body = ErrorBody),
    ))]
pub async fn mark_read(State(api): State<Arc<WriteApi>>, caller: Caller, body: JsonBody<ReadNotificationsRequest>) -> Answer<Position> {
    caller.require()?;
    let up_to = match (&body.value.up_to, body.value.all) {
        (Some(id), None | Some(false)) => Some(match id {
            NotificationId::Number(n) => *n,
            NotificationId::Text(text) => text.parse::<i64>().map_err(|_| invalid("`up_to` must be a notification's id"))?,
        }),
        (None, Some(true)) => None,
        _ => return Err(invalid("give exactly one of `up_to` (a notification id) and `all: true`")),
    };
    let ctx = api.context(&caller, "POST", "/api/v1/notifications/read", &body.raw).await?;
    position(api.notifications.mark_read(up_to, &ctx).await?.position)
}

/// Which kinds of notification you want; a kind left out stays as it is (all are on
/// at first).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettingsRequest {
    followed: Option<bool>,
    video_liked: Option<bool>,
    video_favorited: Option<bool>,
    video_commented: Option<bool>,
    comment_replied: Option<bool>,
    comment_liked: Option<bool>,
    mentioned: Option<bool>,
    system: Option<bool>,
}

impl NotificationSettingsRequest {
    fn settings(&self) -> BTreeMap<Kind, bool> {
        [
            (Kind::Followed, self.followed),
            (Kind::VideoLiked, self.video_liked),
            (Kind::VideoFavorited, self.video_favorited),
            (Kind::VideoCommented, self.video_commented),
            (Kind::CommentReplied, self.comment_replied),
            (Kind::CommentLiked, self.comment_liked),
            (Kind::Mentioned, self.mentioned),
            (Kind::System, self.system),
        ]
        .into_iter()
        .filter_map(|(kind, on)| Some((kind, on?)))
        .collect()
    }
}

/// Switches kinds of notification on or off for yourself: kinds switched off are not
/// created (nor counted) from then on.
#[utoipa::path(put, path = "/api/v1/users/{id}/notification-settings", tag = "notifications", request_body = NotificationSettingsRequest,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the user's id: yours")),
    responses(
        (status = 200, description = "Changed (or nothing to change)", body = Position),
        (status = 403, description = "`forbidden`: someone else's settings", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    ))]
pub async fn settings(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<NotificationSettingsRequest>) -> Answer<Position> {
    let actor = caller.require()?;
    let user_id = id.or(DomainError::UserNotFound)?;
    if actor != user_id {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "you may only change your own notification settings"));
    }
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/users/{user_id}/notification-settings"), &body.raw).await?;
    position(api.notifications.change_settings(user_id, body.value.settings(), &ctx).await?.position)
}

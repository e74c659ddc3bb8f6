//! Content commands over REST: videos, likes, favorites, comments, hashtags, views and
//! generic counters.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use plaza_commands::{CommandError, VideoFields};
use plaza_domain::DomainError;
use plaza_domain::counters::{CounterKey, VIEWS, check_delta};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::extract::{Caller, JsonBody};
use crate::{ApiError, WriteApi};

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

fn request_id(method: &str, path: &str, body: &[u8]) -> String {
    format!("{method} {path}\n{}", String::from_utf8_lossy(body))
}

/// A path id that is not a UUID names nothing: the given not-found error.
fn path_id(raw: &str, missing: DomainError) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::from(CommandError::from(missing)))
}

fn position(position: u64) -> Answer {
    Ok((StatusCode::OK, Json(json!({ "position": position }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    title: String,
    #[serde(default)]
    description: String,
    media_url: String,
    #[serde(default)]
    hashtags: Vec<String>,
}

pub async fn publish(State(api): State<WriteApi>, caller: Caller, body: JsonBody<PublishRequest>) -> Answer {
    caller.require()?;
    let ctx = caller.context(&request_id("POST", "/api/v1/videos", &body.raw));
    let PublishRequest { title, description, media_url, hashtags } = &body.value;
    let created = api.content.publish(VideoFields { title, description, hashtags }, media_url, &ctx).await?;
    Ok((StatusCode::CREATED, Json(json!({ "video_id": created.id, "position": created.position }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    hashtags: Vec<String>,
}

pub async fn update(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller, body: JsonBody<UpdateRequest>) -> Answer {
    caller.require()?;
    let video_id = path_id(&id, DomainError::VideoNotFound)?;
    let ctx = caller.context(&request_id("PUT", &format!("/api/v1/videos/{id}"), &body.raw));
    let UpdateRequest { title, description, hashtags } = &body.value;
    position(api.content.update(video_id, VideoFields { title, description, hashtags }, &ctx).await?.position)
}

pub async fn delete(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    caller.require()?;
    let video_id = path_id(&id, DomainError::VideoNotFound)?;
    let ctx = caller.context(&request_id("DELETE", &format!("/api/v1/videos/{id}"), b""));
    position(api.content.delete(video_id, &ctx).await?.position)
}

async fn like_video(api: WriteApi, id: String, caller: Caller, on: bool) -> Answer {
    caller.require()?;
    let video_id = path_id(&id, DomainError::VideoNotFound)?;
    let ctx = caller.context(&request_id(if on { "POST" } else { "DELETE" }, &format!("/api/v1/videos/{id}/like"), b""));
    position(api.content.like(video_id, on, &ctx).await?.position)
}

pub async fn like(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    like_video(api, id, caller, true).await
}

pub async fn unlike(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    like_video(api, id, caller, false).await
}

async fn favorite_video(api: WriteApi, id: String, caller: Caller, on: bool) -> Answer {
    caller.require()?;
    let video_id = path_id(&id, DomainError::VideoNotFound)?;
    let ctx = caller.context(&request_id(if on { "POST" } else { "DELETE" }, &format!("/api/v1/videos/{id}/favorite"), b""));
    position(api.content.favorite(video_id, on, &ctx).await?.position)
}

pub async fn favorite(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    favorite_video(api, id, caller, true).await
}

pub async fn unfavorite(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    favorite_video(api, id, caller, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    body: String,
    #[serde(default)]
    parent_id: Option<Uuid>,
}

pub async fn comment(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller, body: JsonBody<CommentRequest>) -> Answer {
    caller.require()?;
    let video_id = path_id(&id, DomainError::VideoNotFound)?;
    let ctx = caller.context(&request_id("POST", &format!("/api/v1/videos/{id}/comments"), &body.raw));
    let created = api.content.comment(video_id, &body.value.body, body.value.parent_id, &ctx).await?;
    Ok((StatusCode::CREATED, Json(json!({ "comment_id": created.id, "position": created.position }))))
}

pub async fn delete_comment(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    caller.require()?;
    let comment_id = path_id(&id, DomainError::CommentNotFound)?;
    let ctx = caller.context(&request_id("DELETE", &format!("/api/v1/comments/{id}"), b""));
    position(api.content.delete_comment(comment_id, &ctx).await?.position)
}

async fn like_a_comment(api: WriteApi, id: String, caller: Caller, on: bool) -> Answer {
    caller.require()?;
    let comment_id = path_id(&id, DomainError::CommentNotFound)?;
    let ctx = caller.context(&request_id(if on { "POST" } else { "DELETE" }, &format!("/api/v1/comments/{id}/like"), b""));
    position(api.content.like_comment(comment_id, on, &ctx).await?.position)
}

pub async fn like_comment(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    like_a_comment(api, id, caller, true).await
}

pub async fn unlike_comment(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    like_a_comment(api, id, caller, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashtagRequest {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

pub async fn create_hashtag(State(api): State<WriteApi>, caller: Caller, body: JsonBody<HashtagRequest>) -> Answer {
    caller.require()?;
    let ctx = caller.context(&request_id("POST", "/api/v1/hashtags", &body.raw));
    let (name, outcome) = api.content.create_hashtag(&body.value.name, body.value.description.as_deref(), &ctx).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": name, "position": outcome.position }))))
}

/// Counts a view; anyone may, signed in or not (rate limits apply per IP).
pub async fn view(State(api): State<WriteApi>, Path(id): Path<String>) -> Answer {
    let video_id = path_id(&id, DomainError::VideoNotFound)?;
    if !api.content.video_is_live_for_views(video_id).await? {
        return Err(CommandError::from(DomainError::VideoNotFound).into());
    }
    let key = CounterKey::parse(&video_id.to_string(), VIEWS).map_err(CommandError::from)?;
    let value = api.counters.increment(key, 1).await?;
    Ok((StatusCode::OK, Json(json!({ "success": true, "current_value": value }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementRequest {
    resource_id: String,
    counter_type: String,
    delta: i64,
}

/// Adds to a generic counter; answers its value including this increment, once durable.
pub async fn increment(State(api): State<WriteApi>, body: JsonBody<IncrementRequest>) -> Answer {
    let IncrementRequest { resource_id, counter_type, delta } = &body.value;
    let key = CounterKey::parse(resource_id, counter_type).map_err(CommandError::from)?;
    let delta = check_delta(*delta).map_err(CommandError::from)?;
    let value = api.counters.increment(key, delta).await?;
    Ok((StatusCode::OK, Json(json!({ "success": true, "current_value": value }))))
}

/// Starts a new page sequence of the caller's recommended feed.
pub async fn refresh_recommendations(State(api): State<WriteApi>, caller: Caller) -> Answer {
    caller.require()?;
    let ctx = caller.context(&request_id("POST", "/api/v1/recommend/refresh", b""));
    position(api.content.refresh_recommendations(&ctx).await?.position)
}

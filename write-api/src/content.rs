//! Content commands over REST: videos, likes, favorites, comments, hashtags, views and
//! generic counters.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use plaza_commands::{Claim, CommandError, VideoFields};
use plaza_domain::DomainError;
use plaza_domain::counters::{CounterKey, VIEWS, check_delta};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::extract::{Caller, JsonBody, PathId};
use crate::{ApiError, WriteApi};

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

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
    let ctx = api.context(&caller, "POST", "/api/v1/videos", &body.raw).await?;
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

pub async fn update(State(api): State<WriteApi>, id: PathId, caller: Caller, body: JsonBody<UpdateRequest>) -> Answer {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/videos/{video_id}"), &body.raw).await?;
    let UpdateRequest { title, description, hashtags } = &body.value;
    position(api.content.update(video_id, VideoFields { title, description, hashtags }, &ctx).await?.position)
}

pub async fn delete(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/videos/{video_id}"), b"").await?;
    position(api.content.delete(video_id, &ctx).await?.position)
}

async fn like_video(api: WriteApi, id: PathId, caller: Caller, on: bool) -> Answer {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, if on { "POST" } else { "DELETE" }, &format!("/api/v1/videos/{video_id}/like"), b"").await?;
    position(api.content.like(video_id, on, &ctx).await?.position)
}

pub async fn like(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    like_video(api, id, caller, true).await
}

pub async fn unlike(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    like_video(api, id, caller, false).await
}

async fn favorite_video(api: WriteApi, id: PathId, caller: Caller, on: bool) -> Answer {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, if on { "POST" } else { "DELETE" }, &format!("/api/v1/videos/{video_id}/favorite"), b"").await?;
    position(api.content.favorite(video_id, on, &ctx).await?.position)
}

pub async fn favorite(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    favorite_video(api, id, caller, true).await
}

pub async fn unfavorite(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    favorite_video(api, id, caller, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    body: String,
    #[serde(default)]
    parent_id: Option<Uuid>,
}

pub async fn comment(State(api): State<WriteApi>, id: PathId, caller: Caller, body: JsonBody<CommentRequest>) -> Answer {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, "POST", &format!("/api/v1/videos/{video_id}/comments"), &body.raw).await?;
    let created = api.content.comment(video_id, &body.value.body, body.value.parent_id, &ctx).await?;
    Ok((StatusCode::CREATED, Json(json!({ "comment_id": created.id, "position": created.position }))))
}

pub async fn delete_comment(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    caller.require()?;
    let comment_id = id.or(DomainError::CommentNotFound)?;
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/comments/{comment_id}"), b"").await?;
    position(api.content.delete_comment(comment_id, &ctx).await?.position)
}

async fn like_a_comment(api: WriteApi, id: PathId, caller: Caller, on: bool) -> Answer {
    caller.require()?;
    let comment_id = id.or(DomainError::CommentNotFound)?;
    let ctx = api.context(&caller, if on { "POST" } else { "DELETE" }, &format!("/api/v1/comments/{comment_id}/like"), b"").await?;
    position(api.content.like_comment(comment_id, on, &ctx).await?.position)
}

pub async fn like_comment(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    like_a_comment(api, id, caller, true).await
}

pub async fn unlike_comment(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
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
    let ctx = api.context(&caller, "POST", "/api/v1/hashtags", &body.raw).await?;
    let (name, outcome) = api.content.create_hashtag(&body.value.name, body.value.description.as_deref(), &ctx).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": name, "position": outcome.position }))))
}

/// Counts a view; anyone may, signed in or not (rate limits apply per IP).
pub async fn view(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    let video_id = id.or(DomainError::VideoNotFound)?;
    let key = CounterKey::parse(&video_id.to_string(), VIEWS).map_err(CommandError::from)?;
    count(&api, &caller, &format!("/api/v1/videos/{video_id}/views"), b"", key, 1, Some(video_id)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementRequest {
    resource_id: String,
    counter_type: String,
    delta: i64,
}

/// Adds to a generic counter; answers its value including this increment, once durable.
/// Counters Plaza derives itself (views) are not generic.
pub async fn increment(State(api): State<WriteApi>, caller: Caller, body: JsonBody<IncrementRequest>) -> Answer {
    let IncrementRequest { resource_id, counter_type, delta } = &body.value;
    let key = CounterKey::parse_generic(resource_id, counter_type).map_err(CommandError::from)?;
    let delta = check_delta(*delta).map_err(CommandError::from)?;
    count(&api, &caller, "/api/v1/counter/increment", &body.raw, key, delta, None).await
}

/// How long after its claim a keyed increment that recorded no answer counts as still in
/// progress.
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(10);

/// Adds `delta` to a counter (of a live video's views when `video` is given). With an
/// idempotency key, a repeat answers what the first request did and adds nothing.
async fn count(api: &WriteApi, caller: &Caller, path: &str, body: &[u8], key: CounterKey, delta: i64, video: Option<Uuid>) -> Answer {
    let counted = |value: i64| Ok((StatusCode::OK, Json(json!({ "success": true, "current_value": value }))));
    let (ctx, claim) = api.claimed_context(caller, "POST", path, body).await?;
    match claim {
        Claim::Repeat { answer: Some(value), .. } => return counted(value),
        // The first request with the key may still be on its way: its answer decides.
        Claim::Repeat { answer: None, age } if age < IN_FLIGHT => {
            let message = "a request with this Idempotency-Key is in progress; retry";
            return Err(ApiError::new(StatusCode::CONFLICT, "idempotency_key_in_use", message)
                .with_header(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(1)));
        }
        // Long claimed and never answered: the first request died on its way. The shard
        // knows whether its increment was appended.
        _ => {}
    }
    if let Some(video_id) = video
        && !api.content.video_is_live_for_views(video_id).await?
    {
        return Err(CommandError::from(DomainError::VideoNotFound).into());
    }
    let value = api.counters.increment(key, delta, ctx.derived_id("increment")).await?;
    api.keys.record_answer(&ctx, value).await?;
    counted(value)
}

/// Starts a new page sequence of the caller's recommended feed.
pub async fn refresh_recommendations(State(api): State<WriteApi>, caller: Caller) -> Answer {
    caller.require()?;
    let ctx = api.context(&caller, "POST", "/api/v1/recommend/refresh", b"").await?;
    position(api.content.refresh_recommendations(&ctx).await?.position)
}

//! Content commands over REST: videos, likes, favorites, comments, hashtags, views and
//! generic counters.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use plaza_commands::{Claim, CommandError, VideoFields};
use plaza_domain::DomainError;
use plaza_domain::counters::{CounterKey, VIEWS, check_delta};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::answers::{Answer, CommentCreated, Counted, ErrorBody, HashtagCreated, Position, VideoCreated, position};
use crate::extract::{Caller, JsonBody, PathId};
use crate::{ApiError, WriteApi};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// 1 to 150 characters on one line.
    #[schema(min_length = 1, max_length = 150, example = "A cat meets a cucumber")]
    title: String,
    /// At most 2,000 characters; its `#words` become hashtags too.
    #[serde(default)]
    #[schema(max_length = 2000, example = "Filmed in the kitchen #cats")]
    description: String,
    /// An http(s) URL.
    #[schema(example = "https://cdn.example.com/videos/cat.mp4")]
    media_url: String,
    /// At most 20 in all, each 1 to 50 letters, digits or `_` (a leading `#` is dropped).
    #[serde(default)]
    #[schema(example = json!(["pets", "funny"]))]
    hashtags: Vec<String>,
}

/// Publishes a video.
#[utoipa::path(post, path = "/api/v1/videos", tag = "videos", request_body = PublishRequest, security(("bearer" = [])),
    responses((status = 201, description = "Published", body = VideoCreated)))]
pub async fn publish(State(api): State<Arc<WriteApi>>, caller: Caller, body: JsonBody<PublishRequest>) -> Answer<VideoCreated> {
    caller.require()?;
    let ctx = api.context(&caller, "POST", "/api/v1/videos", &body.raw).await?;
    let PublishRequest { title, description, media_url, hashtags } = &body.value;
    let created = api.content.publish(VideoFields { title, description, hashtags }, media_url, &ctx).await?;
    Ok((StatusCode::CREATED, Json(VideoCreated { video_id: created.id, position: created.position })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[schema(min_length = 1, max_length = 150)]
    title: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: String,
    #[serde(default)]
    hashtags: Vec<String>,
}

/// Edits a video: its title, description and hashtags (the author only; replaces them).
#[utoipa::path(put, path = "/api/v1/videos/{id}", tag = "videos", request_body = UpdateRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "Changed (or nothing to change)", body = Position),
        (status = 403, description = "`forbidden`: someone else's video", body = ErrorBody),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
    ))]
pub async fn update(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<UpdateRequest>) -> Answer<Position> {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/videos/{video_id}"), &body.raw).await?;
    let UpdateRequest { title, description, hashtags } = &body.value;
    position(api.content.update(video_id, VideoFields { title, description, hashtags }, &ctx).await?.position)
}

/// Deletes a video (the author only).
#[utoipa::path(delete, path = "/api/v1/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "Deleted", body = Position),
        (status = 403, description = "`forbidden`: someone else's video", body = ErrorBody),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
    ))]
pub async fn delete(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/videos/{video_id}"), b"").await?;
    position(api.content.delete(video_id, &ctx).await?.position)
}

async fn like_video(api: &WriteApi, id: PathId, caller: Caller, on: bool) -> Answer<Position> {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, if on { "POST" } else { "DELETE" }, &format!("/api/v1/videos/{video_id}/like"), b"").await?;
    position(api.content.like(video_id, on, &ctx).await?.position)
}

/// Likes a video.
#[utoipa::path(post, path = "/api/v1/videos/{id}/like", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "Liked", body = Position),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
        (status = 409, description = "`already_liked`", body = ErrorBody),
    ))]
pub async fn like(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    like_video(&api, id, caller, true).await
}

/// Takes a like back.
#[utoipa::path(delete, path = "/api/v1/videos/{id}/like", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "Not liked any more", body = Position),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
        (status = 409, description = "`not_liked`", body = ErrorBody),
    ))]
pub async fn unlike(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    like_video(&api, id, caller, false).await
}

async fn favorite_video(api: &WriteApi, id: PathId, caller: Caller, on: bool) -> Answer<Position> {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, if on { "POST" } else { "DELETE" }, &format!("/api/v1/videos/{video_id}/favorite"), b"").await?;
    position(api.content.favorite(video_id, on, &ctx).await?.position)
}

/// Adds a video to your favorites.
#[utoipa::path(post, path = "/api/v1/videos/{id}/favorite", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "A favorite", body = Position),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
        (status = 409, description = "`already_favorited`", body = ErrorBody),
    ))]
pub async fn favorite(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    favorite_video(&api, id, caller, true).await
}

/// Takes a video out of your favorites.
#[utoipa::path(delete, path = "/api/v1/videos/{id}/favorite", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "Not a favorite any more", body = Position),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
        (status = 409, description = "`not_favorited`", body = ErrorBody),
    ))]
pub async fn unfavorite(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    favorite_video(&api, id, caller, false).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// 1 to 1,000 characters; line breaks allowed.
    #[schema(min_length = 1, max_length = 1000, example = "Ha! Look at its face")]
    body: String,
    /// A live top-level comment of the same video: replies nest one level.
    #[serde(default)]
    parent_id: Option<Uuid>,
}

/// Comments on a video, or replies to a comment.
#[utoipa::path(post, path = "/api/v1/videos/{id}/comments", tag = "comments", request_body = CommentRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 201, description = "Posted", body = CommentCreated),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
    ))]
pub async fn comment(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<CommentRequest>) -> Answer<CommentCreated> {
    caller.require()?;
    let video_id = id.or(DomainError::VideoNotFound)?;
    let ctx = api.context(&caller, "POST", &format!("/api/v1/videos/{video_id}/comments"), &body.raw).await?;
    let created = api.content.comment(video_id, &body.value.body, body.value.parent_id, &ctx).await?;
    Ok((StatusCode::CREATED, Json(CommentCreated { comment_id: created.id, position: created.position })))
}

/// Deletes a comment (its author or the video's author).
#[utoipa::path(delete, path = "/api/v1/comments/{id}", tag = "comments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the comment")),
    responses(
        (status = 200, description = "Deleted", body = Position),
        (status = 403, description = "`forbidden`: neither your comment nor your video", body = ErrorBody),
        (status = 404, description = "`comment_not_found`", body = ErrorBody),
    ))]
pub async fn delete_comment(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    caller.require()?;
    let comment_id = id.or(DomainError::CommentNotFound)?;
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/comments/{comment_id}"), b"").await?;
    position(api.content.delete_comment(comment_id, &ctx).await?.position)
}

async fn like_a_comment(api: &WriteApi, id: PathId, caller: Caller, on: bool) -> Answer<Position> {
    caller.require()?;
    let comment_id = id.or(DomainError::CommentNotFound)?;
    let ctx = api.context(&caller, if on { "POST" } else { "DELETE" }, &format!("/api/v1/comments/{comment_id}/like"), b"").await?;
    position(api.content.like_comment(comment_id, on, &ctx).await?.position)
}

/// Likes a comment.
#[utoipa::path(post, path = "/api/v1/comments/{id}/like", tag = "comments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the comment")),
    responses(
        (status = 200, description = "Liked", body = Position),
        (status = 404, description = "`comment_not_found`", body = ErrorBody),
        (status = 409, description = "`already_liked`", body = ErrorBody),
    ))]
pub async fn like_comment(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    like_a_comment(&api, id, caller, true).await
}

/// Takes a comment's like back.
#[utoipa::path(delete, path = "/api/v1/comments/{id}/like", tag = "comments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the comment")),
    responses(
        (status = 200, description = "Not liked any more", body = Position),
        (status = 404, description = "`comment_not_found`", body = ErrorBody),
        (status = 409, description = "`not_liked`", body = ErrorBody),
    ))]
pub async fn unlike_comment(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    like_a_comment(&api, id, caller, false).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashtagRequest {
    /// 1 to 50 letters, digits or `_`; a leading `#` is dropped; lowercased.
    #[schema(example = "cats")]
    name: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(example = "Everything about cats")]
    description: Option<String>,
}

/// Creates a hashtag's page.
#[utoipa::path(post, path = "/api/v1/hashtags", tag = "hashtags", request_body = HashtagRequest, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = HashtagCreated),
        (status = 409, description = "`hashtag_exists`", body = ErrorBody),
    ))]
pub async fn create_hashtag(State(api): State<Arc<WriteApi>>, caller: Caller, body: JsonBody<HashtagRequest>) -> Answer<HashtagCreated> {
    caller.require()?;
    let ctx = api.context(&caller, "POST", "/api/v1/hashtags", &body.raw).await?;
    let (name, outcome) = api.content.create_hashtag(&body.value.name, body.value.description.as_deref(), &ctx).await?;
    Ok((StatusCode::CREATED, Json(HashtagCreated { name, position: outcome.position })))
}

/// Counts a view of a video; anyone may, signed in or not.
#[utoipa::path(post, path = "/api/v1/videos/{id}/views", tag = "counters", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "the video")),
    responses(
        (status = 200, description = "Counted; the video's views including this one", body = Counted),
        (status = 404, description = "`video_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_use`: the first request with this key is still on its way", body = ErrorBody),
    ))]
pub async fn view(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Counted> {
    let video_id = id.or(DomainError::VideoNotFound)?;
    if !api.content.video_is_live(video_id).await? {
        return Err(CommandError::from(DomainError::VideoNotFound).into());
    }
    let key = CounterKey::parse(&video_id.to_string(), VIEWS).map_err(CommandError::from)?;
    count(&api, &caller, &format!("/api/v1/videos/{video_id}/views"), b"", key, 1).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementRequest {
    /// 1 to 128 characters without spaces.
    #[schema(min_length = 1, max_length = 128, example = "page-1")]
    resource_id: String,
    /// 1 to 32 of `a-z 0-9 _` (lowercased); not one Plaza derives itself (`views`).
    #[schema(min_length = 1, max_length = 32, example = "clicks")]
    counter_type: String,
    /// Not 0; at most a million either way.
    #[schema(minimum = -1_000_000, maximum = 1_000_000, example = 1)]
    delta: i64,
}

/// Adds to a generic counter; answers its value including this increment, once durable.
#[utoipa::path(post, path = "/api/v1/counter/increment", tag = "counters", request_body = IncrementRequest, security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Counted", body = Counted),
        (status = 403, description = "`reserved_counter`: a counter Plaza derives from its own commands", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_use`: the first request with this key is still on its way", body = ErrorBody),
    ))]
pub async fn increment(State(api): State<Arc<WriteApi>>, caller: Caller, body: JsonBody<IncrementRequest>) -> Answer<Counted> {
    let IncrementRequest { resource_id, counter_type, delta } = &body.value;
    let key = CounterKey::parse_generic(resource_id, counter_type).map_err(CommandError::from)?;
    let delta = check_delta(*delta).map_err(CommandError::from)?;
    count(&api, &caller, "/api/v1/counter/increment", &body.raw, key, delta).await
}

/// How long after its claim a keyed increment that recorded no answer counts as still in
/// progress.
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(10);

/// Adds `delta` to a counter. With an idempotency key, a repeat answers what the first
/// request did and adds nothing.
async fn count(api: &WriteApi, caller: &Caller, path: &str, body: &[u8], key: CounterKey, delta: i64) -> Answer<Counted> {
    let counted = |value: i64| Ok((StatusCode::OK, Json(Counted { success: true, current_value: value })));
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
    let value = api.counters.increment(key, delta, ctx.derived_id("increment")).await?;
    api.keys.record_answer(&ctx, value).await?;
    counted(value)
}

/// Starts a new page sequence of your RECOMMENDED feed.
#[utoipa::path(post, path = "/api/v1/recommend/refresh", tag = "feeds", security(("bearer" = [])),
    responses((status = 200, description = "Refreshed", body = Position)))]
pub async fn refresh_recommendations(State(api): State<Arc<WriteApi>>, caller: Caller) -> Answer<Position> {
    caller.require()?;
    let ctx = api.context(&caller, "POST", "/api/v1/recommend/refresh", b"").await?;
    position(api.content.refresh_recommendations(&ctx).await?.position)
}

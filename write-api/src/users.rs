use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use plaza_domain::accounts::ProfileChanges;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::extract::{Caller, JsonBody, user_id};
use crate::{ApiError, WriteApi};

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

/// Identifies a request for idempotency: method, path and body.
fn request_id(method: &str, path: &str, body: &[u8]) -> String {
    format!("{method} {path}\n{}", String::from_utf8_lossy(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    username: String,
    email: String,
    password: String,
}

pub async fn register(State(api): State<WriteApi>, caller: Caller, body: JsonBody<RegisterRequest>) -> Answer {
    let ctx = caller.context(&request_id("POST", "/api/v1/users/register", &body.raw));
    let RegisterRequest { username, email, password } = body.value;
    let registration = api.accounts.register(&username, &email, password, &ctx).await?;
    let token = api.tokens.issue(registration.user_id);
    Ok((StatusCode::CREATED, Json(json!({ "user_id": registration.user_id, "token": token, "position": registration.position }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    login: String,
    password: String,
}

pub async fn login(State(api): State<WriteApi>, body: JsonBody<LoginRequest>) -> Answer {
    let user_id = api.accounts.login(&body.value.login, &body.value.password).await?;
    Ok((StatusCode::OK, Json(json!({ "user_id": user_id, "token": api.tokens.issue(user_id) }))))
}

/// `null` and a missing field differ: a missing field leaves the value alone, `null`
/// (or an empty string) clears it.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    bio: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    avatar_url: Option<Option<String>>,
}

pub async fn update_profile(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller, body: JsonBody<ProfileRequest>) -> Answer {
    let actor = caller.require()?;
    let user_id = user_id(&id)?;
    if actor != user_id {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "you may only change your own profile"));
    }
    let ctx = caller.context(&request_id("PUT", &format!("/api/v1/users/{id}"), &body.raw));
    let ProfileRequest { display_name, bio, avatar_url } = body.value;
    let changes = ProfileChanges::parse(display_name, bio, avatar_url).map_err(plaza_commands::CommandError::from)?;
    let outcome = api.accounts.update_profile(user_id, changes, &ctx).await?;
    Ok((StatusCode::OK, Json(json!({ "position": outcome.position }))))
}

pub async fn follow(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    caller.require()?;
    let ctx = caller.context(&request_id("POST", &format!("/api/v1/users/{id}/follow"), b""));
    let outcome = api.accounts.follow(user_id(&id)?, &ctx).await?;
    Ok((StatusCode::OK, Json(json!({ "position": outcome.position }))))
}

pub async fn unfollow(State(api): State<WriteApi>, Path(id): Path<String>, caller: Caller) -> Answer {
    caller.require()?;
    let ctx = caller.context(&request_id("DELETE", &format!("/api/v1/users/{id}/follow"), b""));
    let outcome = api.accounts.unfollow(user_id(&id)?, &ctx).await?;
    Ok((StatusCode::OK, Json(json!({ "position": outcome.position }))))
}

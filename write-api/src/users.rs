use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plaza_domain::DomainError;
use plaza_domain::accounts::ProfileChanges;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::answers::{Answer, ErrorBody, LoggedIn, Position, Registered};
use crate::extract::{Caller, JsonBody, PathId};
use crate::limits::request_ip;
use crate::login::LoginKeys;
use crate::{ApiError, WriteApi};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3 to 30 of `a-z 0-9 _`, lowercased on the way in.
    #[schema(min_length = 3, max_length = 30, example = "alice")]
    username: String,
    #[schema(example = "alice@example.com")]
    email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024, example = "correct horse battery")]
    password: String,
}

/// Registers a user.
#[utoipa::path(post, path = "/api/v1/users/register", tag = "users", request_body = RegisterRequest, security((), ("bearer" = [])),
    responses(
        (status = 201, description = "Registered; the answer carries an access token", body = Registered),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorBody),
    ))]
pub async fn register(State(api): State<Arc<WriteApi>>, caller: Caller, body: JsonBody<RegisterRequest>) -> Answer<Registered> {
    let ctx = api.context(&caller, "POST", "/api/v1/users/register", &body.raw).await?;
    let RegisterRequest { username, email, password } = body.value;
    let registration = api.accounts.register(&username, &email, password, &ctx).await?;
    let token = api.tokens.issue(registration.user_id);
    Ok((StatusCode::CREATED, Json(Registered { user_id: registration.user_id, token, position: registration.position })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// A username or an email address.
    #[schema(example = "alice")]
    login: String,
    #[schema(example = "correct horse battery")]
    password: String,
}

/// Logs in by username or email.
///
/// After a few wrong passwords for one account (or from one address), each further
/// attempt waits, doubling: 429 `login_throttled` with `Retry-After`.
#[utoipa::path(post, path = "/api/v1/users/login", tag = "users", request_body = LoginRequest, security(()),
    responses(
        (status = 200, description = "Logged in", body = LoggedIn),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "`login_throttled` or `rate_limited`; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ))]
pub async fn login(State(api): State<Arc<WriteApi>>, request: Request) -> Result<Response, ApiError> {
    let ip = request_ip(&request, api.proxy_hops);
    let body: JsonBody<LoginRequest> = JsonBody::from_request(request, &()).await?;
    let account = api.accounts.find_login(&body.value.login).await?;
    let keys = LoginKeys {
        account: match &account {
            Some(account) => format!("user:{}", account.user_id),
            None => format!("login:{}", body.value.login.trim().to_lowercase()),
        },
        ip: format!("ip:{ip}"),
    };
    let wait = api.logins.wait(&keys).await;
    if wait > Duration::ZERO {
        return Err(throttled(wait));
    }
    match api.accounts.check_password(account.as_ref(), &body.value.password).await {
        Ok(user_id) => {
            api.logins.succeeded(&keys).await;
            Ok((StatusCode::OK, Json(LoggedIn { user_id, token: api.tokens.issue(user_id) })).into_response())
        }
        Err(error) => {
            if matches!(error, plaza_commands::CommandError::InvalidCredentials) {
                api.logins.failed(&keys).await;
            }
            Err(error.into())
        }
    }
}

fn throttled(wait: Duration) -> ApiError {
    let seconds = plaza_edge::retry_after_secs(wait);
    let message = format!("too many failed logins; retry in {seconds} s");
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "login_throttled", message).with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
}

/// `null` and a missing field differ: a missing field leaves the value alone, `null`
/// (or an empty string) clears it.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// A profile edit: a missing field stays, `null` (or an empty string) clears it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// At most 50 characters on one line.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Alice")]
    display_name: Option<Option<String>>,
    /// At most 500 characters; line breaks and tabs allowed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Cats, mostly.")]
    bio: Option<Option<String>>,
    /// An http(s) URL.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "https://cdn.example.com/alice.png")]
    avatar_url: Option<Option<String>>,
}

/// Edits your own profile.
#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", request_body = ProfileRequest, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the user's id: yours")),
    responses(
        (status = 200, description = "Changed (or nothing to change)", body = Position),
        (status = 403, description = "`forbidden`: someone else's profile", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    ))]
pub async fn update_profile(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller, body: JsonBody<ProfileRequest>) -> Answer<Position> {
    let actor = caller.require()?;
    let user_id = id.or(DomainError::UserNotFound)?;
    if actor != user_id {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "you may only change your own profile"));
    }
    let ProfileRequest { display_name, bio, avatar_url } = &body.value;
    let changes = ProfileChanges::parse(display_name.clone(), bio.clone(), avatar_url.clone()).map_err(plaza_commands::CommandError::from)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/users/{user_id}"), &body.raw).await?;
    let outcome = api.accounts.update_profile(user_id, changes, &ctx).await?;
    Ok((StatusCode::OK, Json(Position { position: outcome.position })))
}

async fn follow_user(api: &WriteApi, id: PathId, caller: Caller, follow: bool) -> Answer<Position> {
    caller.require()?;
    let followee = id.or(DomainError::UserNotFound)?;
    let ctx = api.context(&caller, if follow { "POST" } else { "DELETE" }, &format!("/api/v1/users/{followee}/follow"), b"").await?;
    let outcome = if follow { api.accounts.follow(followee, &ctx).await? } else { api.accounts.unfollow(followee, &ctx).await? };
    Ok((StatusCode::OK, Json(Position { position: outcome.position })))
}

/// Follows a user.
#[utoipa::path(post, path = "/api/v1/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the user to follow")),
    responses(
        (status = 200, description = "Following", body = Position),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`already_following`", body = ErrorBody),
    ))]
pub async fn follow(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    follow_user(&api, id, caller, true).await
}

/// Stops following a user.
#[utoipa::path(delete, path = "/api/v1/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the user to stop following")),
    responses(
        (status = 200, description = "Not following any more", body = Position),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`not_following`", body = ErrorBody),
    ))]
pub async fn unfollow(State(api): State<Arc<WriteApi>>, id: PathId, caller: Caller) -> Answer<Position> {
    follow_user(&api, id, caller, false).await
}

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plaza_domain::DomainError;
use plaza_domain::accounts::ProfileChanges;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::extract::{Caller, JsonBody, PathId};
use crate::limits::request_ip;
use crate::login::LoginKeys;
use crate::{ApiError, WriteApi};

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    username: String,
    email: String,
    password: String,
}

pub async fn register(State(api): State<WriteApi>, caller: Caller, body: JsonBody<RegisterRequest>) -> Answer {
    let ctx = api.context(&caller, "POST", "/api/v1/users/register", &body.raw).await?;
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

/// Logs in, unless the account or the client address has failed too often lately
/// ([`crate::login`]).
pub async fn login(State(api): State<WriteApi>, request: Request) -> Result<Response, ApiError> {
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
            Ok((StatusCode::OK, Json(json!({ "user_id": user_id, "token": api.tokens.issue(user_id) }))).into_response())
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

pub async fn update_profile(State(api): State<WriteApi>, id: PathId, caller: Caller, body: JsonBody<ProfileRequest>) -> Answer {
    let actor = caller.require()?;
    let user_id = id.or(DomainError::UserNotFound)?;
    if actor != user_id {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "you may only change your own profile"));
    }
    let ProfileRequest { display_name, bio, avatar_url } = &body.value;
    let changes = ProfileChanges::parse(display_name.clone(), bio.clone(), avatar_url.clone()).map_err(plaza_commands::CommandError::from)?;
    let ctx = api.context(&caller, "PUT", &format!("/api/v1/users/{user_id}"), &body.raw).await?;
    let outcome = api.accounts.update_profile(user_id, changes, &ctx).await?;
    Ok((StatusCode::OK, Json(json!({ "position": outcome.position }))))
}

async fn follow_user(api: WriteApi, id: PathId, caller: Caller, follow: bool) -> Answer {
    caller.require()?;
    let followee = id.or(DomainError::UserNotFound)?;
    let ctx = api.context(&caller, if follow { "POST" } else { "DELETE" }, &format!("/api/v1/users/{followee}/follow"), b"").await?;
    let outcome = if follow { api.accounts.follow(followee, &ctx).await? } else { api.accounts.unfollow(followee, &ctx).await? };
    Ok((StatusCode::OK, Json(json!({ "position": outcome.position }))))
}

pub async fn follow(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    follow_user(api, id, caller, true).await
}

pub async fn unfollow(State(api): State<WriteApi>, id: PathId, caller: Caller) -> Answer {
    follow_user(api, id, caller, false).await
}

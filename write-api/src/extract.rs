use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use plaza_commands::{CommandContext, CommandError};
use plaza_domain::DomainError;
use plaza_edge::TokenError;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{ApiError, WriteApi};

/// A JSON object body, refused with 415 unless sent as `application/json`, 413 when too
/// large, 408 when it does not arrive in time, 400 when malformed or not an object; kept
/// with its raw bytes so an idempotency key can be scoped to exactly this request.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let raw = plaza_edge::read_json(req, crate::MAX_BODY_BYTES).await.map_err(|e| ApiError::new(e.status, e.code, e.message))?;
        Ok(Self { value: decode_json(&raw)?, raw })
    }
}

/// A request body's JSON: 400 `invalid_json` when it is not JSON, `invalid_request` when
/// it is not an object of the expected shape.
pub fn decode_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice(raw).map_err(|e| {
        // Well-formed JSON of the wrong shape (missing or unknown fields, wrong types)
        // is an invalid request; anything else is not JSON at all.
        let code = if e.is_data() { "invalid_request" } else { "invalid_json" };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    if !plaza_edge::is_object(raw) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "the body must be a JSON object"));
    }
    Ok(value)
}

/// The `{id}` of a path when it is a UUID in its canonical spelling; anything else
/// (another spelling, invalid UTF-8 ...) names nothing.
pub struct PathId(Option<Uuid>);

impl PathId {
    /// The id, or the given not-found error.
    pub fn or(self, missing: DomainError) -> Result<Uuid, ApiError> {
        self.0.ok_or_else(|| ApiError::from(CommandError::from(missing)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<String>::from_request_parts(parts, state).await.ok();
        Ok(Self(raw.and_then(|Path(raw)| plaza_edge::canonical_uuid(&raw))))
    }
}

/// The two ids of a path such as `/conversations/{id}/members/{user_id}`, each when it
/// is a canonical UUID.
pub struct PathIds(Option<Uuid>, Option<Uuid>);

impl PathIds {
    /// The ids, or the not-found error of the first one that names nothing.
    pub fn or(self, first: DomainError, second: DomainError) -> Result<(Uuid, Uuid), ApiError> {
        let missing = |error| ApiError::from(CommandError::from(error));
        Ok((self.0.ok_or_else(|| missing(first))?, self.1.ok_or_else(|| missing(second))?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<(String, String)>::from_request_parts(parts, state).await.ok();
        Ok(match raw {
            Some(Path((first, second))) => Self(plaza_edge::canonical_uuid(&first), plaza_edge::canonical_uuid(&second)),
            None => Self(None, None),
        })
    }
}

/// Identifies a request for idempotency: method, path and body.
pub fn request_id(method: &str, path: &str, body: &[u8]) -> String {
    format!("{method} {path}\n{}", String::from_utf8_lossy(body))
}

/// What verifying a request's bearer token found, kept in the request's extensions by
/// the rate limits' middleware ([`crate::limits::limit`]), which needs the user first:
/// [`Caller`] reads it instead of verifying the token again.
#[derive(Clone, Copy)]
pub(crate) struct Verified(pub Result<Uuid, TokenError>);

/// Who is calling (from `Authorization: Bearer <token>`), if anyone, and the
/// request's idempotency key.
pub struct Caller {
    pub user_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
    /// The request's id (`X-Request-Id`), the correlation id of the events it appends.
    pub request_id: Option<Uuid>,
}

impl Caller {
    pub fn require(&self) -> Result<Uuid, ApiError> {
        self.user_id.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "send `Authorization: Bearer <token>`"))
    }

    /// The command context; `request` identifies the request for idempotency. (The
    /// key is claimed by [`WriteApi::context`].)
    pub fn context(&self, request: &str) -> CommandContext {
        let mut ctx = CommandContext::new(self.user_id);
        if let Some(id) = self.request_id {
            ctx.correlation_id = Some(id);
        }
        match &self.idempotency_key {
            Some(key) => ctx.with_idempotency_key(key.clone(), request),
            None => ctx,
        }
    }
}

impl FromRequestParts<Arc<WriteApi>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<WriteApi>) -> Result<Self, ApiError> {
        let user_id = match parts.headers.get("authorization") {
            None => None,
            Some(_) => {
                let token = plaza_edge::bearer(&parts.headers)
                    .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the Authorization header must be `Bearer <token>`"))?;
                // Verified already by the rate limits, on the routes they guard.
                let verified = parts.extensions.get::<Verified>().map_or_else(|| api.tokens.verify(token), |verified| verified.0);
                match verified {
                    Ok(user_id) => Some(user_id),
                    Err(TokenError::Expired) => {
                        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", "the access token has expired; log in again"));
                    }
                    Err(TokenError::Invalid) => {
                        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid"));
                    }
                }
            }
        };
        let idempotency_key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(value) => match value.to_str() {
                Ok(key) if !key.is_empty() && key.len() <= 255 => Some(key.to_owned()),
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    ));
                }
            },
        };
        let request_id = parts.extensions.get::<plaza_edge::RequestId>().map(|id| id.0);
        Ok(Self { user_id, idempotency_key, request_id })
    }
}

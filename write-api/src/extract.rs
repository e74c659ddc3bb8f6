use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use plaza_commands::{CommandContext, TokenError};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{ApiError, WriteApi};

/// A JSON body, refused with 400 when malformed and 413 when too large, kept with
/// its raw bytes so an idempotency key can be scoped to exactly this request.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let raw = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("request bodies are limited to {} bytes", crate::MAX_BODY_BYTES),
                )
            } else {
                ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
            }
        })?;
        let value = serde_json::from_slice(&raw).map_err(|e| {
            // Well-formed JSON of the wrong shape (missing or unknown fields, wrong types)
            // is an invalid request; anything else is not JSON at all.
            let code = if e.is_data() { "invalid_request" } else { "invalid_json" };
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
        })?;
        Ok(Self { value, raw })
    }
}

/// Who is calling (from `Authorization: Bearer <token>`), if anyone, and the
/// request's idempotency key.
pub struct Caller {
    pub user_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
}

impl Caller {
    pub fn require(&self) -> Result<Uuid, ApiError> {
        self.user_id.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "send `Authorization: Bearer <token>`"))
    }

    /// The command context; `request` identifies the request for idempotency.
    pub fn context(&self, request: &str) -> CommandContext {
        let ctx = CommandContext::new(self.user_id);
        match &self.idempotency_key {
            Some(key) => ctx.with_idempotency_key(key.clone(), request),
            None => ctx,
        }
    }
}

impl FromRequestParts<WriteApi> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &WriteApi) -> Result<Self, ApiError> {
        let user_id = match parts.headers.get("authorization") {
            None => None,
            Some(value) => {
                let token =
                    value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| {
                        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the Authorization header must be `Bearer <token>`")
                    })?;
                match api.tokens.verify(token.trim()) {
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
        Ok(Self { user_id, idempotency_key })
    }
}

/// A user id from the path; anything that is not a UUID names no user.
pub fn user_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "user not found"))
}

//! Reading a request body: JSON only, bounded in size and in time.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};

use crate::server::BodyTimeout;

/// Bodies not received within this time, when the server set none, are refused.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a body was refused: a status, a stable code and a message. Each API shows it in
/// its own error shape.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl BodyError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

/// Whether the request says its body is JSON: `application/json`, parameters allowed.
pub fn is_json(headers: &HeaderMap) -> bool {
    let media_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next());
    media_type.is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The body of a JSON request: 415 unless `Content-Type: application/json`, 413 over
/// `max_bytes` (the route's `DefaultBodyLimit`), 408 when it does not arrive within the
/// server's [`BodyTimeout`].
pub async fn read_json(request: Request, max_bytes: usize) -> Result<Bytes, BodyError> {
    if !is_json(request.headers()) {
        return Err(BodyError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let timeout = request.extensions().get::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
    match tokio::time::timeout(timeout, Bytes::from_request(request, &())).await {
        Err(_) => {
            Err(BodyError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", format!("the body did not arrive within {} ms", timeout.as_millis())))
        }
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(BodyError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request bodies are limited to {max_bytes} bytes")))
        }
        Ok(Err(rejection)) => Err(BodyError::new(StatusCode::BAD_REQUEST, "invalid_body", rejection.body_text())),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Reads and drops a request's body, within the same size limit and
/// [`BodyTimeout`] as [`read_json`]: for a refusal sent before the handler ran, so the
/// client's keep-alive connection stays usable (hyper closes a connection whose request
/// body was left unread).
pub async fn discard(request: Request, max_bytes: usize) {
    let timeout = request.extensions().get::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
    let _ = tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), max_bytes)).await;
}

/// Whether a JSON text is an object (its first significant byte is `{`). serde also
/// decodes a struct from an array of its fields; requests must be objects.
pub fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_recognised_by_its_media_type() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn only_objects_are_objects() {
        assert!(is_object(b" \n{\"a\": 1}"));
        assert!(!is_object(b"[\"a\"]"));
        assert!(!is_object(b""));
        assert!(!is_object(b"\"{\""));
    }
}

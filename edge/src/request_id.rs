//! The request id: `X-Request-Id` from the client (or a proxy), else a new one. It is
//! echoed on the response, names the request's span (so every log line of the request
//! carries it), and becomes the correlation id in the metadata of the events the
//! request appends: the same UUID from the HTTP request to the projector that applies
//! its events.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use uuid::Uuid;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` taken from a client; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The request's correlation id, in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub Uuid);

impl RequestId {
    /// The id a request id header stands for: the UUID it is, or one derived from its
    /// text (the same text always gives the same id).
    pub fn from_header(value: &str) -> Self {
        Self(Uuid::try_parse(value).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, value.as_bytes())))
    }
}

/// Middleware: takes or makes the request id, runs the request in a span that names it,
/// and echoes it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let (id, header) = match given {
        Some(text) => (RequestId::from_header(&text), text),
        None => {
            let id = Uuid::now_v7();
            (RequestId(id), id.to_string())
        }
    };
    request.extensions_mut().insert(id);
    let span = tracing::info_span!("request", request_id = %id.0, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&header) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_taken_as_it_is_and_other_text_is_hashed() {
        let uuid = Uuid::now_v7();
        assert_eq!(RequestId::from_header(&uuid.to_string()).0, uuid);
        assert_eq!(RequestId::from_header("abc-123"), RequestId::from_header("abc-123"));
        assert_ne!(RequestId::from_header("abc-123"), RequestId::from_header("abc-124"));
    }
}

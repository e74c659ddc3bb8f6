//! The HTTP edge both APIs share: the server loop (time limits on request heads and
//! bodies, connections per client address, protocol errors as JSON), token-bucket rate
//! limits and the client's address, reading JSON bodies, and canonical ids in paths.

pub mod body;
pub mod ids;
pub mod limits;
pub mod request_id;
pub mod server;
pub mod tokens;

use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;

pub use body::{BodyError, is_json, is_object, read_json};
pub use ids::canonical_uuid;
pub use limits::{LocalRateLimiter, Quota, RateLimiter, RateLimits, client_ip, retry_after_secs};
pub use request_id::{RequestId, request_id};
pub use server::{BodyTimeout, ConnectionSlot, ServerSettings, serve};
pub use tokens::{TokenError, Tokens, bearer};

/// An error in the REST shape, `{"error": code, "message": ...}`, for answers given
/// before any API's handler runs.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> impl IntoResponse + use<> {
    (status, Json(serde_json::json!({ "error": code, "message": message })))
}

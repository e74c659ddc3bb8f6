//! Search history commands: clearing one query, or all of it. Searches are recorded by
//! the read side as they run; the history is read with GraphQL `searchHistory`.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use plaza_domain::DomainError;

use crate::WriteApi;
use crate::answers::{Answer, ErrorBody, Position, position};
use crate::extract::Caller;

/// Clears your whole search history.
#[utoipa::path(delete, path = "/api/v1/search/history", tag = "search", security(("bearer" = [])),
    responses(
        (status = 200, description = "Cleared", body = Position),
    ))]
pub async fn clear_all(State(api): State<Arc<WriteApi>>, caller: Caller) -> Answer<Position> {
    caller.require()?;
    let ctx = api.context(&caller, "DELETE", "/api/v1/search/history", b"").await?;
    position(api.search_history.clear(None, &ctx).await?.position)
}

/// Clears one query from your search history (as typed: it is normalized as searches
/// are, so `Funny  Cats` clears `funny cats`). Clearing a query not there is not an error.
#[utoipa::path(delete, path = "/api/v1/search/history/{query}", tag = "search", security(("bearer" = [])),
    params(("query" = String, Path, description = "the query, percent-encoded")),
    responses(
        (status = 200, description = "Cleared", body = Position),
        (status = 400, description = "`invalid_search`: an empty or control-character query, or one of more than 200 characters", body = ErrorBody),
    ))]
pub async fn clear_one(State(api): State<Arc<WriteApi>>, caller: Caller, query: Result<Path<String>, PathRejection>) -> Answer<Position> {
    caller.require()?;
    // A path that does not decode (bytes that are not UTF-8) names no query.
    let Ok(Path(query)) = query else {
        return Err(plaza_commands::CommandError::from(DomainError::InvalidSearch("the query is not valid UTF-8")).into());
    };
    let ctx = api.context(&caller, "DELETE", &format!("/api/v1/search/history/{query}"), b"").await?;
    position(api.search_history.clear(Some(&query), &ctx).await?.position)
}

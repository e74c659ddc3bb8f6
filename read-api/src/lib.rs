//! The read side: GraphQL over the read models at `POST /graphql` (GraphiQL on
//! `GET /graphql`). A request carrying `Plaza-Min-Position` waits, bounded, until every
//! projection has applied that position.

mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use plaza_commands::{TokenError, Tokens};
use plaza_projections::{Progress, ReadModelDb};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;

pub use schema::{PlazaSchema, build_schema};

/// GraphQL request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct ReadApi {
    pub schema: PlazaSchema,
    pub progress: Progress,
    pub tokens: Tokens,
    pub consistency_timeout: Duration,
}

impl ReadApi {
    pub fn new(db: Arc<dyn ReadModelDb>, progress: Progress, tokens: Tokens, consistency_timeout: Duration) -> Self {
        Self { schema: build_schema(db), progress, tokens, consistency_timeout }
    }
}

pub fn router(api: ReadApi) -> Router {
    Router::new().route("/graphql", get(graphiql).post(graphql)).layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)).with_state(api)
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// The signed-in viewer, if any, as GraphQL context data.
#[derive(Clone, Copy)]
pub struct Viewer(pub Option<uuid::Uuid>);

fn graphql_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

async fn graphql(State(api): State<ReadApi>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    let viewer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(|t| api.tokens.verify(t.trim())) {
            Some(Ok(user_id)) => Some(user_id),
            Some(Err(TokenError::Expired)) => {
                return graphql_error(StatusCode::UNAUTHORIZED, "token_expired", "the access token has expired; log in again");
            }
            _ => return graphql_error(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid"),
        },
    };
    if let Some(value) = headers.get("plaza-min-position") {
        let Some(position) = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) else {
            return graphql_error(StatusCode::BAD_REQUEST, "invalid_min_position", "Plaza-Min-Position must be a position returned by a command");
        };
        if !api.progress.wait_for(position, api.consistency_timeout).await {
            let mut response = graphql_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "consistency_timeout",
                &format!("the read models have not reached position {position} within {} ms; retry", api.consistency_timeout.as_millis()),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
    let response: GraphQLResponse = api.schema.execute(request.into_inner().data(Viewer(viewer))).await.into();
    response.into_response()
}

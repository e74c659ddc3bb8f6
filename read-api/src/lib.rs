//! The read side: GraphQL over the read models at `POST /graphql` (GraphiQL on
//! `GET /graphql`). A request carrying `Plaza-Min-Position` waits, bounded, until every
//! projection has applied that position.
//!
//! Before a document reaches the parser: the caller's rate limits (buckets of their own,
//! per user and per IP), a JSON body of one request (no batches) within the size and
//! time limits, and a bound on nesting ([`nesting`]). Every refusal has GraphQL's error
//! shape, `{"errors": [{"message", "extensions": {"code"}}]}`.

mod documents;
mod graphiql;
mod hub;
mod nesting;
mod render;
mod schema;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plaza_domain::EventStore;
use plaza_edge::RateLimiter;
use plaza_edge::{TokenError, Tokens};
use plaza_projections::{Progress, ReadModelDb};
use serde_json::json;

pub use hub::Hub;
pub use nesting::MAX_NESTING;
pub use schema::{Live, PlazaSchema, RequestCache, Search, SearchEngine, build_schema};

/// GraphQL request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct ReadApi {
    pub schema: PlazaSchema,
    pub progress: Progress,
    pub tokens: Tokens,
    pub consistency_timeout: Duration,
    /// Where positions come from: a `Plaza-Min-Position` beyond its head is refused.
    pub store: Arc<dyn EventStore>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Proxies in front of this API whose `X-Forwarded-For` is trusted (0: none).
    pub proxy_hops: usize,
    /// Presence and typing, shared with the schema.
    pub live: Live,
    /// How often an open WebSocket marks its user as seen.
    pub presence_every: Duration,
    /// Parsed documents kept by their text.
    documents: Arc<documents::Documents>,
}

/// The `Plaza-Min-Position` of a request, for resolvers that wait themselves.
pub struct MinPosition(pub u64);

pub struct ReadApiSettings {
    pub consistency_timeout: Duration,
    pub introspection: bool,
    pub proxy_hops: usize,
    /// The search engine, if this process has one (`search` answers an error otherwise).
    pub search: Option<SearchEngine>,
}

impl ReadApi {
    pub fn new(
        db: Arc<dyn ReadModelDb>,
        store: Arc<dyn EventStore>,
        progress: Progress,
        tokens: Tokens,
        limiter: Arc<dyn RateLimiter>,
        live: Live,
        settings: ReadApiSettings,
    ) -> Self {
        let hub = hub::Hub::start(db.clone(), progress.watch("conversations"), progress.watch("notifications"));
        // Well within the TTL, so an open connection never looks offline.
        let presence_every = (live.presence_ttl / 3).clamp(Duration::from_millis(250), Duration::from_secs(60));
        Self {
            schema: build_schema(
                db,
                live.clone(),
                hub,
                Search { engine: settings.search, timeout: settings.consistency_timeout, store: Some(store.clone()), popular: Default::default() },
                settings.introspection,
            ),
            live,
            presence_every,
            progress,
            tokens,
            consistency_timeout: settings.consistency_timeout,
            store,
            limiter,
            proxy_hops: settings.proxy_hops,
            documents: Arc::default(),
        }
    }
}

pub fn router(api: ReadApi) -> Router {
    Router::new()
        .route("/graphql", get(graphiql::page).post(graphql))
        .route("/graphql/assets/{name}", get(graphiql::asset))
        .route("/graphql/ws", get(ws::upgrade))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Shared, not cloned: every request takes the state.
        .with_state(Arc::new(api))
}

/// The signed-in viewer, if any, as GraphQL context data. Resolvers read it through
/// [`Viewer::of`], which notes that the answer depends on who asks: a subscription
/// event rendered without that note is the same for every viewer, and is rendered once
/// for all of them (`render`).
pub struct Viewer {
    id: Option<uuid::Uuid>,
    consulted: std::sync::atomic::AtomicBool,
}

impl Viewer {
    pub fn new(id: Option<uuid::Uuid>) -> Self {
        Self { id, consulted: Default::default() }
    }

    /// Who asks (None: nobody signed in).
    pub fn of(ctx: &async_graphql::Context<'_>) -> Option<uuid::Uuid> {
        let viewer = ctx.data_opt::<Viewer>()?;
        viewer.consulted.store(true, std::sync::atomic::Ordering::Relaxed);
        viewer.id
    }

    /// Whether a resolver asked who the viewer is since the last call.
    pub(crate) fn take_consulted(&self) -> bool {
        self.consulted.swap(false, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A request refused before it runs, answered in GraphQL's error shape.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn invalid_min_position() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_min_position", "Plaza-Min-Position must be a position returned by a command")
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{ "message": self.message, "extensions": { "code": self.code } }] });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The viewer a bearer token names, or why the token is refused.
fn viewer(api: &ReadApi, headers: &HeaderMap) -> Result<Option<uuid::Uuid>, Refusal> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    match plaza_edge::bearer(headers).map(|t| api.tokens.verify(t)) {
        Some(Ok(user_id)) => Ok(Some(user_id)),
        Some(Err(TokenError::Expired)) => Err(Refusal::new(StatusCode::UNAUTHORIZED, "token_expired", "the access token has expired; log in again")),
        _ => Err(Refusal::new(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid")),
    }
}

/// One GraphQL request from a JSON body: batches (arrays) are not served, and the
/// document's nesting is bounded before anything parses it.
pub fn parse_request(body: &[u8]) -> Result<async_graphql::Request, Refusal> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "batch_not_supported", "send one GraphQL request per HTTP request, not a batch"));
    }
    let request: async_graphql::Request = serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() { "invalid_request" } else { "invalid_json" };
        Refusal::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    if !plaza_edge::is_object(body) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", "the body must be a JSON object"));
    }
    if let Err(depth) = nesting::check(&request.query) {
        let message = format!("the document nests deeper than {MAX_NESTING} levels ({depth} and more)");
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "nesting_too_deep", message));
    }
    Ok(request)
}

async fn graphql(State(api): State<Arc<ReadApi>>, request: Request) -> Result<Response, Refusal> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let ip = plaza_edge::client_ip(request.headers(), peer, api.proxy_hops).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let viewer = viewer(&api, request.headers());
    let min_position = request.headers().get("plaza-min-position").cloned();
    // The (bounded) body is read before any refusal: an answer sent while it is still
    // arriving makes the server close the connection, and a client that reuses it for
    // its next request gets a transport error instead of an answer.
    let body = plaza_edge::read_json(request, MAX_BODY_BYTES).await.map_err(|e| Refusal::new(e.status, e.code, e.message));
    // An invalid token counts against the IP only.
    if let Err(wait) = api.limiter.acquire(viewer.as_ref().ok().copied().flatten(), ip).await {
        let seconds = plaza_edge::retry_after_secs(wait);
        let refusal = Refusal::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {seconds} s"));
        return Err(Refusal { retry_after: Some(seconds), ..refusal });
    }
    let viewer = viewer?;
    let mut request = parse_request(&body?)?;
    api.documents.prepare(&mut request);
    let recorded = schema::Recorded::default();
    let mut request = request.data(Viewer::new(viewer)).data(RequestCache::default()).data(recorded.clone());
    if let Some(value) = min_position {
        let position = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(Refusal::invalid_min_position)?;
        wait_for_position(&api, position).await?;
        // The search index is not among the read models waited for: `search` waits itself.
        request = request.data(MinPosition(position));
    }
    let mut response = api.schema.execute(request).await;
    // What the request recorded (a search, in its user's history): a consistency token.
    let position = recorded.0.load(std::sync::atomic::Ordering::Relaxed);
    if position > 0 {
        response.extensions.insert("position".to_owned(), async_graphql::Value::from(position));
    }
    Ok(axum::Json(response).into_response())
}

/// Waits, bounded, until the read models include `position`; a position the event store
/// has not reached is refused at once.
async fn wait_for_position(api: &ReadApi, position: u64) -> Result<(), Refusal> {
    if api.progress.reached(position) {
        return Ok(());
    }
    // When the store cannot be asked, the bounded wait decides.
    if let Ok(head) = api.store.head().await
        && position > head
    {
        let message = format!("position {position} is beyond the last event ({head}); send a position a command returned");
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "invalid_position", message));
    }
    if !api.progress.wait_for(position, api.consistency_timeout).await {
        let timeout = api.consistency_timeout.as_millis();
        let message = format!("the read models have not reached position {position} within {timeout} ms; retry");
        return Err(Refusal { retry_after: Some(1), ..Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "consistency_timeout", message) });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_single_objects_with_bounded_nesting() {
        assert!(parse_request(br#"{"query": "{ __typename }"}"#).is_ok());
        let code = |body: &[u8]| parse_request(body).err().map(|refusal| refusal.code);
        assert_eq!(code(br#" [{"query": "{ __typename }"}]"#), Some("batch_not_supported"));
        assert_eq!(code(br#"{"query": "#), Some("invalid_json"));
        assert_eq!(code(br#"{"query": 42}"#), Some("invalid_request"));
        let deep = format!(r#"{{"query": "{{ a(x: {}1{}) }}"}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(code(deep.as_bytes()), Some("nesting_too_deep"));
    }
}

//! `plaza-peer`: Plaza's "like a video" command as a team would build it with an
//! off-the-shelf framework, cqrs-es 0.5 with its PostgreSQL event repository postgres-es
//! 0.5, behind axum 0.8. `make bench` loads it with the same requests as Plaza and reports
//! the ratio of the two.
//!
//! It mirrors the command side of Plaza's `POST /api/v1/videos/{id}/like` only: verify the
//! HS256 bearer token, load the video aggregate from its events and answer 404 unless it
//! is published, load the `like-{video}-{user}` aggregate, decide (liking an already-liked
//! pair is a no-op success), append `VideoLiked` in a committed transaction, answer 200.
//! There are deliberately no query processors (read models): cqrs-es would run them
//! inline after the commit, and the comparison is of the command path alone.
//!
//! Configuration (environment): `PLAZA_LISTEN` (default `127.0.0.1:18080`),
//! `PEER_DATABASE_URL` (required: an empty database; the tables are created on start),
//! `PEER_JWT_SECRET` (optional). Anything else in the environment is ignored.

mod domain;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, EventStore};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use postgres_es::{PostgresCqrs, PostgresEventRepository, postgres_cqrs};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use domain::{Like, LikeCommand, User, UserCommand, Video, VideoCommand};

const DEFAULT_LISTEN: &str = "127.0.0.1:18080";
const DEFAULT_JWT_SECRET: &str = "plaza-peer-dev-secret";
/// Tokens are only for the benchmark's run: a week is far enough.
const TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;
/// Connections of the PostgreSQL pool. The benchmark drives 64 HTTP connections on a
/// 2-core machine that also runs PostgreSQL, so the database, not the pool, is the limit:
/// more than a few backends per core only adds context switches and lock contention.
/// 16 still keeps enough transactions in flight for PostgreSQL to group their commit
/// flushes (one WAL fsync for many likes); a request past 16 waits for a connection in
/// sqlx's queue. A like holds a connection three times (video read, like read, and the
/// BEGIN/INSERT/COMMIT of the append), each briefly.
const POOL_SIZE: u32 = 16;
/// Same-stream races (one user's two concurrent likes of one video) lose on the events
/// table's primary key; the loser is retried, and then finds the like already there.
const CONFLICT_RETRIES: usize = 3;

/// The tables postgres-es 0.5 reads and writes (its `db/init.sql`, without its test
/// data): one `events` table for every aggregate type, and `snapshots`, which only a
/// snapshotting store uses. The peer does not snapshot (a like stream holds one event, a
/// video stream one), so that table stays empty.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        aggregate_type text                         NOT NULL,
        aggregate_id   text                         NOT NULL,
        sequence       bigint CHECK (sequence >= 0) NOT NULL,
        event_type     text                         NOT NULL,
        event_version  text                         NOT NULL,
        payload        json                         NOT NULL,
        metadata       json                         NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, sequence)
    )",
    "CREATE TABLE IF NOT EXISTS snapshots (
        aggregate_type   text                                 NOT NULL,
        aggregate_id     text                                 NOT NULL,
        last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
        current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
        payload          json                                 NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
    )",
];

/// The service once its database is ready.
struct App {
    users: PostgresCqrs<User>,
    videos: PostgresCqrs<Video>,
    /// The video aggregates' store, for loading one outside a command: a
    /// `CqrsFramework` only executes commands and does not hand out its store.
    video_store: PersistedEventStore<PostgresEventRepository, Video>,
    likes: PostgresCqrs<Like>,
    tokens: Tokens,
}

/// The state the routes share: the app appears once the database is ready.
#[derive(Clone)]
struct Shared(Arc<OnceLock<App>>);

impl Shared {
    fn app(&self) -> Result<&App, Response> {
        self.0.get().ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "not_ready"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0] != "serve" {
        eprintln!("usage: plaza-peer serve\n\nenvironment: PLAZA_LISTEN, PEER_DATABASE_URL, PEER_JWT_SECRET");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(serve()) {
        eprintln!("plaza-peer: {e}");
        std::process::exit(1);
    }
}

async fn serve() -> Result<(), String> {
    let listen = std::env::var("PLAZA_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen.parse().map_err(|e| format!("PLAZA_LISTEN {listen:?}: {e}"))?;
    let database_url = std::env::var("PEER_DATABASE_URL").map_err(|_| "PEER_DATABASE_URL is not set".to_owned())?;
    let secret = std::env::var("PEER_JWT_SECRET").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_JWT_SECRET.to_owned());

    let shared = Shared(Arc::new(OnceLock::new()));
    let router = Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(readyz))
        .route("/api/v1/users", post(register))
        .route("/api/v1/videos", post(publish))
        .route("/api/v1/videos/{video_id}/like", post(like))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("plaza-peer: listening on {listen}");

    // The listener answers /healthz at once; /readyz and the API wait for the database.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        match connect(&database_url).await {
            Ok(pool) => {
                let app = App {
                    users: postgres_cqrs(pool.clone(), vec![], ()),
                    videos: postgres_cqrs(pool.clone(), vec![], ()),
                    video_store: PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone())),
                    likes: postgres_cqrs(pool, vec![], ()),
                    tokens: Tokens::new(secret.as_bytes()),
                };
                let _ = shared.0.set(app);
                eprintln!("plaza-peer: database ready");
            }
            Err(e) => {
                let _ = failed_tx.send(e);
            }
        }
    });

    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate() => Ok(()),
            Ok(e) = failed_rx => Err(e),
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let outcome: Result<(), String> = shutdown.await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => return Err(format!("server: {e}")),
        Ok(Err(e)) => return Err(format!("server task: {e}")),
        _ => {}
    }
    outcome
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

/// Connects (retrying for up to a minute while PostgreSQL starts) and creates the tables.
async fn connect(url: &str) -> Result<PgPool, String> {
    let options = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(POOL_SIZE)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out by default, one more round trip per
        // query; Plaza's pool (deadpool, "fast" recycling) does not, nor does this one.
        .test_before_acquire(false);
    let mut attempt = 0;
    let pool = loop {
        match options.clone().connect(url).await {
            Ok(pool) => break pool,
            Err(e) if attempt < 60 => {
                attempt += 1;
                if attempt == 1 {
                    eprintln!("plaza-peer: waiting for the database: {e}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(format!("cannot connect to the database: {e}")),
        }
    };
    for statement in SCHEMA {
        sqlx::query(statement).execute(&pool).await.map_err(|e| format!("cannot create the tables: {e}"))?;
    }
    Ok(pool)
}

async fn readyz(State(shared): State<Shared>) -> Response {
    match shared.app() {
        Ok(_) => StatusCode::OK.into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct RegisterBody {
    username: String,
}

#[derive(Serialize)]
struct Registered {
    user_id: Uuid,
    token: String,
}

/// `POST /api/v1/users {"username"}`: setup only, no password.
async fn register(State(shared): State<Shared>, body: Bytes) -> Response {
    let app = match shared.app() {
        Ok(app) => app,
        Err(response) => return response,
    };
    let Ok(RegisterBody { username }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_body");
    };
    let user_id = Uuid::new_v4();
    match app.users.execute(&user_id.to_string(), UserCommand::Register { username }).await {
        Ok(()) => axum::Json(Registered { user_id, token: app.tokens.issue(user_id) }).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct PublishBody {
    title: String,
}

/// `POST /api/v1/videos {"title"}`: publishes a new video of the caller.
async fn publish(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let app = match shared.app() {
        Ok(app) => app,
        Err(response) => return response,
    };
    let Some(owner) = app.tokens.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    };
    let Ok(PublishBody { title }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_body");
    };
    let video_id = Uuid::new_v4();
    match app.videos.execute_with_metadata(&video_id.to_string(), VideoCommand::Publish { owner, title }, actor(owner)).await {
        Ok(()) => axum::Json(json!({ "video_id": video_id })).into_response(),
        Err(e) => failure(e),
    }
}

/// `POST /api/v1/videos/{video_id}/like`: the measured command.
async fn like(State(shared): State<Shared>, Path(video_id): Path<String>, headers: HeaderMap) -> Response {
    let app = match shared.app() {
        Ok(app) => app,
        Err(response) => return response,
    };
    // As in Plaza, the path is checked before the caller.
    let Ok(video_id) = Uuid::parse_str(&video_id) else {
        return error(StatusCode::BAD_REQUEST, "invalid_id");
    };
    let Some(user_id) = app.tokens.caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated");
    };
    // The video's stream is read, never written: a popular video is no hot spot.
    match app.video_store.load_aggregate(&video_id.to_string()).await {
        Ok(video) if video.aggregate.is_published() => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, "video_not_found"),
        Err(e) => return failure(e),
    }
    let like_id = Like::id(video_id, user_id);
    let mut attempt = 0;
    loop {
        match app.likes.execute_with_metadata(&like_id, LikeCommand::Like { video_id, user_id }, actor(user_id)).await {
            Ok(()) => return axum::Json(json!({ "liked": true })).into_response(),
            Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => attempt += 1,
            Err(e) => return failure(e),
        }
    }
}

/// The event metadata: who issued the command, as Plaza records it.
fn actor(user_id: Uuid) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), user_id.to_string())])
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({ "error": code }))).into_response()
}

fn failure<E: std::error::Error>(e: AggregateError<E>) -> Response {
    match e {
        AggregateError::UserError(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({ "error": e.to_string() }))).into_response(),
        AggregateError::AggregateConflict => error(StatusCode::CONFLICT, "conflict"),
        e => {
            eprintln!("plaza-peer: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iat: u64,
    exp: u64,
}

/// HS256 access tokens whose subject is the user id, checked as Plaza checks them.
struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    fn issue(&self, user_id: Uuid) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: user_id, iat: now, exp: now + TOKEN_TTL_SECS };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// The user of the request's valid bearer token.
    fn caller(&self, headers: &HeaderMap) -> Option<Uuid> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
        jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation).ok().map(|data| data.claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_others() {
        let tokens = Tokens::new(b"secret");
        let user = Uuid::new_v4();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {}", tokens.issue(user)).parse().unwrap());
        assert_eq!(tokens.caller(&headers), Some(user));
        assert_eq!(Tokens::new(b"other").caller(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer not.a.token".parse().unwrap());
        assert_eq!(tokens.caller(&headers), None);
        assert_eq!(tokens.caller(&HeaderMap::new()), None);
    }
}

//! `plaza`: one binary for every role of the Plaza backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Parser, Subcommand};
use plaza_commands::{Accounts, Tokens};
use plaza_domain::EventStore;
use plaza_infra::Config;
use plaza_infra::config::redact_url;
use plaza_projections::{Progress, Projector, ReadModelDb};
use plaza_read_api::ReadApi;
use plaza_write_api::{ApiError, WriteApi};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_http::trace::TraceLayer;
use tracing::info;

/// Plaza: an event-sourced social backend.
///
/// Configuration comes from built-in defaults, then the file given with --config
/// (TOML), then PLAZA_* environment variables. With none, `plaza serve` runs the
/// embedded profile (SQLite files in ./data) on 127.0.0.1:8080.
#[derive(Parser)]
#[command(name = "plaza", version, about, long_about, after_long_help = ENVIRONMENT)]
struct Cli {
    /// TOML configuration file (also PLAZA_CONFIG).
    #[arg(long, short, global = true, env = "PLAZA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

const ENVIRONMENT: &str = "\
Configuration keys (file key / environment variable, default):
  listen                  PLAZA_LISTEN                  127.0.0.1:8080
  data_dir                PLAZA_DATA_DIR                ./data
  store_url               PLAZA_STORE_URL               sqlite  (or sqlite:///file.db, postgres://user@host:5432/db)
  read_models_url         PLAZA_READ_MODELS_URL         sqlite  (same forms)
  jwt_secret              PLAZA_JWT_SECRET              random, kept in data_dir/jwt-secret
  token_ttl_secs          PLAZA_TOKEN_TTL_SECS          86400
  consistency_timeout_ms  PLAZA_CONSISTENCY_TIMEOUT_MS  5000
  log                     PLAZA_LOG (or RUST_LOG)       info
  kafka_brokers           PLAZA_KAFKA_BROKERS           127.0.0.1:9092  (relay)
  kafka_topic             PLAZA_KAFKA_TOPIC             plaza.events
  kafka_partitions        PLAZA_KAFKA_PARTITIONS        6  (when the relay creates the topic)

Examples:
  plaza serve                                             embedded profile, ./data
  PLAZA_STORE_URL=postgres://postgres@127.0.0.1/plaza \\
  PLAZA_READ_MODELS_URL=postgres://postgres@127.0.0.1/plaza plaza serve
  plaza --config plaza.toml config                        show the effective configuration";

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: the REST write API (/api/v1), the GraphQL read
    /// API (/graphql), and the projectors that keep the read models up to date.
    Serve,
    /// Run the relay (cluster profile): tail the PostgreSQL event store's global log
    /// and produce every event to Kafka (`kafka_topic`), keyed by stream id, recording
    /// what Kafka acknowledged. Serves /healthz and /readyz on `listen`.
    Relay,
    /// Print the effective configuration (secrets hidden) and exit.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("cannot load the configuration")?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Relay => relay(config).await,
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    plaza_infra::telemetry::init(&config.log);
    let store = plaza_infra::open_event_store(&config).await.context("cannot open the event store")?;
    let db = plaza_infra::open_read_models(&config).await.context("cannot open the read models")?;
    let secret = config.jwt_secret().context("cannot read or create the token secret")?;
    let tokens = Tokens::new(secret.expose().as_bytes(), Duration::from_secs(config.token_ttl_secs));

    let progress = Progress::default();
    let (stop_projectors, shutdown) = watch::channel(false);
    let mut projectors = JoinSet::new();
    for projection in plaza_projections::all() {
        let projector = Projector::new(projection, store.clone(), db.clone(), progress.clone());
        projector.prepare().await.with_context(|| format!("cannot prepare projection {}", projector.name()))?;
        projectors.spawn(projector.run(shutdown.clone()));
    }

    let write = WriteApi { accounts: Accounts::new(store.clone()), tokens: tokens.clone() };
    let read = ReadApi::new(db.clone(), progress, tokens, Duration::from_millis(config.consistency_timeout_ms));
    let app = Router::new()
        .merge(plaza_write_api::router(write))
        .merge(plaza_read_api::router(read))
        .merge(health_routes(store, db))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(addr = %listener.local_addr()?, store = %redact_url(&config.store_url), read_models = %redact_url(&config.read_models_url), "plaza serving");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;

    info!("stopping projectors");
    let _ = stop_projectors.send(true);
    while projectors.join_next().await.is_some() {}
    info!("stopped");
    Ok(())
}

async fn relay(config: Config) -> anyhow::Result<()> {
    plaza_infra::telemetry::init(&config.log);
    anyhow::ensure!(config.store_url.starts_with("postgres"), "the relay needs a PostgreSQL event store: set PLAZA_STORE_URL=postgres://...");
    let store = Arc::new(plaza_infra::postgres::PgEventStore::connect(&config.store_url).await.context("cannot open the event store")?);
    let relay = plaza_infra::kafka::Relay::new(&config.kafka_brokers, &config.kafka_topic, config.kafka_partitions, store.clone(), store.clone())?;
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(relay.run(shutdown));

    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(addr = %listener.local_addr()?, brokers = %config.kafka_brokers, topic = %config.kafka_topic, "relay serving health");
    let health = Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(store_ready)).with_state(store as Arc<dyn EventStore>);
    axum::serve(listener, health).with_graceful_shutdown(shutdown_signal()).await?;
    let _ = stop.send(true);
    running.await??;
    Ok(())
}

async fn store_ready(State(store): State<Arc<dyn EventStore>>) -> (StatusCode, &'static str) {
    match store.head().await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable"),
    }
}

fn health_routes(store: Arc<dyn EventStore>, db: Arc<dyn ReadModelDb>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready)).with_state((store, db))
}

/// Ready when the event store and the read-model database answer.
async fn ready(State((store, db)): State<(Arc<dyn EventStore>, Arc<dyn ReadModelDb>)>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let store_ok = store.head().await.map_err(|e| e.to_string());
    let db_ok = db.query("SELECT 1", vec![]).await.map(|_| ()).map_err(|e| e.to_string());
    let status = if store_ok.is_ok() && db_ok.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let describe = |r: Result<_, String>| r.err().unwrap_or_else(|| "ok".into());
    (status, axum::Json(json!({ "event_store": describe(store_ok.map(|_| ())), "read_models": describe(db_ok) })))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    info!("shutdown requested, finishing in-flight requests");
}

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
    /// Run only the REST write API (commands), with /healthz and /readyz.
    WriteApi,
    /// Run only the GraphQL read API; consistency-token waits follow the checkpoints
    /// that projectors elsewhere commit to the read-model database.
    ReadApi,
    /// Run only projectors (each tails the event store's global log), with /healthz
    /// and /readyz.
    Projector {
        /// Projection to run (repeatable); all of them when omitted.
        #[arg(long = "projection", value_name = "NAME")]
        projections: Vec<String>,
    },
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
        Command::Serve => run(config, Roles::all()).await,
        Command::WriteApi => run(config, Roles { write_api: true, read_api: false, projections: vec![] }).await,
        Command::ReadApi => run(config, Roles { write_api: false, read_api: true, projections: vec![] }).await,
        Command::Projector { projections } => {
            let known = all_projection_names();
            if let Some(unknown) = projections.iter().find(|name| !known.contains(name)) {
                anyhow::bail!("unknown projection {unknown:?}; known: {}", known.join(", "));
            }
            let projections = if projections.is_empty() { known } else { projections };
            run(config, Roles { write_api: false, read_api: false, projections }).await
        }
        Command::Relay => relay(config).await,
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
    }
}

/// Which parts of Plaza this process runs.
struct Roles {
    write_api: bool,
    read_api: bool,
    /// Projections to run here (empty: none).
    projections: Vec<String>,
}

impl Roles {
    fn all() -> Self {
        Self { write_api: true, read_api: true, projections: all_projection_names() }
    }
}

fn all_projection_names() -> Vec<String> {
    plaza_projections::all().iter().map(|p| p.name().to_owned()).collect()
}

/// Runs the given roles on one listener, with /healthz and /readyz, until SIGTERM or
/// Ctrl-C; then finishes in-flight requests and projector batches.
async fn run(config: Config, roles: Roles) -> anyhow::Result<()> {
    plaza_infra::telemetry::init(&config.log);
    let needs_store = roles.write_api || !roles.projections.is_empty();
    let needs_db = roles.read_api || !roles.projections.is_empty();
    let store = match needs_store {
        true => Some(plaza_infra::open_event_store(&config).await.context("cannot open the event store")?),
        false => None,
    };
    let db = match needs_db {
        true => Some(plaza_infra::open_read_models(&config).await.context("cannot open the read models")?),
        false => None,
    };
    let tokens = match roles.write_api || roles.read_api {
        true => {
            let secret = config.jwt_secret().context("cannot read or create the token secret")?;
            Some(Tokens::new(secret.expose().as_bytes(), Duration::from_secs(config.token_ttl_secs)))
        }
        false => None,
    };

    let progress = Progress::default();
    let (stop_background, shutdown) = watch::channel(false);
    let mut background = JoinSet::new();
    if let (Some(store), Some(db)) = (&store, &db) {
        for projection in plaza_projections::all().into_iter().filter(|p| roles.projections.iter().any(|name| name == p.name())) {
            let projector = Projector::new(projection, store.clone(), db.clone(), progress.clone());
            projector.prepare().await.with_context(|| format!("cannot prepare projection {}", projector.name()))?;
            background.spawn(projector.run(shutdown.clone()));
        }
    }

    let mut app = Router::new();
    if let (true, Some(store), Some(tokens)) = (roles.write_api, &store, &tokens) {
        app = app.merge(plaza_write_api::router(WriteApi { accounts: Accounts::new(store.clone()), tokens: tokens.clone() }));
    }
    if let (true, Some(db), Some(tokens)) = (roles.read_api, &db, &tokens) {
        if roles.projections.is_empty() {
            // The projectors run elsewhere: learn their progress from their checkpoints.
            for name in all_projection_names() {
                progress.advance(&name, 0);
            }
            background.spawn(progress.clone().follow_checkpoints(db.clone(), Duration::from_millis(20), shutdown.clone()));
        }
        let timeout = Duration::from_millis(config.consistency_timeout_ms);
        app = app.merge(plaza_read_api::router(ReadApi::new(db.clone(), progress, tokens.clone(), timeout)));
    }
    let app = app
        .merge(health_routes(store, db))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(
        addr = %listener.local_addr()?,
        write_api = roles.write_api,
        read_api = roles.read_api,
        projections = ?roles.projections,
        store = %redact_url(&config.store_url),
        read_models = %redact_url(&config.read_models_url),
        "plaza serving"
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;

    info!("stopping background work");
    let _ = stop_background.send(true);
    while background.join_next().await.is_some() {}
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
    axum::serve(listener, health_routes(Some(store), None)).with_graceful_shutdown(shutdown_signal()).await?;
    let _ = stop.send(true);
    running.await??;
    Ok(())
}

type Dependencies = (Option<Arc<dyn EventStore>>, Option<Arc<dyn ReadModelDb>>);

fn health_routes(store: Option<Arc<dyn EventStore>>, db: Option<Arc<dyn ReadModelDb>>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready)).with_state((store, db))
}

/// Ready when the dependencies this process uses (event store, read models) answer.
async fn ready(State((store, db)): State<Dependencies>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let mut report = serde_json::Map::new();
    let mut ok = true;
    if let Some(store) = store {
        let answer = store.head().await.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string());
        ok &= answer == "ok";
        report.insert("event_store".into(), answer.into());
    }
    if let Some(db) = db {
        let answer = db.query("SELECT 1", vec![]).await.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string());
        ok &= answer == "ok";
        report.insert("read_models".into(), answer.into());
    }
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(report.into()))
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

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
use futures_util::future::{BoxFuture, join_all};
use plaza_commands::{Accounts, Content, ConversationSettings, Conversations, Counters, IdempotencyKeys, Notifications, SearchHistory};
use plaza_edge::Tokens;
use plaza_infra::config::redact_url;
use plaza_infra::counters::{ReadModelBaseline, ReadModelMessages};
use plaza_infra::kafka::{KafkaProjector, KafkaSearchFeed, Probe, Relay};
use plaza_infra::redis::{Redis, RedisFailures, RedisNotices, RedisPresence, RedisRateLimiter, RedisTyping};
use plaza_infra::tantivy::TantivySearch;
use plaza_infra::{Config, Distribution};
use plaza_live::{LocalPresence, LocalTyping, Presence, TypingSignals};
use plaza_projections::processes::ProcessRunner;
use plaza_projections::search::SearchProjector;
use plaza_projections::{ChangeNotices, LocalNotices, Progress, Projector};
use plaza_read_api::{Live, ReadApi, ReadApiSettings, SearchEngine};
use plaza_write_api::{ApiError, FailureLog, LocalFailures, LocalRateLimiter, LoginThrottle, RateLimiter, RateLimits, WriteApi};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::{error, info, warn};

mod admin;
mod events;
mod metrics;
mod ops;

/// mimalloc instead of glibc's malloc: under a GraphQL list glibc's malloc and free took
/// a quarter of the CPU. With mimalloc the bench's lists answer 1.4 to 3.3 times the
/// requests/s (HOT 1.05 to 1.4), holding less memory. Built without transparent huge
/// pages: faulting those in raised the likes' p99 by 6 to 23 ms (docs/benchmarks.md,
/// issue 13, eighth round).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Worker threads' stacks. Request handling never recurses deeply (documents are
/// bounded before parsing); this is headroom, not a limit anyone should reach.
const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;

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
  store_url               PLAZA_STORE_URL               sqlite  (or sqlite:///file.db, postgres://user@host:5432/db, esdb://host:2113)
  store_namespace         PLAZA_STORE_NAMESPACE         (empty)  EventStoreDB only: prefix of every stream
  read_models_url         PLAZA_READ_MODELS_URL         sqlite  (sqlite, sqlite:///file.db or postgres://...)
  jwt_secret              PLAZA_JWT_SECRET              random, kept in data_dir/jwt-secret (at least 32 bytes)
  token_ttl_secs          PLAZA_TOKEN_TTL_SECS          86400
  consistency_timeout_ms  PLAZA_CONSISTENCY_TIMEOUT_MS  5000
  log                     PLAZA_LOG (or RUST_LOG)       info
  log_format              PLAZA_LOG_FORMAT              text  (or json: one object per line)
  distribution            PLAZA_DISTRIBUTION            direct  (projectors tail the store) or kafka
  kafka_brokers           PLAZA_KAFKA_BROKERS           127.0.0.1:9092
  kafka_topic             PLAZA_KAFKA_TOPIC             plaza.events
  kafka_partitions        PLAZA_KAFKA_PARTITIONS        6  (when Plaza creates the topic)
  redis_url               PLAZA_REDIS_URL               (empty: per process)  e.g. redis://127.0.0.1:6379
  redis_prefix            PLAZA_REDIS_PREFIX            plaza:
  search_url              PLAZA_SEARCH_URL              (empty: tantivy in each read API's data_dir)  e.g. http://127.0.0.1:9200 (Elasticsearch, `--features elasticsearch`)
  search_prefix           PLAZA_SEARCH_PREFIX           plaza  (of the shared search engine's index names)
  rate_limit_user_per_sec PLAZA_RATE_LIMIT_USER_PER_SEC 20   (0: unlimited)
  rate_limit_user_burst   PLAZA_RATE_LIMIT_USER_BURST   60
  rate_limit_ip_per_sec   PLAZA_RATE_LIMIT_IP_PER_SEC   200  (0: unlimited)
  rate_limit_ip_burst     PLAZA_RATE_LIMIT_IP_BURST     400
  trusted_proxy_hops      PLAZA_TRUSTED_PROXY_HOPS      0  (proxies whose X-Forwarded-For is trusted)
  feed_fanout_limit       PLAZA_FEED_FANOUT_LIMIT       1000  (authors with more followers are pulled, not fanned out)
  group_max_members       PLAZA_GROUP_MAX_MEMBERS       10000
  message_edit_window_secs PLAZA_MESSAGE_EDIT_WINDOW_SECS 900
  presence_ttl_secs       PLAZA_PRESENCE_TTL_SECS       300
  rebuild_batch_size      PLAZA_REBUILD_BATCH_SIZE      50000 (events a projection rebuild reads and applies at a time)
  rebuild_commit_ms       PLAZA_REBUILD_COMMIT_MS       1000  (a rebuild into SQLite commits its batches this often; 0: each batch)
  projection_max_attempts PLAZA_PROJECTION_MAX_ATTEMPTS 5     (tries at an event a projection fails on, with backoff)
  projection_on_failure   PLAZA_PROJECTION_ON_FAILURE   park  (then: park it as a dead letter and go on, or stop)
  projection_stall_secs   PLAZA_PROJECTION_STALL_SECS   60    (events waiting, nothing applied this long: stalled)
  graphql_rate_limit_user_per_sec / _burst  PLAZA_GRAPHQL_RATE_LIMIT_USER_PER_SEC / _BURST  50 / 100  (0: unlimited)
  graphql_rate_limit_ip_per_sec / _burst    PLAZA_GRAPHQL_RATE_LIMIT_IP_PER_SEC / _BURST    200 / 400 (0: unlimited)
  graphql_introspection   PLAZA_GRAPHQL_INTROSPECTION   true  (false: no introspection, no field suggestions)
  login_free_failures     PLAZA_LOGIN_FREE_FAILURES     5     (wrong passwords per account before attempts wait; 0: never)
  login_ip_free_failures  PLAZA_LOGIN_IP_FREE_FAILURES  20    (wrong passwords per client IP before attempts wait; 0: never)
  login_backoff_ms        PLAZA_LOGIN_BACKOFF_MS        1000  (first wait, doubling per further failure)
  login_backoff_max_secs  PLAZA_LOGIN_BACKOFF_MAX_SECS  900   (longest wait)
  http_header_timeout_ms  PLAZA_HTTP_HEADER_TIMEOUT_MS  10000 (time to send a request head; ends idle connections)
  http_body_timeout_ms    PLAZA_HTTP_BODY_TIMEOUT_MS    30000 (time to send a request body)
  http_max_connections_per_ip  PLAZA_HTTP_MAX_CONNECTIONS_PER_IP  256  (0: unlimited)
  notification_group_window_secs PLAZA_NOTIFICATION_GROUP_WINDOW_SECS 3600 (an unread group grows this long after its last action)
  welcome_text            PLAZA_WELCOME_TEXT            Welcome to Plaza! ...  (the new user's system notice; empty: none)
  welcome_follow          PLAZA_WELCOME_FOLLOW          (empty)  usernames every new user follows, e.g. plaza,news

Examples:
  plaza serve                                             embedded profile, ./data
  PLAZA_STORE_URL=postgres://postgres@127.0.0.1/plaza \\
  PLAZA_READ_MODELS_URL=postgres://postgres@127.0.0.1/plaza plaza serve
  plaza --config plaza.toml config                        show the effective configuration
  (docs/cluster.md runs the four roles on PostgreSQL, Kafka and Redis)";

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: the REST write API (/api/v1), the GraphQL read
    /// API (/graphql), the projectors that keep the read models up to date, and with
    /// `distribution = kafka` the relay.
    Serve,
    /// Run only the REST write API (commands), with /healthz and /readyz.
    WriteApi,
    /// Run only the GraphQL read API; consistency-token waits follow the checkpoints
    /// that projectors elsewhere commit to the read-model database.
    ReadApi,
    /// Run only projectors and process managers (the welcome flow), with /healthz and
    /// /readyz. With `distribution = kafka` projectors consume the events topic in one
    /// consumer group per projection, so several projector processes share the work;
    /// otherwise each tails the event store. Process managers tail the event store, one
    /// process running each at a time.
    Projector {
        /// Projection or process manager to run (repeatable); all of them when omitted.
        #[arg(long = "projection", value_name = "NAME")]
        projections: Vec<String>,
    },
    /// Run the relay (cluster profile): tail the event store's global log (PostgreSQL
    /// or EventStoreDB) and produce every event to Kafka (`kafka_topic`), keyed by
    /// stream id, recording what Kafka acknowledged. Serves /healthz and /readyz.
    Relay,
    /// Print the effective configuration (secrets hidden) and exit.
    Config,
    /// Watch and operate the projections (read models): status, rebuild, pause, resume.
    #[command(subcommand)]
    Projections(ops::ProjectionsCommand),
    /// Give or take back roles: `plaza admin grant alice` lets alice use /admin.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The event history for analysts: tail, export, one stream.
    #[command(subcommand)]
    Events(events::EventsCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("cannot load the configuration")?;
    // Before the runtime: the OTLP exporter's HTTP client runs on threads of its own.
    plaza_infra::telemetry::init(&config);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(start(cli, config));
    plaza_infra::telemetry::shutdown();
    result
}

async fn start(cli: Cli, config: Config) -> anyhow::Result<()> {
    let none = Roles { write_api: false, read_api: false, relay: false, projections: vec![] };
    match cli.command {
        Command::Serve => {
            let relay = config.distribution == Distribution::Kafka;
            let projections = all_runnable_names(&config);
            run(config, Roles { write_api: true, read_api: true, relay, projections }).await
        }
        Command::WriteApi => run(config, Roles { write_api: true, ..none }).await,
        Command::ReadApi => run(config, Roles { read_api: true, ..none }).await,
        Command::Relay => run(config, Roles { relay: true, ..none }).await,
        Command::Projector { projections } => {
            let known = all_runnable_names(&config);
            if let Some(unknown) = projections.iter().find(|name| !known.contains(name)) {
                anyhow::bail!("unknown projection {unknown:?}; known: {}", known.join(", "));
            }
            let projections = if projections.is_empty() { known } else { projections };
            run(config, Roles { projections, ..none }).await
        }
        Command::Config => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Projections(command) => ops::projections(&config, command).await,
        Command::Admin(command) => admin::command(&config, command).await,
        Command::Events(command) => events::command(&config, command).await,
    }
}

/// Which parts of Plaza this process runs.
struct Roles {
    write_api: bool,
    read_api: bool,
    relay: bool,
    /// Projections to run here (empty: none).
    projections: Vec<String>,
}

fn all_projection_names(config: &Config) -> Vec<String> {
    plaza_infra::projections(config).iter().map(|p| p.name().to_owned()).collect()
}

/// The projections and process managers a projector process may run.
fn all_runnable_names(config: &Config) -> Vec<String> {
    let mut names = all_projection_names(config);
    names.extend(plaza_infra::PROCESS_NAMES.iter().map(|name| (*name).to_owned()));
    names
}

/// Runs the given roles on one listener, with /healthz and /readyz, until SIGTERM or
/// Ctrl-C; then finishes in-flight requests, projector batches and the relay's batch.
async fn run(config: Config, roles: Roles) -> anyhow::Result<()> {
    let metrics_handle = metrics::install().context("cannot install the metrics recorder")?;
    let kafka = config.distribution == Distribution::Kafka;
    let kafka_settings = plaza_infra::kafka_settings(&config);
    // Projectors tail the store unless Kafka feeds them.
    let tailing = !roles.projections.is_empty() && !kafka;
    let mut health = Health::default();

    // The read API asks the store for its head (a consistency token beyond it is refused);
    // projectors fed by Kafka read it when they rebuild.
    let store = match roles.write_api || roles.read_api || !roles.projections.is_empty() {
        true => Some(plaza_infra::open_event_store(&config).await.context("cannot open the event store")?),
        false => None,
    };
    let relay_source = match roles.relay {
        true => Some(plaza_infra::open_relay_source(&config).await.context("cannot open the event store for the relay")?),
        false => None,
    };
    if let Some(store) = store.clone().or_else(|| relay_source.as_ref().map(|(source, _)| source.clone())) {
        health.add("event_store", move || {
            let store = store.clone();
            async move { store.head().await.map(drop).map_err(|e| e.to_string()) }
        });
    }
    // The write API reads the counters read model: where a counter's total starts.
    let db = match roles.read_api || roles.write_api || !roles.projections.is_empty() {
        true => Some(plaza_infra::open_read_models(&config).await.context("cannot open the read models")?),
        false => None,
    };
    if let Some(db) = &db {
        // Every projection has a live generation, so readers find its tables (views).
        for projection in ops::with_processes(&config) {
            plaza_projections::generations::ensure_live(db.as_ref(), projection.as_ref())
                .await
                .with_context(|| format!("cannot prepare the read model {}", projection.name()))?;
        }
        let db = db.clone();
        health.add("read_models", move || {
            let db = db.clone();
            async move { db.query("SELECT 1", vec![]).await.map(drop).map_err(|e| e.to_string()) }
        });
    }
    let redis = match config.redis_url.is_empty() {
        true => None,
        false => Some(Redis::open(&config.redis_url, &config.redis_prefix).context("invalid redis_url")?),
    };
    if let Some(redis) = &redis {
        let redis = redis.clone();
        health.add("redis", move || {
            let redis = redis.clone();
            async move { redis.ping().await }
        });
    }
    if kafka && (roles.relay || !roles.projections.is_empty()) {
        let probe = Probe::new(&kafka_settings)?;
        health.add("kafka", move || {
            let probe = probe.clone();
            async move { probe.partitions(Duration::from_secs(2)).await.map(drop).map_err(|e| e.to_string()) }
        });
    }
    let notices: Arc<dyn ChangeNotices> = match &redis {
        Some(redis) => Arc::new(RedisNotices::new(redis)),
        None => Arc::new(LocalNotices::default()),
    };
    // Every process with the read models serves the admin routes, which check tokens too.
    let tokens = match roles.write_api || roles.read_api || (db.is_some() && store.is_some()) {
        true => {
            let secret = config.jwt_secret().context("cannot read or create the token secret")?;
            Some(Tokens::new(secret.expose().as_bytes(), Duration::from_secs(config.token_ttl_secs)))
        }
        false => None,
    };

    let progress = Progress::default();
    let (stop_background, shutdown) = watch::channel(false);
    let mut background = JoinSet::new();
    let mut joined = Vec::new();
    if let Some(db) = &db {
        let policy = plaza_infra::failure_policy(&config);
        for projection in plaza_infra::projections(&config).into_iter().filter(|p| roles.projections.iter().any(|name| name == p.name())) {
            if kafka {
                let mut projector = KafkaProjector::new(projection, db.clone(), notices.clone(), &kafka_settings).with_failure_policy(policy);
                if let Some(store) = &store {
                    projector = projector.with_store(store.clone());
                }
                joined.push(projector.joined());
                background.spawn(projector.run(shutdown.clone()));
            } else if let Some(store) = &store {
                let projector =
                    Projector::new(projection, store.clone(), db.clone(), progress.clone()).with_notices(notices.clone()).with_failure_policy(policy);
                background.spawn(projector.run(shutdown.clone()));
            }
        }
    }
    if let (Some(db), Some(store)) = (&db, &store) {
        // Process managers tail the store in every deployment: they issue commands to it.
        for process in plaza_infra::processes(&config, store.clone()).into_iter().filter(|p| roles.projections.iter().any(|name| name == p.name())) {
            let runner = ProcessRunner::new(process, store.clone(), db.clone()).with_failure_policy(plaza_infra::failure_policy(&config));
            background.spawn(runner.run(shutdown.clone()));
        }
    }
    // Search: every process serving the read API keeps a tantivy index in its data dir,
    // fed by a search projector tailing the store (docs/cluster.md says why); or, with
    // search_url, all share one Elasticsearch index that one search projector writes.
    let search = match (&store, roles.read_api, config.search_url.is_empty()) {
        (Some(store), true, true) => {
            let index = Arc::new(TantivySearch::open(&config.data_dir.join("search")).context("cannot open the search index")?);
            let projector = SearchProjector::new(index.clone(), store.clone());
            let (applied, hurry) = (projector.applied(), projector.hurry());
            background.spawn(projector.run(shutdown.clone()));
            Some(SearchEngine { index, applied, hurry: Some(hurry) })
        }
        (Some(store), read_api, false) if read_api || !roles.projections.is_empty() => {
            let (index, reader) = plaza_infra::open_shared_search(&config).await.context("cannot open the shared search engine")?;
            if let (Some(db), false) = (&db, roles.projections.is_empty()) {
                let feed = kafka.then(|| kafka_settings.clone());
                background.spawn(shared_search_projector(config.clone(), store.clone(), feed, db.clone(), shutdown.clone()));
            }
            read_api.then(|| SearchEngine { index, applied: followed(reader, shutdown.clone()), hurry: None })
        }
        _ => None,
    };
    if let (Some(db), Some(store), false) = (&db, &store, roles.projections.is_empty()) {
        // Not ready while a projection run here is stalled: events wait and nothing was
        // applied for `projection_stall_secs` (behind but moving is ready).
        let (db, store) = (db.clone(), store.clone());
        let local: Vec<_> = plaza_infra::projections(&config).into_iter().filter(|p| roles.projections.iter().any(|n| n == p.name())).collect();
        let stall = Duration::from_secs(config.projection_stall_secs);
        health.add("projections", move || {
            let (db, store, local) = (db.clone(), store.clone(), local.clone());
            async move {
                let statuses = plaza_projections::status::collect(&local, db.as_ref(), store.as_ref(), stall).await.map_err(|e| e.to_string())?;
                let stalled: Vec<String> = statuses
                    .iter()
                    .filter(|s| s.state == "stalled")
                    .map(|s| format!("{} stalled ({} events waiting, nothing applied for {} s)", s.name, s.lag_events, stall.as_secs()))
                    .collect();
                if stalled.is_empty() { Ok(()) } else { Err(stalled.join("; ")) }
            }
        });
    }
    if let (Some(db), Some(store), false) = (&db, &store, roles.projections.is_empty()) {
        let local: Vec<_> = plaza_infra::projections(&config).into_iter().filter(|p| roles.projections.iter().any(|n| n == p.name())).collect();
        background.spawn(metrics::sample_projections(local, db.clone(), store.clone(), Arc::new(config.clone()), shutdown.clone()));
    }
    if !joined.is_empty() {
        // Ready to consume once the consumer group has handed out partitions.
        health.add("consumer_group", move || {
            let all = joined.iter().all(|flag| flag.load(std::sync::atomic::Ordering::Relaxed));
            async move { if all { Ok(()) } else { Err("waiting for the consumer group to assign partitions".to_owned()) } }
        });
    }
    if let Some((source, checkpoints)) = relay_source {
        let relay = Relay::new(&kafka_settings, source, checkpoints)?;
        let mut shutdown = shutdown.clone();
        background.spawn(async move {
            // The store may fail for a while; the relay starts again from its checkpoint.
            while let Err(error) = relay.run(shutdown.clone()).await {
                error!(%error, "relay failed, restarting in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    // Token buckets in Redis when several processes share them, else in this process.
    let limiter = |limits: RateLimits, scope: &'static str| -> Arc<dyn RateLimiter> {
        match &redis {
            Some(redis) => Arc::new(RedisRateLimiter::new(redis, limits, scope)),
            None => Arc::new(LocalRateLimiter::new(limits)),
        }
    };
    // Presence and typing: in Redis when several processes share them, else here.
    let (presence, typing): (Arc<dyn Presence>, Arc<dyn TypingSignals>) = match &redis {
        Some(redis) => (Arc::new(RedisPresence::new(redis)), Arc::new(RedisTyping::new(redis))),
        None => (Arc::new(LocalPresence::default()), Arc::new(LocalTyping::default())),
    };
    if redis.is_none() && roles.write_api != roles.read_api {
        warn!("presence and typing stay in this process: set redis_url so the write and read APIs share them");
    }
    let mut app = Router::new();
    if let (true, Some(store), Some(tokens)) = (roles.write_api, &store, &tokens) {
        let failures: Arc<dyn FailureLog> = match &redis {
            Some(redis) => Arc::new(RedisFailures::new(redis)),
            None => Arc::new(LocalFailures::default()),
        };
        // The write side reads two read models: counter totals and where messages are.
        let db = db.clone().expect("the write API opens the read models");
        let conversation_settings =
            ConversationSettings { max_members: config.group_max_members, edit_window: Duration::from_secs(config.message_edit_window_secs) };
        let api = WriteApi {
            accounts: Accounts::new(store.clone()),
            content: Content::new(store.clone()),
            counters: Counters::start(store.clone(), Arc::new(ReadModelBaseline(db.clone()))),
            conversations: Conversations::new(store.clone(), Arc::new(ReadModelMessages(db)), conversation_settings),
            notifications: Notifications::new(store.clone()),
            search_history: SearchHistory::new(store.clone()),
            presence: presence.clone(),
            typing: typing.clone(),
            keys: IdempotencyKeys::new(store.clone()),
            tokens: tokens.clone(),
            limiter: limiter(plaza_infra::rate_limits(&config), "commands"),
            logins: Arc::new(LoginThrottle { policy: plaza_infra::login_policy(&config), log: failures }),
            proxy_hops: config.trusted_proxy_hops,
        };
        app = app.merge(plaza_write_api::router(api));
    }
    if let (true, Some(db), Some(store), Some(tokens)) = (roles.read_api, &db, &store, &tokens) {
        if !tailing {
            // No projector here advances `progress`: learn it from the read models, when
            // a change notice arrives. Without shared notices (no Redis, projectors in
            // other processes) there is only polling, so poll often.
            for name in all_projection_names(&config) {
                progress.advance(&name, 0);
            }
            let notified = redis.is_some() || !roles.projections.is_empty();
            let poll_every = if notified { Duration::from_secs(1) } else { Duration::from_millis(20) };
            let topic = if kafka { config.kafka_topic.clone() } else { String::new() };
            background.spawn(progress.clone().follow_read_models(db.clone(), topic, notices.clone(), poll_every, shutdown.clone()));
        }
        let settings = ReadApiSettings {
            consistency_timeout: Duration::from_millis(config.consistency_timeout_ms),
            introspection: config.graphql_introspection,
            proxy_hops: config.trusted_proxy_hops,
            search,
        };
        let limiter = limiter(plaza_infra::graphql_rate_limits(&config), "graphql");
        let live = Live { presence: presence.clone(), typing: typing.clone(), presence_ttl: Duration::from_secs(config.presence_ttl_secs) };
        app = app.merge(plaza_read_api::router(ReadApi::new(db.clone(), store.clone(), progress, tokens.clone(), limiter, live, settings)));
    }
    if let (Some(db), Some(store), Some(tokens)) = (&db, &store, &tokens) {
        let failures: Arc<dyn FailureLog> = match &redis {
            Some(redis) => Arc::new(RedisFailures::new(redis)),
            None => Arc::new(LocalFailures::default()),
        };
        let mut process_roles: Vec<String> = [("write API", roles.write_api), ("read API", roles.read_api), ("relay", roles.relay)]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| name.to_owned())
            .collect();
        if !roles.projections.is_empty() {
            process_roles.push(format!("projectors ({})", roles.projections.join(", ")));
        }
        let admin = admin::Admin {
            accounts: Accounts::new(store.clone()),
            tokens: tokens.clone(),
            db: db.clone(),
            store: store.clone(),
            projections: ops::with_processes(&config),
            config: Arc::new(config.clone()),
            process_roles,
            logins: Arc::new(LoginThrottle { policy: plaza_infra::login_policy(&config), log: failures }),
            heads: Arc::default(),
        };
        background.spawn(admin.sample_heads(shutdown.clone()));
        app = app.merge(admin::router(admin));
    }
    let app = app
        .merge(health.routes())
        .merge(metrics::routes(metrics_handle))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn(metrics::track))
        // A 5xx here is a dependency that is down or a consistency wait that timed out,
        // each reported where it happens: a warning, not an error, of its own.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)))
        // Outermost: every request has its id (X-Request-Id) before anything logs.
        .layer(axum::middleware::from_fn(plaza_edge::request_id));

    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(
        addr = %listener.local_addr()?,
        write_api = roles.write_api,
        read_api = roles.read_api,
        relay = roles.relay,
        projections = ?roles.projections,
        distribution = ?config.distribution,
        store = %redact_url(&config.store_url),
        read_models = %redact_url(&config.read_models_url),
        redis = %redact_url(&config.redis_url),
        "plaza serving"
    );
    plaza_edge::serve(listener, app, plaza_infra::server_settings(&config), shutdown_signal()).await?;

    info!("stopping background work");
    let _ = stop_background.send(true);
    while background.join_next().await.is_some() {}
    info!("stopped");
    Ok(())
}

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The dependencies this process uses, each with a check that it answers.
#[derive(Clone, Default)]
struct Health(Vec<(&'static str, Check)>);

impl Health {
    fn add<F, Fut>(&mut self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.0.push((name, Arc::new(move || Box::pin(check()))));
    }

    fn routes(self) -> Router {
        Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready)).with_state(self)
    }
}

/// Ready when every dependency answers within 3 s; the body says which does not.
async fn ready(State(health): State<Health>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let answers = join_all(health.0.iter().map(|(name, check)| async move {
        let answer = match tokio::time::timeout(Duration::from_secs(3), check()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => error,
            Err(_) => "no answer within 3 s".to_owned(),
        };
        (*name, answer)
    }))
    .await;
    let ok = answers.iter().all(|(_, answer)| answer == "ok");
    let report: serde_json::Map<String, serde_json::Value> = answers.into_iter().map(|(name, answer)| (name.to_owned(), answer.into())).collect();
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(report.into()))
}

/// Runs the search projector of a shared search engine while this process holds its
/// lock: one writer per cluster (the projection reads documents back to change them, so
/// two at different positions would count events twice); other processes wait their
/// turn. With Kafka it follows the events topic (after catching up from the store), as
/// the other projections do; otherwise it tails the store.
async fn shared_search_projector(
    config: Config,
    store: Arc<dyn plaza_domain::EventStore>,
    kafka: Option<plaza_infra::kafka::KafkaSettings>,
    db: Arc<dyn plaza_projections::ReadModelDb>,
    shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match db.try_lock("search-projector").await {
            Ok(Some(_lock)) => match plaza_infra::shared_search_writer(&config).await {
                Ok(writer) => {
                    return match kafka {
                        Some(settings) => KafkaSearchFeed::new(writer, &settings).with_store(store).run(shutdown).await,
                        None => SearchProjector::new(writer, store).run(shutdown).await,
                    };
                }
                Err(error) => warn!(error = format!("{error:#}"), "cannot open the shared search index for writing"),
            },
            Ok(None) => {}
            Err(error) => warn!(%error, "cannot take the search projector's lock"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The position a shared search engine has applied, read every 250 ms (its projector
/// may run in another process).
fn followed(writer: Arc<dyn plaza_domain::search::SearchWriter>, mut shutdown: watch::Receiver<bool>) -> watch::Receiver<u64> {
    let (tell, applied) = watch::channel(0);
    tokio::spawn(async move {
        loop {
            if let Ok(position) = writer.position().await {
                tell.send_if_modified(|known| std::mem::replace(known, position) != position);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
    applied
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    info!("shutdown requested, finishing in-flight requests");
}

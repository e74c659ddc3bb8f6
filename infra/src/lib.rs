//! Adapters for Plaza's ports, configuration and telemetry. Only this crate and the
//! root binary know which engine sits behind a port.

pub mod config;
pub mod counters;
#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
#[cfg(feature = "eventstoredb")]
pub mod eventstoredb;
pub mod files;
mod head;
pub mod kafka;
pub mod postgres;
mod recent;
pub mod redis;
pub mod search;
pub mod sqlite;
pub mod tantivy;
pub mod telemetry;

use std::sync::Arc;

use plaza_domain::EventStore;
use plaza_projections::ReadModelDb;

pub use config::{Config, Distribution};
pub use search::{SearchRebuild, open_shared_search, shared_search_writer};

/// Records one committed group of appends: how long the transaction took, how many
/// appends it carried and how many events they held.
pub(crate) fn record_append(took: std::time::Duration, appends: usize, events: usize) {
    metrics::histogram!("plaza_append_seconds").record(took.as_secs_f64());
    metrics::histogram!("plaza_append_batch_appends").record(appends as f64);
    metrics::counter!("plaza_events_appended_total").increment(events as u64);
}

/// Every projection this deployment maintains (the test-only one when configured).
pub fn projections(config: &Config) -> Vec<Arc<dyn plaza_projections::Projection>> {
    let mut all = plaza_projections::all(plaza_projections::Settings {
        feeds: plaza_projections::feeds::Settings { fanout_limit: config.feed_fanout_limit },
        notifications: plaza_projections::notifications::Settings {
            group_window: std::time::Duration::from_secs(config.notification_group_window_secs),
        },
    });
    if config.test_poison_projection {
        all.push(Arc::new(plaza_projections::poison::PoisonTestProjection));
    }
    all
}

/// The process managers' names (the welcome flow).
pub const PROCESS_NAMES: &[&str] = &["welcome"];

/// Every process manager, issuing its commands to `store`.
pub fn processes(config: &Config, store: Arc<dyn plaza_domain::EventStore>) -> Vec<Arc<dyn plaza_projections::processes::Process>> {
    let welcome = plaza_commands::WelcomeFlow::new(store, config.welcome_text.clone(), config.welcome_follow.clone())
        .with_pause_after_notice(config.test_pause_welcome_after_notice.clone());
    vec![Arc::new(welcome)]
}

/// The checkpoints of the process managers, as projections without tables (status,
/// pause and dead letters treat them as projections).
pub fn process_checkpoints() -> Vec<Arc<dyn plaza_projections::Projection>> {
    PROCESS_NAMES.iter().map(|name| Arc::new(plaza_projections::processes::Checkpoint(name)) as Arc<dyn plaza_projections::Projection>).collect()
}

/// What projectors do with an event they keep failing on, as the configuration says.
pub fn failure_policy(config: &Config) -> plaza_projections::runtime::FailurePolicy {
    plaza_projections::runtime::FailurePolicy {
        max_attempts: config.projection_max_attempts.max(1),
        park: config.projection_on_failure == config::OnFailure::Park,
    }
}

/// The Kafka settings the configuration names.
pub fn kafka_settings(config: &Config) -> kafka::KafkaSettings {
    kafka::KafkaSettings { brokers: config.kafka_brokers.clone(), topic: config.kafka_topic.clone(), partitions: config.kafka_partitions }
}

/// The command rate limits the configuration names.
pub fn rate_limits(config: &Config) -> plaza_write_api::RateLimits {
    use plaza_write_api::Quota;
    plaza_write_api::RateLimits {
        per_user: Quota::new(config.rate_limit_user_per_sec, config.rate_limit_user_burst),
        per_ip: Quota::new(config.rate_limit_ip_per_sec, config.rate_limit_ip_burst),
    }
}

/// The GraphQL rate limits the configuration names (buckets apart from the commands').
pub fn graphql_rate_limits(config: &Config) -> plaza_write_api::RateLimits {
    use plaza_write_api::Quota;
    plaza_write_api::RateLimits {
        per_user: Quota::new(config.graphql_rate_limit_user_per_sec, config.graphql_rate_limit_user_burst),
        per_ip: Quota::new(config.graphql_rate_limit_ip_per_sec, config.graphql_rate_limit_ip_burst),
    }
}

/// How failed logins slow down, as the configuration says.
pub fn login_policy(config: &Config) -> plaza_write_api::LoginPolicy {
    plaza_write_api::LoginPolicy {
        free_per_account: config.login_free_failures,
        free_per_ip: config.login_ip_free_failures,
        backoff: std::time::Duration::from_millis(config.login_backoff_ms),
        max_backoff: std::time::Duration::from_secs(config.login_backoff_max_secs),
    }
}

/// The HTTP server's limits, as the configuration says.
pub fn server_settings(config: &Config) -> plaza_edge::ServerSettings {
    plaza_edge::ServerSettings {
        header_timeout: std::time::Duration::from_millis(config.http_header_timeout_ms),
        body_timeout: std::time::Duration::from_millis(config.http_body_timeout_ms),
        max_connections_per_ip: config.http_max_connections_per_ip,
    }
}

/// Opens the event store the configuration names.
pub async fn open_event_store(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.store_url.as_str() {
        "sqlite" => {
            files::private_dir(&config.data_dir)?;
            Arc::new(sqlite::SqliteEventStore::open(&config.data_dir.join("events.db"))?)
        }
        url if url.starts_with("sqlite://") => Arc::new(sqlite::SqliteEventStore::open(url.trim_start_matches("sqlite://").as_ref())?),
        url if is_postgres(url) => Arc::new(postgres::PgEventStore::connect(url).await?),
        #[cfg(feature = "eventstoredb")]
        url if is_eventstoredb(url) => Arc::new(eventstoredb::EsdbEventStore::connect(url, &config.store_namespace).await?),
        #[cfg(not(feature = "eventstoredb"))]
        url if is_eventstoredb(url) => anyhow::bail!("this plaza was built without EventStoreDB support: build it with `--features eventstoredb`"),
        other => anyhow::bail!("store_url must be `sqlite`, `sqlite:///path`, `postgres://...` or `esdb://...`, not {other:?}"),
    })
}

/// Opens the event store the relay tails, with the place it records what Kafka
/// acknowledged (kept in the store itself).
pub async fn open_relay_source(config: &Config) -> anyhow::Result<(Arc<dyn EventStore>, Arc<dyn kafka::RelayCheckpoints>)> {
    match config.store_url.as_str() {
        url if is_postgres(url) => {
            let store = Arc::new(postgres::PgEventStore::connect(url).await?);
            Ok((store.clone(), store))
        }
        #[cfg(feature = "eventstoredb")]
        url if is_eventstoredb(url) => {
            let store = Arc::new(eventstoredb::EsdbEventStore::connect(url, &config.store_namespace).await?);
            Ok((store.clone(), store))
        }
        _ => anyhow::bail!("the relay needs a shared event store: set store_url to postgres://... (or esdb://... with the eventstoredb feature)"),
    }
}

/// Opens the read-model database the configuration names.
pub async fn open_read_models(config: &Config) -> anyhow::Result<Arc<dyn ReadModelDb>> {
    Ok(match config.read_models_url.as_str() {
        "sqlite" => {
            files::private_dir(&config.data_dir)?;
            Arc::new(sqlite::SqliteReadModels::open(&config.data_dir.join("read.db"))?)
        }
        url if url.starts_with("sqlite://") => Arc::new(sqlite::SqliteReadModels::open(url.trim_start_matches("sqlite://").as_ref())?),
        url if is_postgres(url) => Arc::new(postgres::PgReadModels::connect(url)?),
        other => anyhow::bail!("read_models_url must be `sqlite`, `sqlite:///path` or `postgres://...`, not {other:?}"),
    })
}

fn is_eventstoredb(url: &str) -> bool {
    url.starts_with("esdb://") || url.starts_with("esdb+discover://")
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

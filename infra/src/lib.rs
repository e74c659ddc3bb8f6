//! Adapters for Plaza's ports, configuration and telemetry. Only this crate and the
//! root binary know which engine sits behind a port.

pub mod config;
mod head;
pub mod kafka;
pub mod postgres;
pub mod sqlite;
pub mod telemetry;

use std::sync::Arc;

use plaza_domain::EventStore;
use plaza_projections::ReadModelDb;

pub use config::Config;

/// Opens the event store the configuration names.
pub async fn open_event_store(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.store_url.as_str() {
        "sqlite" => Arc::new(sqlite::SqliteEventStore::open(&config.data_dir.join("events.db"))?),
        url if url.starts_with("sqlite://") => Arc::new(sqlite::SqliteEventStore::open(url.trim_start_matches("sqlite://").as_ref())?),
        url if is_postgres(url) => Arc::new(postgres::PgEventStore::connect(url).await?),
        other => anyhow::bail!("store_url must be `sqlite`, `sqlite:///path` or `postgres://...`, not {other:?}"),
    })
}

/// Opens the read-model database the configuration names.
pub async fn open_read_models(config: &Config) -> anyhow::Result<Arc<dyn ReadModelDb>> {
    Ok(match config.read_models_url.as_str() {
        "sqlite" => Arc::new(sqlite::SqliteReadModels::open(&config.data_dir.join("read.db"))?),
        url if url.starts_with("sqlite://") => Arc::new(sqlite::SqliteReadModels::open(url.trim_start_matches("sqlite://").as_ref())?),
        url if is_postgres(url) => Arc::new(postgres::PgReadModels::connect(url)?),
        other => anyhow::bail!("read_models_url must be `sqlite`, `sqlite:///path` or `postgres://...`, not {other:?}"),
    })
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

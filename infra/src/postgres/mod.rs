//! PostgreSQL adapters (tokio-postgres) for the event store and the read models.

mod event_store;
mod read_models;

pub use event_store::PgEventStore;
pub use read_models::PgReadModels;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

fn pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool, String> {
    let manager = Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().map_err(|e| e.to_string())
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    tokio_postgres::Config::from_str(url).map_err(|e| format!("invalid PostgreSQL URL: {e}"))
}

/// An error with its causes: tokio-postgres shows only "db error" and keeps the
/// server's message in the source.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! Projections: the runtime that feeds events to read models, and every read model's
//! projection logic.
//!
//! A projection turns an event into SQL statements written once in a dialect both
//! SQLite and PostgreSQL accept (`$1` placeholders, `BIGINT`/`TEXT` columns,
//! `INSERT .. ON CONFLICT`). The [`ReadModelDb`] port runs them, together with the
//! projection's checkpoint, in one transaction: delivery is at-least-once, the
//! effect exactly-once.

pub mod accounts;
pub mod coalesce;
pub mod content;
pub mod conversations;
pub mod counters;
pub mod db;
pub mod dead_letters;
pub mod feeds;
pub mod generations;
pub mod health;
pub mod merge;
pub mod notices;
pub mod notifications;
pub mod partitions;
pub mod poison;
pub mod processes;
pub mod progress;
pub mod rebuild;
pub mod runtime;
pub mod search;
pub mod searches;
pub mod status;

pub use db::{ReadModelDb, ReadModelError, Row, SqlValue, Statement};
pub use dead_letters::Changes;
pub use generations::{Generation, Tables};
pub use notices::{ChangeNotices, LocalNotices};
pub use progress::Progress;
pub use rebuild::Rebuild;
pub use runtime::{Projection, Projector};

use std::sync::Arc;

/// What the projections' configuration decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub feeds: feeds::Settings,
    pub notifications: notifications::Settings,
}

/// Every projection Plaza maintains.
pub fn all(settings: Settings) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(accounts::AccountsProjection),
        Arc::new(content::ContentProjection),
        Arc::new(counters::CountersProjection),
        Arc::new(conversations::ConversationsProjection),
        Arc::new(feeds::FeedsProjection { settings: settings.feeds }),
        Arc::new(notifications::NotificationsProjection { settings: settings.notifications }),
        Arc::new(searches::SearchesProjection),
    ]
}

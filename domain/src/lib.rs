//! Plaza's domain: events, aggregates (pure `decide`/`evolve`), value types and the
//! port traits the rest of the system implements. This crate does no I/O; `make lint`
//! checks that it never depends on an I/O crate.

pub mod accounts;
pub mod aggregate;
pub mod conversations;
pub mod counters;
pub mod error;
pub mod event;
pub mod feeds;
pub mod follows;
pub mod notifications;
pub mod reservation;
pub mod search;
pub mod store;
pub mod text;
pub mod videos;

pub use aggregate::Aggregate;
pub use error::DomainError;
pub use event::{Event, Increment, Metadata, NewEvent, RecordedEvent};
pub use store::{Appended, EventStore, ExpectedVersion, Snapshot, StoreError};

//! Command handlers: load a stream, decide, append with a bounded retry on conflict.
//! Uniqueness through reservation streams, idempotency through deterministic event ids.

pub mod accounts;
pub mod auth;
pub mod content;
pub mod conversations;
pub mod counters;
pub mod idempotency;
pub mod notifications;
mod pipeline;
pub mod search;
pub mod welcome;

pub use accounts::{Accounts, Registration};
pub use auth::Passwords;
pub use content::{Content, Created, VideoFields};
pub use conversations::{ConversationSettings, Conversations, Draft, Membership, MessageIndex, Sent, Started};
pub use counters::{CounterBaseline, Counters};
pub use idempotency::{Claim, IdempotencyKeys};
pub use notifications::Notifications;
pub use pipeline::{CommandContext, Outcome};
pub use search::SearchHistory;
pub use welcome::WelcomeFlow;

use plaza_domain::{DomainError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("wrong username, email or password")]
    InvalidCredentials,
    #[error("sign in first")]
    Unauthenticated,
    #[error("you may only change your own account")]
    Forbidden,
    #[error("too many concurrent changes to the same data; retry")]
    Contention,
    #[error("this Idempotency-Key was used for another request; use a new key for each request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// The same error for another waiter (a batch's requests all get their batch's
    /// error; `CommandError` is not `Clone`).
    pub(crate) fn copy(&self) -> Self {
        match self {
            Self::Store(StoreError::Unavailable(detail)) => Self::Store(StoreError::Unavailable(detail.clone())),
            Self::Domain(domain) => Self::Domain(domain.clone()),
            Self::Contention => Self::Contention,
            other => Self::Internal(other.to_string()),
        }
    }
}

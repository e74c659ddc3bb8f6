//! The welcome flow, a process manager ([`plaza_projections::processes`]): on
//! `UserRegistered`, send the new user the welcome notice, then make them follow the
//! accounts listed in `welcome_follow`.
//!
//! Each step is idempotent by itself: its command's event ids derive from the
//! registration event's id (an idempotency key per step), so a redelivered
//! registration appends nothing twice. A crash between the steps redelivers the event,
//! the notice is found done, and the follows happen: each exactly once.

use std::sync::Arc;

use async_trait::async_trait;
use plaza_domain::{DomainError, Event, EventStore, RecordedEvent};
use plaza_projections::processes::{Process, ProcessError};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{Accounts, CommandContext, CommandError, Notifications};

/// Namespace of the ids the flow derives from events.
const WELCOME: Uuid = Uuid::from_u128(0x4f1c_0c55_9b0e_4d7e_8a8e_57a1_6f3e_2b11);

pub struct WelcomeFlow {
    accounts: Accounts,
    notifications: Notifications,
    text: String,
    /// Usernames every new user follows.
    follow: Vec<String>,
    /// Test only: stop for good after the notice to this username.
    pause_after_notice: String,
}

impl WelcomeFlow {
    pub fn new(store: Arc<dyn EventStore>, text: String, follow: Vec<String>) -> Self {
        Self { accounts: Accounts::new(store.clone()), notifications: Notifications::new(store), text, follow, pause_after_notice: String::new() }
    }

    /// Test only: the flow stops for good after the notice to `username`, before its
    /// follows, so a test can kill the process between the two steps.
    pub fn with_pause_after_notice(mut self, username: String) -> Self {
        self.pause_after_notice = username;
        self
    }

    /// The context of one step: the new user acts, keyed by the event and the step.
    fn step(envelope: &RecordedEvent, user_id: Uuid, step: &str) -> CommandContext {
        let mut ctx = CommandContext::new(Some(user_id)).with_idempotency_key(format!("welcome:{}:{step}", envelope.event_id), "welcome");
        ctx.correlation_id = envelope.metadata.correlation_id.or(ctx.correlation_id);
        ctx.causation_id = Some(envelope.event_id);
        ctx
    }
}

fn failed(error: CommandError) -> ProcessError {
    ProcessError(error.to_string())
}

#[async_trait]
impl Process for WelcomeFlow {
    fn name(&self) -> &'static str {
        "welcome"
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == "UserRegistered"
    }

    async fn react(&self, event: &Event, envelope: &RecordedEvent) -> Result<(), ProcessError> {
        let Event::UserRegistered { user_id, username, .. } = event else { return Ok(()) };
        let user_id = *user_id;
        if !self.text.trim().is_empty() {
            let notice_id = Uuid::new_v5(&WELCOME, format!("{}\nnotice", envelope.event_id).as_bytes());
            self.notifications.send_notice(user_id, notice_id, &self.text, &Self::step(envelope, user_id, "notice")).await.map_err(failed)?;
        }
        if !self.pause_after_notice.is_empty() && *username == self.pause_after_notice {
            warn!(%user_id, "welcome flow paused after its notice (test_pause_welcome_after_notice)");
            std::future::pending::<()>().await;
        }
        for name in &self.follow {
            let Some(account) = self.accounts.find_login(name).await.map_err(failed)? else {
                warn!(username = %name, "welcome_follow names no registered user; skipped");
                continue;
            };
            if account.user_id == user_id {
                continue;
            }
            let ctx = Self::step(envelope, user_id, &format!("follow:{}", account.user_id));
            match self.accounts.follow(account.user_id, &ctx).await {
                Ok(_) | Err(CommandError::Domain(DomainError::AlreadyFollowing)) => {}
                Err(error) => return Err(failed(error)),
            }
        }
        info!(%user_id, %username, follows = self.follow.len(), "welcome flow done");
        Ok(())
    }
}

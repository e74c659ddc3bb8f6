//! Notification commands: settings, marking read, and Plaza's own notices.

use std::collections::BTreeMap;
use std::sync::Arc;

use plaza_domain::notifications::{Inbox, InboxCommand, Kind, notifications_stream};
use plaza_domain::{DomainError, EventStore};
use uuid::Uuid;

use crate::CommandError;
use crate::pipeline::{CommandContext, Outcome, Pipeline};

#[derive(Clone)]
pub struct Notifications {
    pipeline: Pipeline,
}

impl Notifications {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { pipeline: Pipeline { store } }
    }

    /// Switches kinds on or off for the caller, who must be `user_id`.
    pub async fn change_settings(&self, user_id: Uuid, settings: BTreeMap<Kind, bool>, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        if actor != user_id {
            return Err(CommandError::Forbidden);
        }
        let command = |_: &Inbox| InboxCommand::ChangeSettings { user_id, settings: settings.clone() };
        self.pipeline.execute(&notifications_stream(user_id), ctx, command).await
    }

    /// Marks the caller's notifications read up to `up_to` (a notification id), or all.
    pub async fn mark_read(&self, up_to: Option<i64>, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        self.pipeline.execute(&notifications_stream(user_id), ctx, |_: &Inbox| InboxCommand::MarkRead { user_id, up_to }).await
    }

    /// Sends a user a notice from Plaza. With an idempotency key in `ctx`, sending it
    /// again appends nothing.
    pub async fn send_notice(&self, user_id: Uuid, notice_id: Uuid, text: &str, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        if !self.pipeline.exists(&plaza_domain::accounts::user_stream(user_id)).await? {
            return Err(DomainError::UserNotFound.into());
        }
        let command = |_: &Inbox| InboxCommand::SendNotice { user_id, notice_id, text: text.to_owned() };
        self.pipeline.execute(&notifications_stream(user_id), ctx, command).await
    }
}

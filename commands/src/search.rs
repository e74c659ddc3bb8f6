//! Search history commands. The searches themselves are recorded by the read side as
//! they run (`SearchPerformed`); clearing goes through here.

use std::sync::Arc;

use plaza_domain::search::{normalize_query, searches_stream};
use plaza_domain::{Event, EventStore};

use crate::CommandError;
use crate::pipeline::{CommandContext, Outcome, Pipeline};

#[derive(Clone)]
pub struct SearchHistory {
    pipeline: Pipeline,
}

impl SearchHistory {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { pipeline: Pipeline { store } }
    }

    /// Clears one query (as typed: it is normalized as searches are) from the caller's
    /// history, or all of it (`None`).
    pub async fn clear(&self, query: Option<&str>, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let query = query.map(normalize_query).transpose()?;
        self.pipeline.append(&searches_stream(user_id), ctx, &[Event::SearchHistoryCleared { user_id, query }]).await
    }
}

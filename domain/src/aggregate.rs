use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{DomainError, Event};

/// A consistency boundary: its state is the fold of its stream's events, and it
/// decides which new events a command produces. Both functions are pure. The state
/// serializes so long streams can be loaded from a snapshot plus the events after it.
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    type Command;

    /// Bump when the state's shape changes: older snapshots are then ignored.
    const SNAPSHOT_SCHEMA: u32 = 1;

    /// Applies one recorded fact to the state. Events of other aggregates are ignored.
    fn evolve(self, event: &Event) -> Self;

    /// Returns the events the command produces, or why it is refused. An empty list
    /// means the command changes nothing (it is already satisfied).
    fn decide(&self, command: &Self::Command) -> Result<Vec<Event>, DomainError>;

    /// Folds a stream's history into a state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// Given/when/then helper for aggregate unit tests.
#[cfg(test)]
pub(crate) fn given<A: Aggregate>(history: &[Event], command: A::Command) -> Result<Vec<Event>, DomainError> {
    A::replay(history).decide(&command)
}

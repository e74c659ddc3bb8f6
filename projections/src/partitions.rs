//! Bookkeeping for projectors fed by Kafka. Each projection keeps, per topic partition,
//! the next offset to apply and the global position everything in that partition is
//! applied up to. The read-model adapters store this beside the projection's tables and
//! update it in the same transaction as the changes (see `ReadModelDb::apply_consumed`).
//!
//! Two kinds of repeats reach a projector, and both are dropped here:
//! - a message below the stored offset was applied before (by this consumer before a
//!   crash, or by another one before a rebalance): Kafka's committed offsets are only a
//!   hint, the stored offset is the truth;
//! - an event at or below the stored position is a relay re-send: after a crash the relay
//!   produces again from its checkpoint, so a partition may hold an event twice, at two
//!   offsets. Within a partition the relay produces in position order, so "at or below"
//!   means "already applied".
//!
//! The relay also writes a watermark to every partition after each batch: "every event
//! up to this position that belongs here came before me". A partition's position thus
//! moves even when none of its keys changed, and the projection has applied the global
//! log up to the minimum over its partitions.

use std::collections::BTreeMap;

use crate::dead_letters::Changes;

/// The stored state of one partition for one projection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionState {
    pub next_offset: i64,
    pub position: u64,
}

/// One message consumed from a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// An event, and what applying it takes.
    Event(Changes),
    /// The relay's mark: every event up to `position` of this partition came before.
    Watermark { position: u64 },
    /// A message this build cannot read; consumed (its offset moves on) and skipped.
    Unreadable,
}

/// How many events of a batch were applied, and how many were repeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub applied: usize,
    pub skipped: usize,
}

/// What `admit` decided for a batch.
#[derive(Debug, Default, PartialEq)]
pub struct Admitted {
    /// Changes of the events applied for the first time, in consumption order.
    pub changes: Vec<Changes>,
    pub tally: Tally,
}

/// Filters a batch against the stored partition states (read under lock, in the same
/// transaction that will run the statements) and moves the states forward. Partitions
/// missing from `states` start empty.
pub fn admit(states: &mut BTreeMap<i32, PartitionState>, batch: Vec<Consumed>) -> Admitted {
    let mut admitted = Admitted::default();
    for consumed in batch {
        let state = states.entry(consumed.partition).or_default();
        if consumed.offset < state.next_offset {
            if matches!(consumed.message, Message::Event(_)) {
                admitted.tally.skipped += 1;
            }
            continue;
        }
        state.next_offset = consumed.offset + 1;
        match consumed.message {
            Message::Event(changes) if changes.position > state.position => {
                state.position = changes.position;
                admitted.changes.push(changes);
                admitted.tally.applied += 1;
            }
            Message::Event(_) => admitted.tally.skipped += 1,
            Message::Watermark { position } => state.position = state.position.max(position),
            Message::Unreadable => {}
        }
    }
    admitted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(partition: i32, offset: i64, position: u64) -> Consumed {
        let statement = crate::Statement::new("INSERT INTO t VALUES ($1)", [crate::SqlValue::Int(position as i64)]);
        let changes = Changes { position, stream_id: "s".into(), event_type: "E".into(), statements: vec![statement], dead_letter: false };
        Consumed { partition, offset, message: Message::Event(changes) }
    }

    fn watermark(partition: i32, offset: i64, position: u64) -> Consumed {
        Consumed { partition, offset, message: Message::Watermark { position } }
    }

    #[test]
    fn fresh_events_are_applied_and_move_the_partition() {
        let mut states = BTreeMap::new();
        let admitted = admit(&mut states, vec![event(0, 0, 1), event(1, 0, 2), event(0, 1, 3)]);
        assert_eq!((admitted.tally.applied, admitted.tally.skipped, admitted.changes.len()), (3, 0, 3));
        assert_eq!(states[&0], PartitionState { next_offset: 2, position: 3 });
        assert_eq!(states[&1], PartitionState { next_offset: 1, position: 2 });
    }

    #[test]
    fn messages_below_the_stored_offset_were_applied_before() {
        let mut states = BTreeMap::from([(0, PartitionState { next_offset: 2, position: 3 })]);
        let admitted = admit(&mut states, vec![event(0, 0, 1), event(0, 1, 3), event(0, 2, 4)]);
        assert_eq!((admitted.tally.applied, admitted.tally.skipped), (1, 2));
        assert_eq!(states[&0], PartitionState { next_offset: 3, position: 4 });
    }

    #[test]
    fn a_relay_resend_at_new_offsets_is_skipped() {
        let mut states = BTreeMap::new();
        // The relay crashed after producing 5 and 7, and produced them again.
        let admitted = admit(&mut states, vec![event(0, 0, 5), event(0, 1, 7), event(0, 2, 5), event(0, 3, 7), event(0, 4, 9)]);
        assert_eq!((admitted.tally.applied, admitted.tally.skipped), (3, 2));
        assert_eq!(states[&0], PartitionState { next_offset: 5, position: 9 });
    }

    #[test]
    fn watermarks_move_an_idle_partition_and_never_back() {
        let mut states = BTreeMap::new();
        let admitted = admit(&mut states, vec![watermark(2, 0, 10), event(2, 1, 12), watermark(2, 2, 11)]);
        assert_eq!(admitted.tally.applied, 1);
        assert_eq!(states[&2], PartitionState { next_offset: 3, position: 12 });
    }

    #[test]
    fn unreadable_messages_are_consumed_without_effect() {
        let mut states = BTreeMap::new();
        let admitted = admit(&mut states, vec![Consumed { partition: 0, offset: 4, message: Message::Unreadable }]);
        assert_eq!((admitted.tally.applied, admitted.changes.len()), (0, 0));
        assert_eq!(states[&0], PartitionState { next_offset: 5, position: 0 });
    }
}

//! The global log again, from the events topic's partitions: for a consumer that needs
//! the events in position order across streams (the search projection reads documents
//! back to change them, and a hashtag's count comes from many videos' partitions).
//!
//! Each partition holds its events in position order, and the relay's watermarks say
//! "every event of this partition up to here came before" (see [`crate::partitions`]).
//! So once every partition has been read up to some position, by an event or a
//! watermark, every event up to the lowest of them has arrived: [`Merge::release`]
//! hands those out in position order, and the rest waits for the other partitions to
//! catch up. It needs every partition of the topic, so one consumer reads them all.

use std::collections::{BTreeMap, VecDeque};

use plaza_domain::RecordedEvent;

/// One message read from a partition.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(RecordedEvent),
    /// The relay's mark: every event of this partition up to `position` came before.
    Watermark {
        position: u64,
    },
    /// A message this build cannot read: consumed, and skipped.
    Unreadable,
}

#[derive(Debug, Default)]
struct Lane {
    /// The offset after the last message read.
    next_offset: i64,
    /// Every event of this partition up to here has been read.
    position: u64,
    /// Events read and not yet released, with their offsets, in position order.
    waiting: VecDeque<(i64, RecordedEvent)>,
}

/// The partitions' events, merged back into the order of the global log.
#[derive(Debug)]
pub struct Merge {
    lanes: BTreeMap<i32, Lane>,
    released: u64,
}

impl Merge {
    /// A merge of `partitions` (each read from the offset given), everything up to
    /// `released` applied before: such events, read again, are dropped.
    pub fn new(partitions: impl IntoIterator<Item = (i32, i64)>, released: u64) -> Self {
        let lanes =
            partitions.into_iter().map(|(partition, next_offset)| (partition, Lane { next_offset, position: released, ..Lane::default() })).collect();
        Self { lanes, released }
    }

    /// Takes a message read at `offset` of `partition`. Messages before the partition's
    /// next offset, events at or below what it has already had (a relay re-send), and
    /// partitions the merge was not made for are dropped.
    pub fn push(&mut self, partition: i32, offset: i64, delivery: Delivery) {
        let Some(lane) = self.lanes.get_mut(&partition) else { return };
        if offset < lane.next_offset {
            return;
        }
        lane.next_offset = offset + 1;
        match delivery {
            Delivery::Event(event) if event.position > lane.position => {
                lane.position = event.position;
                lane.waiting.push_back((offset, event));
            }
            Delivery::Event(_) | Delivery::Unreadable => {}
            Delivery::Watermark { position } => lane.position = lane.position.max(position),
        }
    }

    /// Every partition has been read up to here: no event at or below it is still to come.
    pub fn complete(&self) -> u64 {
        self.lanes.values().map(|lane| lane.position).min().unwrap_or(self.released)
    }

    /// Up to `most` of the events every partition has been read past, in position order.
    pub fn release(&mut self, most: usize) -> Vec<RecordedEvent> {
        let complete = self.complete();
        let mut released = Vec::new();
        while released.len() < most {
            let next = self
                .lanes
                .values_mut()
                .filter(|lane| lane.waiting.front().is_some_and(|(_, event)| event.position <= complete))
                .min_by_key(|lane| lane.waiting.front().map(|(_, event)| event.position));
            let Some((_, event)) = next.and_then(|lane| lane.waiting.pop_front()) else { break };
            self.released = event.position;
            released.push(event);
        }
        released
    }

    /// The position of the last event released (or the one the merge started from).
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Where to read each partition from again to see every event not yet released:
    /// its first waiting event, or the next offset when none waits.
    pub fn resume_offsets(&self) -> Vec<(i32, i64)> {
        self.lanes.iter().map(|(&partition, lane)| (partition, lane.waiting.front().map_or(lane.next_offset, |(offset, _)| *offset))).collect()
    }

    /// The partitions the merge reads.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.lanes.keys().copied()
    }

    /// How many events of `partition` wait for the other partitions.
    pub fn waiting(&self, partition: i32) -> usize {
        self.lanes.get(&partition).map_or(0, |lane| lane.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn event(position: u64) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::new_v4(),
            stream_id: format!("s-{position}"),
            version: 0,
            position,
            event_type: "E".into(),
            schema_version: 1,
            data: "{}".into(),
            metadata: Default::default(),
            occurred_at: Default::default(),
        }
    }

    fn positions(events: &[RecordedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn events_wait_until_every_partition_is_read_past_them() {
        let mut merge = Merge::new([(0, 0), (1, 0)], 0);
        merge.push(0, 0, Delivery::Event(event(2)));
        merge.push(0, 1, Delivery::Event(event(5)));
        assert!(merge.release(100).is_empty(), "partition 1 may still hold 1, 3 or 4");
        merge.push(1, 0, Delivery::Event(event(3)));
        assert_eq!(positions(&merge.release(100)), [2, 3]);
        merge.push(1, 1, Delivery::Watermark { position: 6 });
        assert_eq!(positions(&merge.release(100)), [5]);
        assert_eq!((merge.released(), merge.complete()), (5, 5));
    }

    #[test]
    fn any_interleaving_gives_the_global_order() {
        // Positions 1..=60 spread over three partitions by a fixed rule, read in three
        // different interleavings, with watermarks after every tenth position.
        let partition_of = |p: u64| ((p * 7) % 3) as i32;
        for rotation in 0..3 {
            let mut lanes: BTreeMap<i32, Vec<Delivery>> = BTreeMap::new();
            for p in 1..=60 {
                lanes.entry(partition_of(p)).or_default().push(Delivery::Event(event(p)));
                if p % 10 == 0 {
                    for partition in 0..3 {
                        lanes.entry(partition).or_default().push(Delivery::Watermark { position: p });
                    }
                }
            }
            let mut merge = Merge::new([(0, 0), (1, 0), (2, 0)], 0);
            let mut offsets = [0i64; 3];
            let mut out = Vec::new();
            // Read the partitions unevenly: one of them three messages at a time.
            let mut queues: Vec<VecDeque<Delivery>> = (0..3).map(|p| lanes.remove(&p).unwrap().into()).collect();
            while queues.iter().any(|q| !q.is_empty()) {
                for partition in 0..3usize {
                    let take = if partition == rotation { 3 } else { 1 };
                    for _ in 0..take {
                        if let Some(delivery) = queues[partition].pop_front() {
                            merge.push(partition as i32, offsets[partition], delivery);
                            offsets[partition] += 1;
                        }
                    }
                }
                out.extend(merge.release(7));
            }
            out.extend(merge.release(100));
            assert_eq!(positions(&out), (1..=60).collect::<Vec<_>>(), "rotation {rotation}");
        }
    }

    #[test]
    fn re_sends_and_old_offsets_are_dropped() {
        let mut merge = Merge::new([(0, 3)], 4);
        merge.push(0, 1, Delivery::Event(event(9)));
        merge.push(0, 3, Delivery::Event(event(4)));
        merge.push(0, 4, Delivery::Event(event(6)));
        merge.push(0, 5, Delivery::Event(event(6)));
        merge.push(0, 6, Delivery::Unreadable);
        merge.push(7, 0, Delivery::Event(event(8)));
        assert_eq!(positions(&merge.release(100)), [6]);
        assert_eq!(merge.resume_offsets(), [(0, 7)]);
    }

    #[test]
    fn resuming_starts_at_the_first_event_not_released() {
        let mut merge = Merge::new([(0, 0), (1, 10)], 0);
        merge.push(0, 0, Delivery::Event(event(1)));
        merge.push(0, 1, Delivery::Event(event(4)));
        merge.push(1, 10, Delivery::Event(event(2)));
        merge.push(1, 11, Delivery::Watermark { position: 3 });
        assert_eq!(positions(&merge.release(100)), [1, 2]);
        assert_eq!(merge.resume_offsets(), [(0, 1), (1, 12)]);
        assert_eq!((merge.waiting(0), merge.waiting(1)), (1, 0));
        // Cut short by `most`: the rest is released next time.
        merge.push(1, 12, Delivery::Event(event(5)));
        merge.push(0, 2, Delivery::Watermark { position: 5 });
        assert_eq!(positions(&merge.release(1)), [4]);
        assert_eq!(positions(&merge.release(1)), [5]);
    }
}

//! The log's latest events, kept by the process that committed them.
//!
//! Every projector, the search projector and every process manager follows the head of
//! the log: under load, each of them read every new batch from the store, so each event
//! was read from the database and decoded a dozen times. The writer (SQLite's and
//! PostgreSQL's) now keeps what it commits here, and a read that starts inside the
//! window is answered from memory.
//!
//! The window holds consecutive positions only: an event that does not follow the last
//! one kept (another process appended in between) starts a new window. A read after the
//! window's last event goes to the store, which may hold other processes' appends.

use std::collections::VecDeque;
use std::sync::Mutex;

use plaza_domain::RecordedEvent;

/// Events kept at most: at thousands of appends a second, a few hundred milliseconds of
/// the log, enough for projectors that keep up.
const MAX_EVENTS: usize = 4_096;
/// Bytes of event data kept at most (events may be large).
const MAX_BYTES: usize = 8 << 20;

#[derive(Default)]
pub(crate) struct Recent {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    events: VecDeque<RecordedEvent>,
    bytes: usize,
}

fn size(event: &RecordedEvent) -> usize {
    event.data.len() + event.stream_id.len() + event.event_type.len() + 256
}

impl Recent {
    /// Keeps events just committed, in position order.
    pub(crate) fn committed(&self, events: impl IntoIterator<Item = RecordedEvent>) {
        let mut window = self.window.lock().expect("recent events lock");
        for event in events {
            if window.events.back().is_some_and(|last| last.position + 1 != event.position) {
                window.events.clear();
                window.bytes = 0;
            }
            window.bytes += size(&event);
            window.events.push_back(event);
            while window.events.len() > MAX_EVENTS || window.bytes > MAX_BYTES {
                let Some(dropped) = window.events.pop_front() else { break };
                window.bytes -= size(&dropped);
            }
        }
    }

    /// Up to `limit` events after position `after`, when the window holds the next one;
    /// `None` sends the read to the store.
    pub(crate) fn read(&self, after: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        let window = self.window.lock().expect("recent events lock");
        let first = window.events.front()?.position;
        let skip = usize::try_from(after.checked_add(1)?.checked_sub(first)?).ok()?;
        if skip >= window.events.len() {
            return None;
        }
        Some(window.events.range(skip..).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use plaza_domain::Metadata;
    use uuid::Uuid;

    use super::*;

    fn event(position: u64) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::now_v7(),
            stream_id: "s".into(),
            version: position,
            position,
            event_type: "T".into(),
            schema_version: 1,
            data: "{}".into(),
            metadata: Metadata::default(),
            occurred_at: Utc::now(),
        }
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.position).collect())
    }

    #[test]
    fn reads_inside_the_window_only() {
        let recent = Recent::default();
        assert_eq!(positions(recent.read(0, 10)), None);
        recent.committed((5..=9).map(event));
        assert_eq!(positions(recent.read(4, 2)), Some(vec![5, 6]));
        assert_eq!(positions(recent.read(7, 10)), Some(vec![8, 9]));
        // Before the window, and after its last event: the store answers.
        assert_eq!(positions(recent.read(3, 10)), None);
        assert_eq!(positions(recent.read(9, 10)), None);
        assert_eq!(positions(recent.read(u64::MAX, 10)), None);
    }

    #[test]
    fn a_gap_starts_a_new_window_and_the_oldest_go_first() {
        let recent = Recent::default();
        recent.committed((1..=3).map(event));
        // Positions 4 and 5 were appended by another process.
        recent.committed([event(6)]);
        assert_eq!(positions(recent.read(3, 10)), None);
        assert_eq!(positions(recent.read(5, 10)), Some(vec![6]));
        recent.committed((7..=(6 + MAX_EVENTS as u64)).map(event));
        assert_eq!(positions(recent.read(5, 1)), None);
        assert_eq!(positions(recent.read(6, 1)), Some(vec![7]));
    }
}

//! High-rate counters (views, generic counters): validated keys, and the sharding of
//! their event streams. Increments are not decided one by one: a batcher appends many
//! of them as one `CountersIncremented` event to a `counters-{shard}` stream, so a hot
//! counter is never one stream that every request appends to.

use crate::DomainError;

/// How many `counters-{shard}` streams the increments are spread over.
pub const SHARDS: usize = 16;
pub const MAX_DELTA: i64 = 1_000_000;

pub fn counters_stream(shard: usize) -> String {
    format!("counters-{shard}")
}

/// The counter of views of a video.
pub const VIEWS: &str = "views";

/// A counter: what it counts (`counter_type`, e.g. `views`) of which resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    resource_id: String,
    counter_type: String,
}

impl CounterKey {
    /// `resource_id`: 1 to 128 visible characters; `counter_type`: 1 to 32 of
    /// `[a-z0-9_]` (lowercased).
    pub fn parse(resource_id: &str, counter_type: &str) -> Result<Self, DomainError> {
        let resource_id = resource_id.trim();
        if resource_id.is_empty() || resource_id.chars().count() > 128 || resource_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::InvalidCounter("resource_id must be 1 to 128 characters without spaces"));
        }
        let counter_type = counter_type.trim().to_ascii_lowercase();
        let valid = counter_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if counter_type.is_empty() || counter_type.len() > 32 || !valid {
            return Err(DomainError::InvalidCounter("counter_type must be 1 to 32 of a-z, 0-9 and _"));
        }
        Ok(Self { resource_id: resource_id.to_owned(), counter_type })
    }

    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    pub fn counter_type(&self) -> &str {
        &self.counter_type
    }

    /// The shard whose stream holds this counter's increments: FNV-1a of the key, so
    /// every process and every version agrees.
    pub fn shard(&self) -> usize {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.resource_id.bytes().chain([0]).chain(self.counter_type.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % SHARDS as u64) as usize
    }
}

/// An increment's delta: not 0, at most a million either way.
pub fn check_delta(delta: i64) -> Result<i64, DomainError> {
    if delta == 0 || delta.abs() > MAX_DELTA {
        return Err(DomainError::InvalidCounter("delta must be a non-zero integer between -1000000 and 1000000"));
    }
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_normalised() {
        let key = CounterKey::parse(" video-1 ", "Views").unwrap();
        assert_eq!((key.resource_id(), key.counter_type()), ("video-1", "views"));
        assert!(CounterKey::parse("", "views").is_err());
        assert!(CounterKey::parse("a b", "views").is_err());
        assert!(CounterKey::parse(&"x".repeat(129), "views").is_err());
        assert!(CounterKey::parse("x", "page-views").is_err());
        assert!(CounterKey::parse("x", &"v".repeat(33)).is_err());
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let key = CounterKey::parse("video-1", "views").unwrap();
        assert_eq!(key.shard(), CounterKey::parse("video-1", "views").unwrap().shard());
        let shards: std::collections::HashSet<usize> = (0..200).map(|i| CounterKey::parse(&format!("r{i}"), "views").unwrap().shard()).collect();
        assert_eq!(shards.len(), SHARDS);
    }

    #[test]
    fn deltas_are_bounded_and_non_zero() {
        assert!(check_delta(0).is_err());
        assert!(check_delta(MAX_DELTA + 1).is_err());
        assert_eq!(check_delta(-5), Ok(-5));
    }
}

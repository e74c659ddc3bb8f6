//! High-rate counters (views, generic counters): validated keys, and the sharding of
//! their event streams. Increments are not decided one by one: a batcher appends many
//! of them as one `CountersIncremented` event to a `counters-{shard}` stream, so a hot
//! counter is never one stream that every request appends to.

use crate::text::{self, Lines};
use crate::{DomainError, Increment};

/// How many `counters-{shard}` streams the increments are spread over.
pub const SHARDS: usize = 16;
pub const MAX_DELTA: i64 = 1_000_000;

pub fn counters_stream(shard: usize) -> String {
    format!("counters-{shard}")
}

/// The counter of views of a video.
pub const VIEWS: &str = "views";

/// Counter types Plaza derives from its own commands: only those commands change them,
/// never the generic increment endpoint.
pub const RESERVED: &[&str] = &[VIEWS];

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
        let resource_id = text::clean(resource_id, Lines::One).unwrap_or_default();
        if resource_id.is_empty() || resource_id.chars().count() > 128 || resource_id.chars().any(char::is_whitespace) {
            return Err(DomainError::InvalidCounter("resource_id must be 1 to 128 characters without spaces or control characters"));
        }
        let counter_type = counter_type.trim().to_ascii_lowercase();
        let valid = counter_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if counter_type.is_empty() || counter_type.len() > 32 || !valid {
            return Err(DomainError::InvalidCounter("counter_type must be 1 to 32 of a-z, 0-9 and _"));
        }
        Ok(Self { resource_id, counter_type })
    }

    /// A key the generic increment endpoint may change: not one of the [`RESERVED`]
    /// types.
    pub fn parse_generic(resource_id: &str, counter_type: &str) -> Result<Self, DomainError> {
        let key = Self::parse(resource_id, counter_type)?;
        if RESERVED.contains(&key.counter_type.as_str()) {
            return Err(DomainError::ReservedCounter);
        }
        Ok(key)
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
    if delta == 0 || !(-MAX_DELTA..=MAX_DELTA).contains(&delta) {
        return Err(DomainError::InvalidCounter("delta must be a non-zero integer between -1000000 and 1000000"));
    }
    Ok(delta)
}

/// A total after adding `delta`, refused when it would leave the range of i64.
pub fn add_to_total(total: i64, delta: i64) -> Result<i64, DomainError> {
    total.checked_add(delta).ok_or(DomainError::InvalidCounter("the counter would overflow"))
}

impl Increment {
    /// The counter and delta of a recorded increment, or `None` for one that breaks the
    /// rules (an event written before a rule existed). The write side's totals and the
    /// read model both skip those, so they never disagree.
    pub fn checked(&self) -> Option<(CounterKey, i64)> {
        Some((CounterKey::parse(&self.resource_id, &self.counter_type).ok()?, check_delta(self.delta).ok()?))
    }
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
        for extreme in [i64::MIN, i64::MIN + 1, i64::MAX] {
            assert!(check_delta(extreme).is_err(), "{extreme}");
        }
        assert_eq!(check_delta(-MAX_DELTA), Ok(-MAX_DELTA));
        assert_eq!(check_delta(-5), Ok(-5));
    }

    #[test]
    fn totals_never_wrap() {
        assert!(add_to_total(i64::MAX, 1).is_err());
        assert!(add_to_total(i64::MIN, -1).is_err());
        assert_eq!(add_to_total(i64::MAX, -1), Ok(i64::MAX - 1));
    }

    #[test]
    fn derived_counters_are_reserved() {
        assert_eq!(CounterKey::parse_generic("v1", " Views "), Err(DomainError::ReservedCounter));
        assert!(CounterKey::parse_generic("v1", "clicks").is_ok());
        assert!(CounterKey::parse("v1", "views").is_ok(), "the view command itself may");
    }

    #[test]
    fn recorded_increments_that_break_the_rules_are_skipped() {
        let increment = |delta| Increment { resource_id: "r".into(), counter_type: "c".into(), delta, request_id: None };
        assert!(increment(i64::MIN).checked().is_none());
        assert_eq!(increment(3).checked().map(|(_, d)| d), Some(3));
    }
}

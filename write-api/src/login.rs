//! Failed logins slow down: after a few wrong passwords for one account (or from one
//! client address), each further attempt must wait, twice as long after every failure:
//! `backoff`, then 2 x `backoff`, ... up to `max_backoff`. Waiting is answered 429
//! `login_throttled` with `Retry-After`, before any password is hashed, and holds for the
//! right password too; once the wait is over the right password logs in and clears the
//! account's count. Counts are forgotten `max_backoff` after the last failure.
//!
//! Failures are counted in this process ([`LocalFailures`]) or in Redis, shared by every
//! write API (in infra).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts of failures and when the last one happened, per key.
#[async_trait::async_trait]
pub trait FailureLog: Send + Sync + 'static {
    /// Per key: failures so far and the time since the last one (`None`: no record).
    async fn read(&self, keys: &[String]) -> Vec<Option<(u32, Duration)>>;

    /// Counts a failure for every key; a key's record is forgotten `forget_after` after
    /// its last failure.
    async fn record(&self, keys: &[String], forget_after: Duration);

    /// Forgets a key's failures.
    async fn clear(&self, key: &str);
}

#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    /// Failures an account may have before attempts wait (0: never wait).
    pub free_per_account: u32,
    /// Failures a client address may have, over all logins, before attempts wait (0: never).
    pub free_per_ip: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl LoginPolicy {
    /// How long after its last failure a key may try again, with `failures` so far and
    /// `free` allowed before any wait.
    pub fn lockout(&self, failures: u32, free: u32) -> Duration {
        if free == 0 || failures < free {
            return Duration::ZERO;
        }
        let doublings = (failures - free).min(30);
        self.backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

/// Which failure counts a login attempt touches.
pub struct LoginKeys {
    pub account: String,
    pub ip: String,
}

/// The policy over a log of failures.
pub struct LoginThrottle {
    pub policy: LoginPolicy,
    pub log: std::sync::Arc<dyn FailureLog>,
}

impl LoginThrottle {
    /// How long the attempt must still wait (zero: it may go ahead).
    pub async fn wait(&self, keys: &LoginKeys) -> Duration {
        let records = self.log.read(&[keys.account.clone(), keys.ip.clone()]).await;
        let frees = [self.policy.free_per_account, self.policy.free_per_ip];
        records
            .into_iter()
            .zip(frees)
            .filter_map(|(record, free)| record.map(|(failures, since)| self.policy.lockout(failures, free).saturating_sub(since)))
            .max()
            .unwrap_or_default()
    }

    pub async fn failed(&self, keys: &LoginKeys) {
        self.log.record(&[keys.account.clone(), keys.ip.clone()], self.policy.max_backoff).await;
    }

    pub async fn succeeded(&self, keys: &LoginKeys) {
        self.log.clear(&keys.account).await;
    }
}

/// Failure counts in this process, for a single write API.
#[derive(Default)]
pub struct LocalFailures {
    records: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LocalFailures {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl FailureLog for LocalFailures {
    async fn read(&self, keys: &[String]) -> Vec<Option<(u32, Duration)>> {
        let records = self.records();
        keys.iter().map(|key| records.get(key).map(|(failures, at)| (*failures, at.elapsed()))).collect()
    }

    async fn record(&self, keys: &[String], forget_after: Duration) {
        let mut records = self.records();
        // Memory stays bounded by the failures of the last `forget_after`.
        if records.len() > 10_000 {
            records.retain(|_, (_, at)| at.elapsed() < forget_after);
        }
        let now = Instant::now();
        for key in keys {
            let record = records.entry(key.clone()).or_insert((0, now));
            if record.1.elapsed() >= forget_after {
                record.0 = 0;
            }
            *record = (record.0.saturating_add(1), now);
        }
    }

    async fn clear(&self, key: &str) {
        self.records().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn policy() -> LoginPolicy {
        LoginPolicy { free_per_account: 3, free_per_ip: 10, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) }
    }

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap() {
        let policy = policy();
        assert_eq!(policy.lockout(2, 3), Duration::ZERO);
        assert_eq!(policy.lockout(3, 3), Duration::from_secs(1));
        assert_eq!(policy.lockout(5, 3), Duration::from_secs(4));
        assert_eq!(policy.lockout(40, 3), Duration::from_secs(60));
        assert_eq!(policy.lockout(u32::MAX, 3), Duration::from_secs(60));
        assert_eq!(policy.lockout(100, 0), Duration::ZERO, "0 turns it off");
    }

    #[tokio::test]
    async fn an_account_waits_after_its_free_failures_and_a_success_clears_it() {
        let throttle = LoginThrottle { policy: policy(), log: Arc::new(LocalFailures::default()) };
        let keys = LoginKeys { account: "user:a".into(), ip: "ip:10.0.0.1".into() };
        for _ in 0..3 {
            assert_eq!(throttle.wait(&keys).await, Duration::ZERO);
            throttle.failed(&keys).await;
        }
        let wait = throttle.wait(&keys).await;
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        let other = LoginKeys { account: "user:b".into(), ip: "ip:10.0.0.2".into() };
        assert_eq!(throttle.wait(&other).await, Duration::ZERO, "per account and address");
        throttle.succeeded(&keys).await;
        assert_eq!(throttle.wait(&keys).await, Duration::ZERO);
    }
}

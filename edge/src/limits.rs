//! Rate limits: a token bucket per signed-in user and one per client IP. A request takes
//! a token from each bucket that applies; when one is empty the answer is 429
//! `rate_limited` with `Retry-After`. Commands and GraphQL queries have buckets of their
//! own. Buckets live in this process ([`LocalRateLimiter`]) or in Redis, shared by every
//! process (in infra).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota};
use uuid::Uuid;

/// A bucket's size: it refills at `per_second` tokens a second up to `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Quota {
    /// `None` (no limit) when `per_second` is 0; a burst below the rate is raised to it.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        Some(Self { per_second, burst: NonZeroU32::new(burst).unwrap_or(per_second).max(per_second) })
    }
}

/// The quotas per signed-in user and per client IP (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    pub per_user: Option<Quota>,
    pub per_ip: Option<Quota>,
}

/// Token buckets for requests.
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes a token from the user's bucket (if signed in) and the IP's bucket, or from
    /// neither; `Err(wait)` says how long until both hold one again.
    async fn acquire(&self, user: Option<Uuid>, ip: IpAddr) -> Result<(), Duration>;
}

/// Buckets in this process (governor's GCRA, which behaves as a token bucket). For a
/// single write API; several share theirs through Redis.
pub struct LocalRateLimiter {
    users: Option<DefaultKeyedRateLimiter<Uuid>>,
    ips: Option<DefaultKeyedRateLimiter<IpAddr>>,
    calls: AtomicU64,
}

impl LocalRateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        let quota = |q: Quota| GovernorQuota::per_second(q.per_second).allow_burst(q.burst);
        Self {
            users: limits.per_user.map(|q| DefaultKeyedRateLimiter::keyed(quota(q))),
            ips: limits.per_ip.map(|q| DefaultKeyedRateLimiter::keyed(quota(q))),
            calls: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn acquire(&self, user: Option<Uuid>, ip: IpAddr) -> Result<(), Duration> {
        // Now and then forget buckets that are full again, so memory stays bounded.
        if self.calls.fetch_add(1, Ordering::Relaxed) % 65_536 == 65_535 {
            self.users.iter().for_each(|l| l.retain_recent());
            self.ips.iter().for_each(|l| l.retain_recent());
        }
        let now = DefaultClock::default().now();
        if let Some(ips) = &self.ips {
            ips.check_key(&ip).map_err(|until| until.wait_time_from(now))?;
        }
        if let (Some(users), Some(user)) = (&self.users, user) {
            users.check_key(&user).map_err(|until| until.wait_time_from(now))?;
        }
        Ok(())
    }
}

/// The client's address: the peer's, or with `hops` proxies in front, the address the
/// outermost trusted proxy saw (counted from the right of `X-Forwarded-For`).
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    forwarded.len().checked_sub(hops).and_then(|i| forwarded.get(i).copied()).or(peer)
}

/// Whole seconds to announce in `Retry-After` for a wait (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_holds_its_burst_then_refuses_with_a_wait() {
        let limiter = LocalRateLimiter::new(RateLimits { per_user: Quota::new(1, 3), per_ip: None });
        let (alice, bob, ip) = (Uuid::new_v4(), Uuid::new_v4(), IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert!(limiter.acquire(Some(alice), ip).await.is_ok());
        }
        let wait = limiter.acquire(Some(alice), ip).await.unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.acquire(Some(bob), ip).await.is_ok(), "buckets are per user");
        assert!(limiter.acquire(None, ip).await.is_ok(), "anonymous callers have no user bucket");
    }

    #[tokio::test]
    async fn ips_have_their_own_buckets() {
        let limiter = LocalRateLimiter::new(RateLimits { per_user: None, per_ip: Quota::new(1, 1) });
        assert!(limiter.acquire(None, IpAddr::from([10, 0, 0, 1])).await.is_ok());
        assert!(limiter.acquire(Some(Uuid::new_v4()), IpAddr::from([10, 0, 0, 1])).await.is_err());
        assert!(limiter.acquire(None, IpAddr::from([10, 0, 0, 2])).await.is_ok());
    }

    #[test]
    fn zero_means_unlimited_and_bursts_are_at_least_the_rate() {
        assert_eq!(Quota::new(0, 10), None);
        assert_eq!(Quota::new(5, 0).unwrap().burst.get(), 5);
        assert_eq!(Quota::new(5, 2).unwrap().burst.get(), 5);
    }

    #[test]
    fn the_client_ip_comes_from_the_trusted_proxy_hop() {
        let peer = Some(IpAddr::from([10, 0, 0, 9]));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 198.51.100.2".parse().unwrap());
        assert_eq!(client_ip(&headers, peer, 0), peer);
        assert_eq!(client_ip(&headers, peer, 1), Some(IpAddr::from([198, 51, 100, 2])));
        assert_eq!(client_ip(&headers, peer, 2), Some(IpAddr::from([203, 0, 113, 7])));
        assert_eq!(client_ip(&headers, peer, 3), peer, "fewer addresses than proxies: the peer");
    }
}

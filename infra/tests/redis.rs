//! Redis adapters against a real server (`make services` starts one on 127.0.0.1:6379):
//! rate limits and change notices shared by several processes. Each test uses a key
//! prefix of its own.

use std::net::IpAddr;
use std::time::Duration;

use plaza_infra::redis::{Redis, RedisFailures, RedisNotices, RedisRateLimiter};
use plaza_projections::ChangeNotices;
use plaza_write_api::{FailureLog, Quota, RateLimiter, RateLimits};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("PLAZA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("plaza-test-{}:", Uuid::new_v4().simple())
}

/// Two processes' view of one Redis.
fn two_processes(prefix: &str) -> (Redis, Redis) {
    (Redis::open(&redis_url(), prefix).unwrap(), Redis::open(&redis_url(), prefix).unwrap())
}

#[tokio::test]
async fn buckets_are_shared_by_every_process() {
    let prefix = prefix();
    let (a, b) = two_processes(&prefix);
    a.ping().await.unwrap_or_else(|e| panic!("Redis is not reachable at {} ({e}); run `make services`", redis_url()));
    let limits = RateLimits { per_user: Quota::new(1, 3), per_ip: Quota::new(100, 100) };
    let (here, there) = (RedisRateLimiter::new(&a, limits, "commands"), RedisRateLimiter::new(&b, limits, "commands"));
    let (alice, bob, ip) = (Uuid::new_v4(), Uuid::new_v4(), IpAddr::from([10, 1, 2, 3]));

    for limiter in [&here, &there, &here] {
        assert_eq!(limiter.acquire(Some(alice), ip).await, Ok(()));
    }
    let wait = there.acquire(Some(alice), ip).await.expect_err("the shared bucket is empty");
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
    assert_eq!(here.acquire(Some(bob), ip).await, Ok(()), "another user has a bucket of their own");
    assert_eq!(here.acquire(None, ip).await, Ok(()), "anonymous callers only have the IP's bucket");

    // A refused command took no token from the IP's bucket either: all or nothing.
    let strict = RateLimits { per_user: Quota::new(1, 1), per_ip: Quota::new(1, 1) };
    let (one, two) = (RedisRateLimiter::new(&a, strict, "commands"), RedisRateLimiter::new(&b, strict, "commands"));
    let other_ip = IpAddr::from([10, 9, 9, 9]);
    let carol = Uuid::new_v4();
    assert_eq!(one.acquire(Some(carol), IpAddr::from([10, 9, 9, 8])).await, Ok(()));
    assert!(two.acquire(Some(carol), other_ip).await.is_err(), "carol's bucket is empty");
    assert_eq!(one.acquire(None, other_ip).await, Ok(()), "the refused command left the IP's token");

    // The bucket refills at its rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(there.acquire(Some(alice), ip).await, Ok(()));
}

#[tokio::test]
async fn commands_and_graphql_have_buckets_of_their_own() {
    let redis = Redis::open(&redis_url(), &prefix()).unwrap();
    let limits = RateLimits { per_user: None, per_ip: Quota::new(1, 1) };
    let (commands, graphql) = (RedisRateLimiter::new(&redis, limits, "commands"), RedisRateLimiter::new(&redis, limits, "graphql"));
    let ip = IpAddr::from([10, 3, 3, 3]);
    assert_eq!(commands.acquire(None, ip).await, Ok(()));
    assert!(commands.acquire(None, ip).await.is_err());
    assert_eq!(graphql.acquire(None, ip).await, Ok(()));
}

#[tokio::test]
async fn failed_logins_are_counted_for_every_process() {
    let prefix = prefix();
    let (a, b) = two_processes(&prefix);
    let (here, there) = (RedisFailures::new(&a), RedisFailures::new(&b));
    let keys = ["user:alice".to_owned(), "ip:10.0.0.1".to_owned()];
    assert_eq!(here.read(&keys).await, vec![None, None]);
    here.record(&keys, Duration::from_secs(60)).await;
    there.record(&keys[..1], Duration::from_secs(60)).await;
    let seen = there.read(&keys).await;
    assert_eq!(seen.iter().map(|r| r.map(|(count, _)| count)).collect::<Vec<_>>(), vec![Some(2), Some(1)]);
    assert!(seen[0].unwrap().1 < Duration::from_secs(5), "{seen:?}");
    here.clear("user:alice").await;
    assert_eq!(there.read(&keys[..1]).await, vec![None]);
    // Records expire after the given time.
    here.record(&keys[..1], Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(there.read(&keys[..1]).await, vec![None]);
}

#[tokio::test]
async fn an_unreachable_limiter_lets_commands_through() {
    let redis = Redis::open("redis://127.0.0.1:1", &prefix()).unwrap();
    assert!(redis.ping().await.is_err());
    let limiter = RedisRateLimiter::new(&redis, RateLimits { per_user: Quota::new(1, 1), per_ip: Quota::new(1, 1) }, "commands");
    for _ in 0..3 {
        assert_eq!(limiter.acquire(Some(Uuid::new_v4()), IpAddr::from([10, 0, 0, 1])).await, Ok(()));
    }
}

/// Publishes until the listener hears it (its subscription starts in the background).
async fn heard(publisher: &RedisNotices, listener: &mut tokio::sync::broadcast::Receiver<String>, name: &str) -> bool {
    for _ in 0..50 {
        publisher.publish(name);
        if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_millis(100), listener.recv()).await {
            assert_eq!(got, name);
            return true;
        }
    }
    false
}

#[tokio::test]
async fn change_notices_reach_every_process_of_the_deployment() {
    let prefix = prefix();
    let (a, b) = two_processes(&prefix);
    let (projector, read_api) = (RedisNotices::new(&a), RedisNotices::new(&b));
    let mut listener = read_api.subscribe();
    assert!(heard(&projector, &mut listener, "accounts").await, "a notice published in one process reaches the other");

    // Another deployment (prefix) on the same server, once listening, hears nothing of it.
    let elsewhere = RedisNotices::new(&Redis::open(&redis_url(), &format!("{prefix}other:")).unwrap());
    let mut other = elsewhere.subscribe();
    assert!(heard(&elsewhere, &mut other, "its-own").await);
    assert!(heard(&projector, &mut listener, "followers").await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(name) = other.try_recv() {
        assert_eq!(name, "its-own", "a notice crossed deployments");
    }
}

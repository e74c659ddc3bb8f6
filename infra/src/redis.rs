//! Redis (cluster profile): what several Plaza processes must share. Change notices
//! over pub/sub, the rate limiters' token buckets and the counts of failed logins.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use plaza_projections::ChangeNotices;
use plaza_write_api::{FailureLog, Quota, RateLimiter, RateLimits};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use uuid::Uuid;

/// A Redis server and the prefix of every key and channel Plaza uses on it (so
/// several deployments, or test runs, can share one server).
#[derive(Clone)]
pub struct Redis {
    client: ::redis::Client,
    /// Reconnects by itself; commands fail fast while the server is away.
    connection: ConnectionManager,
    prefix: String,
}

impl Redis {
    /// Parses the URL; connects lazily, so this does not fail while Redis is down
    /// (readiness checks report it).
    pub fn open(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = ::redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { client, connection, prefix: prefix.to_owned() })
    }

    pub async fn ping(&self) -> Result<(), String> {
        ::redis::cmd("PING").query_async::<String>(&mut self.connection.clone()).await.map(drop).map_err(|e| e.to_string())
    }

    fn changes_channel(&self) -> String {
        format!("{}changes", self.prefix)
    }
}

/// Change notices over Redis pub/sub: `PUBLISH {prefix}changes <projection>`.
/// Publishing goes through a queue to one task, which folds a burst of notices into one
/// per projection; a listener task forwards what every process published to local
/// subscribers, reconnecting after failures.
pub struct RedisNotices {
    outbox: mpsc::UnboundedSender<String>,
    heard: broadcast::Sender<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl RedisNotices {
    pub fn new(redis: &Redis) -> Self {
        let (outbox, queued) = mpsc::unbounded_channel();
        let heard = broadcast::channel(1024).0;
        let tasks = vec![tokio::spawn(publish_task(redis.clone(), queued)), tokio::spawn(listen_task(redis.clone(), heard.clone()))];
        Self { outbox, heard, tasks }
    }
}

impl Drop for RedisNotices {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl ChangeNotices for RedisNotices {
    fn publish(&self, projection: &str) {
        let _ = self.outbox.send(projection.to_owned());
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.heard.subscribe()
    }
}

async fn publish_task(redis: Redis, mut queued: mpsc::UnboundedReceiver<String>) {
    let channel = redis.changes_channel();
    let mut connection = redis.connection.clone();
    while let Some(first) = queued.recv().await {
        let mut names = BTreeSet::from([first]);
        while let Ok(name) = queued.try_recv() {
            names.insert(name);
        }
        for name in names {
            if let Err(error) = ::redis::cmd("PUBLISH").arg(&channel).arg(&name).query_async::<i64>(&mut connection).await {
                // Listeners also poll: a lost notice only delays them.
                debug!(%error, "cannot publish a change notice");
            }
        }
    }
}

async fn listen_task(redis: Redis, heard: broadcast::Sender<String>) {
    let channel = redis.changes_channel();
    listen(&redis, &channel, "change notices", |name| {
        let _ = heard.send(name);
    })
    .await;
}

/// Hands every message published on `channel` to `heard`, reconnecting after failures;
/// runs until aborted.
async fn listen(redis: &Redis, channel: &str, what: &str, heard: impl Fn(String)) {
    use futures_util::StreamExt;
    loop {
        match redis.client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(channel).await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if let Ok(payload) = message.get_payload::<String>() {
                            heard(payload);
                        }
                    }
                    warn!("the subscription to {what} ended, reconnecting");
                }
                Err(error) => warn!(%error, "cannot subscribe to {what}"),
            },
            Err(error) => warn!(%error, "cannot connect to redis for {what}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Token buckets in Redis, so every write API process draws on the same buckets. One
/// script call per command checks the user's and the IP's bucket and takes a token from
/// both, or from neither. Redis's clock is used, so process clocks do not matter.
pub struct RedisRateLimiter {
    redis: Redis,
    limits: RateLimits,
    /// Whose buckets these are (`commands`, `graphql`): each kind of request has its own.
    scope: &'static str,
    script: ::redis::Script,
}

/// KEYS: the buckets; ARGV: per bucket, its rate (tokens/s) and capacity. Returns 0
/// when a token was taken from each bucket, else the milliseconds until one can be.
const TOKEN_BUCKETS: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local wait = 0
local levels = {}
for i, key in ipairs(KEYS) do
    local rate, capacity = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
    local bucket = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = tonumber(bucket[1]) or capacity
    local at = tonumber(bucket[2]) or now
    tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
    levels[i] = tokens
    if tokens < 1 then
        wait = math.max(wait, math.ceil((1 - tokens) * 1000 / rate))
    end
end
for i, key in ipairs(KEYS) do
    local rate, capacity = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
    local tokens = levels[i]
    if wait == 0 then
        tokens = tokens - 1
    end
    redis.call('HSET', key, 'tokens', tostring(tokens), 'at', now)
    redis.call('PEXPIRE', key, math.ceil(capacity * 1000 / rate) + 1000)
end
return wait
";

impl RedisRateLimiter {
    pub fn new(redis: &Redis, limits: RateLimits, scope: &'static str) -> Self {
        Self { redis: redis.clone(), limits, scope, script: ::redis::Script::new(TOKEN_BUCKETS) }
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, user: Option<Uuid>, ip: IpAddr) -> Result<(), Duration> {
        let (prefix, scope) = (&self.redis.prefix, self.scope);
        let mut buckets: Vec<(String, Quota)> = Vec::with_capacity(2);
        if let (Some(quota), Some(user)) = (self.limits.per_user, user) {
            buckets.push((format!("{prefix}rate:{scope}:user:{user}"), quota));
        }
        if let Some(quota) = self.limits.per_ip {
            buckets.push((format!("{prefix}rate:{scope}:ip:{ip}"), quota));
        }
        if buckets.is_empty() {
            return Ok(());
        }
        let mut invocation = self.script.prepare_invoke();
        for (key, quota) in &buckets {
            invocation.key(key).arg(quota.per_second.get()).arg(quota.burst.get());
        }
        match invocation.invoke_async::<u64>(&mut self.redis.connection.clone()).await {
            Ok(0) => Ok(()),
            Ok(wait_ms) => Err(Duration::from_millis(wait_ms)),
            Err(error) => {
                // Failing open: an unreachable limiter must not stop every command.
                warn!(%error, "rate limiter unavailable, letting the command through");
                Ok(())
            }
        }
    }
}

/// Failed logins counted in Redis, so every write API sees the same counts. A key is a
/// hash of the count and the time (Redis's clock) of the last failure, expiring with the
/// record.
pub struct RedisFailures {
    redis: Redis,
    read: ::redis::Script,
    record: ::redis::Script,
}

/// KEYS: the records. Returns per key its count and the milliseconds since its last
/// failure (-1, -1 without a record).
const READ_FAILURES: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
    local record = redis.call('HMGET', key, 'n', 'at')
    if record[1] then
        out[2 * i - 1] = tonumber(record[1])
        out[2 * i] = math.max(0, now - tonumber(record[2]))
    else
        out[2 * i - 1] = -1
        out[2 * i] = -1
    end
end
return out
";

/// KEYS: the records; ARGV[1]: milliseconds to keep a record after its last failure.
const RECORD_FAILURE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for _, key in ipairs(KEYS) do
    redis.call('HINCRBY', key, 'n', 1)
    redis.call('HSET', key, 'at', now)
    redis.call('PEXPIRE', key, ARGV[1])
end
return 0
";

impl RedisFailures {
    pub fn new(redis: &Redis) -> Self {
        Self { redis: redis.clone(), read: ::redis::Script::new(READ_FAILURES), record: ::redis::Script::new(RECORD_FAILURE) }
    }

    fn key(&self, key: &str) -> String {
        format!("{}login-failures:{key}", self.redis.prefix)
    }
}

#[async_trait::async_trait]
impl FailureLog for RedisFailures {
    async fn read(&self, keys: &[String]) -> Vec<Option<(u32, Duration)>> {
        let mut invocation = self.read.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        match invocation.invoke_async::<Vec<i64>>(&mut self.redis.connection.clone()).await {
            Ok(values) => values
                .chunks(2)
                .map(|pair| match pair {
                    [count, since] if *count >= 0 => Some((u32::try_from(*count).unwrap_or(u32::MAX), Duration::from_millis(*since as u64))),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                // Failing open, as the rate limiter does: logins still work without Redis.
                warn!(%error, "login failure counts unavailable, not throttling");
                vec![None; keys.len()]
            }
        }
    }

    async fn record(&self, keys: &[String], forget_after: Duration) {
        let mut invocation = self.record.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        invocation.arg(forget_after.as_millis().max(1) as u64);
        if let Err(error) = invocation.invoke_async::<i64>(&mut self.redis.connection.clone()).await {
            warn!(%error, "cannot count a failed login");
        }
    }

    async fn clear(&self, key: &str) {
        if let Err(error) = ::redis::cmd("DEL").arg(self.key(key)).query_async::<i64>(&mut self.redis.connection.clone()).await {
            warn!(%error, "cannot clear failed logins");
        }
    }
}

/// How long Redis remembers when a user was last seen (after that: never seen).
const PRESENCE_REMEMBERED: Duration = Duration::from_secs(30 * 24 * 3600);

/// Last-seen times in Redis (`{prefix}seen:{user}` = milliseconds since the epoch), so
/// every write and read API sees the same presence.
pub struct RedisPresence {
    redis: Redis,
}

impl RedisPresence {
    pub fn new(redis: &Redis) -> Self {
        Self { redis: redis.clone() }
    }

    fn key(&self, user_id: uuid::Uuid) -> String {
        format!("{}seen:{user_id}", self.redis.prefix)
    }
}

fn live_error(error: ::redis::RedisError) -> plaza_live::LiveError {
    plaza_live::LiveError(error.to_string())
}

#[async_trait::async_trait]
impl plaza_live::Presence for RedisPresence {
    async fn seen(&self, user_id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) -> Result<(), plaza_live::LiveError> {
        // Only ever later: a heartbeat that overtakes another does not move it back.
        const SEEN: &str = "local old = tonumber(redis.call('GET', KEYS[1]) or '0')
            if tonumber(ARGV[1]) > old then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
            return 0";
        ::redis::Script::new(SEEN)
            .key(self.key(user_id))
            .arg(at.timestamp_millis())
            .arg(PRESENCE_REMEMBERED.as_millis() as u64)
            .invoke_async::<i64>(&mut self.redis.connection.clone())
            .await
            .map(drop)
            .map_err(live_error)
    }

    async fn last_seen(&self, user_ids: &[uuid::Uuid]) -> Result<Vec<Option<chrono::DateTime<chrono::Utc>>>, plaza_live::LiveError> {
        if user_ids.is_empty() {
            return Ok(vec![]);
        }
        let keys: Vec<String> = user_ids.iter().map(|id| self.key(*id)).collect();
        let values: Vec<Option<i64>> = ::redis::cmd("MGET").arg(&keys).query_async(&mut self.redis.connection.clone()).await.map_err(live_error)?;
        Ok(values.into_iter().map(|millis| millis.and_then(chrono::DateTime::from_timestamp_millis)).collect())
    }
}

/// Typing signals over Redis pub/sub (`PUBLISH {prefix}typing "<conversation> <user>
/// <millis>"`), heard by every read API.
pub struct RedisTyping {
    redis: Redis,
    heard: broadcast::Sender<plaza_live::Typing>,
    listener: JoinHandle<()>,
}

impl RedisTyping {
    pub fn new(redis: &Redis) -> Self {
        let heard = broadcast::channel(1024).0;
        let listener = tokio::spawn(listen_typing(redis.clone(), heard.clone()));
        Self { redis: redis.clone(), heard, listener }
    }
}

impl Drop for RedisTyping {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn typing_channel(redis: &Redis) -> String {
    format!("{}typing", redis.prefix)
}

#[async_trait::async_trait]
impl plaza_live::TypingSignals for RedisTyping {
    async fn publish(&self, typing: plaza_live::Typing) -> Result<(), plaza_live::LiveError> {
        let message = format!("{} {} {}", typing.conversation_id, typing.user_id, typing.at.timestamp_millis());
        ::redis::cmd("PUBLISH")
            .arg(typing_channel(&self.redis))
            .arg(message)
            .query_async::<i64>(&mut self.redis.connection.clone())
            .await
            .map(drop)
            .map_err(live_error)
    }

    fn subscribe(&self) -> broadcast::Receiver<plaza_live::Typing> {
        self.heard.subscribe()
    }
}

fn parse_typing(message: &str) -> Option<plaza_live::Typing> {
    let mut parts = message.split(' ');
    let conversation_id = parts.next()?.parse().ok()?;
    let user_id = parts.next()?.parse().ok()?;
    let at = chrono::DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
    Some(plaza_live::Typing { conversation_id, user_id, at })
}

async fn listen_typing(redis: Redis, heard: broadcast::Sender<plaza_live::Typing>) {
    listen(&redis, &typing_channel(&redis), "typing signals", |message| {
        if let Some(typing) = parse_typing(&message) {
            let _ = heard.send(typing);
        }
    })
    .await;
}

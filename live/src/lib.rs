//! What is live and never stored as events: who is online (presence) and who is typing.
//! In the embedded profile both live in this process; in the cluster they are Redis
//! keys and channels (`plaza_infra::redis`), shared by every write and read API.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Last-seen times: a heartbeat (or an open subscription) marks a user seen now; a user
/// is online while their last sighting is younger than the presence TTL.
#[async_trait::async_trait]
pub trait Presence: Send + Sync + 'static {
    async fn seen(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), LiveError>;

    /// When each user was last seen (`None`: never, or too long ago to remember).
    async fn last_seen(&self, user_ids: &[Uuid]) -> Result<Vec<Option<DateTime<Utc>>>, LiveError>;
}

/// Someone typing in a conversation: published by the write API, heard by the read
/// APIs' `typing` subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Typing {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    pub at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait TypingSignals: Send + Sync + 'static {
    async fn publish(&self, typing: Typing) -> Result<(), LiveError>;

    /// Every signal published from now on (this process's or, through Redis, any).
    fn subscribe(&self) -> broadcast::Receiver<Typing>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveError(pub String);

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "presence and typing are unavailable: {}", self.0)
    }
}

impl std::error::Error for LiveError {}

/// Whether a user last seen `last_seen` is online at `now`.
pub fn online(last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>, ttl: std::time::Duration) -> bool {
    last_seen.is_some_and(|seen| now.signed_duration_since(seen).to_std().map_or(true, |age| age < ttl))
}

/// Users remembered in this process before the oldest sightings are dropped.
const REMEMBERED: usize = 1_000_000;

/// Presence in this process (the embedded profile).
#[derive(Default)]
pub struct LocalPresence {
    seen: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

#[async_trait::async_trait]
impl Presence for LocalPresence {
    async fn seen(&self, user_id: Uuid, at: DateTime<Utc>) -> Result<(), LiveError> {
        let mut seen = self.seen.lock().expect("presence lock");
        if seen.len() >= REMEMBERED && !seen.contains_key(&user_id) {
            // Forget the oldest half: they are long offline.
            let mut times: Vec<DateTime<Utc>> = seen.values().copied().collect();
            let (_, median, _) = times.select_nth_unstable(REMEMBERED / 2);
            let median = *median;
            seen.retain(|_, at| *at > median);
        }
        let entry = seen.entry(user_id).or_insert(at);
        *entry = (*entry).max(at);
        Ok(())
    }

    async fn last_seen(&self, user_ids: &[Uuid]) -> Result<Vec<Option<DateTime<Utc>>>, LiveError> {
        let seen = self.seen.lock().expect("presence lock");
        Ok(user_ids.iter().map(|id| seen.get(id).copied()).collect())
    }
}

/// Typing signals within this process (the embedded profile).
pub struct LocalTyping {
    sender: broadcast::Sender<Typing>,
}

impl Default for LocalTyping {
    fn default() -> Self {
        Self { sender: broadcast::channel(1024).0 }
    }
}

#[async_trait::async_trait]
impl TypingSignals for LocalTyping {
    async fn publish(&self, typing: Typing) -> Result<(), LiveError> {
        // No subscriber is no error: nobody is watching.
        let _ = self.sender.send(typing);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Typing> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn presence_expires_after_its_ttl() {
        let presence = LocalPresence::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        presence.seen(alice, now - chrono::Duration::seconds(10)).await.unwrap();
        presence.seen(alice, now - chrono::Duration::seconds(20)).await.unwrap();
        let seen = presence.last_seen(&[alice, bob]).await.unwrap();
        assert_eq!(seen, vec![Some(now - chrono::Duration::seconds(10)), None], "the latest sighting counts");
        assert!(online(seen[0], now, Duration::from_secs(11)));
        assert!(!online(seen[0], now, Duration::from_secs(10)));
        assert!(!online(seen[1], now, Duration::from_secs(300)));
    }

    #[tokio::test]
    async fn typing_reaches_subscribers() {
        let typing = LocalTyping::default();
        let mut heard = typing.subscribe();
        let signal = Typing { conversation_id: Uuid::now_v7(), user_id: Uuid::now_v7(), at: Utc::now() };
        typing.publish(signal).await.unwrap();
        assert_eq!(heard.recv().await.unwrap(), signal);
    }
}

//! The search read model: videos, users and hashtags as documents of a search engine
//! (tantivy embedded, Elasticsearch in the cluster), built from the events as every read
//! model is, with the engine's own checkpoint ([`SearchWriter`]).
//!
//! A batch of events becomes one set of document changes: the documents it touches are
//! read once (from the engine, or from earlier in the batch), changed in memory, and
//! written once, so a thousand likes of one video in a batch rewrite its document once.
//! The changes and the batch's last position are applied together, all or nothing:
//! after a crash the batch is applied again from the engine's position, to the same
//! result.
//!
//! - A video: title, description, hashtags, publication time and likes. An edit replaces
//!   the texts; a deletion removes it.
//! - A user: username, display name and bio; registration time and followers.
//! - A hashtag: its name, when it was first used (or given a page) and how many videos
//!   use it now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use plaza_domain::search::{IndexChange, SearchDocument, SearchError, SearchKind, SearchWriter};
use plaza_domain::{Event, EventStore, RecordedEvent, StoreError};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::runtime::sleep_or_shutdown;

/// The documents a batch touches (to change them), as the batch leaves them (`None`:
/// deleted, or never there).
struct Batch<'a> {
    index: &'a dyn SearchWriter,
    documents: HashMap<(SearchKind, String), Option<SearchDocument>>,
}

impl<'a> Batch<'a> {
    fn new(index: &'a dyn SearchWriter) -> Self {
        Self { index, documents: HashMap::new() }
    }

    /// The document as the batch has it so far, to change.
    async fn document(&mut self, kind: SearchKind, id: String) -> Result<&mut Option<SearchDocument>, SearchError> {
        let key = (kind, id);
        if !self.documents.contains_key(&key) {
            let stored = self.index.get(kind, &key.1).await?;
            self.documents.insert(key.clone(), stored);
        }
        Ok(self.documents.get_mut(&key).expect("inserted above"))
    }

    /// Replaces the document whole (nothing to read first).
    fn put(&mut self, document: SearchDocument) {
        self.documents.insert((document.kind(), document.id()), Some(document));
    }

    /// Counts a video in (or out of, `delta` -1) each hashtag, which exists from its first use.
    async fn hashtags(&mut self, names: &[String], delta: i64, at: i64) -> Result<(), SearchError> {
        for name in names {
            let hashtag = self.document(SearchKind::Hashtags, name.clone()).await?;
            match hashtag {
                Some(SearchDocument::Hashtag { videos, .. }) => *videos = (*videos + delta).max(0),
                _ => *hashtag = Some(SearchDocument::Hashtag { name: name.clone(), created_at: at, videos: delta.max(0) }),
            }
        }
        Ok(())
    }

    async fn apply(&mut self, envelope: &RecordedEvent) -> Result<(), SearchError> {
        let Ok(event) = envelope.decode() else { return Ok(()) };
        let at = envelope.occurred_at.timestamp_micros();
        match event {
            Event::UserRegistered { user_id, username, .. } => {
                self.put(SearchDocument::User { user_id, username, display_name: None, bio: None, created_at: at, followers: 0 });
            }
            Event::ProfileUpdated { user_id, display_name: name, bio: text, .. } => {
                if let Some(SearchDocument::User { display_name, bio, .. }) = self.document(SearchKind::Users, user_id.to_string()).await? {
                    (*display_name, *bio) = (name, text);
                }
            }
            Event::UserFollowed { followee_id, .. } | Event::UserUnfollowed { followee_id, .. } => {
                let delta = if matches!(event, Event::UserFollowed { .. }) { 1 } else { -1 };
                if let Some(SearchDocument::User { followers, .. }) = self.document(SearchKind::Users, followee_id.to_string()).await? {
                    *followers = (*followers + delta).max(0);
                }
            }
            Event::VideoPublished { video_id, author_id, title, description, hashtags, .. } => {
                self.hashtags(&hashtags, 1, at).await?;
                let video = SearchDocument::Video { video_id, author_id, title, description, hashtags, created_at: at, likes: 0 };
                self.put(video);
            }
            Event::VideoUpdated { video_id, title: new_title, description: new_description, hashtags: new_hashtags, .. } => {
                let Some(SearchDocument::Video { hashtags, .. }) = self.document(SearchKind::Videos, video_id.to_string()).await?.clone() else {
                    return Ok(());
                };
                self.hashtags(&hashtags, -1, at).await?;
                self.hashtags(&new_hashtags, 1, at).await?;
                if let Some(SearchDocument::Video { title, description, hashtags, .. }) =
                    self.document(SearchKind::Videos, video_id.to_string()).await?
                {
                    (*title, *description, *hashtags) = (new_title, new_description, new_hashtags);
                }
            }
            Event::VideoDeleted { video_id, .. } => {
                let video = self.document(SearchKind::Videos, video_id.to_string()).await?;
                if let Some(SearchDocument::Video { hashtags, .. }) = video.take() {
                    self.hashtags(&hashtags, -1, at).await?;
                }
            }
            Event::VideoLiked { video_id, .. } | Event::VideoUnliked { video_id, .. } => {
                let delta = if matches!(event, Event::VideoLiked { .. }) { 1 } else { -1 };
                if let Some(SearchDocument::Video { likes, .. }) = self.document(SearchKind::Videos, video_id.to_string()).await? {
                    *likes = (*likes + delta).max(0);
                }
            }
            Event::HashtagCreated { name, .. } => {
                self.hashtags(&[name], 0, at).await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn changes(self) -> Vec<IndexChange> {
        self.documents
            .into_iter()
            .map(|((kind, id), document)| match document {
                Some(document) => IndexChange::Put(document),
                None => IndexChange::Delete { kind, id },
            })
            .collect()
    }
}

/// The changes `events` make to the documents in `index`.
pub async fn changes(index: &dyn SearchWriter, events: &[RecordedEvent]) -> Result<Vec<IndexChange>, SearchError> {
    let mut batch = Batch::new(index);
    for envelope in events {
        batch.apply(envelope).await?;
    }
    Ok(batch.changes())
}

#[derive(Debug, thiserror::Error)]
pub enum SearchProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// Tails the event store into a search engine.
pub struct SearchProjector {
    index: Arc<dyn SearchWriter>,
    store: Arc<dyn EventStore>,
    batch_size: usize,
    /// Told each position the index has applied.
    applied: watch::Sender<u64>,
    /// Woken by a reader waiting for a position the index has not applied.
    hurry: Arc<Notify>,
    commit_every: Duration,
}

const IDLE: Duration = Duration::from_secs(1);
/// While events keep coming, a batch is applied at most this often, as Elasticsearch
/// refreshes an index every second: each commit makes a new segment, so under a stream
/// of likes one commit per few events cost more than all the indexing. Searches see a
/// change within about this much more time, unless a reader asks for it ([`Self::hurry`]).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// A reader waiting for a position brings the next batch forward, but never closer than
/// this to the last: readers cannot make the index commit more than ten times a second.
const COMMIT_AT_MOST: Duration = Duration::from_millis(100);
/// Events per batch at most: one commit each, so a projector far behind (a new index)
/// writes few, large segments; a projector keeping up commits what has come.
const BATCH: usize = 10_000;

impl SearchProjector {
    pub fn new(index: Arc<dyn SearchWriter>, store: Arc<dyn EventStore>) -> Self {
        Self { index, store, batch_size: BATCH, applied: watch::channel(0).0, hurry: Arc::default(), commit_every: COMMIT_EVERY }
    }

    /// The position the index has applied, as it moves (once `run` has started).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// What a reader notifies when it waits for a position the index has not applied
    /// (a consistency token), so the next batch does not wait for [`COMMIT_EVERY`].
    pub fn hurry(&self) -> Arc<Notify> {
        self.hurry.clone()
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How often batches are applied while events keep coming ([`COMMIT_EVERY`] unless set).
    pub fn with_commit_every(mut self, every: Duration) -> Self {
        self.commit_every = every.max(COMMIT_AT_MOST);
        self
    }

    /// Applies one batch after `position` (the engine's); returns the new position (the
    /// same when there was nothing to apply).
    async fn step(&self, position: u64) -> Result<u64, SearchProjectorError> {
        let events = self.store.read_all(position, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.position) else { return Ok(position) };
        let changes = changes(&*self.index, &events).await?;
        self.index.apply(changes, last).await?;
        Ok(last)
    }

    /// Applies everything up to the store's head as it is now.
    pub async fn catch_up(&self) -> Result<u64, SearchProjectorError> {
        self.catch_up_with(&mut |_, _| {}).await
    }

    /// [`Self::catch_up`], telling `progress` the position and the head after each batch.
    pub async fn catch_up_with(&self, progress: &mut (dyn FnMut(u64, u64) + Send)) -> Result<u64, SearchProjectorError> {
        let head = self.store.head().await?;
        let mut position = self.index.position().await?;
        while position < head {
            position = self.step(position).await?;
            progress(position, head);
        }
        Ok(position)
    }

    /// Runs until `shutdown` turns true. Failures are logged and retried with backoff;
    /// nothing is skipped. The engine's position is read at the start and after a
    /// failure (a commit may have happened), and otherwise followed here.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        info!("search projector applying");
        let mut backoff = Duration::from_millis(100);
        let mut known = None;
        while !*shutdown.borrow() {
            let started = tokio::time::Instant::now();
            let outcome = match known {
                Some(position) => Ok(position),
                None => self.index.position().await.map_err(SearchProjectorError::from),
            };
            let outcome = match outcome {
                Ok(position) => {
                    self.applied.send_replace(position);
                    self.step(position).await.map(|applied| (position, applied))
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok((before, position)) => {
                    known = Some(position);
                    if position == before {
                        // Idle: the moment to take up a rebuilt index, if one was made.
                        match self.index.take_up_rebuilt().await {
                            Ok(true) => known = None,
                            Ok(false) => {}
                            Err(error) => warn!(%error, "could not take up the rebuilt search index"),
                        }
                        tokio::select! {
                            _ = self.store.wait_for_events(position, IDLE) => {}
                            _ = shutdown.changed() => {}
                        }
                    } else {
                        self.applied.send_replace(position);
                        backoff = Duration::from_millis(100);
                        tokio::select! {
                            _ = tokio::time::sleep_until(started + self.commit_every) => {}
                            _ = async {
                                self.hurry.notified().await;
                                tokio::time::sleep_until(started + COMMIT_AT_MOST).await;
                            } => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                Err(error) => {
                    known = None;
                    warn!(%error, "search projection batch failed, retrying");
                    if sleep_or_shutdown(backoff, &mut shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        info!("search projector stopped");
    }
}

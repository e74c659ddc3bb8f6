use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::db::APPLIED_POSITIONS;
use crate::{ChangeNotices, ReadModelDb};

/// How far each projection has applied the global log. Projectors advance it after
/// each committed batch; readers wait on it to honour consistency tokens.
#[derive(Clone, Default)]
pub struct Progress {
    projections: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Progress {
    /// Records that `projection` has applied everything up to `position`.
    pub fn advance(&self, projection: &str, position: u64) {
        let mut map = self.projections.lock().expect("progress lock");
        let sender = map.entry(projection.to_owned()).or_insert_with(|| watch::channel(0).0);
        sender.send_if_modified(|current| {
            let moved = position > *current;
            *current = (*current).max(position);
            moved
        });
    }

    /// Watches one projection's position (0 until it first advances).
    pub fn watch(&self, projection: &str) -> watch::Receiver<u64> {
        let mut map = self.projections.lock().expect("progress lock");
        map.entry(projection.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Each projection and the position it has applied.
    pub fn positions(&self) -> Vec<(String, u64)> {
        let map = self.projections.lock().expect("progress lock");
        let mut positions: Vec<_> = map.iter().map(|(name, tx)| (name.clone(), *tx.borrow())).collect();
        positions.sort();
        positions
    }

    /// Whether every projection has applied `position` already.
    pub fn reached(&self, position: u64) -> bool {
        self.projections.lock().expect("progress lock").values().all(|tx| *tx.borrow() >= position)
    }

    /// Waits until every projection has applied `position`. Returns false on timeout.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let receivers: Vec<_> = self.projections.lock().expect("progress lock").values().map(|tx| tx.subscribe()).collect();
        let all = async {
            for mut rx in receivers {
                if rx.wait_for(|applied| *applied >= position).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }
}

impl Progress {
    /// For a read API whose projectors run elsewhere (or are fed by Kafka): reads how far
    /// each projection has applied the log from the read-model database, again whenever
    /// a change notice arrives and at least every `poll_every`. `topic` is the Kafka topic
    /// the projectors consume (ignored for projectors that tail the store). Only the
    /// projections this progress already tracks are followed: other rows (a process
    /// manager's checkpoint) are no read model a reader waits for.
    pub async fn follow_read_models(
        self,
        db: Arc<dyn ReadModelDb>,
        topic: String,
        notices: Arc<dyn ChangeNotices>,
        poll_every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut heard = notices.subscribe();
        let mut listening = true;
        while !*shutdown.borrow() {
            match db.query(APPLIED_POSITIONS, vec![topic.as_str().into()]).await {
                Ok(rows) => {
                    for row in rows {
                        if let (Ok(name), Ok(position)) = (row.text(0), row.int(1))
                            && self.projections.lock().expect("progress lock").contains_key(name)
                        {
                            self.advance(name, position as u64);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read how far the projections are"),
            }
            tokio::select! {
                notice = heard.recv(), if listening => {
                    // One query answers every notice that arrived meanwhile.
                    if matches!(notice, Err(broadcast::error::RecvError::Closed)) {
                        listening = false;
                    }
                    while heard.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(poll_every) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_every_projection_has_applied_the_position() {
        let progress = Progress::default();
        progress.advance("a", 5);
        progress.advance("b", 3);
        assert!(progress.wait_for(3, Duration::from_millis(10)).await);
        assert!(!progress.wait_for(4, Duration::from_millis(10)).await);
        let waiter = tokio::spawn({
            let progress = progress.clone();
            async move { progress.wait_for(4, Duration::from_secs(5)).await }
        });
        progress.advance("b", 4);
        assert!(waiter.await.unwrap());
        progress.advance("a", 1);
        assert_eq!(progress.positions(), vec![("a".to_owned(), 5), ("b".to_owned(), 4)]);
    }
}

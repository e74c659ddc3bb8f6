use std::time::Duration;

use tokio::sync::watch;

/// The store's last committed position, shared by the writer and the waiters.
pub(crate) struct Head(watch::Sender<u64>);

impl Head {
    pub(crate) fn new(position: u64) -> Self {
        Self(watch::channel(position).0)
    }

    pub(crate) fn advance(&self, position: u64) {
        self.0.send_if_modified(|head| {
            let moved = position > *head;
            *head = (*head).max(position);
            moved
        });
    }

    /// The last committed position this process knows of.
    #[cfg_attr(not(feature = "eventstoredb"), allow(dead_code))]
    pub(crate) fn current(&self) -> u64 {
        *self.0.borrow()
    }

    /// Waits until the head is above `after` or the timeout passes; returns the head.
    pub(crate) async fn wait_above(&self, after: u64, timeout: Duration) -> u64 {
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|head| *head > after)).await;
        *rx.borrow()
    }
}

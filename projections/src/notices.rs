use tokio::sync::broadcast;

/// Change notices: a projector announces that a projection committed changes; read
/// APIs listen to wake consistency-token waits without polling. In one process this is
/// a broadcast channel ([`LocalNotices`]); across processes, Redis pub/sub (in infra).
///
/// A notice only says "look again": listeners read the committed state from the
/// read-model database, so they only ever act on data they can read, and a lost notice
/// costs a later wake-up (listeners also poll, slowly), never a wrong answer.
pub trait ChangeNotices: Send + Sync + 'static {
    /// Announces that `projection` committed a batch. Never blocks and never fails.
    fn publish(&self, projection: &str);

    /// Names of the projections that committed since subscribing.
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

/// Change notices within one process.
#[derive(Clone)]
pub struct LocalNotices(broadcast::Sender<String>);

impl Default for LocalNotices {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl ChangeNotices for LocalNotices {
    fn publish(&self, projection: &str) {
        // No receiver is fine: nobody is waiting.
        let _ = self.0.send(projection.to_owned());
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

//! The hub: one per read API process. It tails the conversations read model's change log
//! (`conversation_changes`, see `plaza_projections::conversations`), renders each change
//! once (the message and its sender read once) and hands it to every subscriber of this
//! process who may see it: the conversation's subscribers (who resolve it once per
//! distinct selection, `crate::render`), and the inboxes of its members. A change is
//! only read once its transaction committed, so a subscriber only hears of what it can
//! already read.
//!
//! It reads the log when the `conversations` projection advances (this process's
//! projector, or a change notice from another) and at least every [`POLL`].
//!
//! Subscribers hold `broadcast` receivers of [`BUFFER`] events: one that falls that far
//! behind misses events and is told so (`RESYNC`), never silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_graphql::ID;
use plaza_projections::conversations::change;
use plaza_projections::{ReadModelDb, Row, SqlValue};
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::render::Shared;
use crate::schema::notifications::{Notification, notification_from_row};
use crate::schema::realtime::{ConversationEvent, ConversationEventKind, InboxEvent, InboxEventKind};
use crate::schema::{message_from_row, role_from_str, user_from_row};

/// Events a subscriber may fall behind before it is told to resync.
pub const BUFFER: usize = 1024;
/// The longest the hub waits before looking at the log again.
const POLL: Duration = Duration::from_millis(200);
/// Changes read per query.
const PAGE: i64 = 500;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    conversations: Mutex<HashMap<String, broadcast::Sender<Arc<Shared<ConversationEvent>>>>>,
    inboxes: Mutex<HashMap<String, broadcast::Sender<Arc<InboxEvent>>>>,
    /// Each listening user's new and grown notifications.
    notifications: Mutex<HashMap<String, broadcast::Sender<Arc<Notification>>>>,
}

/// Changes with their message and its sender, after change `$1`.
const CHANGES: &str = concat!(
    "SELECT ch.id, ch.conversation_id, ch.kind, ch.seq, ch.user_ids, ch.detail, ",
    crate::message_fields!(),
    ", ",
    crate::user_columns!(),
    " FROM conversation_changes ch
     LEFT JOIN messages m ON m.id = ch.message_id
     LEFT JOIN message_changes x ON x.message_id = m.id
     LEFT JOIN users u ON u.id = m.sender_id LEFT JOIN user_counts c ON c.user_id = u.id
     WHERE ch.id > $1 ORDER BY ch.id LIMIT $2"
);
/// Where the columns of [`CHANGES`] start: the message's, then its sender's.
const MESSAGE_AT: usize = 6;
const SENDER_AT: usize = 16;

/// The members of a conversation and how far each has read.
const MEMBERS_READ: &str = "SELECT m.user_id, COALESCE(r.read_seq, 0) FROM conversation_members m
     LEFT JOIN conversation_reads r ON r.conversation_id = m.conversation_id AND r.user_id = m.user_id
     WHERE m.conversation_id = $1";

impl Hub {
    /// Starts tailing the logs from their newest changes; `conversations` and
    /// `notifications` tick when those projections have applied more.
    pub fn start(db: Arc<dyn ReadModelDb>, conversations: watch::Receiver<u64>, notifications: watch::Receiver<u64>) -> Self {
        let inner = Arc::new(Inner::default());
        tokio::spawn(tail(Arc::downgrade(&inner), db.clone(), conversations));
        tokio::spawn(tail_notifications(Arc::downgrade(&inner), db, notifications));
        Self { inner }
    }

    /// The user's notifications created or grown from now on.
    pub fn notifications(&self, user_id: &str) -> broadcast::Receiver<Arc<Notification>> {
        let mut map = self.inner.notifications.lock().expect("hub lock");
        map.entry(user_id.to_owned()).or_insert_with(|| broadcast::channel(BUFFER).0).subscribe()
    }

    /// Every change of the conversation from now on.
    pub fn conversation(&self, conversation_id: &str) -> broadcast::Receiver<Arc<Shared<ConversationEvent>>> {
        let mut map = self.inner.conversations.lock().expect("hub lock");
        map.entry(conversation_id.to_owned()).or_insert_with(|| broadcast::channel(BUFFER).0).subscribe()
    }

    /// Every new message of the user's conversations from now on.
    pub fn inbox(&self, user_id: &str) -> broadcast::Receiver<Arc<InboxEvent>> {
        let mut map = self.inner.inboxes.lock().expect("hub lock");
        map.entry(user_id.to_owned()).or_insert_with(|| broadcast::channel(BUFFER).0).subscribe()
    }
}

/// The newest change in the log (0: none yet).
pub async fn newest_change(db: &dyn ReadModelDb) -> Result<i64, plaza_projections::ReadModelError> {
    let rows = db.query("SELECT COALESCE(MAX(id), 0) FROM conversation_changes", vec![]).await?;
    Ok(rows.first().and_then(|row| row.int(0).ok()).unwrap_or(0))
}

async fn tail(inner: Weak<Inner>, db: Arc<dyn ReadModelDb>, mut advanced: watch::Receiver<u64>) {
    let mut last = loop {
        match newest_change(db.as_ref()).await {
            Ok(newest) => break newest,
            Err(error) => warn!(%error, "the hub cannot read the change log yet"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut watching = true;
    loop {
        tokio::select! {
            changed = advanced.changed(), if watching => watching = changed.is_ok(),
            _ = tokio::time::sleep(POLL) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if !inner.listened() {
            // Nobody to tell: skip to the newest change. Read before looking at the
            // channels, so a subscriber that arrives after the look notes a newest
            // change at least as new, and misses nothing the hub skipped.
            match newest_change(db.as_ref()).await {
                Ok(newest) if !inner.listened() => {
                    last = last.max(newest);
                    continue;
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "the hub cannot read the change log"),
            }
        }
        loop {
            let rows = match db.query(CHANGES, vec![SqlValue::Int(last), SqlValue::Int(PAGE)]).await {
                Ok(rows) => rows,
                Err(error) => {
                    warn!(%error, "the hub cannot read the change log");
                    break;
                }
            };
            let Some(newest) = rows.last().and_then(|row| row.int(0).ok()) else { break };
            if newest > last + rows.len() as i64 {
                // Older changes were pruned before this hub read them (it fell more than
                // the kept changes behind): their subscribers missed them.
                warn!(missed = newest - last - rows.len() as i64, "the hub fell behind the change log");
            }
            inner.deliver(&db, &rows).await;
            last = newest;
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        inner.sweep();
    }
}

impl Inner {
    /// Whether anyone here subscribed to a conversation or an inbox.
    fn listened(&self) -> bool {
        !self.conversations.lock().expect("hub lock").is_empty() || !self.inboxes.lock().expect("hub lock").is_empty()
    }

    async fn deliver(&self, db: &Arc<dyn ReadModelDb>, rows: &[Row]) {
        // Who reads each conversation with a new message, asked once per batch and only
        // when someone here subscribed to an inbox.
        let inboxes_open = !self.inboxes.lock().expect("hub lock").is_empty();
        let mut readers: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for row in rows {
            let Some(event) = render(row) else { continue };
            let event = Shared::new(event);
            let conversation = event.conversation_id.to_string();
            if let Some(sender) = self.conversations.lock().expect("hub lock").get(&conversation) {
                let _ = sender.send(event.clone());
            }
            if !inboxes_open || event.kind != ConversationEventKind::MessageSent {
                continue;
            }
            if !readers.contains_key(&conversation) {
                match db.query(MEMBERS_READ, vec![conversation.as_str().into()]).await {
                    Ok(members) => {
                        let list = members.iter().filter_map(|m| Some((m.text(0).ok()?.to_owned(), m.int(1).ok()?))).collect();
                        readers.insert(conversation.clone(), list);
                    }
                    Err(error) => {
                        warn!(%error, "the hub cannot read a conversation's members");
                        continue;
                    }
                }
            }
            let Some(message) = &event.message else { continue };
            let inboxes = self.inboxes.lock().expect("hub lock");
            for (user_id, read_seq) in &readers[&conversation] {
                if let Some(inbox) = inboxes.get(user_id) {
                    let unread = if *user_id == message.sender_id() { 0 } else { (message.seq - read_seq).max(0) };
                    let _ = inbox.send(Arc::new(InboxEvent {
                        kind: InboxEventKind::Message,
                        conversation_id: Some(event.conversation_id.clone()),
                        message: Some(message.clone()),
                        unread_count: Some(unread),
                    }));
                }
            }
        }
    }

    /// Forgets the channels nobody listens to any more.
    fn sweep(&self) {
        self.conversations.lock().expect("hub lock").retain(|_, sender| sender.receiver_count() > 0);
        self.inboxes.lock().expect("hub lock").retain(|_, sender| sender.receiver_count() > 0);
        self.notifications.lock().expect("hub lock").retain(|_, sender| sender.receiver_count() > 0);
    }
}

/// A change as subscribers see it; `None` for a change about a message this read model
/// does not hold yet (an edit applied before the message: its `sent` change follows and
/// shows the edit).
fn render(row: &Row) -> Option<ConversationEvent> {
    let conversation_id = ID(row.text(1).ok()?.to_owned());
    let kind = row.text(2).ok()?;
    let seq = row.int(3).ok()?;
    let user_ids: Vec<ID> = row.text(4).ok()?.split_whitespace().map(|id| ID(id.to_owned())).collect();
    let detail = row.text(5).ok()?;
    let message = || {
        if !matches!(row.0.get(MESSAGE_AT), Some(SqlValue::Text(_))) {
            return None;
        }
        let mut message = message_from_row(&Row(row.0[MESSAGE_AT..SENDER_AT].to_vec())).ok()?;
        message.sender = user_from_row(&Row(row.0[SENDER_AT..].to_vec())).ok();
        Some(message)
    };
    let mut event = ConversationEvent::new(ConversationEventKind::MessageSent, conversation_id);
    event.change = row.int(0).ok()?;
    match kind {
        change::SENT | change::EDITED | change::DELETED => {
            event.kind = match kind {
                change::SENT => ConversationEventKind::MessageSent,
                change::EDITED => ConversationEventKind::MessageEdited,
                _ => ConversationEventKind::MessageDeleted,
            };
            event.message = Some(message()?);
            event.seq = Some(seq);
        }
        change::READ => {
            event.kind = ConversationEventKind::Read;
            event.seq = Some(seq);
            event.user_ids = user_ids;
        }
        change::ADDED => {
            event.kind = ConversationEventKind::MembersAdded;
            event.user_ids = user_ids;
        }
        change::REMOVED => {
            event.kind = ConversationEventKind::MemberRemoved;
            event.user_ids = user_ids;
        }
        change::ROLE => {
            event.kind = ConversationEventKind::RoleChanged;
            event.user_ids = user_ids;
            event.role = Some(role_from_str(detail));
        }
        change::UPDATED => {
            event.kind = ConversationEventKind::Updated;
            event.user_ids = user_ids;
        }
        _ => return None,
    }
    Some(event)
}

/// Notifications created or grown after change `$1` (at most `$2` changes), each at
/// its current state, in the order of the changes; a change whose notifications are
/// gone is one row of NULLs after its id.
const NOTIFICATION_CHANGES: &str = concat!(
    "SELECT ch.id, ",
    crate::notification_columns!(),
    " FROM (SELECT id, position FROM notification_changes WHERE id > $1 ORDER BY id LIMIT $2) ch
     LEFT JOIN notifications n ON n.position = ch.position ORDER BY ch.id, n.recipient_id, n.id"
);

/// The newest notification change (0: none yet).
async fn newest_notification_change(db: &dyn ReadModelDb) -> Result<i64, plaza_projections::ReadModelError> {
    let rows = db.query("SELECT COALESCE(MAX(id), 0) FROM notification_changes", vec![]).await?;
    Ok(rows.first().and_then(|row| row.int(0).ok()).unwrap_or(0))
}

/// Hands each created or grown notification to its recipient's listeners here. A
/// group grown twice before the hub reads it is handed over once, as it is now.
async fn tail_notifications(inner: Weak<Inner>, db: Arc<dyn ReadModelDb>, mut advanced: watch::Receiver<u64>) {
    let mut last = loop {
        match newest_notification_change(db.as_ref()).await {
            Ok(newest) => break newest,
            Err(error) => warn!(%error, "the hub cannot read the notification changes yet"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut watching = true;
    loop {
        tokio::select! {
            changed = advanced.changed(), if watching => watching = changed.is_ok(),
            _ = tokio::time::sleep(POLL) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.notifications.lock().expect("hub lock").is_empty() {
            // Nobody to tell (read before looking, as `tail` does).
            match newest_notification_change(db.as_ref()).await {
                Ok(newest) if inner.notifications.lock().expect("hub lock").is_empty() => {
                    last = last.max(newest);
                    continue;
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "the hub cannot read the notification changes"),
            }
        }
        loop {
            // One statement, so the changes read and how far they reach are one snapshot:
            // a change committed meanwhile is read next time, not skipped.
            let rows = match db.query(NOTIFICATION_CHANGES, vec![SqlValue::Int(last), SqlValue::Int(PAGE)]).await {
                Ok(rows) => rows,
                Err(error) => {
                    warn!(%error, "the hub cannot read the notification changes");
                    break;
                }
            };
            let Some(newest) = rows.last().and_then(|row| row.int(0).ok()) else { break };
            let mut changes = 0;
            let mut previous = last;
            let listeners = inner.notifications.lock().expect("hub lock");
            for row in &rows {
                let change = row.int(0).unwrap_or(previous);
                if change != previous {
                    changes += 1;
                    previous = change;
                }
                // A change whose notification is gone since (a like withdrawn) has none.
                let Ok(notification) = notification_from_row(&Row(row.0[1..].to_vec())) else { continue };
                if let Some(sender) = listeners.get(&notification.recipient_id) {
                    let _ = sender.send(Arc::new(notification));
                }
            }
            drop(listeners);
            let full = changes >= PAGE;
            last = newest;
            if !full {
                break;
            }
        }
        inner.sweep();
    }
}

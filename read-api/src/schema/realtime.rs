//! Subscriptions: a conversation's events (with a lossless resume from a seq), the
//! inbox, typing and presence. Served over WebSocket (`crate::ws`).

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::{Context, Enum, ID, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::conversations::{Live, MAX_PRESENCE_IDS, Message, PresenceState, Role, conversation_for, messages_after, viewer};
use super::notifications::Notification;
use super::{bad_request, db};
use crate::hub::Hub;
use crate::render::{Rendered, Shared};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConversationEventKind {
    MessageSent,
    MessageEdited,
    MessageDeleted,
    /// A member's read marker moved (`userIds`: the member, `seq`: how far).
    Read,
    MembersAdded,
    MemberRemoved,
    RoleChanged,
    /// The title or description changed.
    Updated,
    /// This subscriber fell too far behind and missed events: the subscription ends;
    /// subscribe again with `afterSeq: lastSeq` to catch up without a gap.
    Resync,
}

#[derive(SimpleObject)]
pub struct ConversationEvent {
    pub kind: ConversationEventKind,
    pub conversation_id: ID,
    /// The message sent, edited or deleted (as it is now).
    pub message: Option<Message>,
    /// The message's seq, or how far a member read.
    pub seq: Option<i64>,
    /// Who joined, left, read or got a role.
    pub user_ids: Vec<ID>,
    pub role: Option<Role>,
    /// `RESYNC`: the last seq this subscriber was sent.
    pub last_seq: Option<i64>,
    /// Where the change is in the change log (0: not from the log).
    #[graphql(skip)]
    pub change: i64,
}

impl ConversationEvent {
    pub fn new(kind: ConversationEventKind, conversation_id: ID) -> Self {
        Self { kind, conversation_id, message: None, seq: None, user_ids: Vec::new(), role: None, last_seq: None, change: 0 }
    }

    /// Whether the change names the user (a removal ends their subscription).
    fn names(&self, user_id: &str) -> bool {
        self.user_ids.iter().any(|id| id.as_str() == user_id)
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InboxEventKind {
    Message,
    /// Events were missed: the subscription ends; read `conversations` again.
    Resync,
}

#[derive(SimpleObject, Clone)]
pub struct InboxEvent {
    pub kind: InboxEventKind,
    pub conversation_id: Option<ID>,
    pub message: Option<Message>,
    /// Your unread messages in that conversation, with this one.
    pub unread_count: Option<i64>,
}

#[derive(SimpleObject, Clone)]
pub struct TypingEvent {
    pub conversation_id: ID,
    pub user_id: ID,
    pub at: DateTime<Utc>,
}

/// How often `presenceChanged` looks at the presence of its users.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// Messages a resume reads per query.
const RESUME_PAGE: i64 = 200;

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// A conversation's events from now on. With `afterSeq`, every message after that
    /// seq comes first (as `MESSAGE_SENT`, from the read model), then the live events,
    /// with no gap and no repeat at the seam. Ends when you leave or are removed.
    async fn conversation_events(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        after_seq: Option<i64>,
    ) -> Result<impl Stream<Item = Rendered<ConversationEvent>> + use<>> {
        let user = viewer(ctx)?;
        conversation_for(ctx, &user, &conversation_id).await?;
        // Listen first, then note where the change log is: what the hub hands over up
        // to there committed before this subscription (the resume below reads the
        // messages among it); what comes after reaches the hub after it listened.
        let mut live = ctx.data_unchecked::<Hub>().conversation(&conversation_id);
        let db = db(ctx).clone();
        let since = crate::hub::newest_change(db.as_ref()).await?;
        Ok(async_stream::stream! {
            let mut last_sent = after_seq.unwrap_or(0);
            if let Some(after) = after_seq {
                loop {
                    let page = match messages_after(db.as_ref(), &conversation_id, last_sent.max(after), RESUME_PAGE).await {
                        Ok(page) => page,
                        Err(_) => {
                            yield Rendered(Shared::new(resync(&conversation_id, last_sent)));
                            return;
                        }
                    };
                    let full = page.len() as i64 == RESUME_PAGE;
                    for message in page {
                        last_sent = message.seq;
                        let mut event = ConversationEvent::new(ConversationEventKind::MessageSent, conversation_id.clone());
                        event.seq = Some(message.seq);
                        event.message = Some(message);
                        yield Rendered(Shared::new(event));
                    }
                    if !full {
                        break;
                    }
                }
            }
            loop {
                match live.recv().await {
                    Ok(event) => {
                        // Committed before this subscription: history, not news. A message
                        // committed while the resume read may be in both: its seq tells.
                        if event.change <= since {
                            continue;
                        }
                        if event.kind == ConversationEventKind::MessageSent {
                            let seq = event.seq.unwrap_or_default();
                            if seq <= last_sent {
                                continue;
                            }
                            last_sent = seq;
                        }
                        let removed = event.kind == ConversationEventKind::MemberRemoved && event.names(&user);
                        yield Rendered(event);
                        if removed {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        yield Rendered(Shared::new(resync(&conversation_id, last_sent)));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Every new message in any of your conversations, with that conversation's unread
    /// count.
    async fn inbox(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = InboxEvent> + use<>> {
        let user = viewer(ctx)?;
        let mut live = ctx.data_unchecked::<Hub>().inbox(&user);
        Ok(async_stream::stream! {
            loop {
                match live.recv().await {
                    Ok(event) => yield (*event).clone(),
                    Err(RecvError::Lagged(_)) => {
                        yield InboxEvent { kind: InboxEventKind::Resync, conversation_id: None, message: None, unread_count: None };
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Your notifications as they are created or grow (a like joining a group sends the
    /// group again, with its new count), once the read model has them. A subscriber too
    /// slow for its buffer gets an error with code `resync` and the subscription ends:
    /// read `notifications` again.
    async fn notification_added(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Result<Notification>> + use<>> {
        let user = super::notifications::signed_in(ctx)?;
        let mut live = ctx.data_unchecked::<Hub>().notifications(&user);
        Ok(async_stream::stream! {
            loop {
                match live.recv().await {
                    Ok(notification) => yield Ok((*notification).clone()),
                    Err(RecvError::Lagged(_)) => {
                        yield Err(bad_request("this subscriber fell behind and missed notifications: read `notifications` again", "resync"));
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Who starts typing in a conversation (others than you).
    async fn typing(&self, ctx: &Context<'_>, conversation_id: ID) -> Result<impl Stream<Item = TypingEvent> + use<>> {
        let user = viewer(ctx)?;
        conversation_for(ctx, &user, &conversation_id).await?;
        let mut signals = ctx.data_unchecked::<Live>().typing.subscribe();
        Ok(async_stream::stream! {
            loop {
                match signals.recv().await {
                    Ok(signal) => {
                        if signal.conversation_id.to_string() == conversation_id.as_str() && signal.user_id.to_string() != user {
                            yield TypingEvent { conversation_id: conversation_id.clone(), user_id: ID(signal.user_id.to_string()), at: signal.at };
                        }
                    }
                    // Typing is a hint: a missed one needs no resync.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// The users' presence now, then whenever one comes online or goes offline.
    async fn presence_changed(&self, ctx: &Context<'_>, user_ids: Vec<ID>) -> Result<impl Stream<Item = PresenceState> + use<>> {
        viewer(ctx)?;
        if user_ids.len() > MAX_PRESENCE_IDS {
            return Err(bad_request("watch at most 200 users at once", "invalid_arguments"));
        }
        let live = ctx.data_unchecked::<Live>().clone();
        let ids: Vec<Uuid> = user_ids.iter().filter_map(|id| plaza_edge::canonical_uuid(id)).collect();
        Ok(async_stream::stream! {
            let mut known: HashMap<Uuid, bool> = HashMap::new();
            loop {
                if let Ok(seen) = live.presence.last_seen(&ids).await {
                    let now = Utc::now();
                    for (id, last_seen_at) in ids.iter().zip(seen) {
                        let online = plaza_live::online(last_seen_at, now, live.presence_ttl);
                        if known.insert(*id, online) != Some(online) {
                            yield PresenceState { user_id: ID(id.to_string()), online, last_seen_at };
                        }
                    }
                }
                tokio::time::sleep(PRESENCE_EVERY).await;
            }
        })
    }
}

fn resync(conversation_id: &ID, last_sent: i64) -> ConversationEvent {
    let mut event = ConversationEvent::new(ConversationEventKind::Resync, conversation_id.clone());
    event.last_seq = Some(last_sent);
    event
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every fact Plaza records. Serialized as JSON with a `type` tag equal to
/// [`Event::event_type`]; the store keeps the type and schema version beside the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    UsernameReserved {
        username: String,
        user_id: Uuid,
        reserved_at: DateTime<Utc>,
    },
    UsernameReleased {
        username: String,
        user_id: Uuid,
    },
    EmailReserved {
        email: String,
        user_id: Uuid,
        reserved_at: DateTime<Utc>,
    },
    EmailReleased {
        email: String,
        user_id: Uuid,
    },
    UserRegistered {
        user_id: Uuid,
        username: String,
        email: String,
        password_hash: String,
    },
    ProfileUpdated {
        user_id: Uuid,
        display_name: Option<String>,
        bio: Option<String>,
        avatar_url: Option<String>,
    },
    /// A user was given a role (`admin`: may use the operators' routes and page).
    RoleGranted {
        user_id: Uuid,
        role: String,
    },
    RoleRevoked {
        user_id: Uuid,
        role: String,
    },
    UserFollowed {
        follower_id: Uuid,
        followee_id: Uuid,
    },
    UserUnfollowed {
        follower_id: Uuid,
        followee_id: Uuid,
    },
    VideoPublished {
        video_id: Uuid,
        author_id: Uuid,
        title: String,
        description: String,
        media_url: String,
        hashtags: Vec<String>,
    },
    VideoUpdated {
        video_id: Uuid,
        author_id: Uuid,
        title: String,
        description: String,
        hashtags: Vec<String>,
    },
    VideoDeleted {
        video_id: Uuid,
        author_id: Uuid,
    },
    VideoLiked {
        video_id: Uuid,
        user_id: Uuid,
    },
    VideoUnliked {
        video_id: Uuid,
        user_id: Uuid,
    },
    VideoFavorited {
        video_id: Uuid,
        user_id: Uuid,
    },
    VideoUnfavorited {
        video_id: Uuid,
        user_id: Uuid,
    },
    CommentPosted {
        comment_id: Uuid,
        video_id: Uuid,
        author_id: Uuid,
        parent_id: Option<Uuid>,
        body: String,
    },
    CommentDeleted {
        comment_id: Uuid,
        video_id: Uuid,
        deleted_by: Uuid,
    },
    CommentLiked {
        comment_id: Uuid,
        video_id: Uuid,
        user_id: Uuid,
    },
    CommentUnliked {
        comment_id: Uuid,
        video_id: Uuid,
        user_id: Uuid,
    },
    HashtagCreated {
        name: String,
        description: Option<String>,
        created_by: Uuid,
    },
    RecommendationsRefreshed {
        user_id: Uuid,
        seed: u64,
    },
    /// A batch of counter increments (views, generic counters), appended to one of the
    /// `counters-{shard}` streams: one event for many requests.
    CountersIncremented {
        increments: Vec<Increment>,
    },
    /// The first request to carry an `Idempotency-Key` claims the key, in the key's own
    /// `idempotency-{id}` stream: a repeat of `request` (a hash of who sent what) is
    /// recognised, any other request with the key is refused.
    IdempotencyKeyUsed {
        request: Uuid,
    },
    /// A conversation begins: a direct one with `member_ids` = the other person, a group
    /// with its creator as owner and `member_ids` as members.
    ConversationStarted {
        conversation_id: Uuid,
        kind: crate::conversations::Kind,
        title: String,
        description: String,
        created_by: Uuid,
        member_ids: Vec<Uuid>,
    },
    /// A group's title and description after the change.
    ConversationUpdated {
        conversation_id: Uuid,
        title: String,
        description: String,
        updated_by: Uuid,
    },
    /// Users join a group; `seq` is its last message then (their unread count starts
    /// after it).
    ConversationMembersAdded {
        conversation_id: Uuid,
        user_ids: Vec<Uuid>,
        added_by: Uuid,
        seq: u64,
    },
    /// A member leaves (`removed_by` is themselves) or is removed.
    ConversationMemberRemoved {
        conversation_id: Uuid,
        user_id: Uuid,
        removed_by: Uuid,
    },
    ConversationRoleChanged {
        conversation_id: Uuid,
        user_id: Uuid,
        role: crate::conversations::Role,
        changed_by: Uuid,
    },
    /// A message, the only event of its conversation's messages stream: its seq is the
    /// event's stream version + 1 (the store numbers it, so writers of several
    /// processes never retry). The event's id is the message's id.
    MessageSent {
        message_id: Uuid,
        conversation_id: Uuid,
        sender_id: Uuid,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment_url: Option<String>,
    },
    MessageEdited {
        message_id: Uuid,
        conversation_id: Uuid,
        seq: u64,
        body: String,
    },
    /// The message stays in the history, without its body.
    MessageDeleted {
        message_id: Uuid,
        conversation_id: Uuid,
        seq: u64,
        deleted_by: Uuid,
    },
    /// A member's read marker moves forward to `seq`.
    ConversationRead {
        conversation_id: Uuid,
        user_id: Uuid,
        seq: u64,
    },
    /// What a counter increment with an idempotency key answered, so a repeat answers
    /// the same (appended to the key's stream after the increment).
    IdempotentIncrementAnswered {
        value: i64,
    },
    /// A user switched notification kinds on or off (only the kinds that changed).
    NotificationSettingsChanged {
        user_id: Uuid,
        settings: std::collections::BTreeMap<String, bool>,
    },
    /// A user read their notifications: up to (and with) notification `up_to`, or all
    /// of them so far when `up_to` is `None`.
    NotificationsRead {
        user_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        up_to: Option<i64>,
    },
    /// A notice from Plaza itself (the welcome notice, ...) for one user.
    SystemNoticeSent {
        notice_id: Uuid,
        user_id: Uuid,
        text: String,
    },
    /// A signed-in user searched (the query as normalized), at the envelope's time.
    SearchPerformed {
        user_id: Uuid,
        query: String,
        kind: crate::search::SearchKind,
    },
    /// A user cleared one query from their search history, or all of it (`query` None).
    SearchHistoryCleared {
        user_id: Uuid,
        query: Option<String>,
    },
}

/// One counter increment of a [`Event::CountersIncremented`] batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Increment {
    pub resource_id: String,
    pub counter_type: String,
    pub delta: i64,
    /// Set when the request carried an `Idempotency-Key`: derived from the key, so a
    /// repeat of the request is recognised and adds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
}

/// The schema version written for new events. Bump it for a type whose shape changes
/// and teach [`upcast`] to lift the old shape.
pub const SCHEMA_VERSION: u32 = 1;

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UsernameReserved { .. } => "UsernameReserved",
            Self::UsernameReleased { .. } => "UsernameReleased",
            Self::EmailReserved { .. } => "EmailReserved",
            Self::EmailReleased { .. } => "EmailReleased",
            Self::UserRegistered { .. } => "UserRegistered",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::RoleGranted { .. } => "RoleGranted",
            Self::RoleRevoked { .. } => "RoleRevoked",
            Self::UserFollowed { .. } => "UserFollowed",
            Self::UserUnfollowed { .. } => "UserUnfollowed",
            Self::VideoPublished { .. } => "VideoPublished",
            Self::VideoUpdated { .. } => "VideoUpdated",
            Self::VideoDeleted { .. } => "VideoDeleted",
            Self::VideoLiked { .. } => "VideoLiked",
            Self::VideoUnliked { .. } => "VideoUnliked",
            Self::VideoFavorited { .. } => "VideoFavorited",
            Self::VideoUnfavorited { .. } => "VideoUnfavorited",
            Self::CommentPosted { .. } => "CommentPosted",
            Self::CommentDeleted { .. } => "CommentDeleted",
            Self::CommentLiked { .. } => "CommentLiked",
            Self::CommentUnliked { .. } => "CommentUnliked",
            Self::HashtagCreated { .. } => "HashtagCreated",
            Self::RecommendationsRefreshed { .. } => "RecommendationsRefreshed",
            Self::CountersIncremented { .. } => "CountersIncremented",
            Self::ConversationStarted { .. } => "ConversationStarted",
            Self::ConversationUpdated { .. } => "ConversationUpdated",
            Self::ConversationMembersAdded { .. } => "ConversationMembersAdded",
            Self::ConversationMemberRemoved { .. } => "ConversationMemberRemoved",
            Self::ConversationRoleChanged { .. } => "ConversationRoleChanged",
            Self::MessageSent { .. } => "MessageSent",
            Self::MessageEdited { .. } => "MessageEdited",
            Self::MessageDeleted { .. } => "MessageDeleted",
            Self::ConversationRead { .. } => "ConversationRead",
            Self::IdempotencyKeyUsed { .. } => "IdempotencyKeyUsed",
            Self::IdempotentIncrementAnswered { .. } => "IdempotentIncrementAnswered",
            Self::NotificationSettingsChanged { .. } => "NotificationSettingsChanged",
            Self::NotificationsRead { .. } => "NotificationsRead",
            Self::SystemNoticeSent { .. } => "SystemNoticeSent",
            Self::SearchPerformed { .. } => "SearchPerformed",
            Self::SearchHistoryCleared { .. } => "SearchHistoryCleared",
        }
    }

    /// Decodes recorded data, upcasting older schema versions first.
    pub fn decode(event_type: &str, schema_version: u32, data: &str) -> Result<Event, DecodeError> {
        if schema_version >= SCHEMA_VERSION {
            // Straight from the text: no JSON tree in between (most of a rebuild's reading).
            return serde_json::from_str(data).map_err(|e| DecodeError::new(event_type, e));
        }
        let value: serde_json::Value = serde_json::from_str(data).map_err(|e| DecodeError::new(event_type, e))?;
        serde_json::from_value(upcast(event_type, schema_version, value)).map_err(|e| DecodeError::new(event_type, e))
    }
}

/// Lifts an event recorded with an older schema version to the current shape. All
/// events are at version 1 today, so there is nothing to lift yet.
fn upcast(_event_type: &str, _from_version: u32, value: serde_json::Value) -> serde_json::Value {
    value
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode event {event_type}: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

impl DecodeError {
    fn new(event_type: &str, reason: impl std::fmt::Display) -> Self {
        Self { event_type: event_type.to_owned(), reason: reason.to_string() }
    }
}

/// Who and what caused an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// JSON text.
    pub data: String,
    pub metadata: Metadata,
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    pub fn new(event_id: Uuid, event: &Event, metadata: Metadata, occurred_at: DateTime<Utc>) -> Self {
        Self {
            event_id,
            event_type: event.event_type().to_owned(),
            schema_version: SCHEMA_VERSION,
            data: serde_json::to_string(event).expect("events serialize"),
            metadata,
            occurred_at,
        }
    }
}

/// An event as the store recorded it: the envelope plus the data.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    /// Zero-based position of the event within its stream.
    pub version: u64,
    /// Position in the global log; starts at 1 and strictly increases.
    pub position: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub data: String,
    pub metadata: Metadata,
    pub occurred_at: DateTime<Utc>,
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<Event, DecodeError> {
        Event::decode(&self.event_type, self.schema_version, &self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_recorded_form() {
        let event = Event::UserFollowed { follower_id: Uuid::new_v4(), followee_id: Uuid::new_v4() };
        let new = NewEvent::new(Uuid::new_v4(), &event, Metadata::default(), Utc::now());
        assert_eq!(new.event_type, "UserFollowed");
        assert_eq!(Event::decode(&new.event_type, new.schema_version, &new.data).unwrap(), event);
    }

    #[test]
    fn unknown_data_is_a_decode_error_not_a_panic() {
        let err = Event::decode("UserFollowed", 1, r#"{"type":"UserFollowed"}"#).unwrap_err();
        assert_eq!(err.event_type, "UserFollowed");
    }
}

/// The key that places a recorded event in a Kafka partition (`plaza relay`): events
/// of one key keep their order for every consumer. It is the stream id, except for
/// streams about another stream's thing, which take that thing's key, so a consumer
/// meets the thing before what happens to it (a video before its likes, a
/// conversation's start and members before its messages):
///
/// - `like-{video}-{user}`, `favorite-{video}-{user}`, and the comments of a video
///   (`comment-{id}`, `comment-like-{comment}-{user}`, by their events' `video_id`):
///   `video-{video}`;
/// - `follow-{follower}-{followee}`: `user-{followee}`; `notifications-{user}`,
///   `recommendations-{user}`: `user-{user}`;
/// - `conversation-{id}-messages`, `read-{conversation}-{user}` and `message-{id}` (by
///   its events' `conversation_id`): `conversation-{id}`.
///
/// Every event of a stream gets the same key (what is read from an event is the same
/// in all of its stream's events), so one stream's order always holds.
pub fn partition_key<'a>(stream_id: &'a str, data: &str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    /// The id after `prefix`: 36 characters.
    fn id_after<'s>(stream_id: &'s str, prefix: &str) -> Option<&'s str> {
        stream_id.strip_prefix(prefix).and_then(|rest| rest.get(..36))
    }
    #[derive(Deserialize)]
    struct About {
        video_id: Option<Uuid>,
        conversation_id: Option<Uuid>,
    }
    let about = || serde_json::from_str::<About>(data).ok();
    let key = if let Some(video) = id_after(stream_id, "like-").or_else(|| id_after(stream_id, "favorite-")) {
        Some(format!("video-{video}"))
    } else if stream_id.starts_with("comment-") {
        about().and_then(|a| a.video_id).map(|video| format!("video-{video}"))
    } else if let Some(followee) = stream_id.strip_prefix("follow-").and_then(|rest| rest.get(37..)) {
        Some(format!("user-{followee}"))
    } else if let Some(user) = id_after(stream_id, "notifications-").or_else(|| id_after(stream_id, "recommendations-")) {
        Some(format!("user-{user}"))
    } else if let Some(conversation) = stream_id.strip_suffix("-messages").and_then(|s| id_after(s, "conversation-")) {
        Some(format!("conversation-{conversation}"))
    } else if let Some(conversation) = id_after(stream_id, "read-") {
        Some(format!("conversation-{conversation}"))
    } else if stream_id.starts_with("message-") {
        about().and_then(|a| a.conversation_id).map(|conversation| format!("conversation-{conversation}"))
    } else {
        None
    };
    key.map_or(Cow::Borrowed(stream_id), Cow::Owned)
}

#[cfg(test)]
mod partition_key_tests {
    use super::*;

    #[test]
    fn related_streams_share_their_things_key() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let key = |stream: &str, data: &str| partition_key(stream, data).into_owned();
        assert_eq!(key(&format!("video-{a}"), "{}"), format!("video-{a}"));
        assert_eq!(key(&format!("like-{a}-{b}"), "{}"), format!("video-{a}"));
        assert_eq!(key(&format!("favorite-{a}-{b}"), "{}"), format!("video-{a}"));
        let on_video = format!(r#"{{"type":"CommentPosted","video_id":"{a}","comment_id":"{b}"}}"#);
        assert_eq!(key(&format!("comment-{b}"), &on_video), format!("video-{a}"));
        assert_eq!(key(&format!("comment-like-{b}-{a}"), &on_video), format!("video-{a}"));
        assert_eq!(key(&format!("follow-{a}-{b}"), "{}"), format!("user-{b}"));
        assert_eq!(key(&format!("notifications-{a}"), "{}"), format!("user-{a}"));
        assert_eq!(key(&format!("conversation-{a}"), "{}"), format!("conversation-{a}"));
        assert_eq!(key(&format!("conversation-{a}-messages"), "{}"), format!("conversation-{a}"));
        assert_eq!(key(&format!("read-{a}-{b}"), "{}"), format!("conversation-{a}"));
        let in_conversation = format!(r#"{{"type":"MessageEdited","conversation_id":"{a}"}}"#);
        assert_eq!(key(&format!("message-{b}"), &in_conversation), format!("conversation-{a}"));
        // Anything else, or data that does not say: the stream itself.
        assert_eq!(key("counters-3", "{}"), "counters-3");
        assert_eq!(key(&format!("comment-{b}"), "not json"), format!("comment-{b}"));
        assert_eq!(key("like-short", "{}"), "like-short");
    }
}

//! The `notifications` read model: what each user is told about, grouped.
//!
//! **Who is told.** Every notification goes to the owner of a *target*, looked up in
//! `notification_targets`, which this projection fills from the facts: a video's id and
//! a comment's id name their author, a user's id names the user, and `@username` names
//! whoever registered it. So "someone liked video V" notifies the owner of target V, and
//! a mention notifies the owner of target `@name` (an unknown name is plain text). A
//! target other than a mention must be known when its action is applied: through Kafka
//! a like may arrive before its video, and the statement then fails (`NOT NULL`) so the
//! projector retries the batch until the video is there, rather than drop it.
//!
//! Nobody is told of their own actions; kinds a user switched off
//! (`notification_settings`) are neither created nor counted; a mention in a message
//! only reaches members of its conversation (`notification_members`). A message with
//! mentions waits for its conversation's start likewise (target `conversation:{id}`);
//! through Kafka, a member added just before a message that names them may still be
//! applied after it, and then is not told.
//!
//! **Groups.** Likes of one video, favorites of one video, likes of one comment and
//! follows of one user form one notification row (a group) while it is *open*: unread,
//! and updated within the group window (`notification_group_window_secs`). The next
//! such action joins it (its count and `updated_at` grow, it moves to the top); once
//! the group is read or idle for the window, the next action opens a new group. So a
//! video with a million likes writes one group row per unread window, with one small
//! row per actor (`notification_actors`, for the latest actors and for withdrawing).
//! Comments, replies, mentions and notices stand alone (a group of one).
//!
//! The open group of a kind and key (a key has one owner) carries `open_key` (say
//! `video_liked:{video}`), unique: an action is one `INSERT .. ON CONFLICT (open_key) DO
//! UPDATE` that opens the group or joins it, after a statement that takes the key off
//! the group if it was read or went idle since ([`CLOSE_GROUP`]). Reading marks nothing
//! itself: the next action closes the group it finds read.
//!
//! **Read state.** One marker per user (`notification_reads.read_position`): a
//! notification is read when its position (that of the last event that created or grew
//! it) is at most the marker. Reading "all" moves the marker to the read event's own
//! position; reading "up to" a notification moves it to that notification's position.
//!
//! **Withdrawal.** Unliking, unfavoriting, unfollowing and unliking a comment take the
//! actor out of the *unread* group they joined (a group left with nobody goes); a
//! deleted comment or message takes its unread notifications along. Read ones stay.
//!
//! **Identity.** A notification's id is the position of the event that created it times
//! 16 plus its kind's code ([`Kind::code`]): unique per recipient, growing with time.
//!
//! `notification_changes` logs the positions at which groups were created or grown, in
//! commit order, for subscriptions (as `conversation_changes` does for messages: news,
//! not history, carried over by a rebuild).
//!
//! Mentions count where text is first written: a video's description when it is
//! published (not when edited), a comment, a message (not its edits).

use std::time::Duration;

use plaza_domain::notifications::{Kind, mentions};
use plaza_domain::{Event, RecordedEvent};
use uuid::Uuid;

use crate::{Projection, SqlValue, Statement};

/// How notifications are grouped.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// An open group takes actions for this long after its last one.
    pub group_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { group_window: Duration::from_secs(3600) }
    }
}

pub struct NotificationsProjection {
    pub settings: Settings,
}

/// Changes kept in `notification_changes`.
pub const CHANGES_KEPT: i64 = 100_000;
/// Characters of a comment, message or description kept as a notification's excerpt.
pub const EXCERPT_CHARS: usize = 200;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS notification_targets (id TEXT PRIMARY KEY, owner_id TEXT NOT NULL)",
    // Never written: a statement inserts NULL here to fail when a target is missing.
    "CREATE TABLE IF NOT EXISTS notification_missing_targets (target_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notification_settings (
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        enabled BIGINT NOT NULL,
        PRIMARY KEY (user_id, kind)
    )",
    "CREATE TABLE IF NOT EXISTS notification_members (
        conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    )",
    "CREATE TABLE IF NOT EXISTS notification_reads (user_id TEXT PRIMARY KEY, read_position BIGINT NOT NULL)",
    // No constraint that could abort a statement half-way on the three tables every
    // like writes: SQLite copies each page such a statement (an `INSERT .. SELECT`
    // writes "several rows") changes into a statement journal first, so it can undo just
    // that statement. Their rows come from rows already checked, and the one unique
    // index of `notifications` is the conflict target of the statement writing it.
    // (With one upsert per like, this took the like burst of `make bench`, section 8,
    // from 6 % to 8.5 % of the no-op projection's pace.)
    "CREATE TABLE IF NOT EXISTS notifications (
        recipient_id TEXT,
        id BIGINT,
        kind TEXT,
        group_key TEXT,
        open_key TEXT,
        video_id TEXT,
        comment_id TEXT,
        conversation_id TEXT,
        message_id TEXT,
        body TEXT,
        actor_count BIGINT,
        created_at BIGINT,
        updated_at BIGINT,
        position BIGINT
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS notifications_open ON notifications (open_key)",
    "CREATE INDEX IF NOT EXISTS notifications_by_id ON notifications (recipient_id, id)",
    "CREATE INDEX IF NOT EXISTS notifications_by_group ON notifications (group_key, recipient_id, kind)",
    "CREATE INDEX IF NOT EXISTS notifications_by_recipient ON notifications (recipient_id, position)",
    "CREATE INDEX IF NOT EXISTS notifications_by_position ON notifications (position)",
    "CREATE TABLE IF NOT EXISTS notification_actors (
        recipient_id TEXT,
        notification_id BIGINT,
        actor_id TEXT,
        position BIGINT,
        PRIMARY KEY (recipient_id, notification_id, actor_id)
    )",
    "CREATE INDEX IF NOT EXISTS notification_actors_by_position ON notification_actors (recipient_id, notification_id, position)",
    "CREATE TABLE IF NOT EXISTS notification_changes (id BIGINT PRIMARY KEY, position BIGINT)",
];

/// Fails (a `NOT NULL` violation) unless target `$1` is known.
const REQUIRE_TARGET: &str = "INSERT INTO notification_missing_targets (target_id)
     SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM notification_targets WHERE id = $1)";

/// Closes the open group `$1` (its `open_key`) if it was read, or last updated before
/// `$2`: the next action of its kind and key starts a new group.
const CLOSE_GROUP: &str = "UPDATE notifications SET open_key = NULL
     WHERE open_key = $1
       AND (updated_at < $2 OR position <= COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = notifications.recipient_id), 0))";

/// Tells the owner of target `$1` of an action of kind `$3` by `$2` (at `$11`, position
/// `$12`), unless they are the actor, switched the kind off, or cannot read conversation
/// `$8`: a new notification (`$5` its id), or one more actor in the open group `$13`.
const NOTIFY: &str = "INSERT INTO notifications
        (recipient_id, id, kind, group_key, open_key, video_id, comment_id, conversation_id, message_id, body, actor_count, created_at, updated_at, position)
     SELECT t.owner_id, CAST($5 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($13 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT),
            CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS TEXT), 1, CAST($11 AS BIGINT), CAST($11 AS BIGINT), CAST($12 AS BIGINT)
     FROM notification_targets t
     WHERE t.id = $1 AND t.owner_id <> $2
       AND NOT EXISTS (SELECT 1 FROM notification_settings s WHERE s.user_id = t.owner_id AND s.kind = $3 AND s.enabled = 0)
       AND (CAST($8 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM notification_members m WHERE m.conversation_id = $8 AND m.user_id = t.owner_id))
     ON CONFLICT (open_key) DO UPDATE SET
        actor_count = notifications.actor_count + 1, updated_at = excluded.updated_at, position = excluded.position";

/// Lists actor `$2` in every notification that the event at position `$1` created or grew.
const ADD_ACTOR: &str = "INSERT INTO notification_actors (recipient_id, notification_id, actor_id, position)
     SELECT n.recipient_id, n.id, CAST($2 AS TEXT), n.position FROM notifications n WHERE n.position = $1
     ON CONFLICT DO NOTHING";

/// Takes actor `$2` out of the unread groups (kind `$3`, key `$4`) of the owner of `$1`.
const UNCOUNT_ACTOR: &str = "UPDATE notifications SET actor_count = actor_count - 1
     WHERE group_key = $4 AND recipient_id = (SELECT owner_id FROM notification_targets WHERE id = $1) AND kind = $3
       AND position > COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = notifications.recipient_id), 0)
       AND EXISTS (SELECT 1 FROM notification_actors a WHERE a.recipient_id = notifications.recipient_id AND a.notification_id = notifications.id AND a.actor_id = $2)";

const REMOVE_ACTOR: &str = "DELETE FROM notification_actors WHERE (recipient_id, notification_id, actor_id) IN (
         SELECT n.recipient_id, n.id, CAST($2 AS TEXT) FROM notifications n
         WHERE n.group_key = $4 AND n.recipient_id = (SELECT owner_id FROM notification_targets WHERE id = $1) AND n.kind = $3
           AND n.position > COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = n.recipient_id), 0))";

/// Drops the groups (kind `$2`, key `$3`) of the owner of `$1` left with nobody.
const DROP_EMPTY: &str = "DELETE FROM notifications
     WHERE group_key = $3 AND recipient_id = (SELECT owner_id FROM notification_targets WHERE id = $1) AND kind = $2 AND actor_count <= 0";

/// Drops every unread notification about `$1` (a deleted comment or message), actors first.
const WITHDRAW_ABOUT: [&str; 2] = [
    "DELETE FROM notification_actors WHERE (recipient_id, notification_id) IN (
         SELECT n.recipient_id, n.id FROM notifications n WHERE n.group_key = $1
           AND n.position > COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = n.recipient_id), 0))",
    "DELETE FROM notifications WHERE group_key = $1
       AND position > COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = notifications.recipient_id), 0)",
];

/// Logs position `$1` for subscribers when it created or grew a group. (`MAX(id)` alone
/// in its sub-query, so SQLite reads it off the index's end rather than scan the log.)
const LOG_CHANGE: &str = "INSERT INTO notification_changes (id, position)
     SELECT (SELECT COALESCE(MAX(id), 0) FROM notification_changes) + 1, CAST($1 AS BIGINT)
     WHERE EXISTS (SELECT 1 FROM notifications WHERE position = $1)
     ON CONFLICT DO NOTHING";

/// Keeps the newest [`CHANGES_KEPT`] changes; run at every [`TRIM_EVERY`]th position.
const TRIM_CHANGES: &str = "DELETE FROM notification_changes WHERE id <= (SELECT MAX(id) FROM notification_changes) - $1";
const TRIM_EVERY: u64 = 256;

fn text(value: impl ToString) -> SqlValue {
    SqlValue::Text(value.to_string())
}

fn int(value: i64) -> SqlValue {
    SqlValue::Int(value)
}

/// One action someone may be told of.
struct Notice {
    kind: Kind,
    /// Resolves the recipient through `notification_targets`.
    target: String,
    actor: Option<Uuid>,
    group_key: String,
    video_id: Option<Uuid>,
    comment_id: Option<Uuid>,
    conversation_id: Option<Uuid>,
    message_id: Option<Uuid>,
    body: Option<String>,
}

impl Notice {
    fn new(kind: Kind, target: impl ToString, actor: Option<Uuid>, group_key: impl ToString) -> Self {
        Self {
            kind,
            target: target.to_string(),
            actor,
            group_key: group_key.to_string(),
            video_id: None,
            comment_id: None,
            conversation_id: None,
            message_id: None,
            body: None,
        }
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(EXCERPT_CHARS).collect()
}

impl NotificationsProjection {
    fn notify(&self, notice: Notice, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let at = envelope.occurred_at.timestamp_micros();
        let position = envelope.position as i64;
        let kind = notice.kind.as_str();
        if notice.kind != Kind::Mentioned {
            out.push(Statement::new(REQUIRE_TARGET, [text(&notice.target)]));
        }
        // A grouped kind's open group per key (one recipient: the key's owner); a notice
        // that stands alone has none.
        let open_key = notice.kind.grouped().then(|| format!("{kind}:{}", notice.group_key));
        if let Some(open_key) = &open_key {
            let window = i64::try_from(self.settings.group_window.as_micros()).unwrap_or(i64::MAX);
            out.push(Statement::new(CLOSE_GROUP, [text(open_key), int(at.saturating_sub(window))]));
        }
        out.push(Statement::new(
            NOTIFY,
            [
                text(&notice.target),
                text(notice.actor.map(|a| a.to_string()).unwrap_or_default()),
                text(kind),
                text(&notice.group_key),
                int(position * 16 + notice.kind.code()),
                notice.video_id.map(text).into(),
                notice.comment_id.map(text).into(),
                notice.conversation_id.map(text).into(),
                notice.message_id.map(text).into(),
                notice.body.into(),
                int(at),
                int(position),
                open_key.into(),
            ],
        ));
    }

    fn withdraw(&self, kind: Kind, target: impl ToString, actor: Uuid, group_key: impl ToString, out: &mut Vec<Statement>) {
        let (target, actor, group_key) = (target.to_string(), actor.to_string(), group_key.to_string());
        let params = [text(&target), text(&actor), text(kind.as_str()), text(&group_key)];
        out.push(Statement::new(UNCOUNT_ACTOR, params.clone()));
        out.push(Statement::new(REMOVE_ACTOR, params));
        out.push(Statement::new(DROP_EMPTY, [text(&target), text(kind.as_str()), text(&group_key)]));
    }

    /// A notice for each user `body` mentions.
    fn mentions(body: &str, base: impl Fn() -> Notice) -> Vec<Notice> {
        mentions(body)
            .into_iter()
            .map(|name| {
                let mut notice = base();
                notice.target = format!("@{name}");
                notice.body = Some(excerpt(body));
                notice
            })
            .collect()
    }

    /// The statements that tell of `event`, if anything; those that only keep this
    /// projection's own facts are added to `out` here.
    fn notices(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) -> Vec<Notice> {
        match event {
            Event::UserRegistered { user_id, username, .. } => {
                out.push(Statement::new(ADD_TARGET, [text(user_id), text(user_id)]));
                out.push(Statement::new(ADD_TARGET, [text(format!("@{username}")), text(user_id)]));
                vec![]
            }
            Event::VideoPublished { video_id, author_id, description, .. } => {
                out.push(Statement::new(ADD_TARGET, [text(video_id), text(author_id)]));
                Self::mentions(description, || Notice { video_id: Some(*video_id), ..Notice::new(Kind::Mentioned, "", Some(*author_id), video_id) })
            }
            Event::UserFollowed { follower_id, followee_id } => vec![Notice::new(Kind::Followed, followee_id, Some(*follower_id), followee_id)],
            Event::UserUnfollowed { follower_id, followee_id } => {
                self.withdraw(Kind::Followed, followee_id, *follower_id, followee_id, out);
                vec![]
            }
            Event::VideoLiked { video_id, user_id } | Event::VideoFavorited { video_id, user_id } => {
                let kind = if matches!(event, Event::VideoLiked { .. }) { Kind::VideoLiked } else { Kind::VideoFavorited };
                vec![Notice { video_id: Some(*video_id), ..Notice::new(kind, video_id, Some(*user_id), video_id) }]
            }
            Event::VideoUnliked { video_id, user_id } | Event::VideoUnfavorited { video_id, user_id } => {
                let kind = if matches!(event, Event::VideoUnliked { .. }) { Kind::VideoLiked } else { Kind::VideoFavorited };
                self.withdraw(kind, video_id, *user_id, video_id, out);
                vec![]
            }
            Event::CommentPosted { comment_id, video_id, author_id, parent_id, body } => {
                out.push(Statement::new(ADD_TARGET, [text(comment_id), text(author_id)]));
                let base = |kind: Kind, target: String| Notice {
                    video_id: Some(*video_id),
                    comment_id: Some(*comment_id),
                    body: Some(excerpt(body)),
                    ..Notice::new(kind, target, Some(*author_id), comment_id)
                };
                let mut notices = vec![match parent_id {
                    None => base(Kind::VideoCommented, video_id.to_string()),
                    Some(parent) => base(Kind::CommentReplied, parent.to_string()),
                }];
                notices.extend(Self::mentions(body, || base(Kind::Mentioned, String::new())));
                notices
            }
            Event::CommentLiked { comment_id, video_id, user_id } => vec![Notice {
                video_id: Some(*video_id),
                comment_id: Some(*comment_id),
                ..Notice::new(Kind::CommentLiked, comment_id, Some(*user_id), comment_id)
            }],
            Event::CommentUnliked { comment_id, user_id, .. } => {
                self.withdraw(Kind::CommentLiked, comment_id, *user_id, comment_id, out);
                vec![]
            }
            Event::CommentDeleted { comment_id, .. } => {
                out.extend(WITHDRAW_ABOUT.map(|sql| Statement::new(sql, [text(comment_id)])));
                vec![]
            }
            Event::ConversationStarted { conversation_id, created_by, member_ids, .. } => {
                // Known before its messages' mentions are applied (see `MessageSent`).
                out.push(Statement::new(ADD_TARGET, [text(format!("conversation:{conversation_id}")), text(created_by)]));
                for user_id in std::iter::once(created_by).chain(member_ids) {
                    out.push(Statement::new(ADD_MEMBER, [text(conversation_id), text(user_id)]));
                }
                vec![]
            }
            Event::ConversationMembersAdded { conversation_id, user_ids, .. } => {
                for user_id in user_ids {
                    out.push(Statement::new(ADD_MEMBER, [text(conversation_id), text(user_id)]));
                }
                vec![]
            }
            Event::ConversationMemberRemoved { conversation_id, user_id, .. } => {
                out.push(Statement::new(
                    "DELETE FROM notification_members WHERE conversation_id = $1 AND user_id = $2",
                    [text(conversation_id), text(user_id)],
                ));
                vec![]
            }
            Event::MessageSent { message_id, conversation_id, sender_id, body, .. } => {
                // Through Kafka a message may arrive before its conversation's start,
                // whose members it may mention: wait for it (the batch is retried).
                if !mentions(body).is_empty() {
                    out.push(Statement::new(REQUIRE_TARGET, [text(format!("conversation:{conversation_id}"))]));
                }
                Self::mentions(body, || Notice {
                    conversation_id: Some(*conversation_id),
                    message_id: Some(*message_id),
                    ..Notice::new(Kind::Mentioned, "", Some(*sender_id), message_id)
                })
            }
            Event::MessageDeleted { message_id, .. } => {
                out.extend(WITHDRAW_ABOUT.map(|sql| Statement::new(sql, [text(message_id)])));
                vec![]
            }
            Event::SystemNoticeSent { notice_id, user_id, text: body } => {
                vec![Notice { body: Some(body.clone()), ..Notice::new(Kind::System, user_id, None, notice_id) }]
            }
            Event::NotificationSettingsChanged { user_id, settings } => {
                for (kind, on) in settings {
                    out.push(Statement::new(
                        "INSERT INTO notification_settings (user_id, kind, enabled) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id, kind) DO UPDATE SET enabled = excluded.enabled",
                        [text(user_id), text(kind), int(i64::from(*on))],
                    ));
                }
                vec![]
            }
            Event::NotificationsRead { user_id, up_to: None } => {
                out.push(Statement::new(
                    "INSERT INTO notification_reads (user_id, read_position) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET read_position = excluded.read_position WHERE excluded.read_position > notification_reads.read_position",
                    [text(user_id), int(envelope.position as i64)],
                ));
                vec![]
            }
            Event::NotificationsRead { user_id, up_to: Some(id) } => {
                out.push(Statement::new(
                    "INSERT INTO notification_reads (user_id, read_position)
                     SELECT n.recipient_id, n.position FROM notifications n WHERE n.recipient_id = $1 AND n.id = $2
                     ON CONFLICT (user_id) DO UPDATE SET read_position = excluded.read_position WHERE excluded.read_position > notification_reads.read_position",
                    [text(user_id), int(*id)],
                ));
                vec![]
            }
            _ => vec![],
        }
    }
}

const ADD_TARGET: &str =
    "INSERT INTO notification_targets (id, owner_id) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET owner_id = excluded.owner_id";
const ADD_MEMBER: &str = "INSERT INTO notification_members (conversation_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";

impl Projection for NotificationsProjection {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn version(&self) -> u64 {
        2
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn carried_over(&self) -> &'static [&'static str] {
        &["notification_changes"]
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["notifications_by_recipient", "notification_actors_by_position"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        if envelope.position.is_multiple_of(TRIM_EVERY) {
            out.push(Statement::new(TRIM_CHANGES, [int(CHANGES_KEPT)]));
        }
        let notices = self.notices(event, envelope, out);
        let Some(actor) = notices.first().map(|notice| notice.actor) else { return };
        for notice in notices {
            self.notify(notice, envelope, out);
        }
        let position = int(envelope.position as i64);
        if let Some(actor) = actor {
            out.push(Statement::new(ADD_ACTOR, [position.clone(), text(actor)]));
        }
        // Subscribers hear of it once it is committed.
        out.push(Statement::new(LOG_CHANGE, [position]));
    }
}

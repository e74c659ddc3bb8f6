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
    // Only the keys are NOT NULL here: the statements below may write several rows, and
    // SQLite keeps a statement journal for such a statement when a constraint could
    // abort it half-way. Without the checks the like burst of `make bench` (section 8)
    // ran about 15 % faster.
    "CREATE TABLE IF NOT EXISTS notifications (
        recipient_id TEXT NOT NULL,
        id BIGINT NOT NULL,
        kind TEXT,
        group_key TEXT,
        video_id TEXT,
        comment_id TEXT,
        conversation_id TEXT,
        message_id TEXT,
        body TEXT,
        actor_count BIGINT,
        created_at BIGINT,
        updated_at BIGINT,
        position BIGINT,
        PRIMARY KEY (recipient_id, id)
    )",
    "CREATE INDEX IF NOT EXISTS notifications_by_group ON notifications (group_key, recipient_id, kind, position)",
    "CREATE INDEX IF NOT EXISTS notifications_by_recipient ON notifications (recipient_id, position)",
    "CREATE INDEX IF NOT EXISTS notifications_by_position ON notifications (position)",
    "CREATE TABLE IF NOT EXISTS notification_actors (
        recipient_id TEXT NOT NULL,
        notification_id BIGINT NOT NULL,
        actor_id TEXT NOT NULL,
        position BIGINT,
        PRIMARY KEY (recipient_id, notification_id, actor_id)
    )",
    "CREATE INDEX IF NOT EXISTS notification_actors_by_position ON notification_actors (recipient_id, notification_id, position)",
    "CREATE TABLE IF NOT EXISTS notification_changes (id BIGINT PRIMARY KEY, position BIGINT NOT NULL)",
];

/// Fails (a `NOT NULL` violation) unless target `$1` is known.
const REQUIRE_TARGET: &str = "INSERT INTO notification_missing_targets (target_id)
     SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM notification_targets WHERE id = $1)";

/// Opens a group for the owner of target `$1`, unless they are the actor `$2`, switched
/// kind `$3` off, cannot read conversation `$8`, or have an open group of the kind with
/// key `$4` already (`$13`: the oldest `updated_at` still open).
const OPEN_GROUP: &str = "INSERT INTO notifications
        (recipient_id, id, kind, group_key, video_id, comment_id, conversation_id, message_id, body, actor_count, created_at, updated_at, position)
     SELECT t.owner_id, CAST($5 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS TEXT),
            CAST($9 AS TEXT), CAST($10 AS TEXT), 0, CAST($11 AS BIGINT), CAST($11 AS BIGINT), CAST($12 AS BIGINT)
     FROM notification_targets t
     WHERE t.id = $1 AND t.owner_id <> $2
       AND NOT EXISTS (SELECT 1 FROM notification_settings s WHERE s.user_id = t.owner_id AND s.kind = $3 AND s.enabled = 0)
       AND (CAST($8 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM notification_members m WHERE m.conversation_id = $8 AND m.user_id = t.owner_id))
       AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.group_key = $4 AND n.recipient_id = t.owner_id AND n.kind = $3 AND n.updated_at >= $13
                         AND n.position > COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = t.owner_id), 0))";

/// Counts actor `$2` into the open group (kind `$3`, key `$4`) of the owner of target
/// `$1`, at `$5` (time) and `$6` (position); `$7`: the oldest `updated_at` still open.
const GROW_GROUP: &str = "UPDATE notifications SET actor_count = actor_count + 1, updated_at = $5, position = $6
     WHERE group_key = $4 AND recipient_id = (SELECT owner_id FROM notification_targets WHERE id = $1) AND recipient_id <> $2 AND kind = $3
       AND updated_at >= $7
       AND position > COALESCE((SELECT r.read_position FROM notification_reads r WHERE r.user_id = notifications.recipient_id), 0)
       AND NOT EXISTS (SELECT 1 FROM notification_settings s WHERE s.user_id = notifications.recipient_id AND s.kind = $3 AND s.enabled = 0)";

/// Lists actor `$2` in the group that [`GROW_GROUP`] just moved to position `$5`.
const ADD_ACTOR: &str = "INSERT INTO notification_actors (recipient_id, notification_id, actor_id, position)
     SELECT n.recipient_id, n.id, CAST($2 AS TEXT), CAST($5 AS BIGINT) FROM notifications n
     WHERE n.group_key = $4 AND n.recipient_id = (SELECT owner_id FROM notification_targets WHERE id = $1) AND n.kind = $3 AND n.position = $5
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
     WHERE EXISTS (SELECT 1 FROM notifications WHERE position = $1)";

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
        let window = i64::try_from(self.settings.group_window.as_micros()).unwrap_or(i64::MAX);
        // A notice that stands alone never finds an open group to join.
        let open_since = if notice.kind.grouped() { at.saturating_sub(window) } else { i64::MAX };
        let actor = notice.actor.map(|a| a.to_string()).unwrap_or_default();
        let kind = notice.kind.as_str();
        if notice.kind != Kind::Mentioned {
            out.push(Statement::new(REQUIRE_TARGET, [text(&notice.target)]));
        }
        out.push(Statement::new(
            OPEN_GROUP,
            [
                text(&notice.target),
                text(&actor),
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
                int(open_since),
            ],
        ));
        let open_since = if notice.kind.grouped() { open_since } else { at };
        out.push(Statement::new(
            GROW_GROUP,
            [text(&notice.target), text(&actor), text(kind), text(&notice.group_key), int(at), int(position), int(open_since)],
        ));
        if notice.actor.is_some() {
            out.push(Statement::new(ADD_ACTOR, [text(&notice.target), text(&actor), text(kind), text(&notice.group_key), int(position)]));
        }
    }

    fn withdraw(&self, kind: Kind, target: impl ToString, actor: Uuid, group_key: impl ToString, out: &mut Vec<Statement>) {
        let (target, actor, group_key) = (target.to_string(), actor.to_string(), group_key.to_string());
        let params = [text(&target), text(&actor), text(kind.as_str()), text(&group_key)];
        out.push(Statement::new(UNCOUNT_ACTOR, params.clone()));
        out.push(Statement::new(REMOVE_ACTOR, params));
        out.push(Statement::new(DROP_EMPTY, [text(&target), text(kind.as_str()), text(&group_key)]));
    }

    fn mentions(&self, body: &str, base: impl Fn() -> Notice, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        for name in mentions(body) {
            let mut notice = base();
            notice.target = format!("@{name}");
            notice.body = Some(excerpt(body));
            self.notify(notice, envelope, out);
        }
    }

    fn log_change(envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        out.push(Statement::new(LOG_CHANGE, [int(envelope.position as i64)]));
        out.push(Statement::new("DELETE FROM notification_changes WHERE id = (SELECT MAX(id) FROM notification_changes) - $1", [int(CHANGES_KEPT)]));
    }
}

const ADD_TARGET: &str =
    "INSERT INTO notification_targets (id, owner_id) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET owner_id = excluded.owner_id";

impl Projection for NotificationsProjection {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn carried_over(&self) -> &'static [&'static str] {
        &["notification_changes"]
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["notifications_by_recipient", "notifications_by_position", "notification_actors_by_position"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let before = out.len();
        match event {
            Event::UserRegistered { user_id, username, .. } => {
                out.push(Statement::new(ADD_TARGET, [text(user_id), text(user_id)]));
                out.push(Statement::new(ADD_TARGET, [text(format!("@{username}")), text(user_id)]));
                return;
            }
            Event::VideoPublished { video_id, author_id, description, .. } => {
                out.push(Statement::new(ADD_TARGET, [text(video_id), text(author_id)]));
                let base = || Notice { video_id: Some(*video_id), ..Notice::new(Kind::Mentioned, "", Some(*author_id), video_id) };
                self.mentions(description, base, envelope, out);
            }
            Event::UserFollowed { follower_id, followee_id } => {
                self.notify(Notice::new(Kind::Followed, followee_id, Some(*follower_id), followee_id), envelope, out);
            }
            Event::UserUnfollowed { follower_id, followee_id } => self.withdraw(Kind::Followed, followee_id, *follower_id, followee_id, out),
            Event::VideoLiked { video_id, user_id } | Event::VideoFavorited { video_id, user_id } => {
                let kind = if matches!(event, Event::VideoLiked { .. }) { Kind::VideoLiked } else { Kind::VideoFavorited };
                let notice = Notice { video_id: Some(*video_id), ..Notice::new(kind, video_id, Some(*user_id), video_id) };
                self.notify(notice, envelope, out);
            }
            Event::VideoUnliked { video_id, user_id } => self.withdraw(Kind::VideoLiked, video_id, *user_id, video_id, out),
            Event::VideoUnfavorited { video_id, user_id } => self.withdraw(Kind::VideoFavorited, video_id, *user_id, video_id, out),
            Event::CommentPosted { comment_id, video_id, author_id, parent_id, body } => {
                out.push(Statement::new(ADD_TARGET, [text(comment_id), text(author_id)]));
                let base = |kind: Kind, target: String| Notice {
                    video_id: Some(*video_id),
                    comment_id: Some(*comment_id),
                    body: Some(excerpt(body)),
                    ..Notice::new(kind, target, Some(*author_id), comment_id)
                };
                match parent_id {
                    None => self.notify(base(Kind::VideoCommented, video_id.to_string()), envelope, out),
                    Some(parent) => self.notify(base(Kind::CommentReplied, parent.to_string()), envelope, out),
                }
                self.mentions(body, || base(Kind::Mentioned, String::new()), envelope, out);
            }
            Event::CommentLiked { comment_id, video_id, user_id } => {
                let notice = Notice {
                    video_id: Some(*video_id),
                    comment_id: Some(*comment_id),
                    ..Notice::new(Kind::CommentLiked, comment_id, Some(*user_id), comment_id)
                };
                self.notify(notice, envelope, out);
            }
            Event::CommentUnliked { comment_id, user_id, .. } => self.withdraw(Kind::CommentLiked, comment_id, *user_id, comment_id, out),
            Event::CommentDeleted { comment_id, .. } => out.extend(WITHDRAW_ABOUT.map(|sql| Statement::new(sql, [text(comment_id)]))),
            Event::ConversationStarted { conversation_id, created_by, member_ids, .. } => {
                // Known before its messages' mentions are applied (see `MessageSent`).
                out.push(Statement::new(ADD_TARGET, [text(format!("conversation:{conversation_id}")), text(created_by)]));
                for user_id in std::iter::once(created_by).chain(member_ids) {
                    out.push(Statement::new(
                        "INSERT INTO notification_members (conversation_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        [text(conversation_id), text(user_id)],
                    ));
                }
            }
            Event::ConversationMembersAdded { conversation_id, user_ids, .. } => {
                for user_id in user_ids {
                    out.push(Statement::new(
                        "INSERT INTO notification_members (conversation_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        [text(conversation_id), text(user_id)],
                    ));
                }
            }
            Event::ConversationMemberRemoved { conversation_id, user_id, .. } => out.push(Statement::new(
                "DELETE FROM notification_members WHERE conversation_id = $1 AND user_id = $2",
                [text(conversation_id), text(user_id)],
            )),
            Event::MessageSent { message_id, conversation_id, sender_id, body, .. } => {
                // Through Kafka a message may arrive before its conversation's start,
                // whose members it may mention: wait for it (the batch is retried).
                if !mentions(body).is_empty() {
                    out.push(Statement::new(REQUIRE_TARGET, [text(format!("conversation:{conversation_id}"))]));
                }
                let base = || Notice {
                    conversation_id: Some(*conversation_id),
                    message_id: Some(*message_id),
                    ..Notice::new(Kind::Mentioned, "", Some(*sender_id), message_id)
                };
                self.mentions(body, base, envelope, out);
            }
            Event::MessageDeleted { message_id, .. } => out.extend(WITHDRAW_ABOUT.map(|sql| Statement::new(sql, [text(message_id)]))),
            Event::SystemNoticeSent { notice_id, user_id, text: body } => {
                let notice = Notice { body: Some(body.clone()), ..Notice::new(Kind::System, user_id, None, notice_id) };
                self.notify(notice, envelope, out);
            }
            Event::NotificationSettingsChanged { user_id, settings } => {
                for (kind, on) in settings {
                    out.push(Statement::new(
                        "INSERT INTO notification_settings (user_id, kind, enabled) VALUES ($1, $2, $3)
                         ON CONFLICT (user_id, kind) DO UPDATE SET enabled = excluded.enabled",
                        [text(user_id), text(kind), int(i64::from(*on))],
                    ));
                }
                return;
            }
            Event::NotificationsRead { user_id, up_to: None } => {
                out.push(Statement::new(
                    "INSERT INTO notification_reads (user_id, read_position) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET read_position = excluded.read_position WHERE excluded.read_position > notification_reads.read_position",
                    [text(user_id), int(envelope.position as i64)],
                ));
                return;
            }
            Event::NotificationsRead { user_id, up_to: Some(id) } => {
                out.push(Statement::new(
                    "INSERT INTO notification_reads (user_id, read_position)
                     SELECT n.recipient_id, n.position FROM notifications n WHERE n.recipient_id = $1 AND n.id = $2
                     ON CONFLICT (user_id) DO UPDATE SET read_position = excluded.read_position WHERE excluded.read_position > notification_reads.read_position",
                    [text(user_id), int(*id)],
                ));
                return;
            }
            _ => return,
        }
        if out.len() > before {
            Self::log_change(envelope, out);
        }
    }
}

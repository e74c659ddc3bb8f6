//! The `conversations` read model: conversations and their members, messages with their
//! edits and deletions, and each member's read marker.
//!
//! Each table is written by one stream's events, or by upserts that only move a value
//! up, so any interleaving of streams (Kafka) gives the same rows:
//! - `conversations`, `conversation_members`: the conversation's stream;
//! - `messages`, `conversation_activity` (last seq, last message): the messages stream;
//! - `message_changes` (edited body, deletion): the message's own stream;
//! - `conversation_reads`: the read marker's stream, the member's own messages and the
//!   seq a member joined at, each only ever moving `read_seq` forward.
//!
//! A member's unread count is `last_seq - read_seq`: a message costs one row, however
//! many members its conversation has.
//!
//! `conversation_changes` logs what subscribers hear of (messages sent, edited and
//! deleted, read markers, membership), numbered 1, 2, 3, ... in commit order (applies
//! of a projection are serialised: one writer for SQLite, an advisory lock per
//! projection through Kafka). Each read API tails it (`plaza_read_api::hub`); the
//! newest [`CHANGES_KEPT`] are kept. It is news, not history: a rebuild writes none of
//! it, and the new generation takes the live one's log when it switches over
//! ([`Projection::carried_over`]), so the numbers subscribers hold stay valid.

use plaza_domain::{Event, RecordedEvent};

use crate::{Projection, SqlValue, Statement};

pub struct ConversationsProjection;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        created_by TEXT NOT NULL,
        member_count BIGINT NOT NULL,
        position BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS conversation_members (
        conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    )",
    "CREATE INDEX IF NOT EXISTS conversation_members_by_user ON conversation_members (user_id)",
    "CREATE TABLE IF NOT EXISTS conversation_activity (
        conversation_id TEXT PRIMARY KEY,
        last_seq BIGINT NOT NULL,
        last_message_id TEXT NOT NULL,
        last_position BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS conversation_reads (
        conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        read_seq BIGINT NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    )",
    "CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        sender_id TEXT NOT NULL,
        body TEXT NOT NULL,
        reply_to TEXT,
        attachment_url TEXT,
        position BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_seq ON messages (conversation_id, seq)",
    "CREATE TABLE IF NOT EXISTS conversation_changes (
        id BIGINT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        seq BIGINT NOT NULL,
        message_id TEXT,
        user_ids TEXT NOT NULL,
        detail TEXT NOT NULL,
        position BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS message_changes (
        message_id TEXT PRIMARY KEY,
        body TEXT,
        edited_at BIGINT,
        deleted BIGINT NOT NULL DEFAULT 0
    )",
];

/// Moves a member's read marker up to `$3`, never down.
const READ_UP_TO: &str = "INSERT INTO conversation_reads (conversation_id, user_id, read_seq) VALUES ($1, $2, $3)
     ON CONFLICT (conversation_id, user_id) DO UPDATE SET read_seq = excluded.read_seq WHERE excluded.read_seq > conversation_reads.read_seq";

const ADD_MEMBER: &str = "INSERT INTO conversation_members (conversation_id, user_id, role, position) VALUES ($1, $2, $3, $4)
     ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, position = excluded.position";

/// Where a message is: `(conversation_id, seq)` of message `$1`.
pub const LOCATE_MESSAGE: &str = "SELECT conversation_id, seq FROM messages WHERE id = $1";

/// Changes kept in `conversation_changes` (a read API that falls further behind starts
/// over from the newest; its subscribers resume with `afterSeq`).
pub const CHANGES_KEPT: i64 = 100_000;

/// What a change is, in `conversation_changes.kind`.
pub mod change {
    pub const SENT: &str = "sent";
    pub const EDITED: &str = "edited";
    pub const DELETED: &str = "deleted";
    pub const READ: &str = "read";
    pub const ADDED: &str = "added";
    pub const REMOVED: &str = "removed";
    pub const ROLE: &str = "role";
    pub const UPDATED: &str = "updated";
}

/// A change for subscribers; `user_ids` space-separated.
struct Change<'a> {
    conversation_id: &'a uuid::Uuid,
    kind: &'static str,
    seq: u64,
    message_id: Option<&'a uuid::Uuid>,
    user_ids: String,
    detail: &'a str,
}

impl Change<'_> {
    fn log(self, out: &mut Vec<Statement>, position: &SqlValue) {
        out.push(Statement::new(
            "INSERT INTO conversation_changes (id, conversation_id, kind, seq, message_id, user_ids, detail, position)
             SELECT COALESCE(MAX(id), 0) + 1, CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS BIGINT)
             FROM conversation_changes",
            [
                text(self.conversation_id),
                text(self.kind),
                SqlValue::Int(self.seq as i64),
                self.message_id.map_or(SqlValue::Null, text),
                text(self.user_ids),
                text(self.detail),
                position.clone(),
            ],
        ));
        // Every change pushes the one CHANGES_KEPT before it out: one row found by its
        // key (a range from the oldest would walk the deleted rows' index entries each
        // time until PostgreSQL vacuums them).
        out.push(Statement::new(
            "DELETE FROM conversation_changes WHERE id = (SELECT MAX(id) FROM conversation_changes) - $1",
            [SqlValue::Int(CHANGES_KEPT)],
        ));
    }
}

fn joined(user_ids: &[uuid::Uuid]) -> String {
    user_ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

fn text(value: impl ToString) -> SqlValue {
    SqlValue::Text(value.to_string())
}

impl Projection for ConversationsProjection {
    fn name(&self) -> &'static str {
        "conversations"
    }

    fn version(&self) -> u64 {
        1
    }

    fn schema(&self) -> &'static [&'static str] {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static [&'static str] {
        &["conversation_members_by_user"]
    }

    fn carried_over(&self) -> &'static [&'static str] {
        &["conversation_changes"]
    }

    fn apply(&self, event: &Event, envelope: &RecordedEvent, out: &mut Vec<Statement>) {
        let position = SqlValue::Int(envelope.position as i64);
        let at = SqlValue::Int(envelope.occurred_at.timestamp_micros());
        match event {
            Event::ConversationStarted { conversation_id, kind, title, description, created_by, member_ids } => {
                let id = text(conversation_id);
                out.push(Statement::new(
                    "INSERT INTO conversations (id, kind, title, description, created_by, member_count, position, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                    [
                        id.clone(),
                        text(kind.as_str()),
                        text(title),
                        text(description),
                        text(created_by),
                        SqlValue::Int(member_ids.len() as i64 + 1),
                        position.clone(),
                        at,
                    ],
                ));
                let creator_role = if *kind == plaza_domain::conversations::Kind::Group { "owner" } else { "member" };
                out.push(Statement::new(ADD_MEMBER, [id.clone(), text(created_by), text(creator_role), position.clone()]));
                for member in member_ids {
                    out.push(Statement::new(ADD_MEMBER, [id.clone(), text(member), text("member"), position.clone()]));
                }
                let everyone: Vec<uuid::Uuid> = std::iter::once(*created_by).chain(member_ids.iter().copied()).collect();
                Change { conversation_id, kind: change::ADDED, seq: 0, message_id: None, user_ids: joined(&everyone), detail: "" }
                    .log(out, &position);
            }
            Event::ConversationUpdated { conversation_id, title, description, updated_by } => {
                out.push(Statement::new(
                    "UPDATE conversations SET title = $2, description = $3 WHERE id = $1",
                    [text(conversation_id), text(title), text(description)],
                ));
                Change { conversation_id, kind: change::UPDATED, seq: 0, message_id: None, user_ids: updated_by.to_string(), detail: "" }
                    .log(out, &position);
            }
            Event::ConversationMembersAdded { conversation_id, user_ids, seq, .. } => {
                let id = text(conversation_id);
                out.push(Statement::new(
                    "UPDATE conversations SET member_count = member_count + $2 WHERE id = $1",
                    [id.clone(), SqlValue::Int(user_ids.len() as i64)],
                ));
                for user in user_ids {
                    out.push(Statement::new(ADD_MEMBER, [id.clone(), text(user), text("member"), position.clone()]));
                    // Unread counts start after the messages sent before they joined.
                    out.push(Statement::new(READ_UP_TO, [id.clone(), text(user), SqlValue::Int(*seq as i64)]));
                }
                Change { conversation_id, kind: change::ADDED, seq: *seq, message_id: None, user_ids: joined(user_ids), detail: "" }
                    .log(out, &position);
            }
            Event::ConversationMemberRemoved { conversation_id, user_id, .. } => {
                out.extend([
                    Statement::new("UPDATE conversations SET member_count = member_count - 1 WHERE id = $1", [text(conversation_id)]),
                    Statement::new(
                        "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                        [text(conversation_id), text(user_id)],
                    ),
                ]);
                Change { conversation_id, kind: change::REMOVED, seq: 0, message_id: None, user_ids: user_id.to_string(), detail: "" }
                    .log(out, &position);
            }
            Event::ConversationRoleChanged { conversation_id, user_id, role, .. } => {
                out.push(Statement::new(
                    "UPDATE conversation_members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
                    [text(conversation_id), text(user_id), text(role.as_str())],
                ));
                Change { conversation_id, kind: change::ROLE, seq: 0, message_id: None, user_ids: user_id.to_string(), detail: role.as_str() }
                    .log(out, &position);
            }
            Event::MessageSent { message_id, conversation_id, sender_id, body, reply_to, attachment_url } => {
                let seq = SqlValue::Int(envelope.version as i64 + 1);
                let optional = |value: Option<String>| value.map_or(SqlValue::Null, SqlValue::Text);
                out.extend([
                    Statement::new(
                        "INSERT INTO messages (id, conversation_id, seq, sender_id, body, reply_to, attachment_url, position, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                        [
                            text(message_id),
                            text(conversation_id),
                            seq.clone(),
                            text(sender_id),
                            text(body),
                            optional(reply_to.map(|id| id.to_string())),
                            optional(attachment_url.clone()),
                            position.clone(),
                            at,
                        ],
                    ),
                    Statement::new(
                        "INSERT INTO conversation_activity (conversation_id, last_seq, last_message_id, last_position) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (conversation_id) DO UPDATE SET last_seq = excluded.last_seq, last_message_id = excluded.last_message_id,
                             last_position = excluded.last_position
                         WHERE excluded.last_seq > conversation_activity.last_seq",
                        [text(conversation_id), seq.clone(), text(message_id), position.clone()],
                    ),
                    // Your own message is read.
                    Statement::new(READ_UP_TO, [text(conversation_id), text(sender_id), seq]),
                ]);
                Change {
                    conversation_id,
                    kind: change::SENT,
                    seq: envelope.version + 1,
                    message_id: Some(message_id),
                    user_ids: sender_id.to_string(),
                    detail: "",
                }
                .log(out, &position);
            }
            Event::MessageEdited { message_id, conversation_id, seq, body } => {
                out.push(Statement::new(
                    "INSERT INTO message_changes (message_id, body, edited_at) VALUES ($1, $2, $3)
                     ON CONFLICT (message_id) DO UPDATE SET body = excluded.body, edited_at = excluded.edited_at",
                    [text(message_id), text(body), at],
                ));
                Change { conversation_id, kind: change::EDITED, seq: *seq, message_id: Some(message_id), user_ids: String::new(), detail: "" }
                    .log(out, &position);
            }
            Event::MessageDeleted { message_id, conversation_id, seq, deleted_by } => {
                Change {
                    conversation_id,
                    kind: change::DELETED,
                    seq: *seq,
                    message_id: Some(message_id),
                    user_ids: deleted_by.to_string(),
                    detail: "",
                }
                .log(out, &position);
                out.extend([
                    Statement::new(
                        "INSERT INTO message_changes (message_id, body, deleted) VALUES ($1, NULL, 1)
                     ON CONFLICT (message_id) DO UPDATE SET body = NULL, deleted = 1",
                        [text(message_id)],
                    ),
                    // The read model keeps no deleted text (if the message arrives later, its
                    // body stays hidden by `message_changes`).
                    Statement::new("UPDATE messages SET body = '' WHERE id = $1", [text(message_id)]),
                ]);
            }
            Event::ConversationRead { conversation_id, user_id, seq } => {
                out.push(Statement::new(READ_UP_TO, [text(conversation_id), text(user_id), SqlValue::Int(*seq as i64)]));
                Change { conversation_id, kind: change::READ, seq: *seq, message_id: None, user_ids: user_id.to_string(), detail: "" }
                    .log(out, &position);
            }
            _ => {}
        }
    }
}

//! Conversations: direct (two people, one conversation per pair) and group (roles
//! owner, admin, member), their messages and each member's read marker.
//!
//! Streams:
//! - `conversation-{id}`: who is in it, with which role, and its title and description;
//! - `conversation-{id}-messages`: one `MessageSent` per message, nothing else, so the
//!   stream's version + 1 is the message's `seq` (1, 2, 3, ... without gaps);
//! - `message-{id}`: the message's edits and its deletion;
//! - `read-{conversation}-{user}`: how far the member has read.
//!
//! A message is one event whatever the group's size: unread counts come from the last
//! seq and the member's read marker, never from a row per member per message.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::accounts::is_web_url;
use crate::text::{self, Lines};
use crate::{Aggregate, DomainError, Event};

pub fn conversation_stream(conversation_id: Uuid) -> String {
    format!("conversation-{conversation_id}")
}

pub fn messages_stream(conversation_id: Uuid) -> String {
    format!("conversation-{conversation_id}-messages")
}

pub fn message_stream(message_id: Uuid) -> String {
    format!("message-{message_id}")
}

pub fn read_marker_stream(conversation_id: Uuid, user_id: Uuid) -> String {
    format!("read-{conversation_id}-{user_id}")
}

const DIRECT_NAMESPACE: Uuid = Uuid::from_u128(0x5b0e_2c61_93a4_4d7e_8f19_c0d2_47e6_a3b5);

/// The one direct conversation of two people, whoever starts it.
pub fn direct_conversation_id(a: Uuid, b: Uuid) -> Uuid {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    Uuid::new_v5(&DIRECT_NAMESPACE, format!("{low}\n{high}").as_bytes())
}

pub const MAX_TITLE: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
pub const MAX_BODY: usize = 4000;
/// Users one request may add to a group.
pub const MAX_ADDED_AT_ONCE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Direct,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match input {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(DomainError::InvalidConversation("role must be owner, admin or member")),
        }
    }

    fn manages(self) -> bool {
        self >= Self::Admin
    }
}

/// A group's title: 1 to 100 characters on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match text::clean(input, Lines::One) {
            Some(title) if !title.is_empty() && title.chars().count() <= MAX_TITLE => Ok(Self(title)),
            _ => Err(DomainError::InvalidConversation("title must be 1 to 100 characters on one line, without control characters")),
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A group's description: at most 1,000 characters (may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match text::clean(input, Lines::Many) {
            Some(description) if description.chars().count() <= MAX_DESCRIPTION => Ok(Self(description)),
            _ => Err(DomainError::InvalidConversation("description must be at most 1000 characters, without control characters")),
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A message's text: 1 to 4,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);

impl Body {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match text::clean(input, Lines::Many) {
            Some(body) if !body.is_empty() && body.chars().count() <= MAX_BODY => Ok(Self(body)),
            _ => Err(DomainError::InvalidMessage("body must be 1 to 4000 characters, without control characters")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An attachment's address: an http(s) URL.
pub fn attachment_url(input: &str) -> Result<String, DomainError> {
    let url = input.trim();
    if !is_web_url(url) {
        return Err(DomainError::InvalidMessage("attachment_url must be an http(s) URL of at most 2048 characters"));
    }
    Ok(url.to_owned())
}

/// A conversation as its own stream folds it: kind, members and roles, title.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Option<Uuid>,
    pub kind: Kind,
    pub title: String,
    pub description: String,
    pub members: BTreeMap<Uuid, Role>,
}

impl Conversation {
    /// The member's role; `conversation_not_found` for anyone else, so a non-member
    /// learns nothing of the conversation.
    pub fn role_of(&self, user_id: Uuid) -> Result<Role, DomainError> {
        self.members.get(&user_id).copied().ok_or(DomainError::ConversationNotFound)
    }

    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    fn managed_by(&self, actor: Uuid) -> Result<(), DomainError> {
        if self.role_of(actor)?.manages() { Ok(()) } else { Err(DomainError::NotAllowed("only the group's owner or an admin may do this")) }
    }

    fn group(&self) -> Result<Uuid, DomainError> {
        let id = self.id.ok_or(DomainError::ConversationNotFound)?;
        match self.kind {
            Kind::Group => Ok(id),
            Kind::Direct => Err(DomainError::InvalidConversation("a direct conversation has two members, no title and no roles")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationCommand {
    /// Starts a direct conversation: nothing when the pair already has one.
    StartDirect {
        conversation_id: Uuid,
        user_id: Uuid,
        other_id: Uuid,
    },
    /// Starts a group; `member_ids` must exist (checked by the caller) and exclude the
    /// creator, who becomes its owner.
    StartGroup {
        conversation_id: Uuid,
        created_by: Uuid,
        title: Title,
        description: Description,
        member_ids: Vec<Uuid>,
        max_members: usize,
    },
    Update {
        actor: Uuid,
        title: Option<Title>,
        description: Option<Description>,
    },
    /// Adds users (who exist) as members; `seq` is the conversation's last message seq,
    /// where their unread count starts.
    AddMembers {
        actor: Uuid,
        user_ids: Vec<Uuid>,
        max_members: usize,
        seq: u64,
    },
    /// Removes a member; a member may remove themselves (leave).
    RemoveMember {
        actor: Uuid,
        user_id: Uuid,
    },
    SetRole {
        actor: Uuid,
        user_id: Uuid,
        role: Role,
    },
}

impl Aggregate for Conversation {
    type Command = ConversationCommand;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::ConversationStarted { conversation_id, kind, title, description, created_by, member_ids } => {
                self.id = Some(*conversation_id);
                self.kind = *kind;
                self.title.clone_from(title);
                self.description.clone_from(description);
                let creator_role = if *kind == Kind::Group { Role::Owner } else { Role::Member };
                self.members.insert(*created_by, creator_role);
                self.members.extend(member_ids.iter().map(|id| (*id, Role::Member)));
            }
            Event::ConversationUpdated { title, description, .. } => {
                self.title.clone_from(title);
                self.description.clone_from(description);
            }
            Event::ConversationMembersAdded { user_ids, .. } => self.members.extend(user_ids.iter().map(|id| (*id, Role::Member))),
            Event::ConversationMemberRemoved { user_id, .. } => {
                self.members.remove(user_id);
            }
            Event::ConversationRoleChanged { user_id, role, .. } => {
                if let Some(current) = self.members.get_mut(user_id) {
                    *current = *role;
                }
            }
            _ => {}
        }
        self
    }

    fn decide(&self, command: &ConversationCommand) -> Result<Vec<Event>, DomainError> {
        match command {
            ConversationCommand::StartDirect { conversation_id, user_id, other_id } => {
                if user_id == other_id {
                    return Err(DomainError::InvalidConversation("a direct conversation is with someone else"));
                }
                if self.exists() {
                    return Ok(vec![]);
                }
                Ok(vec![Event::ConversationStarted {
                    conversation_id: *conversation_id,
                    kind: Kind::Direct,
                    title: String::new(),
                    description: String::new(),
                    created_by: *user_id,
                    member_ids: vec![*other_id],
                }])
            }
            ConversationCommand::StartGroup { conversation_id, created_by, title, description, member_ids, max_members } => {
                if self.exists() {
                    // Only a repeated request (same derived id) gets here.
                    return Ok(vec![]);
                }
                let mut members: Vec<Uuid> = Vec::with_capacity(member_ids.len());
                for id in member_ids {
                    if id != created_by && !members.contains(id) {
                        members.push(*id);
                    }
                }
                if members.len() + 1 > *max_members {
                    return Err(DomainError::GroupFull);
                }
                Ok(vec![Event::ConversationStarted {
                    conversation_id: *conversation_id,
                    kind: Kind::Group,
                    title: title.0.clone(),
                    description: description.0.clone(),
                    created_by: *created_by,
                    member_ids: members,
                }])
            }
            ConversationCommand::Update { actor, title, description } => {
                let conversation_id = self.id.ok_or(DomainError::ConversationNotFound)?;
                self.role_of(*actor)?;
                self.group()?;
                self.managed_by(*actor)?;
                let title = title.as_ref().map_or_else(|| self.title.clone(), |t| t.0.clone());
                let description = description.as_ref().map_or_else(|| self.description.clone(), |d| d.0.clone());
                if title == self.title && description == self.description {
                    return Ok(vec![]);
                }
                Ok(vec![Event::ConversationUpdated { conversation_id, title, description, updated_by: *actor }])
            }
            ConversationCommand::AddMembers { actor, user_ids, max_members, seq } => {
                self.role_of(*actor)?;
                let conversation_id = self.group()?;
                self.managed_by(*actor)?;
                let mut added: Vec<Uuid> = Vec::with_capacity(user_ids.len());
                for id in user_ids {
                    if self.members.contains_key(id) {
                        return Err(DomainError::AlreadyMember);
                    }
                    if !added.contains(id) {
                        added.push(*id);
                    }
                }
                if added.is_empty() {
                    return Err(DomainError::InvalidConversation("user_ids must name at least one user"));
                }
                if self.members.len() + added.len() > *max_members {
                    return Err(DomainError::GroupFull);
                }
                Ok(vec![Event::ConversationMembersAdded { conversation_id, user_ids: added, added_by: *actor, seq: *seq }])
            }
            ConversationCommand::RemoveMember { actor, user_id } => {
                let actor_role = self.role_of(*actor)?;
                let conversation_id = self.group()?;
                let Some(role) = self.members.get(user_id).copied() else { return Err(DomainError::NotMember) };
                if actor == user_id {
                    if role == Role::Owner {
                        return Err(DomainError::NotAllowed("the owner leaves only after making another member owner"));
                    }
                } else if !actor_role.manages() || role >= actor_role {
                    return Err(DomainError::NotAllowed("only the owner removes admins; owners and admins remove members"));
                }
                Ok(vec![Event::ConversationMemberRemoved { conversation_id, user_id: *user_id, removed_by: *actor }])
            }
            ConversationCommand::SetRole { actor, user_id, role } => {
                let actor_role = self.role_of(*actor)?;
                let conversation_id = self.group()?;
                if actor_role != Role::Owner {
                    return Err(DomainError::NotAllowed("only the group's owner changes roles"));
                }
                let Some(current) = self.members.get(user_id).copied() else { return Err(DomainError::NotMember) };
                if actor == user_id {
                    return match role {
                        Role::Owner => Ok(vec![]),
                        _ => Err(DomainError::InvalidConversation("the owner hands ownership over by making another member owner")),
                    };
                }
                if current == *role {
                    return Ok(vec![]);
                }
                let changed = |user_id: Uuid, role: Role| Event::ConversationRoleChanged { conversation_id, user_id, role, changed_by: *actor };
                Ok(match role {
                    // One owner at a time: the old owner stays on as an admin.
                    Role::Owner => vec![changed(*user_id, Role::Owner), changed(*actor, Role::Admin)],
                    _ => vec![changed(*user_id, *role)],
                })
            }
        }
    }
}

/// A stored message, as its `MessageSent` event holds it: what edits and deletions are
/// decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: u64,
    pub sender_id: Uuid,
    pub sent_at: DateTime<Utc>,
}

/// A message's edits and deletion (its `message-{id}` stream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageChanges {
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageCommand {
    /// `role` is the actor's role in the conversation now (the caller checked they are
    /// a member).
    Edit {
        message: SentMessage,
        actor: Uuid,
        body: Body,
        now: DateTime<Utc>,
        window: Duration,
    },
    Delete {
        message: SentMessage,
        actor: Uuid,
        role: Role,
        kind: Kind,
    },
}

impl Aggregate for MessageChanges {
    type Command = MessageCommand;

    fn evolve(mut self, event: &Event) -> Self {
        if let Event::MessageDeleted { .. } = event {
            self.deleted = true;
        }
        self
    }

    fn decide(&self, command: &MessageCommand) -> Result<Vec<Event>, DomainError> {
        if self.deleted {
            return Err(DomainError::MessageNotFound);
        }
        match command {
            MessageCommand::Edit { message, actor, body, now, window } => {
                if *actor != message.sender_id {
                    return Err(DomainError::NotAllowed("only the sender edits a message"));
                }
                if *now - message.sent_at > *window {
                    return Err(DomainError::EditWindowPassed);
                }
                Ok(vec![Event::MessageEdited {
                    message_id: message.message_id,
                    conversation_id: message.conversation_id,
                    seq: message.seq,
                    body: body.0.clone(),
                }])
            }
            MessageCommand::Delete { message, actor, role, kind } => {
                let moderator = *kind == Kind::Group && role.manages();
                if *actor != message.sender_id && !moderator {
                    return Err(DomainError::NotAllowed("only the sender, or a group's owner or admin, deletes a message"));
                }
                Ok(vec![Event::MessageDeleted {
                    message_id: message.message_id,
                    conversation_id: message.conversation_id,
                    seq: message.seq,
                    deleted_by: *actor,
                }])
            }
        }
    }
}

/// How far a member has read a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    pub seq: u64,
}

/// Moves the marker to `seq` (`last_seq`: the conversation's newest message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkRead {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    pub seq: u64,
    pub last_seq: u64,
}

impl Aggregate for ReadMarker {
    type Command = MarkRead;

    fn evolve(mut self, event: &Event) -> Self {
        if let Event::ConversationRead { seq, .. } = event {
            self.seq = self.seq.max(*seq);
        }
        self
    }

    fn decide(&self, command: &MarkRead) -> Result<Vec<Event>, DomainError> {
        if command.seq > command.last_seq {
            return Err(DomainError::InvalidConversation("seq is beyond the conversation's last message"));
        }
        if command.seq <= self.seq {
            return Ok(vec![]);
        }
        Ok(vec![Event::ConversationRead { conversation_id: command.conversation_id, user_id: command.user_id, seq: command.seq }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    fn ids() -> (Uuid, Uuid, Uuid, Uuid) {
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7())
    }

    fn group(conversation_id: Uuid, owner: Uuid, members: &[Uuid]) -> Event {
        Event::ConversationStarted {
            conversation_id,
            kind: Kind::Group,
            title: "g".into(),
            description: String::new(),
            created_by: owner,
            member_ids: members.to_vec(),
        }
    }

    #[test]
    fn direct_conversations_are_one_per_pair() {
        let (a, b, _, _) = ids();
        assert_eq!(direct_conversation_id(a, b), direct_conversation_id(b, a));
        let id = direct_conversation_id(a, b);
        let start = ConversationCommand::StartDirect { conversation_id: id, user_id: a, other_id: b };
        let events = given::<Conversation>(&[], start).unwrap();
        assert_eq!(events.len(), 1);
        let again = ConversationCommand::StartDirect { conversation_id: id, user_id: b, other_id: a };
        assert_eq!(given::<Conversation>(&events, again), Ok(vec![]));
        let alone = ConversationCommand::StartDirect { conversation_id: id, user_id: a, other_id: a };
        assert!(matches!(given::<Conversation>(&[], alone), Err(DomainError::InvalidConversation(_))));
    }

    #[test]
    fn roles_decide_who_manages_a_group() {
        let (id, owner, admin, member) = ids();
        let outsider = Uuid::now_v7();
        let history = [
            group(id, owner, &[admin, member]),
            Event::ConversationRoleChanged { conversation_id: id, user_id: admin, role: Role::Admin, changed_by: owner },
        ];
        let add = |actor| ConversationCommand::AddMembers { actor, user_ids: vec![outsider], max_members: 10, seq: 0 };
        assert!(given::<Conversation>(&history, add(admin)).is_ok());
        assert_eq!(given::<Conversation>(&history, add(member)), Err(DomainError::NotAllowed("only the group's owner or an admin may do this")));
        assert_eq!(given::<Conversation>(&history, add(outsider)), Err(DomainError::ConversationNotFound));
        let full = ConversationCommand::AddMembers { actor: owner, user_ids: vec![outsider], max_members: 3, seq: 0 };
        assert_eq!(given::<Conversation>(&history, full), Err(DomainError::GroupFull));
        let again = ConversationCommand::AddMembers { actor: owner, user_ids: vec![member], max_members: 10, seq: 0 };
        assert_eq!(given::<Conversation>(&history, again), Err(DomainError::AlreadyMember));

        let remove = |actor, user_id| ConversationCommand::RemoveMember { actor, user_id };
        assert!(given::<Conversation>(&history, remove(admin, member)).is_ok(), "admins remove members");
        assert!(given::<Conversation>(&history, remove(admin, owner)).is_err(), "not the owner");
        assert!(given::<Conversation>(&history, remove(member, admin)).is_err());
        assert!(given::<Conversation>(&history, remove(member, member)).is_ok(), "anyone leaves");
        assert!(given::<Conversation>(&history, remove(owner, owner)).is_err(), "the owner hands over first");
        assert_eq!(given::<Conversation>(&history, remove(owner, outsider)), Err(DomainError::NotMember));

        let handover = ConversationCommand::SetRole { actor: owner, user_id: member, role: Role::Owner };
        let events = given::<Conversation>(&history, handover).unwrap();
        let after = Conversation::replay(history.iter().chain(&events));
        assert_eq!((after.members[&member], after.members[&owner]), (Role::Owner, Role::Admin));
        let by_admin = ConversationCommand::SetRole { actor: admin, user_id: member, role: Role::Admin };
        assert!(given::<Conversation>(&history, by_admin).is_err(), "only the owner sets roles");
    }

    #[test]
    fn only_senders_edit_in_time_and_moderators_delete() {
        let (id, sender, admin, other) = ids();
        let sent_at = Utc::now();
        let message = SentMessage { message_id: Uuid::now_v7(), conversation_id: id, seq: 1, sender_id: sender, sent_at };
        let body = Body::parse("fixed").unwrap();
        let edit = |actor, now| MessageCommand::Edit { message: message.clone(), actor, body: body.clone(), now, window: Duration::seconds(900) };
        assert!(given::<MessageChanges>(&[], edit(sender, sent_at + Duration::seconds(899))).is_ok());
        assert_eq!(given::<MessageChanges>(&[], edit(sender, sent_at + Duration::seconds(901))), Err(DomainError::EditWindowPassed));
        assert!(given::<MessageChanges>(&[], edit(other, sent_at)).is_err());
        let delete = |actor, role, kind| MessageCommand::Delete { message: message.clone(), actor, role, kind };
        assert!(given::<MessageChanges>(&[], delete(admin, Role::Admin, Kind::Group)).is_ok());
        assert!(given::<MessageChanges>(&[], delete(other, Role::Member, Kind::Group)).is_err());
        let deleted = given::<MessageChanges>(&[], delete(sender, Role::Member, Kind::Direct)).unwrap();
        assert_eq!(given::<MessageChanges>(&deleted, edit(sender, sent_at)), Err(DomainError::MessageNotFound));
    }

    #[test]
    fn read_markers_only_move_forward() {
        let (id, user, _, _) = ids();
        let mark = |seq| MarkRead { conversation_id: id, user_id: user, seq, last_seq: 10 };
        let history = given::<ReadMarker>(&[], mark(5)).unwrap();
        assert_eq!(given::<ReadMarker>(&history, mark(3)), Ok(vec![]));
        assert_eq!(given::<ReadMarker>(&history, mark(7)).unwrap().len(), 1);
        assert!(given::<ReadMarker>(&history, mark(11)).is_err());
    }

    #[test]
    fn bodies_follow_the_text_rule() {
        assert!(Body::parse("").is_err());
        assert!(Body::parse(&"x".repeat(4001)).is_err());
        assert!(Body::parse("bell\u{7}").is_err());
        assert_eq!(Body::parse(" two\nlines ").unwrap().as_str(), "two\nlines");
        assert!(attachment_url("ftp://x.org/a").is_err());
    }
}

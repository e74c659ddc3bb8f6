//! Notifications: what a user is told about (someone followed them, liked their video,
//! mentioned them, ...). The notifications themselves are a read model built from the
//! facts; this module holds what the write side decides: a user's settings (which
//! kinds they want), how far they read, and notices Plaza sends itself. All of that is
//! the user's `notifications-{id}` stream.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::text::{Lines, clean};
use crate::{Aggregate, DomainError, Event};

pub fn notifications_stream(user_id: Uuid) -> String {
    format!("notifications-{user_id}")
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Someone followed you.
    Followed,
    VideoLiked,
    VideoFavorited,
    /// Someone commented on your video (a top-level comment).
    VideoCommented,
    /// Someone replied to your comment.
    CommentReplied,
    CommentLiked,
    /// Someone wrote `@you` in a video description, a comment or a message you can read.
    Mentioned,
    /// A notice from Plaza (the welcome notice, ...).
    System,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Followed,
        Kind::VideoLiked,
        Kind::VideoFavorited,
        Kind::VideoCommented,
        Kind::CommentReplied,
        Kind::CommentLiked,
        Kind::Mentioned,
        Kind::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Followed => "followed",
            Kind::VideoLiked => "video_liked",
            Kind::VideoFavorited => "video_favorited",
            Kind::VideoCommented => "video_commented",
            Kind::CommentReplied => "comment_replied",
            Kind::CommentLiked => "comment_liked",
            Kind::Mentioned => "mentioned",
            Kind::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Small and stable: a notification's id is the position of the event that created
    /// it times 16 plus this, so one event may create one notification of each kind for
    /// a user.
    pub fn code(self) -> i64 {
        Kind::ALL.iter().position(|k| *k == self).expect("every kind is listed") as i64
    }

    /// Whether actions of several people on one thing form one group ("alice, bob and 12
    /// others liked your video"); comments and mentions each stand alone.
    pub fn grouped(self) -> bool {
        matches!(self, Kind::Followed | Kind::VideoLiked | Kind::VideoFavorited | Kind::CommentLiked)
    }
}

/// The `@username`s of a text, lowercased, each once, in order of first appearance, at
/// most [`MAX_MENTIONS`]. An `@` counts at the start or after a character that cannot be
/// part of a username or an email's local part (`bob@example.com` mentions nobody);
/// the name is what a username may be (3 to 30 of `a-z 0-9 _`).
pub fn mentions(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() && found.len() < MAX_MENTIONS {
        let after_boundary = i == 0 || !(word(chars[i - 1]) || matches!(chars[i - 1], '.' | '-' | '+' | '@'));
        if chars[i] == '@' && after_boundary {
            let end = (i + 1..chars.len()).find(|&j| !word(chars[j])).unwrap_or(chars.len());
            let name: String = chars[i + 1..end].iter().collect::<String>().to_ascii_lowercase();
            if (3..=30).contains(&name.len()) && !found.contains(&name) {
                found.push(name);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    found
}

/// Mentions resolved per text: more are plain text.
pub const MAX_MENTIONS: usize = 20;

/// Longest system notice.
pub const MAX_NOTICE_CHARS: usize = 2000;

/// A user's notification settings and what Plaza told them itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inbox {
    /// Kinds switched off (all are on by default).
    pub off: BTreeSet<Kind>,
}

#[derive(Debug, Clone)]
pub enum InboxCommand {
    /// Switch kinds on (`true`) or off.
    ChangeSettings {
        user_id: Uuid,
        settings: BTreeMap<Kind, bool>,
    },
    /// Mark notifications read: up to one (by id), or all so far.
    MarkRead {
        user_id: Uuid,
        up_to: Option<i64>,
    },
    SendNotice {
        user_id: Uuid,
        notice_id: Uuid,
        text: String,
    },
}

impl Aggregate for Inbox {
    type Command = InboxCommand;

    fn evolve(mut self, event: &Event) -> Self {
        if let Event::NotificationSettingsChanged { settings, .. } = event {
            for (kind, on) in settings {
                let Some(kind) = Kind::parse(kind) else { continue };
                if *on {
                    self.off.remove(&kind);
                } else {
                    self.off.insert(kind);
                }
            }
        }
        self
    }

    fn decide(&self, command: &InboxCommand) -> Result<Vec<Event>, DomainError> {
        match command {
            InboxCommand::ChangeSettings { user_id, settings } => {
                let changed: BTreeMap<String, bool> =
                    settings.iter().filter(|(kind, on)| self.off.contains(kind) == **on).map(|(kind, on)| (kind.as_str().to_owned(), *on)).collect();
                Ok(match changed.is_empty() {
                    true => vec![],
                    false => vec![Event::NotificationSettingsChanged { user_id: *user_id, settings: changed }],
                })
            }
            InboxCommand::MarkRead { user_id, up_to } => match up_to {
                Some(id) if *id <= 0 => Err(DomainError::InvalidNotification("`up_to` must be a notification's id")),
                _ => Ok(vec![Event::NotificationsRead { user_id: *user_id, up_to: *up_to }]),
            },
            InboxCommand::SendNotice { user_id, notice_id, text } => {
                let text = clean(text, Lines::Many).ok_or(DomainError::InvalidNotification("the notice holds a control character"))?;
                if text.is_empty() || text.chars().count() > MAX_NOTICE_CHARS {
                    return Err(DomainError::InvalidNotification("a notice holds 1 to 2000 characters"));
                }
                Ok(vec![Event::SystemNoticeSent { notice_id: *notice_id, user_id: *user_id, text }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    #[test]
    fn mentions_are_usernames_after_an_at_sign() {
        assert_eq!(mentions("hi @Alice and @bob_2, @alice again"), vec!["alice", "bob_2"]);
        assert_eq!(mentions("@carol: see mail@example.com, a.@dave, x-@erin"), vec!["carol"]);
        assert_eq!(mentions("@ab is too short, @@eve counts once, (@frank)"), vec!["frank"]);
        assert_eq!(mentions("@日本 @é"), Vec::<String>::new());
        let many: String = (0..30).map(|i| format!("@user{i:02} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
    }

    #[test]
    fn settings_record_only_what_changes() {
        let user_id = Uuid::new_v4();
        let off = BTreeMap::from([(Kind::VideoLiked, false), (Kind::Followed, true)]);
        let events = given::<Inbox>(&[], InboxCommand::ChangeSettings { user_id, settings: off.clone() }).unwrap();
        let expected = BTreeMap::from([("video_liked".to_owned(), false)]);
        assert_eq!(events, vec![Event::NotificationSettingsChanged { user_id, settings: expected }]);
        assert_eq!(given::<Inbox>(&events, InboxCommand::ChangeSettings { user_id, settings: off }).unwrap(), vec![]);
        let on = BTreeMap::from([(Kind::VideoLiked, true)]);
        assert_eq!(given::<Inbox>(&events, InboxCommand::ChangeSettings { user_id, settings: on }).unwrap().len(), 1);
    }

    #[test]
    fn reading_names_a_notification_or_everything() {
        let user_id = Uuid::new_v4();
        assert_eq!(
            given::<Inbox>(&[], InboxCommand::MarkRead { user_id, up_to: None }).unwrap(),
            vec![Event::NotificationsRead { user_id, up_to: None }]
        );
        assert!(given::<Inbox>(&[], InboxCommand::MarkRead { user_id, up_to: Some(0) }).is_err());
    }

    #[test]
    fn notices_are_clean_text() {
        let (user_id, notice_id) = (Uuid::new_v4(), Uuid::new_v4());
        let send = |text: &str| given::<Inbox>(&[], InboxCommand::SendNotice { user_id, notice_id, text: text.to_owned() });
        assert_eq!(send(" Welcome!\n").unwrap(), vec![Event::SystemNoticeSent { notice_id, user_id, text: "Welcome!".to_owned() }]);
        assert!(send("  ").is_err());
        assert!(send("evil\u{202e}").is_err());
        assert!(send(&"x".repeat(MAX_NOTICE_CHARS + 1)).is_err());
    }

    #[test]
    fn kinds_have_stable_names_and_codes() {
        for (code, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.code(), code as i64);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}

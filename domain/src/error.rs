/// Why the domain refuses a command. Each variant has a stable snake_case code that
/// the HTTP edge returns as `{"error": code}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("username must be 3 to 30 characters of a-z, 0-9 and _")]
    InvalidUsername,
    /// Not a role Plaza knows.
    #[error("unknown role; the roles are: admin")]
    InvalidRole,
    #[error("email address is not valid")]
    InvalidEmail,
    #[error("password must be at least 8 characters (and at most 1024)")]
    InvalidPassword,
    #[error("{0}")]
    InvalidProfile(&'static str),
    #[error("username is already taken")]
    UsernameTaken,
    #[error("email is already registered")]
    EmailTaken,
    #[error("user is already registered")]
    AlreadyRegistered,
    #[error("user not found")]
    UserNotFound,
    #[error("you cannot follow yourself")]
    CannotFollowSelf,
    #[error("you already follow this user")]
    AlreadyFollowing,
    #[error("you do not follow this user")]
    NotFollowing,
    #[error("{0}")]
    InvalidVideo(&'static str),
    #[error("video not found")]
    VideoNotFound,
    #[error("you already like this video")]
    AlreadyLiked,
    #[error("you do not like this video")]
    NotLiked,
    #[error("this video is already among your favorites")]
    AlreadyFavorited,
    #[error("this video is not among your favorites")]
    NotFavorited,
    #[error("{0}")]
    InvalidComment(&'static str),
    #[error("comment not found")]
    CommentNotFound,
    #[error("replies nest one level: reply to a top-level comment of the same video")]
    InvalidParent,
    #[error("you already like this comment")]
    AlreadyLikedComment,
    #[error("you do not like this comment")]
    NotLikedComment,
    #[error("{0}")]
    InvalidHashtag(&'static str),
    #[error("this hashtag already has a page")]
    HashtagExists,
    #[error("{0}")]
    InvalidCounter(&'static str),
    #[error("this counter is derived from Plaza's own commands; only they change it")]
    ReservedCounter,
    #[error("{0}")]
    InvalidConversation(&'static str),
    #[error("{0}")]
    InvalidMessage(&'static str),
    #[error("{0}")]
    InvalidNotification(&'static str),
    #[error("{0}")]
    InvalidSearch(&'static str),
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("message not found")]
    MessageNotFound,
    #[error("already a member of this conversation")]
    AlreadyMember,
    #[error("not a member of this conversation")]
    NotMember,
    #[error("the group is full")]
    GroupFull,
    #[error("messages can only be edited for a while after they were sent")]
    EditWindowPassed,
    /// Acting on someone else's content.
    #[error("{0}")]
    NotAllowed(&'static str),
}

impl DomainError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUsername => "invalid_username",
            Self::InvalidRole => "invalid_role",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidPassword => "invalid_password",
            Self::InvalidProfile(_) => "invalid_profile",
            Self::UsernameTaken => "username_taken",
            Self::EmailTaken => "email_taken",
            Self::AlreadyRegistered => "already_registered",
            Self::UserNotFound => "user_not_found",
            Self::CannotFollowSelf => "cannot_follow_self",
            Self::AlreadyFollowing => "already_following",
            Self::NotFollowing => "not_following",
            Self::InvalidVideo(_) => "invalid_video",
            Self::VideoNotFound => "video_not_found",
            Self::AlreadyLiked => "already_liked",
            Self::NotLiked => "not_liked",
            Self::AlreadyFavorited => "already_favorited",
            Self::NotFavorited => "not_favorited",
            Self::InvalidComment(_) => "invalid_comment",
            Self::CommentNotFound => "comment_not_found",
            Self::InvalidParent => "invalid_parent",
            Self::AlreadyLikedComment => "already_liked",
            Self::NotLikedComment => "not_liked",
            Self::InvalidHashtag(_) => "invalid_hashtag",
            Self::HashtagExists => "hashtag_exists",
            Self::InvalidCounter(_) => "invalid_counter",
            Self::ReservedCounter => "reserved_counter",
            Self::InvalidConversation(_) => "invalid_conversation",
            Self::InvalidMessage(_) => "invalid_message",
            Self::InvalidNotification(_) => "invalid_notification",
            Self::InvalidSearch(_) => "invalid_search",
            Self::ConversationNotFound => "conversation_not_found",
            Self::MessageNotFound => "message_not_found",
            Self::AlreadyMember => "already_member",
            Self::NotMember => "not_member",
            Self::GroupFull => "group_full",
            Self::EditWindowPassed => "edit_window_passed",
            Self::NotAllowed(_) => "forbidden",
        }
    }
}

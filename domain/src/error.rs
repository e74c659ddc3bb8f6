/// Why the domain refuses a command. Each variant has a stable snake_case code that
/// the HTTP edge returns as `{"error": code}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("username must be 3 to 30 characters of a-z, 0-9 and _")]
    InvalidUsername,
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
}

impl DomainError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUsername => "invalid_username",
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
        }
    }
}

//! Accounts: validated value types and the `user-{id}` aggregate.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::text::{self, Lines};
use crate::{Aggregate, DomainError, Event};

pub fn user_stream(user_id: Uuid) -> String {
    format!("user-{user_id}")
}

/// A username: 3 to 30 characters of `[a-z0-9_]`. Input is lowercased first, so
/// uniqueness ignores case and `Alice` registers as `alice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let name = input.trim().to_ascii_lowercase();
        let valid_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !(3..=30).contains(&name.len()) || !valid_chars {
            return Err(DomainError::InvalidUsername);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, trimmed and lowercased (uniqueness ignores case). The check is
/// deliberately plain: one `@`, a non-empty local part, a dotted domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let email = text::nfc(input.trim()).to_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err(DomainError::InvalidEmail);
        };
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if email.len() > 254 || local.is_empty() || local.len() > 64 || !domain_ok || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::InvalidEmail);
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: at least 8 characters; at most 1024 so hashing stays bounded.
pub struct Password(String);

impl Password {
    pub fn parse(input: String) -> Result<Self, DomainError> {
        if !(8..=1024).contains(&input.chars().count()) {
            return Err(DomainError::InvalidPassword);
        }
        Ok(Self(input))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

pub const MAX_DISPLAY_NAME: usize = 50;
pub const MAX_BIO: usize = 500;
pub const MAX_AVATAR_URL: usize = 2048;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
}

/// A profile edit: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub display_name: Option<Option<String>>,
    pub bio: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
}

impl ProfileChanges {
    /// Validates raw fields by the free-text rule ([`crate::text`]); an empty value
    /// clears the field.
    pub fn parse(display_name: Option<Option<String>>, bio: Option<Option<String>>, avatar_url: Option<Option<String>>) -> Result<Self, DomainError> {
        type Field = Option<Option<String>>;
        fn clean(value: Field, lines: Lines, max: usize, error: &'static str) -> Result<Field, DomainError> {
            let Some(Some(value)) = value else { return Ok(value) };
            let text = text::clean(&value, lines).filter(|t| t.chars().count() <= max).ok_or(DomainError::InvalidProfile(error))?;
            Ok(Some(Some(text).filter(|t| !t.is_empty())))
        }
        let display_name =
            clean(display_name, Lines::One, MAX_DISPLAY_NAME, "display_name must be at most 50 characters on one line, without control characters")?;
        let bio = clean(bio, Lines::Many, MAX_BIO, "bio must be at most 500 characters, without control characters")?;
        let avatar_url = match avatar_url {
            Some(Some(url)) => Some(Some(url.trim().to_owned()).filter(|u| !u.is_empty())),
            other => other,
        };
        if let Some(Some(url)) = &avatar_url
            && !is_web_url(url)
        {
            return Err(DomainError::InvalidProfile("avatar_url must be an http(s) URL of at most 2048 characters"));
        }
        Ok(Self { display_name, bio, avatar_url })
    }

    fn apply_to(&self, profile: &Profile) -> Profile {
        let pick = |change: &Option<Option<String>>, current: &Option<String>| change.clone().unwrap_or_else(|| current.clone());
        Profile {
            display_name: pick(&self.display_name, &profile.display_name),
            bio: pick(&self.bio, &profile.bio),
            avatar_url: pick(&self.avatar_url, &profile.avatar_url),
        }
    }
}

/// An absolute http or https URL with a host and no whitespace.
pub(crate) fn is_web_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    url.len() <= MAX_AVATAR_URL && !host.is_empty() && !host.starts_with(':') && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub profile: Profile,
}

/// A role a user can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May use the operators' routes (`/admin`).
    Admin,
}

impl Role {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match input.trim() {
            "admin" => Ok(Self::Admin),
            _ => Err(DomainError::InvalidRole),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
        }
    }
}

/// The `user-{id}` stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Account {
    pub registered: Option<Registered>,
    /// Roles held now, sorted.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug)]
pub enum AccountCommand {
    Register { user_id: Uuid, username: Username, email: Email, password_hash: String },
    UpdateProfile(ProfileChanges),
    GrantRole(Role),
    RevokeRole(Role),
}

impl Aggregate for Account {
    type Command = AccountCommand;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::UserRegistered { user_id, username, email, password_hash } => {
                self.registered = Some(Registered {
                    user_id: *user_id,
                    username: username.clone(),
                    email: email.clone(),
                    password_hash: password_hash.clone(),
                    profile: Profile::default(),
                });
            }
            Event::ProfileUpdated { display_name, bio, avatar_url, .. } => {
                if let Some(account) = &mut self.registered {
                    account.profile = Profile { display_name: display_name.clone(), bio: bio.clone(), avatar_url: avatar_url.clone() };
                }
            }
            Event::RoleGranted { role, .. } => {
                if let Err(at) = self.roles.binary_search(role) {
                    self.roles.insert(at, role.clone());
                }
            }
            Event::RoleRevoked { role, .. } => self.roles.retain(|r| r != role),
            _ => {}
        }
        self
    }

    fn decide(&self, command: &AccountCommand) -> Result<Vec<Event>, DomainError> {
        match (command, &self.registered) {
            (AccountCommand::Register { .. }, Some(_)) => Err(DomainError::AlreadyRegistered),
            (AccountCommand::Register { user_id, username, email, password_hash }, None) => Ok(vec![Event::UserRegistered {
                user_id: *user_id,
                username: username.as_str().to_owned(),
                email: email.as_str().to_owned(),
                password_hash: password_hash.clone(),
            }]),
            (AccountCommand::UpdateProfile(_) | AccountCommand::GrantRole(_) | AccountCommand::RevokeRole(_), None) => Err(DomainError::UserNotFound),
            // Granting a role held, or revoking one not held, records nothing.
            (AccountCommand::GrantRole(role), Some(account)) => Ok(match self.roles.iter().any(|r| r == role.as_str()) {
                true => vec![],
                false => vec![Event::RoleGranted { user_id: account.user_id, role: role.as_str().to_owned() }],
            }),
            (AccountCommand::RevokeRole(role), Some(account)) => Ok(match self.roles.iter().any(|r| r == role.as_str()) {
                true => vec![Event::RoleRevoked { user_id: account.user_id, role: role.as_str().to_owned() }],
                false => vec![],
            }),
            (AccountCommand::UpdateProfile(changes), Some(account)) => {
                let profile = changes.apply_to(&account.profile);
                if profile == account.profile {
                    return Ok(vec![]);
                }
                Ok(vec![Event::ProfileUpdated {
                    user_id: account.user_id,
                    display_name: profile.display_name,
                    bio: profile.bio,
                    avatar_url: profile.avatar_url,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    fn registered(user_id: Uuid) -> Event {
        Event::UserRegistered { user_id, username: "alice".into(), email: "alice@example.com".into(), password_hash: "h".into() }
    }

    fn register(user_id: Uuid) -> AccountCommand {
        AccountCommand::Register {
            user_id,
            username: Username::parse("alice").unwrap(),
            email: Email::parse("alice@example.com").unwrap(),
            password_hash: "h".into(),
        }
    }

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(Username::parse("Alice_01").unwrap().as_str(), "alice_01");
        for bad in ["ab", "a".repeat(31).as_str(), "al ice", "al-ice", "élan", ""] {
            assert_eq!(Username::parse(bad), Err(DomainError::InvalidUsername), "{bad:?}");
        }
        assert!(Username::parse(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(Email::parse(" Bob@Example.COM ").unwrap().as_str(), "bob@example.com");
        for bad in ["bob", "bob@", "@example.com", "bob@example", "bo b@example.com", "bob@@example.com", "bob@example..com"] {
            assert_eq!(Email::parse(bad), Err(DomainError::InvalidEmail), "{bad:?}");
        }
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert_eq!(format!("{:?}", Password::parse("secret-password".into()).unwrap()), "Password(***)");
    }

    #[test]
    fn registering_a_new_user_records_it() {
        let id = Uuid::new_v4();
        assert_eq!(given::<Account>(&[], register(id)).unwrap(), vec![registered(id)]);
    }

    #[test]
    fn registering_twice_is_rejected() {
        let id = Uuid::new_v4();
        assert_eq!(given::<Account>(&[registered(id)], register(id)), Err(DomainError::AlreadyRegistered));
    }

    #[test]
    fn updating_a_profile_records_the_whole_new_profile() {
        let id = Uuid::new_v4();
        let changes = ProfileChanges::parse(Some(Some(" Alice ".into())), None, Some(Some("https://cdn.example.com/a.png".into()))).unwrap();
        let events = given::<Account>(&[registered(id)], AccountCommand::UpdateProfile(changes)).unwrap();
        assert_eq!(
            events,
            vec![Event::ProfileUpdated {
                user_id: id,
                display_name: Some("Alice".into()),
                bio: None,
                avatar_url: Some("https://cdn.example.com/a.png".into())
            }]
        );
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let id = Uuid::new_v4();
        let history = [registered(id), Event::ProfileUpdated { user_id: id, display_name: Some("Al".into()), bio: None, avatar_url: None }];
        let same = ProfileChanges::parse(Some(Some("Al".into())), Some(None), None).unwrap();
        assert_eq!(given::<Account>(&history, AccountCommand::UpdateProfile(same)).unwrap(), vec![]);
    }

    #[test]
    fn roles_are_granted_and_revoked_once() {
        let id = Uuid::new_v4();
        let granted = Event::RoleGranted { user_id: id, role: "admin".into() };
        assert_eq!(given::<Account>(&[registered(id)], AccountCommand::GrantRole(Role::Admin)).unwrap(), vec![granted.clone()]);
        assert_eq!(given::<Account>(&[registered(id), granted.clone()], AccountCommand::GrantRole(Role::Admin)).unwrap(), vec![]);
        let revoked = Event::RoleRevoked { user_id: id, role: "admin".into() };
        assert_eq!(given::<Account>(&[registered(id), granted.clone()], AccountCommand::RevokeRole(Role::Admin)).unwrap(), vec![revoked.clone()]);
        assert_eq!(given::<Account>(&[registered(id), granted, revoked], AccountCommand::RevokeRole(Role::Admin)).unwrap(), vec![]);
        assert_eq!(given::<Account>(&[], AccountCommand::GrantRole(Role::Admin)), Err(DomainError::UserNotFound));
        assert_eq!(Role::parse("root"), Err(DomainError::InvalidRole));
    }

    #[test]
    fn updating_an_unknown_user_is_rejected() {
        let changes = ProfileChanges::parse(Some(Some("x".into())), None, None).unwrap();
        assert_eq!(given::<Account>(&[], AccountCommand::UpdateProfile(changes)), Err(DomainError::UserNotFound));
    }

    #[test]
    fn profile_fields_are_validated() {
        assert!(ProfileChanges::parse(Some(Some("x".repeat(51))), None, None).is_err());
        assert!(ProfileChanges::parse(None, Some(Some("x".repeat(501))), None).is_err());
        assert!(ProfileChanges::parse(None, Some(Some("nul\u{0}".into())), None).is_err());
        assert!(ProfileChanges::parse(Some(Some("Al\u{202e}ice".into())), None, None).is_err());
        assert!(ProfileChanges::parse(None, Some(Some("two\nlines".into())), None).is_ok());
        for bad in ["ftp://x.org/a", "https://", "https://exa mple.com", "not a url", "https:///path"] {
            assert!(ProfileChanges::parse(None, None, Some(Some(bad.into()))).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(ProfileChanges::parse(None, None, Some(Some(long))).is_err());
        assert!(ProfileChanges::parse(None, None, Some(Some("http://localhost:8080/a.png".into()))).is_ok());
        let cleared = ProfileChanges::parse(Some(Some("  ".into())), None, None).unwrap();
        assert_eq!(cleared.display_name, Some(None));
    }
}

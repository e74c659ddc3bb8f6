//! Account commands: register, log in, update a profile, follow and unfollow.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use plaza_domain::accounts::{Account, AccountCommand, Email, Password, ProfileChanges, Registered, Role, Username, user_stream};
use plaza_domain::follows::{Follow, FollowCommand, follow_stream};
use plaza_domain::reservation::{Kind, Reservation, ReservationCommand, reservation_stream};
use plaza_domain::{DomainError, EventStore};
use tracing::warn;
use uuid::Uuid;

use crate::pipeline::{CommandContext, Outcome, Pipeline};
use crate::{CommandError, Passwords};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub user_id: Uuid,
    pub position: u64,
}

#[derive(Clone)]
pub struct Accounts {
    pipeline: Pipeline,
    passwords: Passwords,
    /// Users known to exist (accounts are never deleted), so a follow needs no read of
    /// the followee's stream the second time; forgotten all at once past [`KNOWN_USERS`].
    known_users: Arc<Mutex<HashSet<Uuid>>>,
}

/// Users remembered as existing before the memory starts over.
const KNOWN_USERS: usize = 100_000;

impl Accounts {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { pipeline: Pipeline { store }, passwords: Passwords, known_users: Arc::default() }
    }

    /// Reserves the username, then the email, then records the user; a step that fails
    /// releases what the earlier steps reserved.
    pub async fn register(&self, username: &str, email: &str, password: String, ctx: &CommandContext) -> Result<Registration, CommandError> {
        let username = Username::parse(username)?;
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        // A repeated request (same idempotency key) registers the same user id, so it
        // finds its own reservations and resumes or answers as before.
        let user_id = ctx.derived_id("user-id").unwrap_or_else(Uuid::now_v7);
        let password_hash = self.passwords.hash(password.expose()).await?;

        self.reserve(Kind::Username, username.as_str(), user_id, ctx).await?;
        if let Err(error) = self.reserve(Kind::Email, email.as_str(), user_id, ctx).await {
            self.release(Kind::Username, username.as_str(), user_id, ctx).await;
            return Err(error);
        }
        let register = |_: &Account| AccountCommand::Register {
            user_id,
            username: username.clone(),
            email: email.clone(),
            password_hash: password_hash.clone(),
        };
        match self.pipeline.execute(&user_stream(user_id), ctx, register).await {
            Ok(Outcome { position }) => Ok(Registration { user_id, position }),
            Err(error) => {
                self.release(Kind::Email, email.as_str(), user_id, ctx).await;
                self.release(Kind::Username, username.as_str(), user_id, ctx).await;
                Err(error)
            }
        }
    }

    async fn reserve(&self, kind: Kind, key: &str, user_id: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let stream = reservation_stream(kind, key);
        // Whether another holder finished registering decides if a stale reservation
        // may be taken over; look it up before deciding (deciding stays pure). If the
        // holder changes under us, the retry sees a fresh holder and treats it as taken.
        let holder = self.pipeline.load::<Reservation>(&stream).await?.state.holder.map(|(holder, _)| holder);
        let checked = match holder {
            Some(holder) if holder != user_id => Some((holder, self.pipeline.exists(&user_stream(holder)).await?)),
            _ => None,
        };
        let now = Utc::now();
        // Reserving is idempotent by itself (the same user id reserving again changes
        // nothing), so no shortcut by event id here: the stream's current holder decides.
        self.pipeline
            .execute(&stream, &ctx.without_idempotency(), |state: &Reservation| {
                let holder_registered = match (state.holder, checked) {
                    (Some((holder, _)), Some((checked_holder, registered))) if holder == checked_holder => registered,
                    _ => true,
                };
                ReservationCommand::Reserve { kind, key: key.to_owned(), user_id, now, holder_registered }
            })
            .await
    }

    /// Best-effort compensation; a failure leaves a reservation that goes stale.
    async fn release(&self, kind: Kind, key: &str, user_id: Uuid, ctx: &CommandContext) {
        let stream = reservation_stream(kind, key);
        let release = |_: &Reservation| ReservationCommand::Release { kind, key: key.to_owned(), user_id };
        if let Err(error) = self.pipeline.execute(&stream, &ctx.without_idempotency(), release).await {
            warn!(%error, stream, "could not release a reservation; it will go stale");
        }
    }

    /// Checks a username-or-email and password; returns the user id.
    pub async fn login(&self, login: &str, password: &str) -> Result<Uuid, CommandError> {
        let account = self.find_login(login).await?;
        self.check_password(account.as_ref(), password).await
    }

    /// The account a username or email names, if any.
    pub async fn find_login(&self, login: &str) -> Result<Option<Registered>, CommandError> {
        let stream = if login.contains('@') {
            Email::parse(login).ok().map(|email| reservation_stream(Kind::Email, email.as_str()))
        } else {
            Username::parse(login).ok().map(|name| reservation_stream(Kind::Username, name.as_str()))
        };
        let holder = match stream {
            Some(stream) => self.pipeline.load::<Reservation>(&stream).await?.state.holder.map(|(holder, _)| holder),
            None => None,
        };
        Ok(match holder {
            Some(user_id) => self.pipeline.load::<Account>(&user_stream(user_id)).await?.state.registered,
            None => None,
        })
    }

    /// Checks the password of an account found by [`Self::find_login`]; with none, as
    /// long as a wrong password takes, so answers do not tell which logins exist.
    pub async fn check_password(&self, account: Option<&Registered>, password: &str) -> Result<Uuid, CommandError> {
        let hash = account.map(|a| a.password_hash.as_str());
        match (self.passwords.verify(password, hash).await?, account) {
            (true, Some(account)) => Ok(account.user_id),
            _ => Err(CommandError::InvalidCredentials),
        }
    }

    pub async fn update_profile(&self, user_id: Uuid, changes: ProfileChanges, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        if actor != user_id {
            return Err(CommandError::Forbidden);
        }
        self.pipeline.execute(&user_stream(user_id), ctx, |_: &Account| AccountCommand::UpdateProfile(changes.clone())).await
    }

    pub async fn follow(&self, followee: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        self.follow_command(followee, ctx, true).await
    }

    pub async fn unfollow(&self, followee: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        self.follow_command(followee, ctx, false).await
    }

    /// Whether a user with this id is registered.
    pub async fn user_exists(&self, user_id: Uuid) -> Result<bool, CommandError> {
        if self.known_users.lock().expect("known users lock").contains(&user_id) {
            return Ok(true);
        }
        let exists = self.pipeline.exists(&user_stream(user_id)).await?;
        if exists {
            let mut known = self.known_users.lock().expect("known users lock");
            if known.len() >= KNOWN_USERS {
                known.clear();
            }
            known.insert(user_id);
        }
        Ok(exists)
    }

    async fn follow_command(&self, followee: Uuid, ctx: &CommandContext, follow: bool) -> Result<Outcome, CommandError> {
        let follower = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        if follower == followee {
            return Err(DomainError::CannotFollowSelf.into());
        }
        if !self.user_exists(followee).await? {
            return Err(DomainError::UserNotFound.into());
        }
        let command = if follow { FollowCommand::Follow { follower, followee } } else { FollowCommand::Unfollow { follower, followee } };
        self.pipeline.execute_new(&follow_stream(follower, followee), ctx, |_: &Follow| command).await
    }

    /// Gives (or takes back) a role to the user named `username`; the operator's
    /// command, so no actor is checked here: whoever can run `plaza admin` owns the
    /// deployment. Returns the user's id and the outcome.
    pub async fn set_role(&self, username: &str, role: Role, grant: bool, ctx: &CommandContext) -> Result<(Uuid, Outcome), CommandError> {
        let account = match Username::parse(username) {
            Ok(_) => self.find_login(username).await?,
            Err(_) => None,
        };
        let user_id = account.ok_or(DomainError::UserNotFound)?.user_id;
        let command = move |_: &Account| if grant { AccountCommand::GrantRole(role) } else { AccountCommand::RevokeRole(role) };
        Ok((user_id, self.pipeline.execute(&user_stream(user_id), ctx, command).await?))
    }

    /// The roles a user holds now (none for an unknown user).
    pub async fn roles(&self, user_id: Uuid) -> Result<Vec<String>, CommandError> {
        Ok(self.pipeline.load::<Account>(&user_stream(user_id)).await?.state.roles)
    }
}

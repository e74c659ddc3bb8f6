//! Uniqueness through reservation streams: `username-{name}` and `email-{address}`.
//!
//! Registration reserves the username, then the email, then records the user. The
//! first append to a reservation stream (expected version "no stream") wins a race.
//! A registration that fails half-way releases what it reserved; one that crashed
//! half-way leaves a reservation whose holder never registered, which a later
//! registration may take over once it is older than [`STALE_AFTER_SECS`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Aggregate, DomainError, Event};

pub const STALE_AFTER_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Username,
    Email,
}

pub fn reservation_stream(kind: Kind, key: &str) -> String {
    match kind {
        Kind::Username => format!("username-{key}"),
        Kind::Email => format!("email-{key}"),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reservation {
    /// Who holds it and since when.
    pub holder: Option<(Uuid, DateTime<Utc>)>,
}

#[derive(Debug)]
pub enum ReservationCommand {
    Reserve {
        kind: Kind,
        key: String,
        user_id: Uuid,
        now: DateTime<Utc>,
        /// Whether the current holder (if another user) completed registration;
        /// the handler looks it up, since deciding stays pure.
        holder_registered: bool,
    },
    Release {
        kind: Kind,
        key: String,
        user_id: Uuid,
    },
}

impl Aggregate for Reservation {
    type Command = ReservationCommand;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::UsernameReserved { user_id, reserved_at, .. } | Event::EmailReserved { user_id, reserved_at, .. } => {
                self.holder = Some((*user_id, *reserved_at));
            }
            Event::UsernameReleased { .. } | Event::EmailReleased { .. } => self.holder = None,
            _ => {}
        }
        self
    }

    fn decide(&self, command: &ReservationCommand) -> Result<Vec<Event>, DomainError> {
        match command {
            ReservationCommand::Reserve { kind, key, user_id, now, holder_registered } => match self.holder {
                Some((holder, _)) if holder == *user_id => Ok(vec![]),
                Some((_, since)) if *holder_registered || (*now - since).num_seconds() < STALE_AFTER_SECS => Err(taken(*kind)),
                _ => Ok(vec![reserved(*kind, key, *user_id, *now)]),
            },
            ReservationCommand::Release { kind, key, user_id } => match self.holder {
                Some((holder, _)) if holder == *user_id => Ok(vec![released(*kind, key, *user_id)]),
                _ => Ok(vec![]),
            },
        }
    }
}

fn taken(kind: Kind) -> DomainError {
    match kind {
        Kind::Username => DomainError::UsernameTaken,
        Kind::Email => DomainError::EmailTaken,
    }
}

fn reserved(kind: Kind, key: &str, user_id: Uuid, reserved_at: DateTime<Utc>) -> Event {
    match kind {
        Kind::Username => Event::UsernameReserved { username: key.to_owned(), user_id, reserved_at },
        Kind::Email => Event::EmailReserved { email: key.to_owned(), user_id, reserved_at },
    }
}

fn released(kind: Kind, key: &str, user_id: Uuid) -> Event {
    match kind {
        Kind::Username => Event::UsernameReleased { username: key.to_owned(), user_id },
        Kind::Email => Event::EmailReleased { email: key.to_owned(), user_id },
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::aggregate::given;

    fn reserve(user_id: Uuid, now: DateTime<Utc>, holder_registered: bool) -> ReservationCommand {
        ReservationCommand::Reserve { kind: Kind::Username, key: "alice".into(), user_id, now, holder_registered }
    }

    fn reserved_by(user_id: Uuid, at: DateTime<Utc>) -> Event {
        Event::UsernameReserved { username: "alice".into(), user_id, reserved_at: at }
    }

    #[test]
    fn a_free_name_is_reserved() {
        let (id, now) = (Uuid::new_v4(), Utc::now());
        assert_eq!(given::<Reservation>(&[], reserve(id, now, false)).unwrap(), vec![reserved_by(id, now)]);
    }

    #[test]
    fn a_name_held_by_a_registered_user_is_taken() {
        let now = Utc::now();
        let history = [reserved_by(Uuid::new_v4(), now - Duration::days(3))];
        assert_eq!(given::<Reservation>(&history, reserve(Uuid::new_v4(), now, true)), Err(DomainError::UsernameTaken));
    }

    #[test]
    fn a_name_being_registered_right_now_is_taken() {
        let now = Utc::now();
        let history = [reserved_by(Uuid::new_v4(), now - Duration::seconds(2))];
        assert_eq!(given::<Reservation>(&history, reserve(Uuid::new_v4(), now, false)), Err(DomainError::UsernameTaken));
    }

    #[test]
    fn a_stale_reservation_of_an_abandoned_registration_is_taken_over() {
        let (id, now) = (Uuid::new_v4(), Utc::now());
        let history = [reserved_by(Uuid::new_v4(), now - Duration::seconds(STALE_AFTER_SECS + 1))];
        assert_eq!(given::<Reservation>(&history, reserve(id, now, false)).unwrap(), vec![reserved_by(id, now)]);
    }

    #[test]
    fn reserving_again_for_the_same_user_is_a_no_op() {
        let (id, now) = (Uuid::new_v4(), Utc::now());
        assert_eq!(given::<Reservation>(&[reserved_by(id, now)], reserve(id, now, false)).unwrap(), vec![]);
    }

    #[test]
    fn a_released_name_is_free_again() {
        let (first, second, now) = (Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        let history = [reserved_by(first, now), Event::UsernameReleased { username: "alice".into(), user_id: first }];
        assert_eq!(given::<Reservation>(&history, reserve(second, now, false)).unwrap(), vec![reserved_by(second, now)]);
    }

    #[test]
    fn only_the_holder_releases() {
        let (holder, other, now) = (Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        let release = |user_id| ReservationCommand::Release { kind: Kind::Username, key: "alice".into(), user_id };
        assert_eq!(given::<Reservation>(&[reserved_by(holder, now)], release(other)).unwrap(), vec![]);
        assert_eq!(
            given::<Reservation>(&[reserved_by(holder, now)], release(holder)).unwrap(),
            vec![Event::UsernameReleased { username: "alice".into(), user_id: holder }]
        );
    }
}

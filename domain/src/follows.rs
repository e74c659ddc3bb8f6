//! Follows: one tiny `follow-{follower}-{followee}` stream per pair, so following is
//! never a contention point on a popular user's stream.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Aggregate, DomainError, Event};

pub fn follow_stream(follower: Uuid, followee: Uuid) -> String {
    format!("follow-{follower}-{followee}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Follow {
    pub following: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum FollowCommand {
    Follow { follower: Uuid, followee: Uuid },
    Unfollow { follower: Uuid, followee: Uuid },
}

impl Aggregate for Follow {
    type Command = FollowCommand;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::UserFollowed { .. } => self.following = true,
            Event::UserUnfollowed { .. } => self.following = false,
            _ => {}
        }
        self
    }

    fn decide(&self, command: &FollowCommand) -> Result<Vec<Event>, DomainError> {
        match *command {
            FollowCommand::Follow { follower, followee } | FollowCommand::Unfollow { follower, followee } if follower == followee => {
                Err(DomainError::CannotFollowSelf)
            }
            FollowCommand::Follow { .. } if self.following => Err(DomainError::AlreadyFollowing),
            FollowCommand::Unfollow { .. } if !self.following => Err(DomainError::NotFollowing),
            FollowCommand::Follow { follower, followee } => Ok(vec![Event::UserFollowed { follower_id: follower, followee_id: followee }]),
            FollowCommand::Unfollow { follower, followee } => Ok(vec![Event::UserUnfollowed { follower_id: follower, followee_id: followee }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    fn pair() -> (Uuid, Uuid) {
        (Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn following_someone_records_it() {
        let (a, b) = pair();
        let events = given::<Follow>(&[], FollowCommand::Follow { follower: a, followee: b }).unwrap();
        assert_eq!(events, vec![Event::UserFollowed { follower_id: a, followee_id: b }]);
    }

    #[test]
    fn following_yourself_is_rejected() {
        let (a, _) = pair();
        assert_eq!(given::<Follow>(&[], FollowCommand::Follow { follower: a, followee: a }), Err(DomainError::CannotFollowSelf));
    }

    #[test]
    fn following_twice_is_rejected() {
        let (a, b) = pair();
        let history = [Event::UserFollowed { follower_id: a, followee_id: b }];
        assert_eq!(given::<Follow>(&history, FollowCommand::Follow { follower: a, followee: b }), Err(DomainError::AlreadyFollowing));
    }

    #[test]
    fn unfollowing_someone_you_do_not_follow_is_rejected() {
        let (a, b) = pair();
        assert_eq!(given::<Follow>(&[], FollowCommand::Unfollow { follower: a, followee: b }), Err(DomainError::NotFollowing));
    }

    #[test]
    fn unfollowing_then_following_again_works() {
        let (a, b) = pair();
        let history = [Event::UserFollowed { follower_id: a, followee_id: b }, Event::UserUnfollowed { follower_id: a, followee_id: b }];
        assert!(given::<Follow>(&history, FollowCommand::Follow { follower: a, followee: b }).is_ok());
        let events = given::<Follow>(&history[..1], FollowCommand::Unfollow { follower: a, followee: b }).unwrap();
        assert_eq!(events, vec![Event::UserUnfollowed { follower_id: a, followee_id: b }]);
    }
}

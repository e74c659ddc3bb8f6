//! The peer's aggregates, written the way cqrs-es 0.5 wants them: each is a `Default +
//! Serialize` state whose `handle` decides and writes events to the framework's
//! `EventSink`, and whose `apply` folds an event in. postgres-es stores every event as a
//! row of the `events` table keyed by (aggregate type, aggregate id, sequence).

use std::convert::Infallible;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A registered user: only setup for the benchmark (no password, no unique username).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    registered: bool,
}

#[derive(Debug)]
pub enum UserCommand {
    Register { username: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered { username: String },
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("the user is already registered")]
    AlreadyRegistered,
    #[error("the username must not be empty")]
    EmptyUsername,
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered".into(),
        }
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: UserCommand, _: &(), sink: &EventSink<Self>) -> Result<(), UserError> {
        match command {
            UserCommand::Register { username } => {
                if self.registered {
                    return Err(UserError::AlreadyRegistered);
                }
                let username = username.trim().to_owned();
                if username.is_empty() {
                    return Err(UserError::EmptyUsername);
                }
                sink.write(UserEvent::UserRegistered { username }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered { .. } => self.registered = true,
        }
    }
}

/// A video; likes are refused unless it is published.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Video {
    published: bool,
}

impl Video {
    pub fn is_published(&self) -> bool {
        self.published
    }
}

#[derive(Debug)]
pub enum VideoCommand {
    Publish { owner: Uuid, title: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VideoEvent {
    VideoPublished { owner: Uuid, title: String },
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("the video is already published")]
    AlreadyPublished,
    #[error("the title must not be empty")]
    EmptyTitle,
}

impl DomainEvent for VideoEvent {
    fn event_type(&self) -> String {
        match self {
            Self::VideoPublished { .. } => "VideoPublished".into(),
        }
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Aggregate for Video {
    const TYPE: &'static str = "Video";
    type Command = VideoCommand;
    type Event = VideoEvent;
    type Error = VideoError;
    type Services = ();

    async fn handle(&mut self, command: VideoCommand, _: &(), sink: &EventSink<Self>) -> Result<(), VideoError> {
        match command {
            VideoCommand::Publish { owner, title } => {
                if self.published {
                    return Err(VideoError::AlreadyPublished);
                }
                let title = title.trim().to_owned();
                if title.is_empty() {
                    return Err(VideoError::EmptyTitle);
                }
                sink.write(VideoEvent::VideoPublished { owner, title }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: VideoEvent) {
        match event {
            VideoEvent::VideoPublished { .. } => self.published = true,
        }
    }
}

/// One user's like of one video: the aggregate `like-{video}-{user}`, as in Plaza, so two
/// users liking the same video never contend on one stream.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Like {
    liked: bool,
}

#[derive(Debug)]
pub enum LikeCommand {
    Like { video_id: Uuid, user_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LikeEvent {
    VideoLiked { video_id: Uuid, user_id: Uuid },
}

impl DomainEvent for LikeEvent {
    fn event_type(&self) -> String {
        match self {
            Self::VideoLiked { .. } => "VideoLiked".into(),
        }
    }

    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Like {
    /// The aggregate id of `user_id`'s like of `video_id`.
    pub fn id(video_id: Uuid, user_id: Uuid) -> String {
        format!("like-{video_id}-{user_id}")
    }
}

impl Aggregate for Like {
    const TYPE: &'static str = "Like";
    type Command = LikeCommand;
    type Event = LikeEvent;
    // Liking cannot fail once the video is known to be published (the HTTP handler checks
    // that first, as Plaza does); a like of an already-liked pair writes nothing.
    type Error = Infallible;
    type Services = ();

    async fn handle(&mut self, command: LikeCommand, _: &(), sink: &EventSink<Self>) -> Result<(), Infallible> {
        match command {
            LikeCommand::Like { video_id, user_id } => {
                if !self.liked {
                    sink.write(LikeEvent::VideoLiked { video_id, user_id }, self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: LikeEvent) {
        match event {
            LikeEvent::VideoLiked { .. } => self.liked = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    #[test]
    fn a_like_is_recorded_once() {
        let (video_id, user_id) = (Uuid::new_v4(), Uuid::new_v4());
        TestFramework::<Like>::with(())
            .given_no_previous_events()
            .when(LikeCommand::Like { video_id, user_id })
            .then_expect_events(vec![LikeEvent::VideoLiked { video_id, user_id }]);
        TestFramework::<Like>::with(())
            .given(vec![LikeEvent::VideoLiked { video_id, user_id }])
            .when(LikeCommand::Like { video_id, user_id })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_video_is_published_once() {
        let owner = Uuid::new_v4();
        TestFramework::<Video>::with(())
            .given(vec![VideoEvent::VideoPublished { owner, title: "a".into() }])
            .when(VideoCommand::Publish { owner, title: "b".into() })
            .then_expect_error_message("the video is already published");
    }
}

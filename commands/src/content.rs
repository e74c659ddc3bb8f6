//! Content commands: videos, likes, favorites, comments, comment likes, hashtag pages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plaza_domain::videos::{
    Comment, CommentBody, CommentCommand, CreateHashtag, Description, Hashtag, HashtagPage, MediaUrl, React, Reaction, ReactionState, Title, Video,
    VideoCommand, comment_stream, hashtag_stream, video_hashtags, video_stream,
};
use plaza_domain::{DomainError, EventStore};
use uuid::Uuid;

use crate::CommandError;
use crate::pipeline::{CommandContext, Outcome, Pipeline};

/// What a command created: its id and the position of its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub id: Uuid,
    pub position: u64,
}

/// A video as `POST` or `PUT` describe it.
pub struct VideoFields<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub hashtags: &'a [String],
}

/// How long a video seen live is taken as live without reading its stream again.
const LIVE_FOR: Duration = Duration::from_secs(2);
/// Videos remembered as live before the memory starts over.
const LIVE_REMEMBERED: usize = 100_000;

#[derive(Clone)]
pub struct Content {
    pipeline: Pipeline,
    /// Videos recently seen live, and when: likes, favorites, comments and views of a
    /// video seen live in the last [`LIVE_FOR`] skip reading its stream. A deletion
    /// through this service forgets the video at once; one through another process (a
    /// second write API) is seen within [`LIVE_FOR`]. A reaction accepted in that window
    /// is stored and never shown (the video is gone), as one racing the deletion is.
    live_videos: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl Content {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { pipeline: Pipeline { store }, live_videos: Arc::default() }
    }

    pub async fn publish(&self, fields: VideoFields<'_>, media_url: &str, ctx: &CommandContext) -> Result<Created, CommandError> {
        let author_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let (title, description, hashtags) = parse_fields(&fields)?;
        let media_url = MediaUrl::parse(media_url)?;
        // A retried request (same idempotency key) publishes the same video id.
        let video_id = ctx.derived_id("video-id").unwrap_or_else(Uuid::now_v7);
        let publish = |_: &Video| VideoCommand::Publish {
            video_id,
            author_id,
            title: title.clone(),
            description: description.clone(),
            media_url: media_url.clone(),
            hashtags: hashtags.clone(),
        };
        let Outcome { position } = self.pipeline.execute_new(&video_stream(video_id), ctx, publish).await?;
        Ok(Created { id: video_id, position })
    }

    pub async fn update(&self, video_id: Uuid, fields: VideoFields<'_>, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let (title, description, hashtags) = parse_fields(&fields)?;
        let update =
            |_: &Video| VideoCommand::Update { video_id, actor, title: title.clone(), description: description.clone(), hashtags: hashtags.clone() };
        self.pipeline.execute(&video_stream(video_id), ctx, update).await
    }

    pub async fn delete(&self, video_id: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let deleted = self.pipeline.execute(&video_stream(video_id), ctx, |_: &Video| VideoCommand::Delete { video_id, actor }).await;
        self.live_videos.lock().expect("live videos lock").remove(&video_id);
        deleted
    }

    /// Likes (`on`) or unlikes a video.
    pub async fn like(&self, video_id: Uuid, on: bool, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        self.live_video(video_id).await?;
        self.react(Reaction::Like { video_id, user_id }, on, ctx).await
    }

    /// Favorites (`on`) or unfavorites a video.
    pub async fn favorite(&self, video_id: Uuid, on: bool, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        self.live_video(video_id).await?;
        self.react(Reaction::Favorite { video_id, user_id }, on, ctx).await
    }

    /// Likes (`on`) or unlikes a comment of a live video.
    pub async fn like_comment(&self, comment_id: Uuid, on: bool, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let comment = self.pipeline.load::<Comment>(&comment_stream(comment_id)).await?.state;
        let video_id = comment.live().ok_or(DomainError::CommentNotFound)?.video_id;
        if self.live_video(video_id).await.is_err() {
            return Err(DomainError::CommentNotFound.into());
        }
        self.react(Reaction::CommentLike { comment_id, video_id, user_id }, on, ctx).await
    }

    async fn react(&self, reaction: Reaction, on: bool, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        self.pipeline.execute_new(&reaction.stream(), ctx, |_: &ReactionState| React { reaction, on }).await
    }

    /// `video_not_found` unless the video is published and not deleted (see
    /// [`Self::video_is_live`]).
    async fn live_video(&self, video_id: Uuid) -> Result<(), CommandError> {
        match self.video_is_live(video_id).await? {
            true => Ok(()),
            false => Err(DomainError::VideoNotFound.into()),
        }
    }

    /// Whether the video is published and not deleted: read from its stream (never
    /// appended to, so a popular video is no hot spot), unless it was seen live in the
    /// last [`LIVE_FOR`].
    pub async fn video_is_live(&self, video_id: Uuid) -> Result<bool, CommandError> {
        let seen = self.live_videos.lock().expect("live videos lock").get(&video_id).copied();
        if seen.is_some_and(|at| at.elapsed() < LIVE_FOR) {
            return Ok(true);
        }
        let live = self.pipeline.load::<Video>(&video_stream(video_id)).await?.state.is_live();
        let mut remembered = self.live_videos.lock().expect("live videos lock");
        if remembered.len() >= LIVE_REMEMBERED {
            remembered.clear();
        }
        if live {
            remembered.insert(video_id, Instant::now());
        } else {
            remembered.remove(&video_id);
        }
        Ok(live)
    }

    pub async fn comment(&self, video_id: Uuid, body: &str, parent_id: Option<Uuid>, ctx: &CommandContext) -> Result<Created, CommandError> {
        let author_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let body = CommentBody::parse(body)?;
        self.live_video(video_id).await?;
        let parent = match parent_id {
            Some(parent_id) => Some(self.pipeline.load::<Comment>(&comment_stream(parent_id)).await?.state),
            None => None,
        };
        let comment_id = ctx.derived_id("comment-id").unwrap_or_else(Uuid::now_v7);
        let post = |_: &Comment| CommentCommand::Post { comment_id, video_id, author_id, parent_id, parent: parent.clone(), body: body.clone() };
        let Outcome { position } = self.pipeline.execute_new(&comment_stream(comment_id), ctx, post).await?;
        Ok(Created { id: comment_id, position })
    }

    /// Deletes a comment; its author or the video's author may.
    pub async fn delete_comment(&self, comment_id: Uuid, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        let actor = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let stream = comment_stream(comment_id);
        let comment = self.pipeline.load::<Comment>(&stream).await?.state;
        let video_id = comment.live().ok_or(DomainError::CommentNotFound)?.video_id;
        let video_author = self.pipeline.load::<Video>(&video_stream(video_id)).await?.state.author();
        self.pipeline.execute(&stream, ctx, |_: &Comment| CommentCommand::Delete { comment_id, actor, video_author }).await
    }

    /// Starts a new page sequence of the viewer's recommendations.
    pub async fn refresh_recommendations(&self, ctx: &CommandContext) -> Result<Outcome, CommandError> {
        use plaza_domain::feeds::{Recommendations, Refresh, recommendations_stream};
        let user_id = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        self.pipeline.execute(&recommendations_stream(user_id), ctx, |_: &Recommendations| Refresh { user_id }).await
    }

    /// Creates a hashtag's page; answers the hashtag as stored (`#Cats` is `cats`).
    pub async fn create_hashtag(&self, name: &str, description: Option<&str>, ctx: &CommandContext) -> Result<(String, Outcome), CommandError> {
        let created_by = ctx.actor.ok_or(CommandError::Unauthenticated)?;
        let create = CreateHashtag::new(Hashtag::parse(name)?, description, created_by)?;
        let stream = hashtag_stream(&create.name);
        let outcome = self
            .pipeline
            .execute(&stream, ctx, |_: &HashtagPage| CreateHashtag {
                name: create.name.clone(),
                description: create.description.clone(),
                created_by: create.created_by,
            })
            .await?;
        Ok((create.name.as_str().to_owned(), outcome))
    }
}

fn parse_fields(fields: &VideoFields<'_>) -> Result<(Title, Description, Vec<String>), DomainError> {
    let title = Title::parse(fields.title)?;
    let description = Description::parse(fields.description)?;
    let hashtags = video_hashtags(fields.hashtags, &description)?;
    Ok((title, description, hashtags))
}

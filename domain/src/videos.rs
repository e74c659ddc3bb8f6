//! Short videos and what people do with them: likes, favorites, comments, hashtags.
//!
//! Streams are small so a popular video is no contention point: `video-{id}` holds only
//! the video itself (publish, edit, delete); each like is its own
//! `like-{video}-{user}` stream, each favorite `favorite-{video}-{user}`, each comment
//! `comment-{id}` and each comment like `comment-like-{comment}-{user}`. Liking checks the
//! video's stream but never appends to it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::accounts::is_web_url;
use crate::text::{self, Lines};
use crate::{Aggregate, DomainError, Event};

pub fn video_stream(video_id: Uuid) -> String {
    format!("video-{video_id}")
}

pub fn like_stream(video_id: Uuid, user_id: Uuid) -> String {
    format!("like-{video_id}-{user_id}")
}

pub fn favorite_stream(video_id: Uuid, user_id: Uuid) -> String {
    format!("favorite-{video_id}-{user_id}")
}

pub fn comment_stream(comment_id: Uuid) -> String {
    format!("comment-{comment_id}")
}

pub fn comment_like_stream(comment_id: Uuid, user_id: Uuid) -> String {
    format!("comment-like-{comment_id}-{user_id}")
}

pub fn hashtag_stream(name: &Hashtag) -> String {
    format!("hashtag-{}", name.as_str())
}

pub const MAX_TITLE: usize = 150;
pub const MAX_DESCRIPTION: usize = 2000;
pub const MAX_HASHTAGS: usize = 20;
pub const MAX_HASHTAG: usize = 50;
pub const MAX_COMMENT: usize = 1000;

/// A video title: 1 to 150 characters of free text ([`crate::text`]) on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match text::clean(input, Lines::One) {
            Some(title) if !title.is_empty() && title.chars().count() <= MAX_TITLE => Ok(Self(title)),
            _ => Err(DomainError::InvalidVideo("title must be 1 to 150 characters on one line, without control characters")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A video description: at most 2,000 characters of free text (may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match text::clean(input, Lines::Many) {
            Some(description) if description.chars().count() <= MAX_DESCRIPTION => Ok(Self(description)),
            _ => Err(DomainError::InvalidVideo("description must be at most 2000 characters, without control characters")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the video's media lives: an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaUrl(String);

impl MediaUrl {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let url = input.trim();
        if !is_web_url(url) {
            return Err(DomainError::InvalidVideo("media_url must be an http(s) URL of at most 2048 characters"));
        }
        Ok(Self(url.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A hashtag name: letters, digits and `_` (any script), 1 to 50 of them, lowercased and
/// in NFC; a leading `#` is dropped, so `#Cats` and `cats` are one hashtag, and so are
/// `#cafe\u{301}` and `café`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hashtag(String);

impl Hashtag {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let name = input.trim();
        let name = text::nfc(&name.strip_prefix('#').unwrap_or(name).to_lowercase());
        let valid = name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if name.is_empty() || name.chars().count() > MAX_HASHTAG || !valid {
            return Err(DomainError::InvalidHashtag("a hashtag is 1 to 50 letters, digits or _"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A video's hashtags: the ones given, then the `#words` of the description, each once,
/// in order of appearance; at most 20. A given hashtag that is not valid is an error; a
/// `#` in the description that starts no valid hashtag is just text.
pub fn video_hashtags(given: &[String], description: &Description) -> Result<Vec<String>, DomainError> {
    let mut tags: Vec<String> = Vec::new();
    let mut add = |tag: Hashtag| {
        if !tags.iter().any(|t| t == tag.as_str()) {
            tags.push(tag.0);
        }
    };
    for tag in given {
        add(Hashtag::parse(tag)?);
    }
    let text = description.as_str();
    for (start, _) in text.match_indices('#') {
        let word: String = text[start + 1..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if let Ok(tag) = Hashtag::parse(&word) {
            add(tag);
        }
    }
    if tags.len() > MAX_HASHTAGS {
        return Err(DomainError::InvalidVideo("a video has at most 20 hashtags"));
    }
    Ok(tags)
}

/// A comment's text: 1 to 1,000 characters of free text; line breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentBody(String);

impl CommentBody {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match text::clean(input, Lines::Many) {
            Some(body) if !body.is_empty() && body.chars().count() <= MAX_COMMENT => Ok(Self(body)),
            _ => Err(DomainError::InvalidComment("a comment is 1 to 1000 characters, without control characters")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedVideo {
    pub author_id: Uuid,
    pub title: String,
    pub description: String,
    pub hashtags: Vec<String>,
}

/// The `video-{id}` stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Video {
    pub published: Option<PublishedVideo>,
    pub deleted: bool,
}

impl Video {
    /// Published and not deleted.
    pub fn is_live(&self) -> bool {
        self.published.is_some() && !self.deleted
    }

    pub fn author(&self) -> Option<Uuid> {
        self.published.as_ref().filter(|_| !self.deleted).map(|v| v.author_id)
    }
}

#[derive(Debug)]
pub enum VideoCommand {
    Publish { video_id: Uuid, author_id: Uuid, title: Title, description: Description, media_url: MediaUrl, hashtags: Vec<String> },
    Update { video_id: Uuid, actor: Uuid, title: Title, description: Description, hashtags: Vec<String> },
    Delete { video_id: Uuid, actor: Uuid },
}

impl Aggregate for Video {
    type Command = VideoCommand;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::VideoPublished { author_id, title, description, hashtags, .. } => {
                self.published = Some(PublishedVideo {
                    author_id: *author_id,
                    title: title.clone(),
                    description: description.clone(),
                    hashtags: hashtags.clone(),
                });
            }
            Event::VideoUpdated { title, description, hashtags, .. } => {
                if let Some(video) = &mut self.published {
                    (video.title, video.description, video.hashtags) = (title.clone(), description.clone(), hashtags.clone());
                }
            }
            Event::VideoDeleted { .. } => self.deleted = true,
            _ => {}
        }
        self
    }

    fn decide(&self, command: &VideoCommand) -> Result<Vec<Event>, DomainError> {
        match command {
            VideoCommand::Publish { video_id, author_id, title, description, media_url, hashtags } => {
                if self.published.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![Event::VideoPublished {
                    video_id: *video_id,
                    author_id: *author_id,
                    title: title.as_str().to_owned(),
                    description: description.as_str().to_owned(),
                    media_url: media_url.as_str().to_owned(),
                    hashtags: hashtags.clone(),
                }])
            }
            VideoCommand::Update { video_id, actor, title, description, hashtags } => {
                let video = self.live()?;
                if video.author_id != *actor {
                    return Err(DomainError::NotAllowed("only the author may edit a video"));
                }
                if video.title == title.as_str() && video.description == description.as_str() && &video.hashtags == hashtags {
                    return Ok(vec![]);
                }
                Ok(vec![Event::VideoUpdated {
                    video_id: *video_id,
                    author_id: *actor,
                    title: title.as_str().to_owned(),
                    description: description.as_str().to_owned(),
                    hashtags: hashtags.clone(),
                }])
            }
            VideoCommand::Delete { video_id, actor } => {
                let video = self.live()?;
                if video.author_id != *actor {
                    return Err(DomainError::NotAllowed("only the author may delete a video"));
                }
                Ok(vec![Event::VideoDeleted { video_id: *video_id, author_id: *actor }])
            }
        }
    }
}

impl Video {
    fn live(&self) -> Result<&PublishedVideo, DomainError> {
        self.published.as_ref().filter(|_| !self.deleted).ok_or(DomainError::VideoNotFound)
    }
}

/// What a reaction is on: a like or a favorite of a video, or a like of a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    Like { video_id: Uuid, user_id: Uuid },
    Favorite { video_id: Uuid, user_id: Uuid },
    CommentLike { comment_id: Uuid, video_id: Uuid, user_id: Uuid },
}

impl Reaction {
    pub fn stream(&self) -> String {
        match *self {
            Self::Like { video_id, user_id } => like_stream(video_id, user_id),
            Self::Favorite { video_id, user_id } => favorite_stream(video_id, user_id),
            Self::CommentLike { comment_id, user_id, .. } => comment_like_stream(comment_id, user_id),
        }
    }

    fn event(&self, on: bool) -> Event {
        match (*self, on) {
            (Self::Like { video_id, user_id }, true) => Event::VideoLiked { video_id, user_id },
            (Self::Like { video_id, user_id }, false) => Event::VideoUnliked { video_id, user_id },
            (Self::Favorite { video_id, user_id }, true) => Event::VideoFavorited { video_id, user_id },
            (Self::Favorite { video_id, user_id }, false) => Event::VideoUnfavorited { video_id, user_id },
            (Self::CommentLike { comment_id, video_id, user_id }, true) => Event::CommentLiked { comment_id, video_id, user_id },
            (Self::CommentLike { comment_id, video_id, user_id }, false) => Event::CommentUnliked { comment_id, video_id, user_id },
        }
    }

    fn conflict(&self, on: bool) -> DomainError {
        match (self, on) {
            (Self::Like { .. }, true) => DomainError::AlreadyLiked,
            (Self::Like { .. }, false) => DomainError::NotLiked,
            (Self::Favorite { .. }, true) => DomainError::AlreadyFavorited,
            (Self::Favorite { .. }, false) => DomainError::NotFavorited,
            (Self::CommentLike { .. }, true) => DomainError::AlreadyLikedComment,
            (Self::CommentLike { .. }, false) => DomainError::NotLikedComment,
        }
    }
}

/// A `like-*`, `favorite-*` or `comment-like-*` stream: one user's reaction to one thing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReactionState {
    pub on: bool,
}

/// Turn the reaction on (`on: true`) or off.
#[derive(Debug, Clone, Copy)]
pub struct React {
    pub reaction: Reaction,
    pub on: bool,
}

impl Aggregate for ReactionState {
    type Command = React;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::VideoLiked { .. } | Event::VideoFavorited { .. } | Event::CommentLiked { .. } => self.on = true,
            Event::VideoUnliked { .. } | Event::VideoUnfavorited { .. } | Event::CommentUnliked { .. } => self.on = false,
            _ => {}
        }
        self
    }

    fn decide(&self, command: &React) -> Result<Vec<Event>, DomainError> {
        if self.on == command.on {
            return Err(command.reaction.conflict(command.on));
        }
        Ok(vec![command.reaction.event(command.on)])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedComment {
    pub video_id: Uuid,
    pub author_id: Uuid,
    pub parent_id: Option<Uuid>,
}

/// The `comment-{id}` stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Comment {
    pub posted: Option<PostedComment>,
    pub deleted: bool,
}

impl Comment {
    /// Posted and not deleted.
    pub fn live(&self) -> Option<&PostedComment> {
        self.posted.as_ref().filter(|_| !self.deleted)
    }
}

#[derive(Debug)]
pub enum CommentCommand {
    /// `parent` is the parent comment's state when `parent_id` is given (the handler
    /// loads it; deciding stays pure).
    Post { comment_id: Uuid, video_id: Uuid, author_id: Uuid, parent_id: Option<Uuid>, parent: Option<Comment>, body: CommentBody },
    /// The video's author may delete any comment on it.
    Delete { comment_id: Uuid, actor: Uuid, video_author: Option<Uuid> },
}

impl Aggregate for Comment {
    type Command = CommentCommand;

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::CommentPosted { video_id, author_id, parent_id, .. } => {
                self.posted = Some(PostedComment { video_id: *video_id, author_id: *author_id, parent_id: *parent_id });
            }
            Event::CommentDeleted { .. } => self.deleted = true,
            _ => {}
        }
        self
    }

    fn decide(&self, command: &CommentCommand) -> Result<Vec<Event>, DomainError> {
        match command {
            CommentCommand::Post { comment_id, video_id, author_id, parent_id, parent, body } => {
                if self.posted.is_some() {
                    return Ok(vec![]);
                }
                if parent_id.is_some() {
                    let parent = parent.as_ref().and_then(Comment::live).ok_or(DomainError::InvalidParent)?;
                    if parent.video_id != *video_id || parent.parent_id.is_some() {
                        return Err(DomainError::InvalidParent);
                    }
                }
                Ok(vec![Event::CommentPosted {
                    comment_id: *comment_id,
                    video_id: *video_id,
                    author_id: *author_id,
                    parent_id: *parent_id,
                    body: body.as_str().to_owned(),
                }])
            }
            CommentCommand::Delete { comment_id, actor, video_author } => {
                let comment = self.live().ok_or(DomainError::CommentNotFound)?;
                if comment.author_id != *actor && *video_author != Some(*actor) {
                    return Err(DomainError::NotAllowed("only the comment's author or the video's author may delete it"));
                }
                Ok(vec![Event::CommentDeleted { comment_id: *comment_id, video_id: comment.video_id, deleted_by: *actor }])
            }
        }
    }
}

/// The `hashtag-{name}` stream: a hashtag's page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HashtagPage {
    pub created: bool,
}

#[derive(Debug)]
pub struct CreateHashtag {
    pub name: Hashtag,
    pub description: Option<String>,
    pub created_by: Uuid,
}

impl CreateHashtag {
    /// Validates the optional description: at most 500 characters of free text.
    pub fn new(name: Hashtag, description: Option<&str>, created_by: Uuid) -> Result<Self, DomainError> {
        let description = match description.map(|d| text::clean(d, Lines::Many)) {
            None => None,
            Some(Some(d)) if d.chars().count() <= 500 => Some(d).filter(|d| !d.is_empty()),
            Some(_) => return Err(DomainError::InvalidHashtag("a hashtag's description is at most 500 characters, without control characters")),
        };
        Ok(Self { name, description, created_by })
    }
}

impl Aggregate for HashtagPage {
    type Command = CreateHashtag;

    fn evolve(mut self, event: &Event) -> Self {
        if let Event::HashtagCreated { .. } = event {
            self.created = true;
        }
        self
    }

    fn decide(&self, command: &CreateHashtag) -> Result<Vec<Event>, DomainError> {
        if self.created {
            return Err(DomainError::HashtagExists);
        }
        Ok(vec![Event::HashtagCreated {
            name: command.name.as_str().to_owned(),
            description: command.description.clone(),
            created_by: command.created_by,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    fn published(video_id: Uuid, author_id: Uuid) -> Event {
        Event::VideoPublished {
            video_id,
            author_id,
            title: "A cat".into(),
            description: "".into(),
            media_url: "https://cdn.example.com/v.mp4".into(),
            hashtags: vec![],
        }
    }

    fn update(video_id: Uuid, actor: Uuid, title: &str) -> VideoCommand {
        VideoCommand::Update { video_id, actor, title: Title::parse(title).unwrap(), description: Description::parse("").unwrap(), hashtags: vec![] }
    }

    #[test]
    fn hashtags_come_from_the_list_and_the_description_once_each() {
        let description = Description::parse("Look #Cats and #dogs, #cats again; # alone and #é_1").unwrap();
        let tags = video_hashtags(&["#pets".into(), "Cats".into()], &description).unwrap();
        assert_eq!(tags, vec!["pets", "cats", "dogs", "é_1"]);
        let composed = video_hashtags(&["#Cafe\u{301}".into()], &Description::parse("at the #cafe\u{301}").unwrap()).unwrap();
        assert_eq!(composed, vec!["caf\u{e9}"], "one hashtag however it is spelled");
        assert!(video_hashtags(&["no spaces".into()], &description).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(video_hashtags(&many, &Description::parse("").unwrap()).is_err());
    }

    #[test]
    fn video_fields_are_validated() {
        assert!(Title::parse("  ").is_err());
        assert!(Title::parse(&"x".repeat(151)).is_err());
        assert!(Title::parse("line\nbreak").is_err());
        assert!(Description::parse(&"x".repeat(2001)).is_err());
        assert!(MediaUrl::parse("ftp://x.org/v.mp4").is_err());
        assert!(MediaUrl::parse("https://cdn.example.com/v.mp4").is_ok());
        assert!(CommentBody::parse(" ").is_err());
        assert!(CommentBody::parse("two\nlines").is_ok());
        assert!(Title::parse("evil\u{202e}gnp.exe").is_err());
        assert_eq!(Title::parse("Cafe\u{301}").unwrap().as_str(), "Caf\u{e9}");
        assert!(Description::parse("\u{1b}]0;title").is_err());
    }

    #[test]
    fn only_the_author_edits_or_deletes_a_video() {
        let (video, author, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let history = [published(video, author)];
        assert!(matches!(given::<Video>(&history, update(video, other, "Mine now")), Err(DomainError::NotAllowed(_))));
        assert!(matches!(given::<Video>(&history, VideoCommand::Delete { video_id: video, actor: other }), Err(DomainError::NotAllowed(_))));
        assert_eq!(given::<Video>(&history, update(video, author, "A dog")).unwrap().len(), 1);
        assert_eq!(given::<Video>(&history, update(video, author, "A cat")).unwrap(), vec![], "an edit that changes nothing");
    }

    #[test]
    fn a_deleted_video_is_gone() {
        let (video, author) = (Uuid::new_v4(), Uuid::new_v4());
        let history = [published(video, author), Event::VideoDeleted { video_id: video, author_id: author }];
        assert_eq!(given::<Video>(&history, VideoCommand::Delete { video_id: video, actor: author }), Err(DomainError::VideoNotFound));
        assert_eq!(given::<Video>(&history, update(video, author, "Back")), Err(DomainError::VideoNotFound));
        assert!(!Video::replay(&history).is_live());
    }

    #[test]
    fn liking_twice_or_unliking_a_stranger_is_a_conflict() {
        let reaction = Reaction::Like { video_id: Uuid::new_v4(), user_id: Uuid::new_v4() };
        let liked = given::<ReactionState>(&[], React { reaction, on: true }).unwrap();
        assert_eq!(given::<ReactionState>(&liked, React { reaction, on: true }), Err(DomainError::AlreadyLiked));
        assert_eq!(given::<ReactionState>(&[], React { reaction, on: false }), Err(DomainError::NotLiked));
        assert_eq!(given::<ReactionState>(&liked, React { reaction, on: false }).unwrap().len(), 1);
        let favorite = Reaction::Favorite { video_id: Uuid::new_v4(), user_id: Uuid::new_v4() };
        let history = given::<ReactionState>(&[], React { reaction: favorite, on: true }).unwrap();
        assert_eq!(given::<ReactionState>(&history, React { reaction: favorite, on: true }), Err(DomainError::AlreadyFavorited));
    }

    fn posted(comment_id: Uuid, video_id: Uuid, author_id: Uuid, parent_id: Option<Uuid>) -> Event {
        Event::CommentPosted { comment_id, video_id, author_id, parent_id, body: "hi".into() }
    }

    fn post(video_id: Uuid, parent_id: Option<Uuid>, parent: Option<Comment>) -> CommentCommand {
        CommentCommand::Post {
            comment_id: Uuid::new_v4(),
            video_id,
            author_id: Uuid::new_v4(),
            parent_id,
            parent,
            body: CommentBody::parse("hello").unwrap(),
        }
    }

    #[test]
    fn replies_nest_one_level_under_a_live_comment_of_the_same_video() {
        let (video, top, author) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let top_level = Comment::replay(&[posted(top, video, author, None)]);
        assert_eq!(given::<Comment>(&[], post(video, Some(top), Some(top_level.clone()))).unwrap().len(), 1);
        let reply = Comment::replay(&[posted(Uuid::new_v4(), video, author, Some(top))]);
        assert_eq!(given::<Comment>(&[], post(video, Some(top), Some(reply))), Err(DomainError::InvalidParent), "no reply to a reply");
        assert_eq!(given::<Comment>(&[], post(Uuid::new_v4(), Some(top), Some(top_level))), Err(DomainError::InvalidParent), "same video");
        assert_eq!(given::<Comment>(&[], post(video, Some(top), None)), Err(DomainError::InvalidParent), "the parent exists");
    }

    #[test]
    fn a_comment_is_deleted_by_its_author_or_the_videos_author() {
        let (comment, video, author, video_author, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let history = [posted(comment, video, author, None)];
        let delete = |actor| CommentCommand::Delete { comment_id: comment, actor, video_author: Some(video_author) };
        assert!(given::<Comment>(&history, delete(author)).is_ok());
        assert!(given::<Comment>(&history, delete(video_author)).is_ok());
        assert!(matches!(given::<Comment>(&history, delete(other)), Err(DomainError::NotAllowed(_))));
        let deleted = [posted(comment, video, author, None), Event::CommentDeleted { comment_id: comment, video_id: video, deleted_by: author }];
        assert_eq!(given::<Comment>(&deleted, delete(author)), Err(DomainError::CommentNotFound));
    }

    #[test]
    fn a_hashtag_page_is_created_once() {
        let create = || CreateHashtag::new(Hashtag::parse("#Cats").unwrap(), Some("all cats"), Uuid::new_v4()).unwrap();
        let events = given::<HashtagPage>(&[], create()).unwrap();
        assert!(matches!(&events[0], Event::HashtagCreated { name, .. } if name == "cats"));
        assert_eq!(given::<HashtagPage>(&events, create()), Err(DomainError::HashtagExists));
        assert!(CreateHashtag::new(Hashtag::parse("x").unwrap(), Some(&"d".repeat(501)), Uuid::new_v4()).is_err());
    }
}

//! Search: what can be searched, the rules of a query, how results are ordered, and the
//! port a search engine implements (tantivy embedded, Elasticsearch in the cluster).
//!
//! A query is normalised before it is searched or recorded ([`normalize_query`]): NFKC
//! (full-width `ＡＢＣ１２３`, common in Chinese input, is `ABC123`), lowercase, runs of
//! whitespace as one space, trimmed. What a query means is the engine's business, the
//! same on both: every word must match, in any searched field; a word of 5 or more
//! letters also matches words one edit away; the last word also matches as a prefix
//! (the user may still be typing it); Chinese text is segmented into words, the query as
//! well as the documents. Characters other engines read as syntax (`"`, `*`, `:`, `(`,
//! `-`, `~`, ...) are plain text here.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::DomainError;

/// The longest query, in characters, after normalisation.
pub const MAX_QUERY_CHARS: usize = 200;
/// How deep a result list goes: cursors reach at most this many results.
pub const MAX_RESULTS: usize = 1_000;
/// The most results one page holds.
pub const MAX_PAGE: usize = 100;
/// Most suggestions one request gets.
pub const MAX_SUGGESTIONS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchKind {
    Videos,
    Users,
    Hashtags,
}

impl SearchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Videos => "videos",
            Self::Users => "users",
            Self::Hashtags => "hashtags",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchSort {
    /// Best match first (BM25, a title or name counting more than a description).
    #[default]
    Relevance,
    /// Newest first (videos; users by registration; hashtags by first use).
    Newest,
    /// Most liked first: videos by likes, hashtags by the videos using them; users
    /// have no likes, so newest first.
    MostLiked,
}

/// The query as it is searched and recorded, or why it is refused.
pub fn normalize_query(input: &str) -> Result<String, DomainError> {
    if input.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(DomainError::InvalidSearch("the query holds a control character"));
    }
    let query = fold(input);
    if query.is_empty() {
        return Err(DomainError::InvalidSearch("the query is empty"));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(DomainError::InvalidSearch("a query holds at most 200 characters"));
    }
    Ok(query)
}

/// The stream of a user's searches and history clearings. Appended without a version
/// check: nothing is decided from it.
pub fn searches_stream(user_id: Uuid) -> String {
    format!("searches-{user_id}")
}

/// Text as queries are compared: NFKC, lower case, runs of white space as one space,
/// none at either end. Suggestions match typed prefixes against their text folded so.
/// NFKC again after lower case: `J` and a combining caron lower to `ǰ` composed, so
/// folding twice folds as once.
pub fn fold(text: &str) -> String {
    let folded: String = text.nfkc().flat_map(char::to_lowercase).nfkc().collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// Normalised ([`normalize_query`]).
    pub query: String,
    pub kind: SearchKind,
    pub sort: SearchSort,
    /// Only what was created at or after this time (Unix microseconds).
    pub since: Option<i64>,
    /// Results skipped (a cursor's), at most [`MAX_RESULTS`] with `first`.
    pub offset: usize,
    /// At most [`MAX_PAGE`].
    pub first: usize,
    /// Whether to count every match (`total`): it costs a visit to each.
    pub count: bool,
}

/// One result: the matched object's id (a video's or user's id, a hashtag's name), its
/// score (0 when sorted by something else) and its matched fields' fragments, HTML
/// escaped, the matched words in `<em>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: String,
    pub score: f32,
    pub highlights: Vec<Highlight>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Highlight {
    pub field: String,
    pub fragment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Matches in all (not only this page's), when counted.
    pub total: Option<usize>,
    /// Whether results go on after this page (within [`MAX_RESULTS`]).
    pub more: bool,
}

/// What the search index holds about one object (and keeps whole, as its source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SearchDocument {
    Video {
        video_id: Uuid,
        author_id: Uuid,
        title: String,
        description: String,
        hashtags: Vec<String>,
        /// Unix microseconds.
        created_at: i64,
        likes: i64,
    },
    User {
        user_id: Uuid,
        username: String,
        display_name: Option<String>,
        bio: Option<String>,
        created_at: i64,
        #[serde(default)]
        followers: i64,
    },
    Hashtag {
        name: String,
        created_at: i64,
        /// Videos using it.
        videos: i64,
    },
}

impl SearchDocument {
    pub fn kind(&self) -> SearchKind {
        match self {
            Self::Video { .. } => SearchKind::Videos,
            Self::User { .. } => SearchKind::Users,
            Self::Hashtag { .. } => SearchKind::Hashtags,
        }
    }

    /// Its searched texts, by the field name highlights report; its title or name first.
    pub fn texts(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Video { title, description, hashtags, .. } => {
                vec![("title", title.clone()), ("hashtags", hashtags.join(" ")), ("description", description.clone())]
            }
            Self::User { username, display_name, bio, .. } => vec![
                ("name", [Some(username.as_str()), display_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ")),
                ("bio", bio.clone().unwrap_or_default()),
            ],
            Self::Hashtag { name, .. } => vec![("name", name.clone())],
        }
    }

    /// What a suggestion completes to: a video's title, a username, a hashtag's name.
    pub fn suggestion(&self) -> &str {
        match self {
            Self::Video { title, .. } => title,
            Self::User { username, .. } => username,
            Self::Hashtag { name, .. } => name,
        }
    }

    /// How popular the object is, to rank suggestions: a video's likes, a user's
    /// followers, a hashtag's videos.
    pub fn popularity(&self) -> i64 {
        match self {
            Self::Video { likes, .. } => *likes,
            Self::User { followers, .. } => *followers,
            Self::Hashtag { videos, .. } => *videos,
        }
    }

    /// The id a hit carries.
    pub fn id(&self) -> String {
        match self {
            Self::Video { video_id, .. } => video_id.to_string(),
            Self::User { user_id, .. } => user_id.to_string(),
            Self::Hashtag { name, .. } => name.clone(),
        }
    }
}

/// A completion of what a user is typing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// The completed text, as written (a title, a username, a hashtag's name).
    pub text: String,
    /// What it completes to.
    pub kind: SearchKind,
    pub popularity: i64,
}

/// A change to the index.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexChange {
    /// Adds the document, or replaces the one of its kind and id.
    Put(SearchDocument),
    Delete {
        kind: SearchKind,
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search engine: {0}")]
    Engine(String),
}

/// A search engine's read side.
#[async_trait]
pub trait SearchIndex: Send + Sync {
    async fn search(&self, request: SearchRequest) -> Result<SearchPage, SearchError>;
    /// Up to `first` objects whose suggestion text, folded as [`normalize_query`] folds,
    /// starts with `prefix` (already normalized), most popular first.
    async fn suggest(&self, prefix: &str, first: usize) -> Result<Vec<Suggestion>, SearchError>;
}

/// A search engine's write side, for the search projection: the documents it holds and
/// the position of the last event they include, changed together.
#[async_trait]
pub trait SearchWriter: Send + Sync {
    /// The position of the last event applied (0: none).
    async fn position(&self) -> Result<u64, SearchError>;
    /// The document of that kind and id, as last applied.
    async fn get(&self, kind: SearchKind, id: &str) -> Result<Option<SearchDocument>, SearchError>;
    /// Applies the changes and moves the position to `position`, all or nothing.
    async fn apply(&self, changes: Vec<IndexChange>, position: u64) -> Result<(), SearchError>;
    /// Switches to an index rebuilt beside this one since, if there is one: true when it
    /// did (the position is then the rebuilt index's).
    async fn take_up_rebuilt(&self) -> Result<bool, SearchError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_twice_folds_as_once() {
        for text in ["J\u{30c}", "ＡＢＣ  Déjà", "\u{212a}\u{301}", "İstanbul"] {
            assert_eq!(fold(&fold(text)), fold(text), "{text:?}");
        }
        assert_eq!(fold("J\u{30c}"), "\u{1f0}");
    }

    #[test]
    fn queries_are_folded_and_collapsed() {
        assert_eq!(normalize_query("  Funny\t CATS ").unwrap(), "funny cats");
        assert_eq!(normalize_query("ＡＢＣ１２３").unwrap(), "abc123");
        assert_eq!(normalize_query("搞笑　视频").unwrap(), "搞笑 视频", "an ideographic space is a space");
        assert_eq!(normalize_query("\"title:(cats)\" -dogs*").unwrap(), "\"title:(cats)\" -dogs*", "syntax is text");
    }

    #[test]
    fn empty_long_and_control_queries_are_refused() {
        for bad in ["", "   ", "\u{3000}", "a\u{0}b", "x\u{1b}[31m"] {
            assert!(matches!(normalize_query(bad), Err(DomainError::InvalidSearch(_))), "{bad:?}");
        }
        assert!(normalize_query(&"a".repeat(MAX_QUERY_CHARS)).is_ok());
        assert!(normalize_query(&"a".repeat(1000)).is_err());
        assert!(normalize_query(&"视".repeat(201)).is_err());
    }
}

//! The Elasticsearch search index (REST, crate `elasticsearch`): the port and the query
//! rules of the embedded tantivy index ([`crate::tantivy`]), on a cluster every process
//! shares.
//!
//! - Indices (generations): `{prefix}-search-v{N}` for the first of [`INDEX_VERSION`] N,
//!   `{prefix}-search-v{N}-{millis}` for a rebuild. Two aliases: searches go through
//!   `{prefix}-search`, and `{prefix}-search-writing` names the generation the one search
//!   projector of the cluster writes ([`ElasticsearchSearch::writer`]). A reader
//!   ([`ElasticsearchSearch::open`]) also reads the checkpoint through the search alias,
//!   so the position it waits for is the one its searches see.
//! - Rebuilds: `plaza projections rebuild search` fills a new generation from the events
//!   ([`ElasticsearchSearch::rebuilding`]) while searches go on, then moves the writing
//!   alias to it ([`ElasticsearchSearch::publish`]). After an upgrade to a new
//!   [`INDEX_VERSION`] the projector does the same by itself, into the version's first
//!   generation. Either way the projector, at its next idle moment, switches to the new
//!   generation, catches up what came since, then moves the search alias in one
//!   `_aliases` request (a search sees the old index or the new one, never both or none)
//!   and deletes the old one ([`SearchWriter::take_up_rebuilt`]).
//! - Documents: `{kind}:{id}`, the whole [`SearchDocument`] kept in `source` (stored, not
//!   indexed), its texts in the fields highlights name (`title`, `hashtags`,
//!   `description`, `name`, `bio`), and what sorts and suggestions need. One shard:
//!   scores are computed over the whole index, as tantivy's are.
//! - Text: Elasticsearch's `cjk` analyzer rebuilt from its parts without its English stop
//!   words (tantivy has none: `the` alone must find something), `_` read as a space (as
//!   jieba cuts `alice_wonder`). Chinese is indexed as overlapping bigrams. The query is
//!   cut into words as tantivy cuts it ([`query_words`], jieba) and each word must match
//!   in the kind's fields taken together: exactly, as a prefix if it is the last, within
//!   one edit if it has 5 or more characters. Results come in those tiers, as tantivy's
//!   do ([`search_body`] says how, in one request). A Chinese word matches where all
//!   its bigrams are, so `搞笑视频` (`搞笑`, `视频`) finds `超级搞笑的猫咪视频`.
//! - Writes: one `_bulk` request per `apply`, each action with the external version the
//!   batch's position, so a batch delivered again or late never overwrites a newer
//!   document (Elasticsearch refuses that item with a 409, which is expected). The
//!   checkpoint is the document `checkpoint` of the same index, written in the same
//!   request with the same version. A deletion's version is remembered for
//!   `index.gc_deletes` (60 s by default). One projector writes an index: the projection
//!   reads documents back to change them (a like), so a second one, at another position,
//!   would count events twice. It takes the events in the global log's order, from the
//!   store or, in a cluster with Kafka, from the events topic's partitions merged back
//!   into that order (`crate::kafka::KafkaSearchFeed`).
//! - Visibility: a bulk waits for the refresh that makes it searchable
//!   (`refresh=wait_for`, every second by default), so `apply` returns once searches see
//!   the batch, as tantivy's does, and a read waiting for a position finds it. A rebuild
//!   nothing searches yet can skip the wait ([`ElasticsearchSearch::without_waiting`]).
//!
//! A bulk request is not a transaction. With one shard, the failures that come and go (a
//! full write queue, an unavailable shard) refuse the whole request, checkpoint included,
//! and the projector applies the batch again. A document refused on its own fails the
//! call, but the checkpoint in the same request may have moved past it: the mapping is
//! strict and written for these documents, so none should be.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use elasticsearch::auth::Credentials;
use elasticsearch::http::Url;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts, IndicesGetAliasParts, IndicesGetParts, IndicesRefreshParts};
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, Elasticsearch, GetParts, SearchParts};
use plaza_domain::search::{
    Highlight, IndexChange, MAX_PAGE, MAX_RESULTS, MAX_SUGGESTIONS, SearchDocument, SearchError, SearchHit, SearchIndex, SearchKind, SearchPage,
    SearchRequest, SearchSort, SearchWriter, Suggestion, fold,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::tantivy::tokenizer::query_words;

/// The version of the documents and their mapping: a change to either is a new version,
/// rebuilt into its own index.
pub const INDEX_VERSION: u64 = 1;
/// The id of the checkpoint document.
const CHECKPOINT_ID: &str = "checkpoint";
/// The analyzer of the text fields (see the module's documentation).
const ANALYZER: &str = "plaza_cjk";
/// Characters of a highlighted fragment.
const FRAGMENT_CHARS: usize = 150;
/// How much more a word found in a title (or a name) counts.
const TITLE_BOOST: f32 = 2.0;
/// Words of this many characters or more also match one edit away.
const FUZZY_FROM_CHARS: usize = 5;
/// How long one request may take, the wait for a refresh included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An Elasticsearch index of videos, users and hashtags: a client of one generation, or
/// of whichever the alias points at.
#[derive(Clone)]
pub struct ElasticsearchSearch {
    client: Elasticsearch,
    /// What searches go through: `{prefix}-search`.
    alias: String,
    /// The generation the search projector writes: `{prefix}-search-writing`.
    writing: String,
    /// How every generation's name starts: `{prefix}-search-v`.
    stem: String,
    /// What this client reads its documents and checkpoint from, and writes: a
    /// generation, or the alias (a reader, following it).
    index: Arc<RwLock<String>>,
    refresh: Refresh,
}

impl ElasticsearchSearch {
    /// A reader of the server at `url` (`http://user:password@host:9200`): it searches,
    /// and reads the checkpoint, through the alias. Sends nothing.
    pub fn new(url: &str, prefix: &str) -> Result<Self, SearchError> {
        let mut url = Url::parse(url).map_err(|e| failed("url", e))?;
        let credentials =
            (!url.username().is_empty()).then(|| Credentials::Basic(url.username().to_owned(), url.password().unwrap_or_default().to_owned()));
        // The credentials travel in a header, not in the URL (nor in its error messages).
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(credentials) = credentials {
            transport = transport.auth(credentials);
        }
        let alias = format!("{prefix}-search");
        Ok(Self {
            client: Elasticsearch::new(transport.build().map_err(|e| failed("client", e))?),
            writing: format!("{alias}-writing"),
            stem: format!("{alias}-v"),
            index: Arc::new(RwLock::new(alias.clone())),
            alias,
            refresh: Refresh::WaitFor,
        })
    }

    /// The same server, reading and writing the generation `index` (sends nothing).
    pub fn with_index(&self, index: &str) -> Self {
        Self { index: Arc::new(RwLock::new(index.to_owned())), ..self.clone() }
    }

    /// A reader ([`Self::new`]). On a first deployment (the alias points nowhere), it
    /// creates the first generation of [`INDEX_VERSION`] and points both aliases at it.
    pub async fn open(url: &str, prefix: &str) -> Result<Self, SearchError> {
        let search = Self::new(url, prefix)?;
        if search.targets(&search.alias).await?.is_empty() {
            let first = search.with_index(&search.first_generation());
            first.create_index().await?;
            let body = json!({ "actions": [
                { "add": { "index": first.index(), "alias": search.alias } },
                { "add": { "index": first.index(), "alias": search.writing } },
            ] });
            let sent = search.client.indices().update_aliases().body(body).send().await;
            Answer::read("point aliases", sent).await?.ok("point aliases")?;
        }
        Ok(search)
    }

    /// The client the search projector writes with: the generation the writing alias
    /// points at. When it points at one of an older version (an upgrade), or nowhere,
    /// the first generation of this version is created and the alias moved to it; the
    /// projector fills it from the events while searches go on in the old one, and
    /// moves the search alias when it has caught up ([`SearchWriter::take_up_rebuilt`]).
    pub async fn writer(&self) -> Result<Self, SearchError> {
        let targets = self.targets(&self.writing).await?;
        if let [target] = targets.as_slice() {
            match version_of(&self.stem, target) {
                Some(INDEX_VERSION) => return Ok(self.with_index(target)),
                Some(newer) if newer > INDEX_VERSION => {
                    return Err(failed(
                        "open",
                        format!("the search index {target} is written by a newer Plaza (version {newer}, this one's is {INDEX_VERSION})"),
                    ));
                }
                _ => {}
            }
        }
        let first = self.with_index(&self.first_generation());
        if first.create_index().await? {
            warn!(old = ?targets, new = first.index(), "the search index is of another version: building it anew from the events beside it");
        }
        first.point(&self.writing).await?;
        Ok(first)
    }

    /// A new generation, for a rebuild: created empty, written without waiting for
    /// refreshes (nothing searches it yet). Generations neither alias points at (left by
    /// an interrupted rebuild) are deleted first: one rebuild runs at a time (the caller
    /// holds a lock).
    pub async fn rebuilding(&self) -> Result<Self, SearchError> {
        let serving = [self.targets(&self.alias).await?, self.targets(&self.writing).await?].concat();
        for index in self.generations().await? {
            if !serving.contains(&index) {
                info!(%index, "deleting a search index an interrupted rebuild left");
                self.with_index(&index).delete_index().await?;
            }
        }
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let rebuilt = self.with_index(&format!("{}{INDEX_VERSION}-{millis}", self.stem)).without_waiting();
        rebuilt.create_index().await?;
        Ok(rebuilt)
    }

    /// Hands this (rebuilt) generation to the search projector: the writing alias moves
    /// to it; the projector takes it up at its next idle moment, catches up what came
    /// since, then moves the search alias and deletes the old generation.
    pub async fn publish(&self) -> Result<(), SearchError> {
        self.point(&self.writing).await
    }

    /// `apply` returns without waiting for its documents to be searchable: for a rebuild
    /// into an index nothing searches yet (`swap_alias` refreshes it).
    pub fn without_waiting(mut self) -> Self {
        self.refresh = Refresh::False;
        self
    }

    /// The alias searches go through.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The index (or alias) this client reads documents from and writes.
    pub fn index(&self) -> String {
        self.index.read().expect("index lock").clone()
    }

    fn first_generation(&self) -> String {
        format!("{}{INDEX_VERSION}", self.stem)
    }

    /// Creates the index with its mapping; false if it was there already.
    pub async fn create_index(&self) -> Result<bool, SearchError> {
        let sent = self.client.indices().create(IndicesCreateParts::Index(&self.index())).body(index_body()).send().await;
        let answer = Answer::read("create index", sent).await?;
        if answer.status == 400 && answer.body["error"]["type"] == "resource_already_exists_exception" {
            return Ok(false);
        }
        answer.ok("create index").map(|_| true)
    }

    /// The indices the search alias points at.
    pub async fn alias_targets(&self) -> Result<Vec<String>, SearchError> {
        self.targets(&self.alias).await
    }

    async fn targets(&self, alias: &str) -> Result<Vec<String>, SearchError> {
        let sent = self.client.indices().get_alias(IndicesGetAliasParts::Name(&[alias])).send().await;
        alias_targets(Answer::read("read alias", sent).await?)
    }

    /// Every generation on the server, of any version.
    async fn generations(&self) -> Result<Vec<String>, SearchError> {
        let pattern = format!("{}*", self.stem);
        let sent = self.client.indices().get(IndicesGetParts::Index(&[&pattern])).send().await;
        let answer = Answer::read("list indices", sent).await?;
        let indices = alias_targets(answer)?;
        Ok(indices.into_iter().filter(|index| version_of(&self.stem, index).is_some()).collect())
    }

    /// Points `alias` at this index and away from any other, in one request.
    async fn point(&self, alias: &str) -> Result<(), SearchError> {
        let body = swap_body(alias, &self.targets(alias).await?, &self.index());
        let sent = self.client.indices().update_aliases().body(body).send().await;
        Answer::read("move alias", sent).await?.ok("move alias").map(drop)
    }

    /// Points the search alias at this index and away from any other, in one request,
    /// after a refresh of this index (so searches see all it holds at once).
    pub async fn swap_alias(&self) -> Result<(), SearchError> {
        let sent = self.client.indices().refresh(IndicesRefreshParts::Index(&[&self.index()])).send().await;
        Answer::read("refresh", sent).await?.ok("refresh")?;
        self.point(&self.alias).await
    }

    /// Deletes this index (and the aliases with it, if they pointed here).
    pub async fn delete_index(&self) -> Result<(), SearchError> {
        let sent = self.client.indices().delete(IndicesDeleteParts::Index(&[&self.index()])).send().await;
        Answer::read("delete index", sent).await?.ok("delete index").map(drop)
    }

    /// The `_source` of a document of this index, if there is one.
    async fn stored<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, SearchError> {
        // A get is real time: it sees the last bulk even before a refresh.
        let sent = self.client.get(GetParts::IndexId(&self.index(), id)).send().await;
        found(Answer::read("get", sent).await?)
    }
}

#[async_trait]
impl SearchWriter for ElasticsearchSearch {
    async fn position(&self) -> Result<u64, SearchError> {
        Ok(self.stored::<Checkpoint>(CHECKPOINT_ID).await?.map_or(0, |checkpoint| checkpoint.position))
    }

    async fn get(&self, kind: SearchKind, id: &str) -> Result<Option<SearchDocument>, SearchError> {
        Ok(self.stored::<Stored>(&document_id(kind, id)).await?.map(|stored| stored.source))
    }

    async fn apply(&self, changes: Vec<IndexChange>, position: u64) -> Result<(), SearchError> {
        let lines = bulk_lines(&changes, position)?;
        let sent = self.client.bulk(BulkParts::Index(&self.index())).refresh(self.refresh).body(lines).send().await;
        bulk_outcome(Answer::read("bulk", sent).await?.ok("bulk")?)
    }

    /// Takes up a generation a rebuild published (the writing alias moved to it: true,
    /// the position is then its own), or, once caught up in the generation it writes,
    /// moves the search alias to it and deletes the ones it replaced.
    async fn take_up_rebuilt(&self) -> Result<bool, SearchError> {
        let own = self.index();
        if own == self.alias {
            return Ok(false);
        }
        if let [target] = self.targets(&self.writing).await?.as_slice()
            && *target != own
            && version_of(&self.stem, target) == Some(INDEX_VERSION)
        {
            info!(from = %own, to = %target, "search projector switching to the rebuilt index");
            *self.index.write().expect("index lock") = target.clone();
            return Ok(true);
        }
        let serving = self.alias_targets().await?;
        if serving != [own.clone()] {
            self.swap_alias().await?;
            info!(index = %own, replaced = ?serving, "searches now go to the new search index");
            for old in serving.iter().filter(|index| **index != own) {
                self.with_index(old).delete_index().await?;
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl SearchIndex for ElasticsearchSearch {
    async fn search(&self, request: SearchRequest) -> Result<SearchPage, SearchError> {
        let words = query_words(&request.query);
        if words.is_empty() {
            // Nothing but punctuation: nothing to look for.
            return Ok(SearchPage { hits: vec![], total: request.count.then_some(0), more: false });
        }
        let (offset, limit) = window(&request);
        let body = search_body(&request, &words, offset, limit);
        let sent = self.client.search(SearchParts::Index(&[&self.alias])).body(body).send().await;
        page(Answer::read("search", sent).await?.ok("search")?, &request, offset, limit)
    }

    async fn suggest(&self, prefix: &str, first: usize) -> Result<Vec<Suggestion>, SearchError> {
        let sent = self.client.search(SearchParts::Index(&[&self.alias])).body(suggest_body(prefix, first)).send().await;
        suggestions(Answer::read("suggest", sent).await?.ok("suggest")?)
    }
}

// What is sent: pure functions of the request.

/// The index's settings and mapping.
fn index_body() -> Value {
    let words = json!({ "type": "text", "analyzer": ANALYZER });
    json!({
        "settings": {
            "number_of_shards": 1,
            "analysis": {
                "char_filter": {
                    "underscore_as_space": { "type": "pattern_replace", "pattern": "_", "replacement": " " }
                },
                "analyzer": {
                    ANALYZER: {
                        "type": "custom",
                        "char_filter": ["underscore_as_space"],
                        "tokenizer": "standard",
                        "filter": ["cjk_width", "lowercase", "cjk_bigram"]
                    }
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "kind": { "type": "keyword" },
                "source": { "type": "object", "enabled": false },
                "title": words,
                "hashtags": words,
                "description": words,
                "name": words,
                "bio": words,
                "created_at": { "type": "long" },
                // Videos' likes, hashtags' videos: what "most liked" sorts by.
                "likes": { "type": "long" },
                "popularity": { "type": "long" },
                // The folded suggestion text, matched by prefix.
                "suggest": { "type": "keyword" },
                // The checkpoint's.
                "position": { "type": "long", "index": false }
            }
        }
    })
}

fn document_id(kind: SearchKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

/// The fields a kind's words are searched in together, in the order its highlights are
/// listed, and the field a match ranks higher in (a title, a name), as tantivy's.
fn searched(kind: SearchKind) -> (&'static [&'static str], Option<&'static str>) {
    match kind {
        SearchKind::Videos => (&["title", "hashtags", "description"], Some("title")),
        SearchKind::Users => (&["name", "bio"], Some("name")),
        SearchKind::Hashtags => (&["name"], None),
    }
}

/// What is indexed of a document.
fn indexed(document: &SearchDocument) -> Result<Value, SearchError> {
    let (created_at, likes) = match document {
        SearchDocument::Video { created_at, likes, .. } => (*created_at, *likes),
        SearchDocument::User { created_at, .. } => (*created_at, 0),
        SearchDocument::Hashtag { created_at, videos, .. } => (*created_at, *videos),
    };
    let mut body = json!({
        "kind": document.kind().as_str(),
        "created_at": created_at,
        "likes": likes,
        "popularity": document.popularity(),
        "suggest": fold(document.suggestion()),
    });
    for (field, text) in document.texts() {
        body[field] = Value::String(text);
    }
    body["source"] = serde_json::to_value(document).map_err(|e| failed("bulk", e))?;
    Ok(body)
}

/// The lines of the `_bulk` request applying `changes` and moving the checkpoint to
/// `position`, every action at external version `position`.
fn bulk_lines(changes: &[IndexChange], position: u64) -> Result<Vec<String>, SearchError> {
    let meta = |id: &str| json!({ "_id": id, "version": position, "version_type": "external" });
    let mut lines = Vec::with_capacity(2 * changes.len() + 2);
    for change in changes {
        match change {
            IndexChange::Put(document) => {
                lines.push(json!({ "index": meta(&document_id(document.kind(), &document.id())) }).to_string());
                lines.push(indexed(document)?.to_string());
            }
            IndexChange::Delete { kind, id } => lines.push(json!({ "delete": meta(&document_id(*kind, id)) }).to_string()),
        }
    }
    lines.push(json!({ "index": meta(CHECKPOINT_ID) }).to_string());
    lines.push(json!({ "kind": "checkpoint", "position": position }).to_string());
    Ok(lines)
}

/// The results skipped and the page's size, as tantivy bounds them.
fn window(request: &SearchRequest) -> (usize, usize) {
    let offset = request.offset.min(MAX_RESULTS);
    (offset, request.first.clamp(1, MAX_PAGE).min(MAX_RESULTS - offset).max(1))
}

/// How a query's words match: each tier of results adds a way (as tantivy's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Matching {
    Exact,
    /// The last word also as a prefix.
    Prefix,
    /// Also within one edit, for words of [`FUZZY_FROM_CHARS`] or more.
    Typo,
}

/// The tiers a query has: a typo tier only if some word has [`FUZZY_FROM_CHARS`] or more.
fn matchings(words: &[String]) -> Vec<Matching> {
    let typos = words.iter().any(|word| word.chars().count() >= FUZZY_FROM_CHARS);
    [Matching::Exact, Matching::Prefix, Matching::Typo].into_iter().filter(|m| *m != Matching::Typo || typos).collect()
}

/// Every word in the kind's fields taken together (`combined_fields`, as tantivy's one
/// field per kind), matched as `matching` says; a prefix or a typo counts less.
fn matched(words: &[String], fields: &[&str], matching: Matching) -> Vec<Value> {
    let word_query = |(i, word): (usize, &String)| {
        let mut any = vec![json!({ "combined_fields": { "query": word, "fields": fields, "operator": "and" } })];
        if matching >= Matching::Prefix && i + 1 == words.len() {
            any.push(json!({ "multi_match": { "query": word, "fields": fields, "type": "bool_prefix", "operator": "and", "boost": 0.5 } }));
        }
        if matching == Matching::Typo && word.chars().count() >= FUZZY_FROM_CHARS {
            any.push(json!({
                "multi_match": { "query": word, "fields": fields, "type": "most_fields", "operator": "and", "fuzziness": 1, "boost": 0.3 }
            }));
        }
        match any.len() {
            1 => any.remove(0),
            _ => json!({ "bool": { "should": any, "minimum_should_match": 1 } }),
        }
    };
    words.iter().enumerate().map(word_query).collect()
}

/// The field a sort orders by, newest or largest first (none: by score).
fn sort_field(request: &SearchRequest) -> Option<&'static str> {
    match request.sort {
        SearchSort::Relevance => None,
        // Users have no likes.
        SearchSort::MostLiked if request.kind != SearchKind::Users => Some("likes"),
        SearchSort::Newest | SearchSort::MostLiked => Some("created_at"),
    }
}

/// A relevance score `s` within its tier becomes `tier + s / (s + 1)`: the tier, plus
/// the score mapped into [0, 1) in the same order.
const TIER_SCORE: &str = "params.tier + _score / (_score + 1)";

/// The search of `words` (the query's, not empty) in one request, ranked in tiers as
/// tantivy ranks them. Each tier is a clause of its own matching only what the tier
/// before it does not (`must_not`), so a document scores in one tier, and all of them
/// together are the loosest tier's matches (what `total` counts). The first of n tiers
/// scores n, the last 1: by relevance, plus the tier's own score mapped into [0, 1)
/// ([`TIER_SCORE`], a script); by a field, exactly (`constant_score`), then sorted by
/// `[_score, field]`. A large constant added to the score would instead cost relevance
/// its precision (scores are 32-bit floats). A word in the title (or name) adds to the
/// relevance (an optional clause). Highlights mark what the loosest tier matches, as
/// tantivy's do. One more result than the page holds tells whether there are more;
/// every match is counted only when asked. Scripts, prefixes and fuzzy words are
/// refused by a cluster with `search.allow_expensive_queries: false`.
fn search_body(request: &SearchRequest, words: &[String], offset: usize, limit: usize) -> Value {
    let (fields, ranked) = searched(request.kind);
    let by_field = sort_field(request);
    let matchings = matchings(words);
    let title: Vec<Value> = ranked
        .map(|field| words.iter().map(|word| json!({ "match": { field: { "query": word, "operator": "and", "boost": TITLE_BOOST } } })).collect())
        .unwrap_or_default();
    let tiers: Vec<Value> = matchings
        .iter()
        .enumerate()
        .map(|(i, matching)| {
            let rank = matchings.len() - i;
            let mut only = json!({ "bool": { "must": matched(words, fields, *matching) } });
            if i > 0 {
                only["bool"]["must_not"] = json!([{ "bool": { "must": matched(words, fields, matchings[i - 1]) } }]);
            }
            if by_field.is_some() {
                return json!({ "constant_score": { "filter": only, "boost": rank } });
            }
            if !title.is_empty() {
                only["bool"]["should"] = json!(title);
            }
            json!({ "script_score": { "query": only, "script": { "source": TIER_SCORE, "params": { "tier": rank } } } })
        })
        .collect();
    let loosest = matched(words, fields, *matchings.last().expect("an exact tier at least"));
    let mut filter = vec![json!({ "term": { "kind": request.kind.as_str() } })];
    if let Some(since) = request.since {
        filter.push(json!({ "range": { "created_at": { "gte": since } } }));
    }
    let highlighted: serde_json::Map<String, Value> = fields.iter().map(|field| (field.to_string(), json!({}))).collect();
    let mut body = json!({
        "query": { "bool": { "should": tiers, "minimum_should_match": 1, "filter": filter } },
        "from": offset,
        "size": limit + 1,
        "track_total_hits": request.count,
        "_source": false,
        "highlight": {
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            "encoder": "html",
            "number_of_fragments": 1,
            "fragment_size": FRAGMENT_CHARS,
            "highlight_query": { "bool": { "must": loosest } },
            "fields": highlighted
        }
    });
    if let Some(field) = by_field {
        body["sort"] = json!([{ "_score": "desc" }, { field: "desc" }]);
    }
    body
}

/// The documents whose folded suggestion text starts with `prefix`, most popular first
/// (then by that text).
fn suggest_body(prefix: &str, first: usize) -> Value {
    json!({
        "query": { "prefix": { "suggest": prefix } },
        "sort": [{ "popularity": "desc" }, { "suggest": "asc" }],
        "size": first.min(MAX_SUGGESTIONS),
        "track_total_hits": false,
        "_source": ["source"]
    })
}

/// The `_aliases` request pointing `alias` at `to` and away from the indices in `from`.
/// The version of a generation's name: `{stem}{version}` (the first of its version) or
/// `{stem}{version}-{millis}` (a rebuild); `None` for any other name.
fn version_of(stem: &str, index: &str) -> Option<u64> {
    let rest = index.strip_prefix(stem)?;
    let (version, rebuilt) = rest.split_once('-').map_or((rest, None), |(version, millis)| (version, Some(millis)));
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    (digits(version) && rebuilt.is_none_or(digits)).then(|| version.parse().ok()).flatten()
}

fn swap_body(alias: &str, from: &[String], to: &str) -> Value {
    let mut actions: Vec<Value> =
        from.iter().filter(|index| *index != to).map(|index| json!({ "remove": { "index": index, "alias": alias } })).collect();
    actions.push(json!({ "add": { "index": to, "alias": alias } }));
    json!({ "actions": actions })
}

// What comes back.

/// An HTTP answer: its status and its body (JSON, or the text when it is not JSON).
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    async fn read(what: &str, sent: Result<Response, elasticsearch::Error>) -> Result<Self, SearchError> {
        let response = sent.map_err(|e| unanswered(what, &e))?;
        let status = response.status_code().as_u16();
        let text = response.text().await.map_err(|e| unanswered(what, &e))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Self { status, body })
    }

    /// The body of a success, or the error the answer carries.
    fn ok(self, what: &str) -> Result<Value, SearchError> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let error = &self.body["error"];
        let reason = match (error["type"].as_str(), error["reason"].as_str()) {
            (Some(kind), Some(reason)) => format!("{kind}: {reason}"),
            _ if error.is_string() => error.as_str().unwrap_or_default().to_owned(),
            _ => self.body.to_string().chars().take(300).collect(),
        };
        Err(SearchError::Engine(format!("elasticsearch {what}: HTTP {}: {reason}", self.status)))
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> SearchError {
    SearchError::Engine(format!("elasticsearch {what}: {error}"))
}

/// A request that got no answer, with its causes (reqwest's message names only the URL).
fn unanswered(what: &str, error: &(dyn std::error::Error + 'static)) -> SearchError {
    let mut causes: Vec<String> = std::iter::successors(Some(error), |e| e.source()).map(ToString::to_string).collect();
    causes.dedup();
    failed(what, causes.join(": "))
}

fn unexpected(what: &str, error: serde_json::Error) -> SearchError {
    failed(what, format!("unexpected answer: {error}"))
}

/// A stored search document's `_source` (what `get` and `suggest` read of it).
#[derive(Deserialize)]
struct Stored {
    source: SearchDocument,
}

#[derive(Deserialize)]
struct Checkpoint {
    position: u64,
}

/// The `_source` a get found, or none.
fn found<T: DeserializeOwned>(answer: Answer) -> Result<Option<T>, SearchError> {
    if answer.status == 404 && answer.body["found"] == false {
        return Ok(None);
    }
    let mut body = answer.ok("get")?;
    if body["found"] != true {
        return Ok(None);
    }
    serde_json::from_value(body["_source"].take()).map(Some).map_err(|e| unexpected("get", e))
}

#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(rename = "_id", default)]
    id: String,
    status: u16,
    error: Option<Value>,
}

/// Whether a bulk succeeded: every item did, or was refused for a version conflict (its
/// document is already newer).
fn bulk_outcome(body: Value) -> Result<(), SearchError> {
    let response: BulkResponse = serde_json::from_value(body).map_err(|e| unexpected("bulk", e))?;
    if !response.errors {
        return Ok(());
    }
    for item in response.items.iter().flat_map(HashMap::values) {
        if let Some(error) = &item.error
            && item.status != 409
        {
            let reason = format!("{}: {}", error["type"].as_str().unwrap_or("error"), error["reason"].as_str().unwrap_or_default());
            return Err(SearchError::Engine(format!("elasticsearch bulk: {} refused (HTTP {}): {reason}", item.id, item.status)));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct SearchResponse {
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    total: Option<Total>,
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Total {
    value: usize,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(rename = "_id")]
    id: String,
    /// None when sorted by a field alone (suggestions).
    #[serde(rename = "_score")]
    score: Option<f32>,
    #[serde(default)]
    highlight: HashMap<String, Vec<String>>,
    #[serde(rename = "_source")]
    source: Option<Stored>,
}

/// The page a search answer holds (it asked for one result more than `limit`).
fn page(body: Value, request: &SearchRequest, offset: usize, limit: usize) -> Result<SearchPage, SearchError> {
    let response: SearchResponse = serde_json::from_value(body).map_err(|e| unexpected("search", e))?;
    let total = match (request.count, response.hits.total) {
        (true, Some(total)) => Some(total.value),
        (true, None) => return Err(failed("search", "no total in the answer")),
        (false, _) => None,
    };
    let more = response.hits.hits.len() > limit && offset + limit < MAX_RESULTS;
    let hits = response
        .hits
        .hits
        .into_iter()
        .take(limit)
        .map(|hit| SearchHit {
            // `{kind}:{id}`
            id: hit.id.split_once(':').map_or(hit.id.as_str(), |(_, id)| id).to_owned(),
            // By relevance, the tier plus the score within it; by a field, 0 as tantivy has it.
            score: if sort_field(request).is_some() { 0.0 } else { hit.score.unwrap_or(0.0) },
            highlights: highlights(request.kind, hit.highlight),
        })
        .collect();
    Ok(SearchPage { hits, total, more })
}

/// A hit's highlights in the kind's field order, one fragment each. Elasticsearch's HTML
/// encoder also writes `/` as `&#x2F;`; tantivy's leaves it, and so does this.
fn highlights(kind: SearchKind, mut found: HashMap<String, Vec<String>>) -> Vec<Highlight> {
    searched(kind)
        .0
        .iter()
        .filter_map(|field| {
            let fragment = found.remove(*field)?.into_iter().next()?;
            Some(Highlight { field: (*field).to_owned(), fragment: fragment.replace("&#x2F;", "/") })
        })
        .collect()
}

fn suggestions(body: Value) -> Result<Vec<Suggestion>, SearchError> {
    let response: SearchResponse = serde_json::from_value(body).map_err(|e| unexpected("suggest", e))?;
    response
        .hits
        .hits
        .into_iter()
        .map(|hit| {
            let Some(Stored { source: document }) = hit.source else { return Err(failed("suggest", "a hit without its source")) };
            Ok(Suggestion { text: document.suggestion().to_owned(), kind: document.kind(), popularity: document.popularity() })
        })
        .collect()
}

/// The indices a get-alias answer names (none when the alias does not exist).
fn alias_targets(answer: Answer) -> Result<Vec<String>, SearchError> {
    if answer.status == 404 {
        return Ok(vec![]);
    }
    match answer.ok("read alias")? {
        Value::Object(indices) => Ok(indices.into_iter().map(|(index, _)| index).collect()),
        other => Err(failed("read alias", format!("unexpected answer: {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use plaza_domain::search::normalize_query;
    use uuid::Uuid;

    use super::*;

    fn video() -> SearchDocument {
        SearchDocument::Video {
            video_id: Uuid::nil(),
            author_id: Uuid::nil(),
            title: "Funny CATS".into(),
            description: "at the park".into(),
            hashtags: vec!["cats".into(), "funny".into()],
            created_at: 7,
            likes: 50,
        }
    }

    fn request(query: &str, kind: SearchKind, sort: SearchSort) -> SearchRequest {
        SearchRequest { query: normalize_query(query).unwrap(), kind, sort, since: None, offset: 0, first: 20, count: true }
    }

    fn body_of(request: &SearchRequest) -> Value {
        let (offset, limit) = window(request);
        search_body(request, &query_words(&request.query), offset, limit)
    }

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, body }
    }

    fn lines(lines: &[String]) -> Vec<Value> {
        lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn the_mapping_is_strict_keeps_the_source_and_cuts_texts_into_cjk_bigrams() {
        let body = index_body();
        assert_eq!(body["settings"]["number_of_shards"], 1);
        let analyzer = &body["settings"]["analysis"]["analyzer"][ANALYZER];
        assert_eq!(analyzer["tokenizer"], "standard");
        assert_eq!(analyzer["filter"], json!(["cjk_width", "lowercase", "cjk_bigram"]), "the cjk analyzer without stop words");
        let mapping = &body["mappings"];
        assert_eq!(mapping["dynamic"], "strict");
        for field in ["title", "hashtags", "description", "name", "bio"] {
            assert_eq!(mapping["properties"][field], json!({ "type": "text", "analyzer": ANALYZER }), "{field}");
        }
        for field in ["created_at", "likes", "popularity"] {
            assert_eq!(mapping["properties"][field]["type"], "long", "{field}");
        }
        assert_eq!(mapping["properties"]["kind"]["type"], "keyword");
        assert_eq!(mapping["properties"]["suggest"]["type"], "keyword");
        assert_eq!(mapping["properties"]["source"], json!({ "type": "object", "enabled": false }));
    }

    #[test]
    fn a_bulk_writes_every_change_and_the_checkpoint_at_the_batch_position() {
        let changes = vec![IndexChange::Put(video()), IndexChange::Delete { kind: SearchKind::Hashtags, id: "summer".into() }];
        let lines = lines(&bulk_lines(&changes, 42).unwrap());
        let id = format!("videos:{}", Uuid::nil());
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], json!({ "index": { "_id": id, "version": 42, "version_type": "external" } }));
        assert_eq!(lines[1]["kind"], "videos");
        assert_eq!(lines[1]["title"], "Funny CATS");
        assert_eq!(lines[1]["hashtags"], "cats funny");
        assert_eq!(lines[1]["description"], "at the park");
        assert_eq!((&lines[1]["created_at"], &lines[1]["likes"], &lines[1]["popularity"]), (&json!(7), &json!(50), &json!(50)));
        assert_eq!(lines[1]["suggest"], "funny cats", "folded");
        assert_eq!(serde_json::from_value::<SearchDocument>(lines[1]["source"].clone()).unwrap(), video(), "kept whole");
        assert_eq!(lines[2], json!({ "delete": { "_id": "hashtags:summer", "version": 42, "version_type": "external" } }));
        assert_eq!(lines[3], json!({ "index": { "_id": "checkpoint", "version": 42, "version_type": "external" } }));
        assert_eq!(lines[4], json!({ "kind": "checkpoint", "position": 42 }));
    }

    #[test]
    fn users_and_hashtags_are_indexed_under_their_own_fields() {
        let user = SearchDocument::User {
            user_id: Uuid::nil(),
            username: "alice_w".into(),
            display_name: Some("Alice".into()),
            bio: None,
            created_at: 1,
            followers: 9,
        };
        let body = indexed(&user).unwrap();
        assert_eq!((&body["name"], &body["bio"], &body["likes"], &body["popularity"]), (&json!("alice_w Alice"), &json!(""), &json!(0), &json!(9)));
        let hashtag = indexed(&SearchDocument::Hashtag { name: "Summer".into(), created_at: 1, videos: 3 }).unwrap();
        assert_eq!((&hashtag["name"], &hashtag["likes"], &hashtag["suggest"]), (&json!("Summer"), &json!(3), &json!("summer")));
    }

    /// The tier clauses of a search body.
    fn tiers(body: &Value) -> Vec<Value> {
        body["query"]["bool"]["should"].as_array().unwrap().clone()
    }

    #[test]
    fn every_word_must_match_in_tiers_exact_then_prefix_then_typo() {
        let body = body_of(&request("Funny cat", SearchKind::Videos, SearchSort::Relevance));
        let fields = json!(["title", "hashtags", "description"]);
        let exact = |word: &str| json!({ "combined_fields": { "query": word, "fields": fields, "operator": "and" } });
        let prefix = json!({ "multi_match": { "query": "cat", "fields": fields, "type": "bool_prefix", "operator": "and", "boost": 0.5 } });
        let typo =
            json!({ "multi_match": { "query": "funny", "fields": fields, "type": "most_fields", "operator": "and", "fuzziness": 1, "boost": 0.3 } });
        let any = |clauses: Vec<Value>| json!({ "bool": { "should": clauses, "minimum_should_match": 1 } });
        let tier_1 = json!([exact("funny"), exact("cat")]);
        let tier_2 = json!([exact("funny"), any(vec![exact("cat"), prefix.clone()])]);
        let tier_3 = json!([any(vec![exact("funny"), typo]), any(vec![exact("cat"), prefix])]);

        let tiers = tiers(&body);
        assert_eq!(tiers.len(), 3, "funny has 5 letters: a typo tier");
        assert_eq!(body["query"]["bool"]["minimum_should_match"], 1);
        let title = json!([
            { "match": { "title": { "query": "funny", "operator": "and", "boost": TITLE_BOOST } } },
            { "match": { "title": { "query": "cat", "operator": "and", "boost": TITLE_BOOST } } }
        ]);
        let scored = |tier: &Value| tier["script_score"]["query"]["bool"].clone();
        assert_eq!(scored(&tiers[0]), json!({ "must": tier_1, "should": title }), "every word exactly, a title match counts more");
        assert_eq!(scored(&tiers[1]), json!({ "must": tier_2, "must_not": [{ "bool": { "must": tier_1 } }], "should": title }));
        assert_eq!(scored(&tiers[2]), json!({ "must": tier_3, "must_not": [{ "bool": { "must": tier_2 } }], "should": title }));
        let ranks: Vec<&Value> = tiers.iter().map(|t| &t["script_score"]["script"]["params"]["tier"]).collect();
        assert_eq!(ranks, [&json!(3), &json!(2), &json!(1)], "the exact tier first");
        assert!(tiers.iter().all(|t| t["script_score"]["script"]["source"] == TIER_SCORE));
        assert!(body.get("sort").is_none(), "by score");

        assert_eq!(body["query"]["bool"]["filter"], json!([{ "term": { "kind": "videos" } }]));
        assert_eq!((&body["from"], &body["size"], &body["track_total_hits"]), (&json!(0), &json!(21), &json!(true)));
        let highlight = &body["highlight"];
        assert_eq!((&highlight["pre_tags"], &highlight["post_tags"], &highlight["encoder"]), (&json!(["<em>"]), &json!(["</em>"]), &json!("html")));
        assert_eq!(highlight["highlight_query"], json!({ "bool": { "must": tier_3 } }), "what the loosest tier matches");
        assert_eq!(highlight["fields"], json!({ "title": {}, "hashtags": {}, "description": {} }));
    }

    #[test]
    fn short_words_have_no_typo_tier_and_hashtags_no_title() {
        let body = body_of(&request("summ", SearchKind::Hashtags, SearchSort::Relevance));
        let tiers = tiers(&body);
        assert_eq!(tiers.len(), 2, "{tiers:?}");
        assert_eq!(
            tiers[0]["script_score"]["query"]["bool"],
            json!({ "must": [{ "combined_fields": { "query": "summ", "fields": ["name"], "operator": "and" } }] })
        );
        assert_eq!(tiers[1]["script_score"]["script"]["params"]["tier"], 1);
        let users = body_of(&request("alice", SearchKind::Users, SearchSort::Relevance));
        let tier_1 = &self::tiers(&users)[0]["script_score"]["query"]["bool"];
        assert_eq!(tier_1["must"][0]["combined_fields"]["fields"], json!(["name", "bio"]));
        assert_eq!(tier_1["should"][0]["match"]["name"]["boost"], json!(TITLE_BOOST), "a name match counts more");
    }

    #[test]
    fn by_a_field_the_tier_is_the_score_and_sorts_first() {
        for (kind, sort, field) in [
            (SearchKind::Videos, SearchSort::Newest, "created_at"),
            (SearchKind::Videos, SearchSort::MostLiked, "likes"),
            (SearchKind::Hashtags, SearchSort::MostLiked, "likes"),
            (SearchKind::Users, SearchSort::MostLiked, "created_at"),
            (SearchKind::Users, SearchSort::Newest, "created_at"),
        ] {
            let body = body_of(&request("Funny cat", kind, sort));
            assert_eq!(body["sort"], json!([{ "_score": "desc" }, { field: "desc" }]), "{kind:?} {sort:?}");
            let tiers = tiers(&body);
            let boosts: Vec<&Value> = tiers.iter().map(|t| &t["constant_score"]["boost"]).collect();
            assert_eq!(boosts, [&json!(3), &json!(2), &json!(1)], "{kind:?} {sort:?}");
            let relevance = body_of(&request("Funny cat", kind, SearchSort::Relevance));
            for (tier, scored) in tiers.iter().zip(self::tiers(&relevance)) {
                let mut query = scored["script_score"]["query"].clone();
                query["bool"].as_object_mut().unwrap().remove("should");
                assert_eq!(tier["constant_score"]["filter"], query, "the same tiers, without the title's score");
            }
        }
    }

    #[test]
    fn chinese_is_asked_word_by_word_and_syntax_is_text() {
        let exact = |body: &Value| -> Vec<Value> {
            tiers(body)[0]["script_score"]["query"]["bool"]["must"].as_array().unwrap().iter().map(|w| w["combined_fields"].clone()).collect()
        };
        let words: Vec<Value> =
            exact(&body_of(&request("搞笑视频", SearchKind::Videos, SearchSort::Relevance))).iter().map(|w| w["query"].clone()).collect();
        assert_eq!(words, [json!("搞笑"), json!("视频")]);
        let users = exact(&body_of(&request("title:(cats) -dogs*", SearchKind::Users, SearchSort::Relevance)));
        assert!(users.iter().all(|w| w["fields"] == json!(["name", "bio"])));
        assert_eq!(users.len(), 3, "{users:?}");
    }

    #[test]
    fn since_and_pages_are_as_tantivy_has_them() {
        let since = SearchRequest { since: Some(99), offset: 40, first: 10, count: false, ..request("cats", SearchKind::Videos, SearchSort::Newest) };
        let body = body_of(&since);
        assert_eq!(body["query"]["bool"]["filter"][1], json!({ "range": { "created_at": { "gte": 99 } } }));
        assert_eq!((&body["from"], &body["size"], &body["track_total_hits"]), (&json!(40), &json!(11), &json!(false)));
        let deep = SearchRequest { offset: 5000, first: 500, ..request("cats", SearchKind::Videos, SearchSort::Newest) };
        assert_eq!(window(&deep), (MAX_RESULTS, 1));
        assert_eq!(window(&SearchRequest { offset: 990, first: 100, ..deep }), (990, 10));
    }

    #[test]
    fn suggestions_are_the_folded_prefix_most_popular_first() {
        let body = suggest_body("funny c", 500);
        assert_eq!(body["query"], json!({ "prefix": { "suggest": "funny c" } }));
        assert_eq!(body["sort"], json!([{ "popularity": "desc" }, { "suggest": "asc" }]));
        assert_eq!(body["size"], MAX_SUGGESTIONS);
        let answer = json!({ "hits": { "hits": [
            { "_id": "users:x", "_score": null, "_source": { "source": {
                "kind": "user", "user_id": Uuid::nil(), "username": "FunnyGuy", "display_name": null, "bio": null, "created_at": 1, "followers": 70 } } },
            { "_id": "hashtags:funny", "_score": null, "_source": { "source": { "kind": "hashtag", "name": "funny", "created_at": 1, "videos": 60 } } }
        ] } });
        assert_eq!(
            suggestions(answer).unwrap(),
            vec![
                Suggestion { text: "FunnyGuy".into(), kind: SearchKind::Users, popularity: 70 },
                Suggestion { text: "funny".into(), kind: SearchKind::Hashtags, popularity: 60 },
            ]
        );
        assert!(suggestions(json!({ "hits": { "hits": [{ "_id": "videos:x", "_score": null }] } })).is_err());
    }

    #[test]
    fn the_alias_moves_in_one_request() {
        let body = swap_body("p-search", &["p-search-v1".into()], "p-search-v2");
        assert_eq!(
            body,
            json!({ "actions": [
                { "remove": { "index": "p-search-v1", "alias": "p-search" } },
                { "add": { "index": "p-search-v2", "alias": "p-search" } }
            ] })
        );
        let first = json!({ "actions": [{ "add": { "index": "p-search-v1", "alias": "p-search" } }] });
        assert_eq!(swap_body("p-search", &[], "p-search-v1"), first);
        assert_eq!(swap_body("p-search", &["p-search-v1".into()], "p-search-v1"), first, "already there");
        let targets = alias_targets(answer(200, json!({ "p-search-v1": { "aliases": { "p-search": {} } } }))).unwrap();
        assert_eq!(targets, ["p-search-v1"]);
        assert!(alias_targets(answer(404, json!({ "error": "alias [p-search] missing", "status": 404 }))).unwrap().is_empty());
    }

    #[test]
    fn hits_carry_their_id_score_and_highlights_in_field_order() {
        let body = json!({ "hits": { "total": { "value": 7, "relation": "eq" }, "max_score": 2.5, "hits": [
            { "_id": "videos:a", "_score": 2.5, "highlight": {
                "description": ["the <em>cats</em>"],
                "title": ["&lt;script&gt;alert(1)&lt;&#x2F;script&gt; <em>cats</em> &amp; mice"]
            } },
            { "_id": "videos:b", "_score": 1.0 },
            { "_id": "videos:c", "_score": 0.5 }
        ] } });
        let request = SearchRequest { first: 2, ..request("cats", SearchKind::Videos, SearchSort::Relevance) };
        let SearchPage { hits, total, more } = page(body, &request, 0, 2).unwrap();
        assert_eq!((total, more), (Some(7), true), "a third hit: there are more");
        assert_eq!(hits.iter().map(|h| (h.id.as_str(), h.score)).collect::<Vec<_>>(), [("a", 2.5), ("b", 1.0)]);
        assert_eq!(
            hits[0].highlights,
            [
                Highlight { field: "title".into(), fragment: "&lt;script&gt;alert(1)&lt;/script&gt; <em>cats</em> &amp; mice".into() },
                Highlight { field: "description".into(), fragment: "the <em>cats</em>".into() },
            ]
        );
        assert!(hits[1].highlights.is_empty());
    }

    #[test]
    fn hits_sorted_by_a_field_score_zero_and_uncounted_pages_have_no_total() {
        let body = json!({ "hits": { "max_score": null, "hits": [{ "_id": "hashtags:a:b", "_score": 2.0, "sort": [2.0, 3] }] } });
        let request = SearchRequest { count: false, ..request("a", SearchKind::Hashtags, SearchSort::MostLiked) };
        let page = page(body, &request, 0, 20).unwrap();
        assert_eq!((page.hits[0].id.as_str(), page.hits[0].score, page.total, page.more), ("a:b", 0.0, None, false));
        let counted = SearchRequest { count: true, ..request.clone() };
        assert!(super::page(json!({ "hits": { "hits": [] } }), &counted, 0, 20).is_err(), "a count asked for and not given");
        assert!(super::page(json!({ "took": 1 }), &request, 0, 20).is_err(), "not a search answer");
    }

    #[test]
    fn a_version_conflict_is_expected_and_any_other_refusal_fails_the_bulk() {
        let item = |op: &str, id: &str, status: u16, error: Option<&str>| {
            let mut item = json!({ "_index": "p-search-v1", "_id": id, "status": status });
            if let Some(kind) = error {
                item["error"] = json!({ "type": kind, "reason": format!("{kind} on [{id}]") });
            }
            json!({ op: item })
        };
        assert!(bulk_outcome(json!({ "errors": false, "items": [item("index", "videos:a", 201, None)] })).is_ok());
        let conflict = json!({ "errors": true, "items": [
            item("index", "videos:a", 201, None),
            item("index", "videos:b", 409, Some("version_conflict_engine_exception")),
            item("delete", "videos:c", 404, None),
            item("index", "checkpoint", 409, Some("version_conflict_engine_exception"))
        ] });
        assert!(bulk_outcome(conflict).is_ok(), "newer documents are left alone; a deleted document was already gone");
        let refused = json!({ "errors": true, "items": [
            item("index", "videos:b", 409, Some("version_conflict_engine_exception")),
            item("index", "videos:d", 400, Some("document_parsing_exception")),
            item("index", "checkpoint", 201, None)
        ] });
        let error = bulk_outcome(refused).unwrap_err().to_string();
        assert!(error.contains("videos:d") && error.contains("400") && error.contains("document_parsing_exception"), "{error}");
        assert!(bulk_outcome(json!({ "errors": true })).is_err(), "not a bulk answer");
    }

    #[test]
    fn a_get_finds_the_source_or_nothing() {
        let source = json!({ "kind": "videos", "source": serde_json::to_value(video()).unwrap() });
        let got: Option<Stored> = found(answer(200, json!({ "_id": "videos:x", "found": true, "_source": source }))).unwrap();
        assert_eq!(got.map(|s| s.source), Some(video()));
        let missing: Option<Stored> = found(answer(404, json!({ "_id": "videos:x", "found": false }))).unwrap();
        assert!(missing.is_none());
        let checkpoint: Option<Checkpoint> =
            found(answer(200, json!({ "found": true, "_source": { "kind": "checkpoint", "position": 43 } }))).unwrap();
        assert_eq!(checkpoint.map(|c| c.position), Some(43));
        let no_index =
            answer(404, json!({ "error": { "type": "index_not_found_exception", "reason": "no such index [p-search-v1]" }, "status": 404 }));
        let error = found::<Checkpoint>(no_index).err().unwrap().to_string();
        assert_eq!(error, "search engine: elasticsearch get: HTTP 404: index_not_found_exception: no such index [p-search-v1]");
        assert!(found::<Stored>(answer(200, json!({ "found": true, "_source": { "kind": "videos" } }))).is_err(), "no source");
    }

    #[test]
    fn refusals_become_engine_errors_with_their_reason() {
        let message = |status, body| answer(status, body).ok("search").unwrap_err().to_string();
        assert_eq!(message(503, json!({ "error": "unavailable" })), "search engine: elasticsearch search: HTTP 503: unavailable");
        assert_eq!(
            message(502, Value::String("<html>bad gateway</html>".into())),
            "search engine: elasticsearch search: HTTP 502: \"<html>bad gateway</html>\""
        );
        assert!(answer(201, json!({})).ok("bulk").is_ok());
    }

    #[test]
    fn a_url_with_credentials_makes_a_client_and_a_bad_one_an_error() {
        let search = ElasticsearchSearch::new("http://elastic:secret@127.0.0.1:9200", "plaza").unwrap();
        assert_eq!((search.alias(), search.index().as_str()), ("plaza-search", "plaza-search"), "a reader follows the alias");
        assert_eq!(search.first_generation(), format!("plaza-search-v{INDEX_VERSION}"));
        assert_eq!(search.with_index("plaza-search-v3").index(), "plaza-search-v3");
        assert_eq!(search.index(), "plaza-search", "another client");
        assert!(ElasticsearchSearch::new("not a url", "plaza").is_err());
    }

    #[test]
    fn generations_are_told_by_their_names() {
        assert_eq!(version_of("p-search-v", "p-search-v2"), Some(2));
        assert_eq!(version_of("p-search-v", "p-search-v2-1764950400000"), Some(2));
        for other in ["p-search", "p-search-writing", "p-search-v", "p-search-v2-", "p-search-v2-x", "p-search-vx", "q-search-v2", "p-search-v-1"] {
            assert_eq!(version_of("p-search-v", other), None, "{other}");
        }
    }
}

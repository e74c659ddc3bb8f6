//! The embedded search index: tantivy, in a directory of the data dir that holds one
//! index per build ([`generations`]).
//!
//! One index holds videos, users and hashtags, each document once under `key` =
//! `{kind}:{id}`: a put deletes the key and adds the new document in the same commit, so
//! an edited title is found by its new words only and a deleted video by none. Each
//! text field belongs to one kind. The document is stored whole as JSON (`source`, as
//! Elasticsearch keeps `_source`): hits and highlights are read from it, and the
//! projection reads it back to change a document in part (a like). Each commit carries
//! the position of the last event it applied (the commit payload): the index and its
//! checkpoint move together, as a read model and its checkpoint do in one transaction.
//!
//! A query ([`plaza_domain::search`]) becomes: every word must match (`Must`) in the
//! kind's field of every word, exactly (BM25), or as a prefix if it is the last word, or
//! within one edit if it has 5 or more letters. A title (or a name) is indexed twice in
//! that field, so a word found there counts more. Results come in tiers (exact, then
//! prefix, then typo), each only evaluated when the tiers before it leave the page short.
//! The exact tier of several words is a plain conjunction of terms, which tantivy
//! evaluates with block-max pruning (most of the matching documents are never scored);
//! a prefix or a typo is expanded to at most [`MAX_EXPANSIONS`] terms of the index, each
//! a term of its own, as Elasticsearch's `max_expansions` does.
//! Highlights mark the words of each stored field that matched so, HTML escaped.
//!
//! Suggestions: each document's suggestion text, folded, is indexed as its prefixes of
//! up to [`SUGGEST_PREFIX_CHARS`] characters, with its popularity as a fast field.

pub mod generations;
pub mod tokenizer;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use plaza_domain::search::{
    Highlight, IndexChange, MAX_PAGE, MAX_RESULTS, MAX_SUGGESTIONS, SearchDocument, SearchError, SearchHit, SearchIndex, SearchKind, SearchPage,
    SearchRequest, SearchSort, SearchWriter, Suggestion, fold,
};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument, Term};

use generations::{Name, VERSION};
use tokenizer::{WordsTokenizer, query_words};
use tracing::{info, warn};

/// Memory the writer buffers before it writes a segment.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
/// Characters of a highlighted fragment.
const FRAGMENT_CHARS: usize = 150;
/// Terms a prefix or a typo expands to at most (the first in the term dictionary's
/// order), as Elasticsearch's `max_expansions`.
const MAX_EXPANSIONS: usize = 50;
/// How much a term matched as a prefix, or one edit away, counts against an exact one.
const PREFIX_BOOST: f32 = 0.5;
const TYPO_BOOST: f32 = 0.3;
/// Words of this many characters or more also match one edit away.
const FUZZY_FROM_CHARS: usize = 5;
/// A suggestion's folded text is indexed as each of its prefixes up to this many
/// characters; a longer prefix is looked up by its first this many, then compared.
const SUGGEST_PREFIX_CHARS: usize = 24;
/// Candidates read for a prefix longer than [`SUGGEST_PREFIX_CHARS`].
const SUGGEST_CANDIDATES: usize = 200;

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    source: Field,
    /// Every word of a video (title, hashtags, description; the title twice), to match.
    video_text: Field,
    /// Every word of a user (username and display name twice, bio).
    user_text: Field,
    /// A hashtag's name.
    tag: Field,
    created_at: Field,
    likes: Field,
    suggest: Field,
    popularity: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        // Frequencies for BM25; no positions: nothing asks for phrases.
        let words = TextOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer(tokenizer::NAME).set_index_option(IndexRecordOption::WithFreqs));
        let fields = Fields {
            key: builder.add_text_field("key", STRING),
            source: builder.add_text_field("source", STORED),
            video_text: builder.add_text_field("video_text", words.clone()),
            user_text: builder.add_text_field("user_text", words.clone()),
            tag: builder.add_text_field("tag", words),
            created_at: builder.add_i64_field("created_at", INDEXED | FAST),
            likes: builder.add_i64_field("likes", FAST),
            suggest: builder.add_text_field("suggest", STRING),
            popularity: builder.add_i64_field("popularity", FAST),
        };
        (builder.build(), fields)
    }

    /// The field a kind's words are matched in: every text of the object, so a word is
    /// one term to look up. Each field belongs to one kind, so a query needs no clause
    /// on the kind.
    fn searched(&self, kind: SearchKind) -> Field {
        match kind {
            SearchKind::Videos => self.video_text,
            SearchKind::Users => self.user_text,
            SearchKind::Hashtags => self.tag,
        }
    }

    /// A document's indexed texts: each in its kind's field, the first (a title, a
    /// name) twice, so that a word found there counts more (as a boost on a title field
    /// would, without a second term to look up per word).
    fn texts(&self, document: &SearchDocument) -> Vec<(Field, String)> {
        let field = self.searched(document.kind());
        let texts = document.texts();
        let first = texts.first().filter(|_| document.kind() != SearchKind::Hashtags).map(|(_, text)| (field, text.clone()));
        texts.into_iter().map(|(_, text)| (field, text)).chain(first).collect()
    }
}

/// The first 1, 2, .. [`SUGGEST_PREFIX_CHARS`] characters of `text`.
fn prefixes(text: &str) -> impl Iterator<Item = &str> {
    text.char_indices().skip(1).map(|(at, _)| at).chain([text.len()]).take(SUGGEST_PREFIX_CHARS).map(|end| &text[..end]).filter(|p| !p.is_empty())
}

fn key(kind: SearchKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

fn engine(error: impl std::fmt::Display) -> SearchError {
    SearchError::Engine(error.to_string())
}

/// A tantivy index of videos, users and hashtags: the serving generation of a
/// directory of them ([`generations`]).
#[derive(Clone)]
pub struct TantivySearch {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    live: RwLock<Live>,
}

#[derive(Clone)]
struct Live {
    name: Name,
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
}

impl TantivySearch {
    /// Opens the serving generation of the index in `root`, creating what is missing:
    /// the directory, and a generation when none of this version serves.
    pub fn open(root: &Path) -> Result<Self, SearchError> {
        crate::files::private_subdir(root).map_err(engine)?;
        remove_unversioned(root).map_err(engine)?;
        let name = match generations::current(root).map_err(engine)? {
            Some(name) if name.version == VERSION => name,
            found => {
                let name = Name::next(root).map_err(engine)?;
                match found {
                    Some(old) => {
                        warn!(%old, new = %name, "the search index is of another version: building it anew from the events, searches see it fill meanwhile (`plaza projections rebuild search` before an upgrade avoids that)")
                    }
                    None => info!(%name, "creating the search index"),
                }
                Inner::open(&name.dir(root))?;
                generations::publish(root, &name).map_err(engine)?;
                name
            }
        };
        let inner = Arc::new(Inner::open(&name.dir(root))?);
        if let Err(error) = generations::remove_older(root, &name) {
            warn!(%error, "could not delete older search index generations");
        }
        Ok(Self { shared: Arc::new(Shared { root: root.to_owned(), live: RwLock::new(Live { name, inner }) }) })
    }

    /// A new, empty generation beside the serving one, for a rebuild: it serves once
    /// [`Self::publish`]ed. The lock keeps other rebuilds out until it is dropped;
    /// `None` when another rebuild holds it.
    pub fn rebuild(root: &Path) -> Result<Option<(Self, std::fs::File)>, SearchError> {
        crate::files::private_subdir(root).map_err(engine)?;
        let Some(lock) = generations::lock_rebuild(root).map_err(engine)? else { return Ok(None) };
        let current = generations::current(root).map_err(engine)?;
        generations::remove_unpublished(root, current.as_ref()).map_err(engine)?;
        let name = Name::next(root).map_err(engine)?;
        let inner = Arc::new(Inner::open(&name.dir(root))?);
        let search = Self { shared: Arc::new(Shared { root: root.to_owned(), live: RwLock::new(Live { name, inner }) }) };
        Ok(Some((search, lock)))
    }

    /// Makes this generation the serving one (processes serving the index take it up).
    /// Its writer is closed first, so they can open theirs.
    pub fn publish(self) -> Result<String, SearchError> {
        let Live { name, inner } = self.live();
        drop(inner);
        let root = self.shared.root.clone();
        drop(self);
        generations::publish(&root, &name).map_err(engine)?;
        Ok(name.to_string())
    }

    /// The segments searches go through now (merges make fewer).
    pub fn segments(&self) -> usize {
        self.inner().reader.searcher().segment_readers().len()
    }

    /// The generation's directory.
    pub fn directory(&self) -> PathBuf {
        self.live().name.dir(&self.shared.root)
    }

    fn live(&self) -> Live {
        self.shared.live.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn inner(&self) -> Arc<Inner> {
        self.live().inner
    }
}

/// Deletes an index written straight into `root` (before generations): it is rebuilt.
fn remove_unversioned(root: &Path) -> std::io::Result<()> {
    if !root.join("meta.json").exists() {
        return Ok(());
    }
    warn!(dir = %root.display(), "deleting a search index of the first version: it is rebuilt from the events");
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && !["CURRENT", "CURRENT.tmp", "rebuild.lock"].contains(&name.as_str()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl Inner {
    fn open(dir: &Path) -> Result<Self, SearchError> {
        crate::files::private_subdir(dir).map_err(engine)?;
        let (schema, fields) = Fields::schema();
        let index = Index::open_or_create(MmapDirectory::open(dir).map_err(engine)?, schema).map_err(engine)?;
        index.tokenizers().register(tokenizer::NAME, TextAnalyzer::from(WordsTokenizer));
        // Reloaded after each commit (below), and when merges finish.
        let reader = index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into().map_err(engine)?;
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY).map_err(engine)?;
        Ok(Self { index, fields, reader, writer: Mutex::new(writer) })
    }

    fn position(&self) -> Result<u64, SearchError> {
        // The commit payload (see the module's documentation).
        let metas = self.index.load_metas().map_err(engine)?;
        Ok(metas.payload.and_then(|p| p.parse().ok()).unwrap_or(0))
    }
}

impl Inner {
    /// Applies the changes and commits them with `position`, then serves them.
    fn apply(&self, changes: Vec<IndexChange>, position: u64) -> Result<(), SearchError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for change in changes {
            match change {
                IndexChange::Put(document) => {
                    writer.delete_term(Term::from_field_text(self.fields.key, &key(document.kind(), &document.id())));
                    writer.add_document(self.document(&document)?).map_err(engine)?;
                }
                IndexChange::Delete { kind, id } => {
                    writer.delete_term(Term::from_field_text(self.fields.key, &key(kind, &id)));
                }
            }
        }
        let mut commit = writer.prepare_commit().map_err(engine)?;
        commit.set_payload(&position.to_string());
        commit.commit().map_err(engine)?;
        drop(writer);
        self.reader.reload().map_err(engine)
    }

    fn document(&self, document: &SearchDocument) -> Result<TantivyDocument, SearchError> {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, key(document.kind(), &document.id()));
        doc.add_text(f.source, serde_json::to_string(document).map_err(engine)?);
        for (field, text) in f.texts(document) {
            doc.add_text(field, text);
        }
        let (created_at, likes) = match document {
            SearchDocument::Video { created_at, likes, .. } => (*created_at, *likes),
            SearchDocument::User { created_at, .. } => (*created_at, 0),
            SearchDocument::Hashtag { created_at, videos, .. } => (*created_at, *videos),
        };
        doc.add_i64(f.created_at, created_at);
        doc.add_i64(f.likes, likes);
        for prefix in prefixes(&fold(document.suggestion())) {
            doc.add_text(f.suggest, prefix);
        }
        doc.add_i64(f.popularity, document.popularity());
        Ok(doc)
    }

    fn source(&self, doc: &TantivyDocument) -> Result<SearchDocument, SearchError> {
        let json = doc.get_first(self.fields.source).and_then(|v| v.as_str()).unwrap_or_default();
        serde_json::from_str(json).map_err(engine)
    }

    fn get(&self, kind: SearchKind, id: &str) -> Result<Option<SearchDocument>, SearchError> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(Term::from_field_text(self.fields.key, &key(kind, id)), IndexRecordOption::Basic);
        let Some((_, address)) = searcher.search(&query, &TopDocs::with_limit(1).order_by_score()).map_err(engine)?.into_iter().next() else {
            return Ok(None);
        };
        self.source(&searcher.doc(address).map_err(engine)?).map(Some)
    }

    /// Every word in the kind's texts, matched as `matching` says.
    fn query(&self, searcher: &Searcher, request: &SearchRequest, words: &[String], matching: Matching) -> Result<Box<dyn Query>, SearchError> {
        let field = self.fields.searched(request.kind);
        let term_query = |term: Term, boost: f32| -> Box<dyn Query> {
            let query = Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
            if boost == 1.0 { query } else { Box::new(BoostQuery::new(query, boost)) }
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let term = Term::from_field_text(field, word);
            // The word's terms, each with its weight: the word itself unless the index
            // has none of it, then its expansions. One term alone is a term query, so
            // that a tier of single terms stays a conjunction of terms (pruned by blocks).
            let mut terms = Vec::new();
            if matching == Matching::Exact || searcher.doc_freq(&term).map_err(engine)? > 0 {
                terms.push((term.clone(), 1.0));
            }
            if matching >= Matching::Prefix && i + 1 == words.len() {
                let prefixed = expand(searcher, field, &FuzzyTermQuery::new_prefix(term.clone(), 0, true))?;
                terms.extend(prefixed.into_iter().filter(|t| *t != term).map(|t| (t, PREFIX_BOOST)));
            }
            if matching == Matching::Typo && word.chars().count() >= FUZZY_FROM_CHARS {
                let near = expand(searcher, field, &FuzzyTermQuery::new(term.clone(), 1, true))?;
                let new: Vec<Term> = near.into_iter().filter(|t| !terms.iter().any(|(known, _)| known == t)).collect();
                terms.extend(new.into_iter().map(|t| (t, TYPO_BOOST)));
            }
            let matched = match terms.len() {
                0 => term_query(term, 1.0),
                1 => {
                    let (term, boost) = terms.pop().expect("one");
                    term_query(term, boost)
                }
                _ => Box::new(BooleanQuery::new(terms.into_iter().map(|(term, boost)| (Occur::Should, term_query(term, boost))).collect())),
            };
            clauses.push((Occur::Must, matched));
        }
        if let Some(since) = request.since {
            let range = RangeQuery::new(Bound::Included(Term::from_field_i64(self.fields.created_at, since)), Bound::Unbounded);
            clauses.push((Occur::Must, Box::new(range)));
        }
        Ok(match clauses.len() {
            // One term alone: tantivy prunes it by blocks as it does a conjunction.
            1 => clauses.pop().expect("one").1,
            _ => Box::new(BooleanQuery::new(clauses)),
        })
    }

    /// The documents `query` matches, `limit` of them from `offset` in the request's order,
    /// with their scores (0 unless by relevance).
    fn top(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        sort: SearchSort,
        kind: SearchKind,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(f32, DocAddress)>, SearchError> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let top = TopDocs::with_limit(limit).and_offset(offset);
        Ok(match sort {
            SearchSort::Relevance => searcher.search(query, &top.order_by_score()).map_err(engine)?,
            SearchSort::Newest | SearchSort::MostLiked => {
                let by_likes = sort == SearchSort::MostLiked && kind != SearchKind::Users;
                let field = if by_likes { "likes" } else { "created_at" };
                let docs = searcher.search(query, &top.order_by_fast_field::<i64>(field, Order::Desc)).map_err(engine)?;
                docs.into_iter().map(|(_, address)| (0.0, address)).collect()
            }
        })
    }

    /// The texts of `document` holding a word that matched one of `words`, highlighted.
    fn highlights(&self, document: &SearchDocument, words: &[String]) -> Vec<Highlight> {
        let matches = |word: &str| {
            words.iter().enumerate().any(|(i, asked)| {
                word == asked
                    || (i + 1 == words.len() && word.starts_with(asked.as_str()))
                    || (asked.chars().count() >= FUZZY_FROM_CHARS && strsim::levenshtein(word, asked) <= 1)
            })
        };
        let mut out = Vec::new();
        for (name, text) in document.texts() {
            if let Some(fragment) = snippet(&text, &tokenizer::document_words(&text), &matches) {
                out.push(Highlight { field: name.to_owned(), fragment });
            }
        }
        out
    }

    /// Results in tiers, as Meilisearch ranks fewer typos first: documents with every
    /// word exactly, then those that need the last word as a prefix, then those that
    /// need a typo; each tier in the request's order. A tier is only looked at when the
    /// ones before it do not fill the page, so most queries of common words never
    /// evaluate a prefix or a typo.
    fn search_now(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        let words = query_words(&request.query);
        if words.is_empty() {
            // Nothing but punctuation: nothing to look for.
            return Ok(SearchPage { hits: vec![], total: request.count.then_some(0), more: false });
        }
        let searcher = self.reader.searcher();
        let offset = request.offset.min(MAX_RESULTS);
        let limit = request.first.clamp(1, MAX_PAGE).min(MAX_RESULTS - offset).max(1);
        let typos = words.iter().any(|w| w.chars().count() >= FUZZY_FROM_CHARS);
        let matchings: Vec<Matching> =
            [Matching::Exact, Matching::Prefix, Matching::Typo].into_iter().filter(|m| *m != Matching::Typo || typos).collect();
        // Each tier's query is built when it is looked at (a prefix or a typo reads the
        // term dictionary). One more than asked tells whether there are more. `before`:
        // the documents of the tiers already looked at (each tier's query matches those
        // of the ones before).
        let mut tiers: Vec<Box<dyn Query>> = Vec::with_capacity(matchings.len());
        let (mut found, mut before) = (Vec::new(), 0);
        for (i, matching) in matchings.iter().enumerate() {
            tiers.push(self.query(&searcher, request, &words, *matching)?);
            let query = &tiers[i];
            let start = offset.saturating_sub(before);
            // Leave out the tiers before, unless they matched nothing (the first tier).
            let got = match before {
                0 => self.top(&searcher, &**query, request.sort, request.kind, start, limit + 1 - found.len())?,
                _ => {
                    let new = BooleanQuery::new(vec![(Occur::Must, query.box_clone()), (Occur::MustNot, tiers[i - 1].box_clone())]);
                    self.top(&searcher, &new, request.sort, request.kind, start, limit + 1 - found.len())?
                }
            };
            before = match got.is_empty() && start > 0 {
                // This tier ends before the page: count where it ends.
                true => searcher.search(&**query, &Count).map_err(engine)?,
                false => before + start + got.len(),
            };
            found.extend(got);
            if found.len() > limit {
                break;
            }
        }
        // Counting every match is only done when asked: it visits them all.
        let total = match request.count {
            true => {
                let widest = self.query(&searcher, request, &words, *matchings.last().expect("one tier at least"))?;
                Some(searcher.search(&*widest, &Count).map_err(engine)?)
            }
            false => None,
        };
        let more = found.len() > limit && offset + limit < MAX_RESULTS;
        found.truncate(limit);
        let mut hits = Vec::with_capacity(found.len());
        for (score, address) in found {
            let document = self.source(&searcher.doc(address).map_err(engine)?)?;
            hits.push(SearchHit { id: document.id(), score, highlights: self.highlights(&document, &words) });
        }
        Ok(SearchPage { hits, total, more })
    }
}

/// The fragment of `text` with the most matched words, at most [`FRAGMENT_CHARS`] bytes
/// cut at words (as tantivy's snippet generator cuts it, from the text's words already
/// at hand), HTML escaped, the matched words in `<em>`; `None` when no word matched.
fn snippet(text: &str, words: &[tokenizer::Word], matched: &dyn Fn(&str) -> bool) -> Option<String> {
    struct Fragment {
        start: usize,
        stop: usize,
        score: usize,
        marks: Vec<(usize, usize)>,
    }
    let fresh = |start| Fragment { start, stop: start, score: 0, marks: Vec::new() };
    // The first of the best: a later fragment must score more.
    let keep = |fragment: Fragment, best: &mut Option<Fragment>| {
        if fragment.score > 0 && best.as_ref().is_none_or(|b| fragment.score > b.score) {
            *best = Some(fragment);
        }
    };
    let (mut best, mut current) = (None, fresh(0));
    for word in words {
        if word.to.saturating_sub(current.start) > FRAGMENT_CHARS {
            keep(std::mem::replace(&mut current, fresh(word.from)), &mut best);
        }
        current.stop = word.to;
        if matched(&word.text) {
            current.score += 1;
            current.marks.push((word.from.max(current.start), word.to));
        }
    }
    keep(current, &mut best);
    let Fragment { start, stop, mut marks, .. } = best?;
    // Search mode gives words inside words: overlapping marks are merged into one.
    marks.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(marks.len());
    for (from, to) in marks {
        match merged.last_mut() {
            Some(last) if last.1 > from => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    let mut html = String::with_capacity(stop - start + 16);
    let mut at = start;
    for (from, to) in merged {
        html.push_str(&htmlescape::encode_minimal(&text[at..from]));
        html.push_str("<em>");
        html.push_str(&htmlescape::encode_minimal(&text[from..to]));
        html.push_str("</em>");
        at = to;
    }
    html.push_str(&htmlescape::encode_minimal(&text[at..stop.max(at)]));
    Some(html)
}

/// The terms of `field` the automaton of `query` matches (a prefix, or one edit away),
/// in any segment: the first [`MAX_EXPANSIONS`] in the dictionary's order.
fn expand(searcher: &Searcher, field: Field, query: &FuzzyTermQuery) -> Result<Vec<Term>, SearchError> {
    let mut found = std::collections::BTreeSet::new();
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(field).map_err(engine)?;
        let mut terms = inverted.terms().search(query.automaton().map_err(engine)?).into_stream().map_err(engine)?;
        // Each segment's terms come in order: its first few are all that can be first.
        let mut taken = 0;
        while taken < MAX_EXPANSIONS && terms.advance() {
            found.insert(terms.key().to_vec());
            taken += 1;
        }
    }
    Ok(found.into_iter().take(MAX_EXPANSIONS).filter_map(|key| Some(Term::from_field_text(field, std::str::from_utf8(&key).ok()?))).collect())
}

/// How a query's words match: each tier of results adds a way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Matching {
    Exact,
    /// The last word also as a prefix.
    Prefix,
    /// Also within one edit, for words of [`FUZZY_FROM_CHARS`] or more.
    Typo,
}

impl Inner {
    /// The most popular documents whose folded suggestion text starts with `prefix`: one
    /// term of the `suggest` field, its documents ranked by a fast field.
    fn suggest_now(&self, prefix: &str, first: usize) -> Result<Vec<Suggestion>, SearchError> {
        let first = first.clamp(1, MAX_SUGGESTIONS);
        let Some(indexed) = prefixes(prefix).last() else { return Ok(vec![]) };
        let exact = indexed.len() == prefix.len();
        let query = TermQuery::new(Term::from_field_text(self.fields.suggest, indexed), IndexRecordOption::Basic);
        let limit = if exact { first } else { SUGGEST_CANDIDATES };
        let searcher = self.reader.searcher();
        let found = searcher.search(&query, &TopDocs::with_limit(limit).order_by_fast_field::<i64>("popularity", Order::Desc)).map_err(engine)?;
        let mut out = Vec::with_capacity(first);
        for (_, address) in found {
            let document = self.source(&searcher.doc(address).map_err(engine)?)?;
            let text = document.suggestion();
            if exact || fold(text).starts_with(prefix) {
                out.push(Suggestion { text: text.to_owned(), kind: document.kind(), popularity: document.popularity() });
            }
            if out.len() == first {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SearchWriter for TantivySearch {
    async fn position(&self) -> Result<u64, SearchError> {
        self.inner().position()
    }

    async fn get(&self, kind: SearchKind, id: &str) -> Result<Option<SearchDocument>, SearchError> {
        self.inner().get(kind, id)
    }

    async fn apply(&self, changes: Vec<IndexChange>, position: u64) -> Result<(), SearchError> {
        let inner = self.inner();
        tokio::task::spawn_blocking(move || inner.apply(changes, position)).await.map_err(engine)?
    }

    async fn take_up_rebuilt(&self) -> Result<bool, SearchError> {
        let root = &self.shared.root;
        let live = self.live();
        let newer = match generations::current(root).map_err(engine)? {
            Some(name) if name.version == VERSION && name.stamp > live.name.stamp => name,
            _ => return Ok(false),
        };
        let inner = Arc::new(Inner::open(&newer.dir(root))?);
        info!(old = %live.name, new = %newer, "taking up the rebuilt search index");
        *self.shared.live.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Live { name: newer.clone(), inner };
        drop(live);
        if let Err(error) = generations::remove_older(root, &newer) {
            warn!(%error, "could not delete older search index generations");
        }
        Ok(true)
    }
}

#[async_trait]
impl SearchIndex for TantivySearch {
    async fn search(&self, request: SearchRequest) -> Result<SearchPage, SearchError> {
        // Searching reads memory-mapped segments and scores on the CPU: not async work.
        let inner = self.inner();
        tokio::task::spawn_blocking(move || inner.search_now(&request)).await.map_err(engine)?
    }

    async fn suggest(&self, prefix: &str, first: usize) -> Result<Vec<Suggestion>, SearchError> {
        let (inner, prefix) = (self.inner(), prefix.to_owned());
        tokio::task::spawn_blocking(move || inner.suggest_now(&prefix, first)).await.map_err(engine)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn highlight(text: &str, asked: &[&str]) -> Option<String> {
        snippet(text, &tokenizer::document_words(text), &|word: &str| asked.contains(&word))
    }

    #[test]
    fn snippets_mark_matched_words_merge_overlaps_and_escape() {
        assert_eq!(highlight("Funny cats compilation", &["funny", "cats"]).unwrap(), "<em>Funny</em> <em>cats</em> compilation");
        assert_eq!(highlight("<b>cats</b> & 'dogs' too", &["dogs"]).unwrap(), "&lt;b&gt;cats&lt;/b&gt; &amp; &#x27;<em>dogs</em>&#x27; too");
        assert_eq!(highlight("超级搞笑的猫咪视频", &["猫咪", "视频"]).unwrap(), "超级搞笑的<em>猫咪</em><em>视频</em>");
        let word = |text: &str, from, to| tokenizer::Word { text: text.into(), from, to };
        let inside = [word("ab", 0, 2), word("cd", 2, 4), word("abcd", 0, 4)];
        assert_eq!(snippet("abcd!", &inside, &|_| true).unwrap(), "<em>abcd</em>", "words inside words are marked once");
        assert_eq!(highlight("超级搞笑的猫咪视频", &["猫咪"]).unwrap(), "超级搞笑的<em>猫咪</em>视频");
        assert_eq!(highlight("nothing here", &["cats"]), None);
        // A long text: the fragment with the most matches, cut at words.
        let long = format!("cats {}cats dogs", "filler ".repeat(40));
        let fragment = highlight(&long, &["cats", "dogs"]).unwrap();
        assert!(fragment.ends_with("filler <em>cats</em> <em>dogs</em>") && fragment.len() <= FRAGMENT_CHARS + 18, "{fragment}");
        assert!(fragment.starts_with("filler"), "{fragment}");
    }
}

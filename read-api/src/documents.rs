//! Parsed GraphQL documents kept by their text. Clients send the same few documents
//! over and over with different variables, and parsing one was 13 to 19 % of the CPU of
//! a small query (`user(id)`, HOT, `videos(authorId)`; perf, issue 13). A kept document
//! skips only the parse: validation, complexity, depth and the schema's own checks still
//! run on every request.

use std::collections::HashMap;
use std::sync::Mutex;

use async_graphql::parser::types::ExecutableDocument;

/// Documents longer than this are parsed every time (and never kept).
const MAX_TEXT: usize = 8 * 1024;
/// The text of the documents kept adds up to this at most; when full, all are forgotten
/// (a client sending ever new documents only costs what every request cost before).
/// Documents with their arguments written in (`user(id: "...")`) differ per object, so
/// this holds some ten thousand small ones.
const MAX_KEPT_TEXT: usize = 1024 * 1024;

#[derive(Default)]
pub struct Documents {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    documents: HashMap<String, ExecutableDocument>,
    text: usize,
}

impl Documents {
    /// Gives `request` its parsed document: the one kept for its text, or parsed now and
    /// kept. A text that does not parse is left to the schema, which refuses it as before.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_TEXT {
            return;
        }
        if let Some(document) = self.lock().documents.get(&request.query) {
            request.set_parsed_query(document.clone());
            return;
        }
        let Ok(document) = request.parsed_query().cloned() else { return };
        let mut kept = self.lock();
        if kept.text + request.query.len() > MAX_KEPT_TEXT {
            *kept = Kept::default();
        }
        if kept.documents.insert(request.query.clone(), document).is_none() {
            kept.text += request.query.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_parsed_once_and_a_broken_one_is_left_to_the_schema() {
        let documents = Documents::default();
        let mut first = async_graphql::Request::new("{ a: __typename }");
        documents.prepare(&mut first);
        assert_eq!(documents.lock().documents.len(), 1);
        // What is kept is what a request gets: here under a text that would not parse.
        let kept = documents.lock().documents.get("{ a: __typename }").cloned().unwrap();
        documents.lock().documents.insert("not graphql".to_owned(), kept);
        let mut again = async_graphql::Request::new("not graphql");
        documents.prepare(&mut again);
        assert!(again.parsed_query().is_ok(), "the kept document, not a parse");
        assert_eq!(documents.lock().documents.len(), 2);

        let mut broken = async_graphql::Request::new("{ a: ");
        documents.prepare(&mut broken);
        assert_eq!(documents.lock().documents.len(), 2, "not kept");
        let mut long = async_graphql::Request::new(format!("{{ {} }}", "__typename ".repeat(MAX_TEXT / 10)));
        documents.prepare(&mut long);
        assert_eq!(documents.lock().documents.len(), 2, "too long to keep");
    }

    #[test]
    fn the_kept_text_stays_within_its_budget() {
        let documents = Documents::default();
        let padding = "__typename ".repeat(700);
        for i in 0..200 {
            documents.prepare(&mut async_graphql::Request::new(format!("{{ a{i}: __typename {padding} }}")));
            let kept = documents.lock();
            assert!(kept.text <= MAX_KEPT_TEXT && kept.text == kept.documents.keys().map(String::len).sum::<usize>());
        }
        assert!(documents.lock().documents.len() < 200, "forgotten when full");
    }
}

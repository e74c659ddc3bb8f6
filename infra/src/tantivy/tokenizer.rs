//! Words of Chinese and of space-separated languages alike: jieba-rs segments the text
//! (its dictionary is compiled in), each word is folded as queries are (NFKC, lowercase),
//! and what holds no letter or digit (spaces, punctuation) is dropped.
//!
//! Documents are cut in jieba's search mode, which also gives the shorter words inside a
//! long one (`猫咪视频` is `猫咪`, `视频` and `猫咪视频`), so a query of any of them finds
//! it. A query keeps only the finest cover of its text ([`query_words`]): `搞笑视频` asks
//! for `搞笑` and `视频`, wherever they are, which is what someone typing it means.

use std::sync::LazyLock;

use jieba_rs::{Jieba, TokenizeMode};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_normalization::UnicodeNormalization;

static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// The name the index registers the tokenizer under.
pub const NAME: &str = "plaza_words";

/// One word: folded text and its byte range in the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub from: usize,
    pub to: usize,
}

/// The text folded as queries are (NFKC, lowercase), character by character, with the
/// byte range in `text` each folded byte came from.
fn fold(text: &str) -> (String, Vec<(usize, usize)>) {
    let mut folded = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    for (at, c) in text.char_indices() {
        folded.extend(std::iter::once(c).nfkc().flat_map(char::to_lowercase));
        origin.resize(folded.len(), (at, at + c.len_utf8()));
    }
    (folded, origin)
}

/// The words of a document's text, in search mode. Segmented once folded, so that
/// full-width `ＡＢＣ` is the word `abc`.
pub fn document_words(text: &str) -> Vec<Word> {
    let (folded, origin) = fold(text);
    JIEBA
        .tokenize(&folded, TokenizeMode::Search, true)
        .into_iter()
        .filter(|token| token.word.chars().any(char::is_alphanumeric))
        .map(|token| Word { text: token.word.to_owned(), from: origin[token.byte_start].0, to: origin[token.byte_end - 1].1 })
        .collect()
}

/// The words a query asks for: the finest cover of its text, in order (a word that
/// holds a shorter word of the cut is left out for the shorter ones).
pub fn query_words(query: &str) -> Vec<String> {
    let words = document_words(query);
    let holds_another = |w: &Word| words.iter().any(|o| o != w && w.from <= o.from && o.to <= w.to);
    let mut finest: Vec<&Word> = words.iter().filter(|w| !holds_another(w)).collect();
    finest.sort_by_key(|w| w.from);
    finest.into_iter().map(|w| w.text.clone()).collect()
}

/// [`document_words`] as a tantivy tokenizer.
#[derive(Clone, Default)]
pub struct WordsTokenizer;

pub struct WordStream {
    words: std::vec::IntoIter<Word>,
    token: Token,
}

impl Tokenizer for WordsTokenizer {
    type TokenStream<'a> = WordStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream {
        WordStream { words: document_words(text).into_iter(), token: Token::default() }
    }
}

impl TokenStream for WordStream {
    fn advance(&mut self) -> bool {
        let Some(word) = self.words.next() else { return false };
        self.token.position = self.token.position.wrapping_add(1);
        self.token.offset_from = word.from;
        self.token.offset_to = word.to;
        self.token.text = word.text;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_are_folded_and_punctuation_dropped() {
        let words: Vec<String> = document_words("Funny CATS, compilation! ＡＢＣ").into_iter().map(|w| w.text).collect();
        assert_eq!(words, ["funny", "cats", "compilation", "abc"]);
    }

    #[test]
    fn chinese_is_segmented_and_a_query_asks_for_its_finest_words() {
        let words: Vec<String> = document_words("超级搞笑的猫咪视频").into_iter().map(|w| w.text).collect();
        for expected in ["搞笑", "猫咪", "视频"] {
            assert!(words.iter().any(|w| w == expected), "{expected} in {words:?}");
        }
        assert_eq!(query_words("搞笑视频"), ["搞笑", "视频"]);
        assert_eq!(query_words("funny 猫咪"), ["funny", "猫咪"]);
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let text = "我的 Cat 视频 ＡＢＣ";
        for word in document_words(text) {
            assert_eq!(fold(&text[word.from..word.to]).0, word.text);
        }
    }
}

//! Free text people type (names, bios, titles, descriptions, comments): one rule for
//! every field. Text is trimmed and normalised to NFC (so `e` + U+0301 and `é` are one
//! spelling, for display and for uniqueness alike), and refuses:
//! - C0 and C1 control characters (NUL, ESC, DEL, NEL, ...), except a line break, and a
//!   tab, in multi-line fields;
//! - bidi embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069), which
//!   make text display in another order than it reads (`evil\u{202E}gnp.exe`).
//!   Directional marks (U+200E, U+200F, U+061C) stay: right-to-left scripts need them.

use unicode_normalization::UnicodeNormalization;

/// Whether a field holds one line or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// The text trimmed and in NFC, or `None` when it holds a character the rule refuses.
pub fn clean(input: &str, lines: Lines) -> Option<String> {
    let text: String = input.trim().nfc().collect();
    let refused = |c: char| {
        let line_break = lines == Lines::Many && (c == '\n' || c == '\t');
        (c.is_control() && !line_break) || is_bidi_control(c)
    };
    if text.chars().any(refused) { None } else { Some(text) }
}

/// NFC of any text (identifiers as well as free text).
pub fn nfc(input: &str) -> String {
    input.nfc().collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_composed() {
        assert_eq!(clean("  cafe\u{301} ", Lines::One).as_deref(), Some("caf\u{e9}"));
        assert_eq!(clean("two\nlines\tand a tab", Lines::Many).as_deref(), Some("two\nlines\tand a tab"));
        assert_eq!(clean("\u{5e9}\u{200f}!", Lines::One).as_deref(), Some("\u{5e9}\u{200f}!"), "directional marks stay");
    }

    #[test]
    fn controls_and_bidi_overrides_are_refused() {
        for bad in
            ["a\u{0}b", "\u{1b}[31m", "x\u{7f}", "x\u{85}y", "x\u{9f}", "evil\u{202e}gnp.exe", "\u{202a}x", "iso\u{2066}late", "x\u{2069}", "a\rb"]
        {
            assert_eq!(clean(bad, Lines::Many), None, "{bad:?}");
        }
        assert_eq!(clean("a\nb", Lines::One), None);
        assert_eq!(clean("a\tb", Lines::One), None);
    }
}

//! A bound on how deeply a GraphQL document nests, checked before the parser sees it.
//!
//! The parser (pest, then async-graphql's AST builder) recurses once per level of `{`,
//! `[` and `(`; a few thousand levels overflow a thread's stack and abort the process,
//! and the depth and complexity limits only run after parsing. This scan walks the text
//! once, without recursion, skipping strings, block strings and comments, and refuses a
//! document nested deeper than [`MAX_NESTING`].

/// Deepest nesting of selection sets, lists, objects and argument lists together. Real
/// queries stay far below it (selection depth is limited to 12 anyway).
pub const MAX_NESTING: usize = 64;

/// `Err(MAX_NESTING + 1)` as soon as the document nests deeper than [`MAX_NESTING`].
pub fn check(document: &str) -> Result<(), usize> {
    let bytes = document.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(depth);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // A block string ends at the next `"""` not escaped as `\"""`.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, depth: usize) -> String {
        format!("{{ a(x: {}1{}) }}", open.repeat(depth), close.repeat(depth))
    }

    #[test]
    fn ordinary_documents_pass() {
        assert_eq!(check("query($id: ID!) { video(id: $id) { author { username } comments(first: 5) { edges { node { body } } } } }"), Ok(()));
        assert_eq!(check(&nested("[", "]", MAX_NESTING - 2)), Ok(()));
    }

    #[test]
    fn deep_documents_are_refused_without_recursion() {
        for (open, close) in [("[", "]"), ("{a: ", "}"), ("{ a ", "}")] {
            assert_eq!(check(&nested(open, close, 100_000)), Err(MAX_NESTING + 1), "{open}");
        }
        assert!(check(&"(".repeat(100_000)).is_err(), "unbalanced too");
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = "[".repeat(1000);
        assert_eq!(check(&format!("{{ a(x: \"{deep}\") }}")), Ok(()));
        assert_eq!(check(&format!("{{ a(x: \"\\\"{deep}\") }}")), Ok(()), "an escaped quote does not end the string");
        assert_eq!(check(&format!("{{ a(x: \"\"\"{deep} \\\"\"\" {deep}\"\"\") }}")), Ok(()));
        assert_eq!(check(&format!("# {deep}\n{{ a }}")), Ok(()));
        assert!(check(&format!("{{ a(x: \"x\") {deep} }}")).is_err(), "a string ends at its quote");
    }
}

//! Ids in paths.

use uuid::Uuid;

/// A UUID in its one canonical spelling: 36 characters, lowercase, hyphenated. Other
/// spellings (uppercase, no hyphens, braces, `urn:uuid:`) name nothing, so caches, logs
/// and rate limits see one id per thing.
pub fn canonical_uuid(raw: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(raw).ok()?;
    (raw.len() == 36 && id.hyphenated().to_string() == raw).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_id() {
        let id = Uuid::new_v4();
        let canonical = id.to_string();
        assert_eq!(canonical_uuid(&canonical), Some(id));
        for other in [canonical.to_uppercase(), id.simple().to_string(), format!("{{{canonical}}}"), format!("urn:uuid:{canonical}"), String::new()] {
            assert_eq!(canonical_uuid(&other), None, "{other}");
        }
    }
}

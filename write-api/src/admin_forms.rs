//! Bodies of the operators' routes (`/admin`, served by the `plaza` binary): a form from
//! the ops page or JSON from a script. Kept here, beside the other request decoders, so
//! the fuzz targets reach them.

use serde::Deserialize;

/// Which dead letters a retry or skip names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The one at this global position.
    One(u64),
    All,
}

#[derive(Deserialize)]
struct WhichForm {
    id: Option<u64>,
    all: Option<String>,
}

/// `id=N` or `all=true` (form), `{"id": N}` or `{"all": true}` (JSON); not both.
pub fn decode_which(body: &[u8], form: bool) -> Result<Which, String> {
    let (id, all) = if form {
        let parsed: WhichForm = serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())?;
        (parsed.id, matches!(parsed.all.as_deref(), Some("true" | "on" | "1")))
    } else {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        (value.get("id").and_then(serde_json::Value::as_u64), value.get("all").and_then(serde_json::Value::as_bool) == Some(true))
    };
    match (id, all) {
        (Some(id), false) => Ok(Which::One(id)),
        (None, true) => Ok(Which::All),
        _ => Err("give either `id` (a dead letter's position) or `all`".into()),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
}

/// The ops page's login form: `(login, password)`.
pub fn decode_login(body: &[u8]) -> Result<(String, String), String> {
    let form: LoginForm = serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())?;
    Ok((form.login, form.password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_all_never_both() {
        assert_eq!(decode_which(b"id=12", true), Ok(Which::One(12)));
        assert_eq!(decode_which(b"all=on", true), Ok(Which::All));
        assert_eq!(decode_which(br#"{"all": true}"#, false), Ok(Which::All));
        assert_eq!(decode_which(br#"{"id": 3}"#, false), Ok(Which::One(3)));
        for bad in [&b"id=1&all=true"[..], b"", b"id=x", b"all=no"] {
            assert!(decode_which(bad, true).is_err(), "{bad:?}");
        }
        assert!(decode_which(b"{}", false).is_err());
        assert_eq!(decode_login(b"login=op&password=a+b%21"), Ok(("op".into(), "a b!".into())));
    }
}

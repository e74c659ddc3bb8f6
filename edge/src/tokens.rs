//! Access tokens (JWT, HS256) whose subject is the user id: the write API issues them,
//! both APIs verify them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iat: u64,
    exp: u64,
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Issues and verifies HS256 access tokens whose subject is the user id.
#[derive(Clone)]
pub struct Tokens {
    keys: Arc<Keys>,
    ttl: Duration,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Built once: every authenticated request verifies a token.
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let keys = Keys { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation };
        Self { keys: Arc::new(keys), ttl }
    }

    pub fn issue(&self, user_id: Uuid) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: user_id, iat: now, exp: now + self.ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.encoding).expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        self.verify_until(token).map(|(user_id, _)| user_id)
    }

    /// The token's user and when it expires (seconds since the Unix epoch): a
    /// subscription ends there.
    pub fn verify_until(&self, token: &str) -> Result<(Uuid, u64), TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.keys.decoding, &self.keys.validation) {
            Ok(data) => Ok((data.claims.sub, data.claims.exp)),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let tokens = Tokens::new(b"secret", Duration::from_secs(60));
        let user = Uuid::new_v4();
        let token = tokens.issue(user);
        assert_eq!(tokens.verify(&token), Ok(user));
        assert_eq!(Tokens::new(b"other", Duration::from_secs(60)).verify(&token), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("not.a.token"), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let tokens = Tokens::new(b"secret", Duration::from_secs(0));
        let token = tokens.issue(Uuid::new_v4());
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
    }
}

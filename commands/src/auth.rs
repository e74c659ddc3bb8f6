//! Password hashing (argon2id) and access tokens (JWT, HS256).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CommandError;

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's baseline).
/// Hashing is CPU-bound and runs on the blocking pool.
#[derive(Clone, Copy, Default)]
pub struct Passwords;

impl Passwords {
    pub async fn hash(&self, password: &str) -> Result<String, CommandError> {
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))?
        .map_err(|e| CommandError::Internal(e.to_string()))
    }

    /// Checks a password against a stored hash. With no hash (unknown user) it checks
    /// against a dummy one, so an unknown login costs as much time as a wrong password.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, CommandError> {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash.to_owned(),
            None => DUMMY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default().hash_password(b"no such user", &salt).map(|h| h.to_string()).unwrap_or_default()
                })
                .clone(),
        };
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else { return false };
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
        })
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iat: u64,
    exp: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

/// Issues and verifies HS256 access tokens whose subject is the user id.
#[derive(Clone)]
pub struct Tokens {
    keys: Arc<(EncodingKey, DecodingKey)>,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self { keys: Arc::new((EncodingKey::from_secret(secret), DecodingKey::from_secret(secret))), ttl }
    }

    pub fn issue(&self, user_id: Uuid) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: user_id, iat: now, exp: now + self.ttl.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.0).expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.keys.1, &validation) {
            Ok(data) => Ok(data.claims.sub),
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

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = Passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(Passwords.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!Passwords.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!Passwords.verify("correct horse", None).await.unwrap());
    }
}

//! Password hashing (argon2id). (Access tokens are `plaza_edge::tokens`: both APIs
//! verify them.)

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = Passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(Passwords.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!Passwords.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!Passwords.verify("correct horse", None).await.unwrap());
    }
}

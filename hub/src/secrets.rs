//! Generating and checking secrets: device secrets (argon2, verified on CONNECT) and
//! API tokens (256-bit random; stored as SHA-256, see `store::token_hash`).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// A URL-safe random token with 256 bits of entropy.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Argon2id PHC string for a secret.
pub fn hash_secret(secret: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing secret: {e}"))
}

/// Slow (argon2): call from `spawn_blocking`.
/// A new random secret and its argon2 hash (hashed on a blocking thread: argon2 is slow
/// on purpose). The secret is to be shown once; only the hash is stored.
pub async fn new_hashed_secret() -> anyhow::Result<(String, String)> {
    let secret = random_token();
    let s2 = secret.clone();
    let hash = tokio::task::spawn_blocking(move || hash_secret(&s2)).await??;
    Ok((secret, hash))
}

pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_against_their_own_hash() {
        let h = hash_secret("s3cret").expect("hash");
        assert!(verify_secret("s3cret", &h));
        assert!(!verify_secret("other", &h));
        assert!(!verify_secret("s3cret", "not a phc string"));
        assert_ne!(random_token(), random_token());
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}

//! Users and passwords from an htpasswd file with bcrypt entries (`htpasswd -B` writes
//! `$2y$`; `$2a$`/`$2b$` are accepted too). Other hash formats are skipped with a warning.
//!
//! bcrypt is slow on purpose, and Basic auth sends the password on every request, so a
//! successful check is remembered for a short while as a salted SHA-256 of user and password
//! (compared in constant time), never as the password.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// How long a verified user/password pair is remembered.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// The users of an htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// A bcrypt hash of a random password, checked for unknown users so that they take as
    /// long as known ones.
    dummy: String,
    salt: [u8; 32],
    verified: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Htpasswd({} users)", self.users.len())
    }
}

impl Htpasswd {
    /// Reads `path`: one `user:hash` per line; blank lines and `#` comments are ignored.
    pub fn load(path: &Path) -> std::io::Result<Htpasswd> {
        let text = std::fs::read_to_string(path)?;
        Ok(Self::parse(&text, &path.display().to_string()))
    }

    /// Parses htpasswd `text`; `origin` names it in warnings.
    pub fn parse(text: &str, origin: &str) -> Htpasswd {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, hash))
                    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) =>
                {
                    users.insert(user.to_string(), hash.to_string());
                }
                _ => tracing::warn!(
                    file = origin,
                    line = i + 1,
                    "htpasswd entry skipped: only bcrypt entries (htpasswd -B) are supported"
                ),
            }
        }
        let mut salt = [0u8; 32];
        aws_lc_rs::rand::fill(&mut salt).expect("system random numbers");
        let cost = users
            .values()
            .next()
            .and_then(|h| h.get(4..6)?.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy = bcrypt::hash(salt, cost).expect("bcrypt of a random password");
        Htpasswd {
            users,
            dummy,
            salt,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// A short fingerprint of `user`'s password hash (changes when the password does); `None`
    /// for an unknown user. Refresh tokens carry it, so they die with the user or the password.
    pub fn entry_fingerprint(&self, user: &str) -> Option<String> {
        let hash = self.users.get(user)?;
        let d = Sha256::digest(hash.as_bytes());
        Some(d[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether the file had no usable entry.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether the pair was verified in the last minute (cheap; no bcrypt).
    pub fn recently_verified(&self, user: &str, password: &str) -> bool {
        let fp = self.fingerprint(user, password);
        let cache = self.verified.lock().expect("htpasswd cache");
        cache
            .get(user)
            .is_some_and(|(known, at)| at.elapsed() < CACHE_TTL && bool::from(known.ct_eq(&fp)))
    }

    /// Checks `password` for `user` with bcrypt (slow: call from a blocking thread).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let ok = match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        };
        let mut cache = self.verified.lock().expect("htpasswd cache");
        if ok {
            if cache.len() > 10_000 {
                cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            cache.insert(
                user.to_string(),
                (self.fingerprint(user, password), Instant::now()),
            );
        } else {
            cache.remove(user);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_2y_and_2b_entries_verify_and_others_are_skipped() {
        let h2b = bcrypt::hash("pw1", 4).unwrap();
        let h2y = h2b.replacen("$2b$", "$2y$", 1);
        let text = format!("# users\nalice:{h2y}\nbob:{h2b}\nold:{{SHA}}abc\n\n");
        let h = Htpasswd::parse(&text, "test");
        assert_eq!(h.len(), 2);
        assert!(h.verify("alice", "pw1"));
        assert!(h.verify("bob", "pw1"));
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.verify("old", "abc"));
        assert!(!h.verify("nobody", "pw1"));
    }

    #[test]
    fn only_the_verified_password_is_remembered() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let h = Htpasswd::parse(&format!("alice:{hash}\n"), "test");
        assert!(!h.recently_verified("alice", "right"));
        assert!(h.verify("alice", "right"));
        assert!(h.recently_verified("alice", "right"));
        assert!(!h.recently_verified("alice", "wrong"));
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.recently_verified("alice", "right"));
    }

    #[test]
    fn unknown_users_are_checked_against_a_hash_of_the_files_cost() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let h = Htpasswd::parse(&format!("alice:{hash}\n"), "test");
        assert!(h.dummy.starts_with("$2b$04$"), "{}", h.dummy);
    }
}

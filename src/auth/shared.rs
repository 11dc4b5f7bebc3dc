//! The authentication state of a running server, swapped whole by a live reload
//! (`crate::ops::reload`): a request takes the current `Auth` once, at its start, and finishes
//! with it; requests starting after a swap see the new one.

use std::sync::{Arc, RwLock};

use super::Auth;

/// The current `Auth`, replaceable while the server runs.
#[derive(Debug)]
pub struct SharedAuth(RwLock<Arc<Auth>>);

impl SharedAuth {
    /// Holds `auth`.
    pub fn new(auth: Arc<Auth>) -> SharedAuth {
        SharedAuth(RwLock::new(auth))
    }

    /// The `Auth` in force now.
    pub fn current(&self) -> Arc<Auth> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `auth` in force for every request that starts from now on.
    pub fn replace(&self, auth: Arc<Auth>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = auth;
    }
}

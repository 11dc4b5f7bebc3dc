//! Docker credential helpers: the programs `docker-credential-<name>` on `PATH` that keep
//! registry credentials in a keychain, named per registry by `credHelpers` or for every
//! registry by `credsStore` in `~/.docker/config.json`. The protocol
//! (docker/docker-credential-helpers): one argument, `get`, `store` or `erase`;
//!
//! - `get`: the server URL on stdin; out `{"ServerURL", "Username", "Secret"}`, or a failure
//!   whose output is `credentials not found in native keychain`;
//! - `store`: `{"ServerURL", "Username", "Secret"}` on stdin;
//! - `erase`: the server URL on stdin.
//!
//! A `Username` of `<token>` means the secret is an identity token (a refresh token of the
//! registry's OAuth2 token endpoint), not a password.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::auth::Credentials;
use super::error::{Error, Result};

/// What a helper prints when it has nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    username: String,
    secret: String,
}

/// A credential helper: the program `docker-credential-<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    pub name: String,
}

enum Outcome {
    Ok(Vec<u8>),
    NotFound,
}

impl Helper {
    fn program(&self) -> String {
        format!("docker-credential-{}", self.name)
    }

    fn run(&self, action: &str, input: &[u8]) -> Result<Outcome> {
        let program = self.program();
        let fail = |m: String| Error::Invalid(format!("credential helper {program} {action}: {m}"));
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Invalid(format!(
                        "credential helper {program} is not on PATH (it is named by credHelpers or \
                         credsStore in the Docker config); install it or remove it from the config"
                    ))
                } else {
                    fail(e.to_string())
                }
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper may exit without reading (erase of nothing): a broken pipe is no error.
            let _ = stdin.write_all(input);
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if out.status.success() {
            return Ok(Outcome::Ok(out.stdout));
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(NOT_FOUND) {
            return Ok(Outcome::NotFound);
        }
        Err(fail(format!("{} ({})", text.trim(), out.status)))
    }

    /// The credentials the helper holds for `server`, if any.
    pub fn get(&self, server: &str) -> Result<Option<Credentials>> {
        match self.run("get", server.as_bytes())? {
            Outcome::NotFound => Ok(None),
            Outcome::Ok(out) => {
                let e: Entry = serde_json::from_slice(&out).map_err(|e| {
                    Error::Invalid(format!(
                        "credential helper {} get: the answer is not its JSON: {e}",
                        self.program()
                    ))
                })?;
                if e.username.is_empty() && e.secret.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Credentials {
                    username: e.username,
                    password: e.secret,
                }))
            }
        }
    }

    /// Stores `creds` for `server`.
    pub fn store(&self, server: &str, creds: &Credentials) -> Result<()> {
        let entry = Entry {
            server_url: server.to_string(),
            username: creds.username.clone(),
            secret: creds.password.clone(),
        };
        let body = serde_json::to_vec(&entry).expect("JSON");
        match self.run("store", &body)? {
            Outcome::Ok(_) => Ok(()),
            Outcome::NotFound => Err(Error::Invalid(format!(
                "credential helper {} store: {NOT_FOUND}",
                self.program()
            ))),
        }
    }

    /// Erases the credentials for `server`; false when it held none.
    pub fn erase(&self, server: &str) -> Result<bool> {
        Ok(matches!(
            self.run("erase", server.as_bytes())?,
            Outcome::Ok(_)
        ))
    }
}

//! The client's error type, and which errors are worth retrying.

use std::fmt::Write as _;
use std::io;

/// Something a client operation failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be sent, or its response could not be read.
    #[error("{context}: {}", chain(source))]
    Http {
        context: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with a status the operation did not expect.
    #[error("{context}: HTTP {status}{}", describe(code, message))]
    Status {
        context: String,
        status: u16,
        /// The first OCI error code of the body, if it had one.
        code: Option<String>,
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Credentials were missing or refused.
    #[error("authentication with {host} failed: {message}")]
    Auth { host: String, message: String },
    /// Bad input: a reference, a layout, an archive, a manifest.
    #[error("{0}")]
    Invalid(String),
}

/// Results of client operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

/// True when a connection failed on invalid data, which is how TLS failures (an untrusted
/// certificate, a plain-HTTP server on an HTTPS port) surface: retrying cannot cure them.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    /// An io::Error's `source()` skips the error it wraps, so look inside with `get_ref`.
    fn tls_like(c: &(dyn std::error::Error + 'static)) -> bool {
        if c.is::<rustls::Error>() {
            return true;
        }
        match c.downcast_ref::<io::Error>() {
            Some(io) if io.kind() == io::ErrorKind::InvalidData => true,
            Some(io) => io.get_ref().is_some_and(|inner| tls_like(inner)),
            None => false,
        }
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if tls_like(c) {
            return true;
        }
        cur = c.source();
    }
    false
}

fn describe(code: &Option<String>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(" {c}: {message}"),
        (Some(c), true) => format!(" {c}"),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

impl Error {
    /// An `Http` error with what was being done.
    pub fn http(context: impl Into<String>, source: reqwest::Error) -> Error {
        Error::Http {
            context: context.into(),
            source,
        }
    }

    /// An `Io` error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True for failures a retry may cure: connection and transfer errors, timeouts, and
    /// 408, 429 and 5xx answers.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { source, .. } => {
                !source.is_builder() && !source.is_redirect() && !is_tls_failure(source)
            }
            Error::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The HTTP status of a `Status` error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Reads an unexpected response into a `Status` error (at most 64 KiB of its body).
    pub async fn from_response(context: impl Into<String>, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v["errors"][0].is_object() => (
                v["errors"][0]["code"].as_str().map(str::to_string),
                v["errors"][0]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => (None, String::from_utf8_lossy(&body).trim().to_string()),
        };
        Error::Status {
            context: context.into(),
            status,
            code,
            message,
        }
    }
}

/// Reads a response body, failing when it is longer than `limit` bytes.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let url = resp.url().to_string();
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::http(format!("reading {url}"), e))?
    {
        if out.len() + chunk.len() > limit {
            return Err(Error::Invalid(format!(
                "{url}: response larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

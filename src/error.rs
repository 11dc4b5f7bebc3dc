//! Registry errors and their OCI wire form (`{"errors":[{code,message,detail}]}`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// The error codes of the OCI Distribution Spec (section "Error Codes"), plus `UNKNOWN` for
/// internal failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unsupported,
    TagInvalid,
    TooManyRequests,
    Denied,
    Unauthorized,
    /// Not in the OCI list; Distribution's code for 503: a service the registry needs (the
    /// metadata database) cannot be reached for now.
    Unavailable,
    Unknown,
}

impl Code {
    /// The identifier sent in the `code` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unsupported => "UNSUPPORTED",
            Code::TagInvalid => "TAG_INVALID",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Denied => "DENIED",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status this code is sent with by default.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error a request ends with: a spec code, a message, an optional detail and status.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Error {
    pub code: Code,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub status: StatusCode,
    /// Extra headers sent with the error (e.g. `Range` on a 416 during uploads).
    pub headers: Vec<(&'static str, String)>,
}

/// Result alias used throughout kura.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the code's default status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            detail: None,
            status: code.status(),
            headers: Vec::new(),
        }
    }

    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Attaches a JSON detail.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// An internal failure (I/O, database); logged and reported as 500 `UNKNOWN`.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Error::new(Code::Unknown, format!("{context}: {err}"))
    }
}

/// Whether `e` says the file system is full (`ENOSPC`) or the user's quota is (`EDQUOT`).
pub fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

impl Error {
    /// `503 Service Unavailable`, code `UNAVAILABLE`, with `Retry-After: retry_after`
    /// (seconds): a service the request needs cannot be reached (`message` says which and
    /// why). The request changed nothing; the same request may succeed once it is back.
    pub fn unavailable(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let message = message.into();
        tracing::warn!("{message}");
        Error::new(Code::Unavailable, message)
            .with_header("Retry-After", retry_after.as_secs().max(1).to_string())
    }

    /// `507 Insufficient Storage` (RFC 4918) with the OCI error body: a write failed because
    /// the data directory's disk (`what`: blobs or metadata) is full. The request changed
    /// nothing; it may be retried once space is freed.
    pub fn storage_full(what: &str, err: &std::io::Error) -> Self {
        tracing::error!(%err, "{what}: the disk is full");
        Error::new(
            Code::Unknown,
            format!(
                "{what} failed: the registry's disk is full ({err}); retry once space is freed"
            ),
        )
        .with_status(StatusCode::INSUFFICIENT_STORAGE)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if is_storage_full(&e) {
            return Error::storage_full("write", &e);
        }
        Error::internal("i/o error", e)
    }
}

macro_rules! internal_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                // Every redb error converts into `redb::Error`, whose `Io` keeps the cause.
                let e: redb::Error = e.into();
                if let redb::Error::Io(io) = &e
                    && is_storage_full(io)
                {
                    return Error::storage_full("metadata commit", io);
                }
                Error::internal("metadata store", e)
            }
        }
    )*};
}
internal_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let text = crate::meta::pg::describe(&e);
        // The PostgreSQL server's disk is full (SQLSTATE 53100): 507, as for redb's.
        if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) {
            let io = std::io::Error::new(std::io::ErrorKind::StorageFull, text);
            return Error::storage_full("metadata commit", &io);
        }
        // The connection closed, its socket failed or its server process ended under the
        // statement: the server went away (stopped, restarted, unreachable). Nothing was
        // committed; 503, as while the pool cannot connect (`meta/pg/reach.rs`).
        if crate::meta::pg::connection_lost(&e) {
            return Error::unavailable(
                format!("the metadata database connection broke ({text}); retry shortly"),
                crate::meta::pg::RETRY_AFTER,
            );
        }
        Error::internal("metadata database", text)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal("metadata record encoding", e)
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(detail) = &self.detail {
            body["detail"] = detail.clone();
        }
        let mut res = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            res.insert_header((*name, value.as_str()));
        }
        res.insert_header(("Docker-Distribution-Api-Version", "registry/2.0"))
            .json(json!({ "errors": [body] }))
    }
}

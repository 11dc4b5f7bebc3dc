//! Request limits: concurrent upload slots and the idle timeout of request bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Code, Error};

/// At most this many blob uploads stream at once.
#[derive(Debug, Clone)]
pub struct UploadSlots(Arc<Semaphore>);

impl UploadSlots {
    /// `n` slots.
    pub fn new(n: usize) -> Self {
        UploadSlots(Arc::new(Semaphore::new(n)))
    }

    /// Takes a slot for the duration of one upload request, or fails with 429.
    pub fn acquire(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                Code::TooManyRequests,
                "too many uploads in progress; retry later",
            )
        })
    }
}

/// Ends `body` with an error when no chunk arrives for `idle` (slow-drip clients).
pub fn idle_timeout<S, E>(
    body: S,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, String>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    Box::pin(futures_util::stream::unfold(
        Some(body),
        move |state| async move {
            let mut body = state?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(b))) => Some((Ok(b), Some(body))),
                Ok(Some(Err(e))) => Some((Err(e.to_string()), None)),
                Ok(None) => None,
                Err(_) => Some((Err(format!("no data for {} s", idle.as_secs())), None)),
            }
        },
    ))
}

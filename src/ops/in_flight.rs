//! Requests in flight, counted by kura itself, so that a graceful shutdown finishes every
//! request that had started, whatever the HTTP server's own connection accounting says (a
//! worker it believed idle could stop with a request body still streaming in).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// The shared count of requests being handled.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request being handled; dropping it ends it.
pub struct Entered(InFlight);

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Counts a request until the returned guard drops.
    pub fn enter(&self) -> Entered {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Entered(self.clone())
    }

    /// Requests being handled now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Waits until no request is being handled, at most `timeout`; false on timeout.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.0.idle.notified();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Counts each request from its arrival until its handler has answered (an upload's handler
/// answers only once it has read the whole body).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let _entered = req.app_data::<web::Data<InFlight>>().map(|f| f.enter());
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_every_entered_request_and_times_out_otherwise() {
        let f = InFlight::default();
        assert!(f.drained(Duration::from_millis(1)).await);
        let a = f.enter();
        let b = f.enter();
        assert!(!f.drained(Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.drained(Duration::from_secs(30)).await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished() || !waiter.await.unwrap());
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.drained(Duration::from_secs(30)).await }
        });
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(f.count(), 0);
    }
}

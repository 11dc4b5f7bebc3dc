//! Read-only mode: writes are refused with 405 `UNSUPPORTED`, reads go on. Set from the
//! configuration and switchable at run time through `POST /admin/read-only?enabled=`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::error::{Code, Error};

/// The shared read-only switch.
#[derive(Debug, Clone, Default)]
pub struct ReadOnly(Arc<AtomicBool>);

impl ReadOnly {
    /// A switch starting at `on`.
    pub fn new(on: bool) -> Self {
        ReadOnly(Arc::new(AtomicBool::new(on)))
    }

    /// Whether writes are refused now.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for components that follow the switch (`Registry::follow_read_only`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Turns read-only mode on or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
        tracing::warn!(read_only = on, "read-only mode changed");
    }
}

/// True for requests that change registry content.
pub fn is_write(method: &Method, path: &str) -> bool {
    path.starts_with("/v2/")
        && matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
}

/// Refuses writes while read-only mode is on.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = req
        .app_data::<web::Data<ReadOnly>>()
        .is_some_and(|ro| ro.is_on())
        && is_write(req.method(), req.path());
    if refused {
        let err = Error::new(
            Code::Unsupported,
            "the registry is in read-only mode; writes are refused",
        );
        let (r, _) = req.into_parts();
        return Ok(ServiceResponse::new(r, err.error_response()).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

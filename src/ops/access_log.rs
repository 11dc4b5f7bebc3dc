//! One access-log line and the request metrics per request (a middleware).

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use super::metrics::{RequestLabels, RouteLabels, global};
use crate::api::routes::Route;

/// The authenticated user of a request, put in its extensions by authentication.
#[derive(Debug, Clone)]
pub struct User(pub String);

/// A route pattern as a label: `/v2/{name:.+}/blobs/{digest}` → `/v2/<name>/blobs/<digest>`.
fn route_label(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        out.push('<');
        out.push_str(inner.split(':').next().unwrap_or(inner));
        out.push('>');
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Logs the request (target `kura::access`) and updates the request metrics.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_string();
    // The client as every per-client rule sees it (`ops::client_ip`).
    let peer = super::client_ip::of(req.request())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let bytes_in = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let res = next.call(req).await?;
    let parsed = Route::parse(&path);
    let route = match parsed.as_ref().map(Route::label) {
        Some(l) => l.to_string(),
        None => res
            .request()
            .match_pattern()
            .map_or_else(|| "unmatched".into(), |p| route_label(&p)),
    };
    let status = res.status().as_u16();
    let bytes_out = match res.response().body().size() {
        BodySize::Sized(n) => n,
        _ => 0,
    };
    let user = res
        .request()
        .extensions()
        .get::<User>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| "-".into());
    let elapsed = start.elapsed();
    let m = global();
    m.requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route,
        })
        .observe(elapsed.as_secs_f64());
    m.bytes_received.inc_by(bytes_in);
    m.bytes_sent.inc_by(bytes_out);
    tracing::info!(
        target: "kura::access",
        %method,
        %path,
        repository = parsed.as_ref().and_then(Route::name).unwrap_or("-"),
        status,
        bytes_in,
        bytes_out,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        %user,
        %peer,
    );
    Ok(res)
}

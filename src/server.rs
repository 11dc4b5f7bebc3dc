//! Building and running the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::api;
use crate::auth::Auth;
use crate::config::LimitsConfig;
use crate::gc::GcOptions;
use crate::ops::limits::UploadSlots;
use crate::ops::read_only::ReadOnly;
use crate::ops::{access_log, health, metrics, read_only};
use crate::registry::Registry;

/// Settings of one server instance.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Defaults for on-demand collections (`POST /admin/gc`).
    pub gc: GcOptions,
    /// The read-only switch shared with the admin endpoint.
    pub read_only: ReadOnly,
    pub limits: LimitsConfig,
    /// Serve `/metrics` on this server.
    pub metrics: bool,
    /// Webhook notifications, when configured.
    pub notifier: Option<crate::ops::notify::Notifier>,
    /// Replication targets and sources, when configured (`GET /admin/replication`).
    pub replication: Option<Arc<crate::replication::Replication>>,
    /// Authentication and access rules, when configured (`crate::auth`).
    pub auth: Option<Arc<Auth>>,
    /// TLS (rustls; HTTP/2 by ALPN), when configured; plain HTTP otherwise.
    pub tls: Option<rustls::ServerConfig>,
    /// Whether clients may delete manifests and blobs (`[storage] delete`).
    pub deletes: bool,
    /// Requests being handled, which a graceful shutdown waits for (`kura serve`).
    pub in_flight: crate::ops::in_flight::InFlight,
    /// The pull-through cache's mirrors, when configured (`[[mirrors]]`).
    pub mirrors: Option<Arc<crate::mirror::Mirrors>>,
    /// Serve the web interface at `/ui/` (`[ui] enabled`).
    pub ui: bool,
    /// Live reload (`POST /admin/reload`, SIGHUP in `kura serve`); its `SharedAuth` is the one
    /// requests use, and `auth` is then ignored.
    pub reloader: Option<Arc<crate::ops::reload::Reloader>>,
    /// The rate limits (`[policies.rate_limit]`; a reload replaces its limits); none when unset.
    pub rate_limiter: Option<Arc<crate::policy::rate_limit::RateLimiter>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            workers: None,
            gc: crate::config::GcConfig::default().options(),
            read_only: ReadOnly::default(),
            limits: LimitsConfig::default(),
            metrics: true,
            notifier: None,
            replication: None,
            auth: None,
            tls: None,
            deletes: true,
            in_flight: Default::default(),
            mirrors: None,
            ui: true,
            reloader: None,
            rate_limiter: None,
        }
    }
}

/// Builds a server for `registry` on an already bound listener (tests bind port 0). Signals
/// are not handled here: `kura serve` stops the server gracefully on SIGINT/SIGTERM.
pub fn build(
    registry: Registry,
    listener: TcpListener,
    opts: &ServerOptions,
) -> std::io::Result<Server> {
    registry
        .meta()
        .observe_commits(crate::ops::metrics::record_commit);
    registry.follow_read_only(opts.read_only.flag());
    registry.set_session_limits(crate::registry::SessionLimits {
        total: opts.limits.max_upload_sessions,
        per_client: opts.limits.max_upload_sessions_per_client,
    });
    let data = web::Data::new(registry);
    let gc = web::Data::new(opts.gc.clone());
    let ro = web::Data::new(opts.read_only.clone());
    let limits = web::Data::new(opts.limits.clone());
    let slots = web::Data::new(UploadSlots::new(opts.limits.max_concurrent_uploads));
    let readiness =
        web::Data::new(health::Readiness::default().with_min_free(opts.limits.min_free_bytes));
    let with_metrics = opts.metrics;
    let notifier = opts.notifier.clone().map(web::Data::new);
    let replication = opts.replication.clone().map(web::Data::from);
    // The reloader's slot when there is one, so `POST /admin/reload` and SIGHUP swap what
    // requests see.
    let auth = match opts.reloader.as_ref().and_then(|r| r.auth()) {
        Some(slot) => Some(web::Data::from(slot)),
        None => opts
            .auth
            .clone()
            .map(|a| web::Data::new(crate::auth::SharedAuth::new(a))),
    };
    let reloader = opts.reloader.clone().map(web::Data::from);
    // Every server has a limiter: it also holds the trusted proxies `ops::client_ip` reads.
    let rate_limiter = web::Data::from(opts.rate_limiter.clone().unwrap_or_default());
    let deletes = web::Data::new(api::Deletes(opts.deletes));
    let in_flight = web::Data::new(opts.in_flight.clone());
    let mirrors = opts.mirrors.clone().map(web::Data::from);
    let ui = opts
        .ui
        .then(|| web::Data::new(crate::ui::UiState::new(opts.tls.is_some())));
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .app_data(gc.clone())
            .app_data(ro.clone())
            .app_data(limits.clone())
            .app_data(slots.clone())
            .app_data(deletes.clone())
            .app_data(in_flight.clone())
            .app_data(readiness.clone())
            .app_data(rate_limiter.clone())
            .wrap(from_fn(read_only::middleware))
            // Per-user limits need the user authentication found; per-IP ones come first.
            .wrap(from_fn(api::rate_limit::per_user))
            // A no-op unless the app has `Data<SharedAuth>` (added below when auth is configured).
            .wrap(from_fn(crate::auth::middleware::middleware))
            .wrap(from_fn(api::rate_limit::per_ip))
            .wrap(from_fn(access_log::middleware))
            .wrap(from_fn(crate::ops::in_flight::middleware))
            .wrap(nosniff())
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz));
        let app = match &mirrors {
            Some(m) => app.app_data(m.clone()),
            None => app,
        };
        let app = match &notifier {
            Some(n) => app.app_data(n.clone()),
            None => app,
        };
        let app = match &replication {
            Some(r) => app.app_data(r.clone()),
            None => app,
        };
        let app = match &reloader {
            Some(r) => app.app_data(r.clone()),
            None => app,
        };
        let app = match &auth {
            Some(a) => app
                .app_data(a.clone())
                .configure(crate::auth::endpoint::configure),
            None => app,
        };
        let app = if with_metrics {
            app.route("/metrics", web::get().to(metrics::handler))
        } else {
            app
        };
        let app = match &ui {
            Some(u) => app.app_data(u.clone()).configure(crate::ui::configure),
            None => app,
        };
        app.configure(api::configure)
    })
    .client_request_timeout(opts.limits.request_timeout)
    .shutdown_timeout(opts.limits.shutdown_timeout.as_secs())
    .disable_signals();
    server = match &opts.tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls.clone())?,
        None => server.listen(listener)?,
    };
    if let Some(w) = opts.workers {
        server = server.workers(w);
    }
    Ok(server.run())
}

/// `X-Content-Type-Options: nosniff` on every answer, errors and rejections included (as
/// Distribution's): a browser must never guess that a blob is HTML or script.
fn nosniff() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff"))
}

/// A server answering only `/metrics` (for `metrics.addr`).
pub fn metrics_only(registry: Registry, addr: &str) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let data = web::Data::new(registry);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(nosniff())
            .route("/metrics", web::get().to(metrics::handler))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, local))
}

/// Binds `addr` and builds the server with `workers` threads; returns it with the bound address.
pub fn bind(
    registry: Registry,
    addr: &str,
    workers: Option<usize>,
) -> std::io::Result<(Server, SocketAddr)> {
    bind_with(
        registry,
        addr,
        &ServerOptions {
            workers,
            ..ServerOptions::default()
        },
    )
}

/// Binds `addr` and builds the server with `opts`; returns it with the bound address.
pub fn bind_with(
    registry: Registry,
    addr: &str,
    opts: &ServerOptions,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    Ok((build(registry, listener, opts)?, local))
}

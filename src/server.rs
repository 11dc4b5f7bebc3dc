//! Building and running the HTTP server.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::api;
use crate::gc::GcOptions;
use crate::registry::Registry;

/// Settings of one server instance.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Defaults for on-demand collections (`POST /admin/gc`).
    pub gc: GcOptions,
}

/// Builds a server for `registry` on an already bound listener (tests bind port 0).
pub fn build(
    registry: Registry,
    listener: TcpListener,
    opts: &ServerOptions,
) -> std::io::Result<Server> {
    let data = web::Data::new(registry);
    let gc = web::Data::new(opts.gc.clone());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(gc.clone())
            .wrap(
                actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
                    .log_target("kura::access"),
            )
            .configure(api::configure)
    })
    .listen(listener)?;
    if let Some(w) = opts.workers {
        server = server.workers(w);
    }
    Ok(server.run())
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

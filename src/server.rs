//! Building and running the HTTP server.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::api;
use crate::registry::Registry;

/// Builds a server for `registry` on an already bound listener (tests bind port 0).
pub fn build(
    registry: Registry,
    listener: TcpListener,
    workers: Option<usize>,
) -> std::io::Result<Server> {
    let data = web::Data::new(registry);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(
                actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms")
                    .log_target("kura::access"),
            )
            .configure(api::configure)
    })
    .listen(listener)?;
    if let Some(w) = workers {
        server = server.workers(w);
    }
    Ok(server.run())
}

/// Binds `addr` and builds the server; returns it with the bound address.
pub fn bind(
    registry: Registry,
    addr: &str,
    workers: Option<usize>,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    Ok((build(registry, listener, workers)?, local))
}

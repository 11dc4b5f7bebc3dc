//! `kura serve`: run the registry.

use crate::config::{Config, ServeFlags};
use crate::registry::Registry;
use crate::server::ServerOptions;

/// Arguments of `kura serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub flags: ServeFlags,
}

/// The file in the data directory naming the URL of the server holding it, so that
/// `kura gc --root` and `kura fsck --root` can ask that server instead.
pub const ADDR_FILE: &str = "kura.addr";

/// Loads the configuration, opens the store and serves until SIGINT/SIGTERM, then finishes
/// the requests in flight (up to `limits.shutdown_timeout`) and closes the store.
pub fn run(args: ServeArgs) -> Result<(), super::CliError> {
    let cfg = Config::load_with_auth(
        args.flags.config.as_deref(),
        args.flags.auth_config.as_deref(),
        args.flags.overrides(),
    )?;
    let _log = crate::ops::logging::init(&cfg.log);
    let ignored = crate::config::ignored_env_vars();
    if !ignored.is_empty() {
        tracing::warn!(
            variables = %ignored.join(", "),
            "ignoring KURA_* environment variables that are no configuration key"
        );
    }
    let registry = Registry::open_configured(&cfg.root, &cfg.storage, &cfg.metadata)?;
    tracing::info!(blobs = %registry.store().describe(), "blob store opened");
    registry.set_policies(
        crate::policy::Policies::compile(&cfg.policies).map_err(std::io::Error::other)?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut opts = ServerOptions {
        workers: cfg.workers,
        gc: cfg.gc.options(),
        read_only: crate::ops::read_only::ReadOnly::new(cfg.read_only),
        limits: cfg.limits.clone(),
        metrics: cfg.metrics.enabled && cfg.metrics.addr.is_none(),
        deletes: cfg.storage.delete,
        ui: cfg.ui.enabled,
        ..ServerOptions::default()
    };
    opts.auth = crate::auth::Auth::from_config(&cfg.auth)?;
    let reloader = std::sync::Arc::new(crate::ops::reload::Reloader::new(
        crate::ops::reload::Source {
            config: args.flags.config.clone(),
            auth_config: args.flags.auth_config.clone(),
            overrides: args.flags.overrides(),
        },
        cfg.clone(),
        opts.auth.clone(),
    ));
    reloader.set_registry(registry.clone());
    let limiter = std::sync::Arc::new(crate::policy::rate_limit::RateLimiter::new(
        crate::policy::rate_limit::Limits::compile(&cfg.policies.rate_limit)
            .map_err(std::io::Error::other)?,
    ));
    reloader.set_rate_limiter(limiter.clone());
    opts.rate_limiter = Some(limiter);
    opts.reloader = Some(reloader.clone());
    if let Some((cert, key)) = cfg.tls.files() {
        opts.tls = Some(crate::auth::tls::server_config(cert, key)?);
    } else if !crate::auth::tls::is_loopback(&cfg.addr) {
        tracing::warn!(addr = %cfg.addr, auth = opts.auth.is_some(), "serving plain HTTP on a non-loopback address: traffic (and any credentials) is unencrypted; set --tls-cert/--tls-key");
    }
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let addr_file = cfg.root.join(ADDR_FILE);
    rt.block_on(async {
        // Webhooks and replication targets are endpoints of one outbox, written in the
        // transaction of each change.
        let outbox = if cfg.notifications.endpoints.is_empty() && cfg.replication.push.is_empty() {
            None
        } else {
            let outbox = crate::registry::Outbox::new(cfg.notifications.endpoints.clone(), cfg.addr.clone())
                .with_replication(crate::replication::outbox_queues(&cfg.replication));
            Some(registry.install_outbox(outbox).map_err(std::io::Error::other)?)
        };
        if let (Some(outbox), false) = (&outbox, cfg.notifications.endpoints.is_empty()) {
            let n = crate::ops::notify::Notifier::start(registry.clone(), outbox.clone())
                .map_err(std::io::Error::other)?;
            reloader.set_notifier(n.clone(), tokio::runtime::Handle::current());
            opts.notifier = Some(n);
        }
        if !cfg.replication.push.is_empty() || !cfg.replication.pull.is_empty() {
            let r = crate::replication::Replication::start(registry.clone(), &cfg.replication, outbox.as_deref())
                .map_err(std::io::Error::other)?;
            opts.replication = Some(r);
        }
        if !cfg.mirrors.is_empty() {
            let mirrors = crate::mirror::Mirrors::new(&cfg.mirrors).map_err(std::io::Error::other)?;
            mirrors.start(registry.clone());
            opts.mirrors = Some(std::sync::Arc::new(mirrors));
        }
        let (server, addr) = crate::server::bind_with(registry.clone(), &cfg.addr, &opts)?;
        let handle = server.handle();
        if let (true, Some(maddr)) = (cfg.metrics.enabled, &cfg.metrics.addr) {
            let (metrics, bound) = crate::server::metrics_only(registry.clone(), maddr)?;
            tracing::info!(addr = %bound, "metrics listening");
            tokio::spawn(metrics);
        }
        std::fs::write(&addr_file, format!("{scheme}://{addr}\n"))?;
        if !cfg.gc.interval.is_zero() {
            crate::gc::spawn_periodic(registry.clone(), cfg.gc.interval, opts.gc.clone());
        }
        // Pulls by tag (retention's `not_pulled_for`), written in batches.
        registry.spawn_tag_pull_flusher();
        // Registered before the listening line is printed: until then SIGHUP would kill.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hup) => {
                tokio::spawn(reload_on_sighup(hup, reloader));
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: reload through POST /admin/reload")
            }
        }
        let (in_flight, grace) = (opts.in_flight.clone(), cfg.limits.shutdown_timeout);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!(
                requests = in_flight.count(),
                "shutting down: finishing requests in flight"
            );
            // Stop accepting, then wait for every request that has started (counted by kura
            // itself), then stop the workers and close the idle connections.
            handle.pause().await;
            if !in_flight.drained(grace).await {
                tracing::warn!(
                    requests = in_flight.count(),
                    "shutdown timeout: stopping with requests still in flight"
                );
            }
            handle.stop(true).await;
        });
        tracing::info!(%addr, root = %cfg.root.display(), read_only = cfg.read_only, tls = opts.tls.is_some(), auth = opts.auth.is_some(), "kura registry listening");
        println!("kura listening on {scheme}://{addr}");
        server.await?;
        // The pulls noted since the last batch.
        if let Err(e) = registry.flush_tag_pulls().await {
            tracing::warn!(error = %e, "recording tag pulls at shutdown failed");
        }
        Ok::<(), std::io::Error>(())
    })?;
    let _ = std::fs::remove_file(&addr_file);
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the configuration on every SIGHUP (the outcome is logged).
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    reloader: std::sync::Arc<crate::ops::reload::Reloader>,
) {
    while hup.recv().await.is_some() {
        let r = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

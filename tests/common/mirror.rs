//! An upstream kura and a kura mirroring it (prefix `up/`), both in process.

use std::sync::Arc;

use kura::mirror::{MirrorConfig, Mirrors};

use super::TestServer;

pub struct Pair {
    pub upstream: TestServer,
    pub mirror: TestServer,
    pub mirrors: Arc<Mirrors>,
}

/// A mirror of a fresh upstream, its budget `max_bytes` (0: none).
pub async fn pair(max_bytes: u64) -> Pair {
    let upstream = TestServer::start().await;
    let cfg = MirrorConfig {
        name: "up".into(),
        prefix: "up/".into(),
        upstream: upstream.base.clone(),
        max_bytes,
        ..MirrorConfig::default()
    };
    let mirrors = Arc::new(Mirrors::new(&[cfg]).unwrap());
    let mirror = TestServer::start_with_options(
        None,
        kura::server::ServerOptions {
            mirrors: Some(mirrors.clone()),
            ..Default::default()
        },
    )
    .await;
    Pair {
        upstream,
        mirror,
        mirrors,
    }
}

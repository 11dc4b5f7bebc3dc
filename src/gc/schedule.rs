//! The collector's background task inside the server.

use std::time::Duration;

use super::{GcOptions, collect};
use crate::registry::Registry;

/// Runs `collect` every `interval` (the first run one interval after start) until the runtime
/// stops, on the node leading role `gc` (`Registry::leader`: on a cluster, one node at a time;
/// the others skip their turns). Each run happens on the blocking pool; a failed run is logged
/// and retried next time.
pub fn spawn_periodic(
    registry: Registry,
    interval: Duration,
    opts: GcOptions,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let leader = registry.leader("gc");
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !leader.is_leader() {
                continue;
            }
            let (r, o) = (registry.clone(), opts.clone());
            match tokio::task::spawn_blocking(move || collect(&r, &o)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(target: "kura::gc", error = %e, "garbage collection failed")
                }
                Err(e) => {
                    tracing::error!(target: "kura::gc", error = %e, "garbage collection panicked")
                }
            }
        }
    })
}

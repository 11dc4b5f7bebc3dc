//! When each tag was last pulled (`tag_pulls`, for retention's `not_pulled_for`): a pull by
//! tag is noted in memory (`PullLog`) and the notes are written in one transaction every
//! `TAG_PULL_FLUSH_EVERY`, before each retention run and at shutdown; never a durable write
//! per pull.

use std::time::Duration;

use super::Registry;
use crate::error::Result;
use crate::meta::tags;

/// How often `kura serve` writes the pulls noted in memory.
pub const TAG_PULL_FLUSH_EVERY: Duration = Duration::from_secs(10);

impl Registry {
    /// Writes the pulls by tag noted since the last flush, in one transaction (a tag removed
    /// meanwhile gets no row). In read-only mode nothing is written; the notes wait.
    pub async fn flush_tag_pulls(&self) -> Result<()> {
        if self.is_read_only() {
            return Ok(());
        }
        let pulls = self.inner.tag_pulls.take();
        if pulls.is_empty() {
            return Ok(());
        }
        self.blocking(move |r| r.write_tag_pulls(&pulls)).await
    }

    /// `flush_tag_pulls` from a blocking thread (the collector).
    pub fn flush_tag_pulls_blocking(&self) -> Result<()> {
        if self.is_read_only() {
            return Ok(());
        }
        let pulls = self.inner.tag_pulls.take();
        if pulls.is_empty() {
            return Ok(());
        }
        self.write_tag_pulls(&pulls)
    }

    fn write_tag_pulls(&self, pulls: &[(String, String, u64)]) -> Result<()> {
        self.meta().write(|t| {
            for (repo, tag, at) in pulls {
                tags::set_pulled(t, repo, tag, *at)?;
            }
            Ok(())
        })
    }

    /// Flushes the pulls by tag every `TAG_PULL_FLUSH_EVERY` until the runtime stops.
    pub fn spawn_tag_pull_flusher(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(TAG_PULL_FLUSH_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = registry.flush_tag_pulls().await {
                    tracing::warn!(target: "kura::retention", error = %e, "recording tag pulls failed");
                }
            }
        })
    }
}

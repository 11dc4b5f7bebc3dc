//! Log output through tracing: human-readable text or JSON lines.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Flushes buffered log lines when dropped; hold it until the process ends.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the installed subscriber's level filter (set by `init`).
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// The level filter `level` (`info`, `kura=debug,warn`...), or why it is not one.
pub fn parse_level(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level).map_err(|e| format!("log.level {level:?}: {e}"))
}

/// How a live reload treats a new `log.level`.
#[derive(Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// In force from now on.
    Applied,
    /// `KURA_LOG` is set and overrides the configured level.
    OverriddenByEnv,
}

/// Puts `filter` in force (a live reload); `KURA_LOG`, when set, keeps precedence.
pub fn set_level(filter: EnvFilter) -> Result<LevelChange, String> {
    if std::env::var_os("KURA_LOG").is_some() {
        return Ok(LevelChange::OverriddenByEnv);
    }
    match SET_FILTER.get() {
        Some(set) => set(filter).map(|_| LevelChange::Applied),
        None => Err("no log subscriber installed by kura".into()),
    }
}

/// Installs the global subscriber (once; later calls are ignored and return `None`).
/// `KURA_LOG`, when set, overrides the configured level filter. Logs go to stderr through a
/// writer thread that batches lines into few writes: one `write(2)` per access-log line under
/// the request's thread cost a fifth of a manifest GET. No line is dropped: a full queue makes
/// the logging thread wait.
pub fn init(cfg: &LogConfig) -> LogGuard {
    let filter = EnvFilter::try_from_env("KURA_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue's slots are allocated up front; the default 128k lines would be 4 MiB.
        .buffered_lines_limit(8192)
        .thread_name("kura-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    // The filter sits behind a reload layer, so a live reload can change the level.
    let installed = match cfg.format {
        LogFormat::Text => {
            let b = builder.with_filter_reloading();
            let h = b.reload_handle();
            b.try_init()
                .map(|_| -> SetFilter { Box::new(move |f| h.reload(f).map_err(|e| e.to_string())) })
        }
        LogFormat::Json => {
            let b = builder.json().flatten_event(true).with_filter_reloading();
            let h = b.reload_handle();
            b.try_init()
                .map(|_| -> SetFilter { Box::new(move |f| h.reload(f).map_err(|e| e.to_string())) })
        }
    };
    let set = installed.ok()?;
    let _ = SET_FILTER.set(set);
    Some(guard)
}

//! Log output through tracing: human-readable text or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Flushes buffered log lines when dropped; hold it until the process ends.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

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
    let installed = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.ok().map(|_| guard)
}

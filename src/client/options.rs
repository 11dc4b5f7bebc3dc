//! The flags every client subcommand shares, and what they set up.

use std::path::PathBuf;
use std::sync::Arc;

use super::auth::DockerConfig;
use super::blobs::TransferOptions;
use super::error::Result;
use super::progress::{OutputMode, Progress};
use super::transfer::Context;
use super::transport::{Transport, TransportConfig};

/// Flags shared by `push`, `pull`, `copy`, `tags`, `catalog`, `inspect`, `delete`, `login`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOptions {
    /// A registry (`host[:port]`) to reach over plain HTTP; loopback registries always are.
    /// Repeatable, or comma-separated.
    #[arg(
        long,
        value_name = "REGISTRY",
        env = "KURA_INSECURE",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// A PEM file of CA certificates to trust for HTTPS registries, besides the system's.
    #[arg(long = "ca-cert", value_name = "FILE", env = "KURA_CA_CERT")]
    pub ca_cert: Vec<PathBuf>,
    /// Blob transfers to run at once.
    #[arg(long, short = 'j', default_value_t = 4, env = "KURA_JOBS", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Upload chunk size (e.g. `16MiB`, `512KiB`, `1048576`); smaller blobs go in one request.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Retries of a failed request or interrupted transfer, with backoff (0.25 s doubling).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Print only results (a digest, a list), no progress.
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Print one JSON object per line: progress events, then the result.
    #[arg(long)]
    pub json: bool,
}

/// Parses `123`, `64KiB`, `16MiB`, `1GiB` (also `KB`/`MB`/`GB`, and `K`/`M`/`G`, as powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if v == 0 {
        return Err("size must be positive".into());
    }
    Ok(v)
}

impl ClientOptions {
    /// The output mode the flags ask for.
    pub fn mode(&self) -> OutputMode {
        if self.json {
            OutputMode::Json
        } else if self.quiet {
            OutputMode::Quiet
        } else {
            OutputMode::Human
        }
    }

    /// The transport, with credentials from the Docker configuration file.
    pub fn transport(&self) -> Result<Arc<Transport>> {
        Transport::new(
            &TransportConfig {
                insecure: self.insecure.clone(),
                ca_certs: self.ca_cert.clone(),
                retries: self.retries,
            },
            Some(DockerConfig::load()?),
        )
    }

    /// The context of whole-image operations.
    pub fn context(&self) -> Context {
        Context {
            progress: Progress::new(self.mode()),
            opts: TransferOptions {
                chunk_size: self.chunk_size,
                retries: self.retries,
            },
            jobs: usize::from(self.jobs),
        }
    }
}

/// Runs `f` on a tokio runtime (client commands are async; the CLI is not).
pub fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}

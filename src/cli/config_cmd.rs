//! `kura config check FILE`: validate a config file and print the effective configuration.

use std::path::PathBuf;

use crate::config::Config;

/// Arguments of `kura config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `kura config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE (with `KURA_*` variables applied) and print the result, secrets masked.
    Check {
        /// The config file (TOML).
        file: PathBuf,
    },
}

/// Runs `kura config ...`.
pub fn run(args: ConfigArgs) -> Result<(), super::CliError> {
    match args.command {
        ConfigCommand::Check { file } => {
            let cfg = Config::load(Some(&file), serde_json::json!({}))?;
            let ignored = crate::config::ignored_env_vars();
            if !ignored.is_empty() {
                eprintln!(
                    "kura: ignoring environment variables that are no configuration key: {}",
                    ignored.join(", ")
                );
            }
            print!("{}", cfg.to_masked_toml());
            Ok(())
        }
    }
}

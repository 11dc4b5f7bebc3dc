//! `kura login REGISTRY` and `kura logout REGISTRY`: check credentials against a registry and
//! store them in (or remove them from) the Docker configuration file, or the credential helper
//! it names for the registry (`credHelpers`, `credsStore`).

use std::io::Read;

use crate::client::auth::{Credentials, DockerConfig};
use crate::client::options::{ClientOptions, block_on};
use crate::client::reference::parse_registry;

/// Arguments of `kura login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry: `host[:port]`.
    pub registry: String,
    /// The user name.
    #[arg(long, short)]
    pub username: String,
    /// The password (visible to other local users through the process list; prefer
    /// `--password-stdin`).
    #[arg(long, short, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub client: ClientOptions,
}

/// Arguments of `kura logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry: `host[:port]`.
    pub registry: String,
}

/// Checks the credentials (a `GET /v2/`, answering basic or bearer challenges), then stores
/// them.
pub fn login(args: LoginArgs) -> Result<(), super::CliError> {
    let host = parse_registry(&args.registry)?;
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) => return Err("give the password with --password-stdin or --password".into()),
    };
    let creds = Credentials {
        username: args.username,
        password,
    };
    let transport = args.client.transport()?;
    let registry = transport.registry_with(&host, Some(creds.clone()))?;
    block_on(registry.ping())??;
    let mut config = DockerConfig::load()?;
    let helper = config.store_credentials(&host, &creds)?;
    config.save()?;
    if !args.client.quiet && !args.client.json {
        match helper {
            Some(h) => println!("Login succeeded (credentials stored by docker-credential-{h})"),
            None => println!(
                "Login succeeded (credentials stored in {})",
                config.path().display()
            ),
        }
    }
    Ok(())
}

/// Removes the stored credentials of a registry.
pub fn logout(args: LogoutArgs) -> Result<(), super::CliError> {
    let host = parse_registry(&args.registry)?;
    let mut config = DockerConfig::load()?;
    if !config.erase_credentials(&host)? {
        return Err(format!("not logged in to {host}").into());
    }
    config.save()?;
    println!("Removed the credentials of {host}");
    Ok(())
}

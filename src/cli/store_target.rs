//! Where `kura gc` and `kura fsck` act: a data directory opened directly, or the server that
//! holds it (found through `<root>/kura.addr`, or named with `--url`), asked over `/admin/`.

use std::path::PathBuf;

use crate::config::{Config, MetadataKind};
use crate::meta::OpenError;
use crate::registry::{Registry, RegistryOpenError};

/// `--root DIR | --url URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreTarget {
    /// Data directory (opened directly when no server holds it); default: the config file's
    /// `root`, else ./kura-data.
    #[arg(long, env = "KURA_ROOT", conflicts_with = "url")]
    pub root: Option<PathBuf>,
    /// The server's configuration file: where blobs are stored (`[storage]`, e.g. a bucket)
    /// and the default data directory. Without it, blobs are files under the data directory.
    #[arg(long, conflicts_with = "url")]
    pub config: Option<PathBuf>,
    /// URL of a running kura server to ask instead (e.g. http://127.0.0.1:5000).
    #[arg(long)]
    pub url: Option<String>,
    /// `USER:PASSWORD` of an admin, when the server requires authentication.
    #[arg(long)]
    pub creds: Option<String>,
    /// PEM file of a CA to trust, when the server uses a private certificate authority.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

/// The store opened directly, or the URL of the server to ask.
pub enum Target {
    Local(Registry),
    Remote(String),
}

impl StoreTarget {
    /// Opens the data directory, or finds the server that holds it.
    pub fn resolve(&self) -> Result<Target, super::CliError> {
        self.resolve_inner(false)
    }

    /// `resolve`, creating the store when the data directory holds none yet (`kura sync`
    /// seeding a new registry).
    pub fn resolve_or_create(&self) -> Result<Target, super::CliError> {
        self.resolve_inner(true)
    }

    fn resolve_inner(&self, create: bool) -> Result<Target, super::CliError> {
        if let Some(url) = &self.url {
            return Ok(Target::Remote(url.trim_end_matches('/').to_string()));
        }
        let cfg = match &self.config {
            Some(file) => Some(Config::load(Some(file), serde_json::json!({}))?),
            None => None,
        };
        let root = match (&self.root, &cfg) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => c.root.clone(),
            (None, None) => PathBuf::from("./kura-data"),
        };
        let shared = cfg
            .as_ref()
            .is_some_and(|c| c.metadata.kind == MetadataKind::Postgres);
        if !create && !shared && !root.join("meta.redb").exists() {
            return Err(format!("{} holds no kura store (no meta.redb)", root.display()).into());
        }
        // Without a config file, the blob store the metadata records (credentials for a
        // bucket from the AWS_* variables).
        let opened = match &cfg {
            // A cluster's metadata is in PostgreSQL: every node, and this command, act on it
            // at once (the rules hold across nodes, see ARCHITECTURE.md "Cluster").
            Some(c) => Registry::open_configured(&root, &c.storage, &c.metadata),
            None => Registry::open_recorded(&root),
        };
        match opened {
            Ok(r) => {
                // The policies the server would enforce (retention, immutable tags).
                if let Some(c) = &cfg {
                    r.set_policies(crate::policy::Policies::compile(&c.policies)?);
                }
                Ok(Target::Local(r))
            }
            Err(RegistryOpenError::Meta(OpenError::InUse { .. })) => {
                let file = root.join(super::serve::ADDR_FILE);
                let url = std::fs::read_to_string(&file).map_err(|e| {
                    format!(
                        "the store is in use by another process, and {} is unreadable ({e}); pass --url",
                        file.display()
                    )
                })?;
                Ok(Target::Remote(url.trim().trim_end_matches('/').to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// POSTs to `url` + `path` and decodes the JSON reply.
pub fn post_json<T: serde::de::DeserializeOwned>(
    target: &StoreTarget,
    url: &str,
    path: &str,
) -> Result<T, super::CliError> {
    request_json(target, reqwest::Method::POST, url, path)
}

/// GETs `url` + `path` and decodes the JSON reply.
pub fn get_json<T: serde::de::DeserializeOwned>(
    target: &StoreTarget,
    url: &str,
    path: &str,
) -> Result<T, super::CliError> {
    request_json(target, reqwest::Method::GET, url, path)
}

fn request_json<T: serde::de::DeserializeOwned>(
    target: &StoreTarget,
    method: reqwest::Method,
    url: &str,
    path: &str,
) -> Result<T, super::CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut client = reqwest::Client::builder();
    if let Some(ca) = &target.ca_cert {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let client = client.build()?;
    rt.block_on(async {
        let mut req = client.request(method, format!("{url}{path}"));
        if let Some(creds) = &target.creds {
            let (user, pass) = creds
                .split_once(':')
                .ok_or("--creds must be USER:PASSWORD")?;
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("{url}{path}: {status}: {body}").into());
        }
        Ok(resp.json::<T>().await?)
    })
}

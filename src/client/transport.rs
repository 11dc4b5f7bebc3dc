//! HTTP to registries: the scheme (plain HTTP for loopback registries and those named with
//! `--insecure`, HTTPS otherwise), TLS trusting extra CA certificates, authentication
//! challenges answered per scope, and retries with backoff.
//!
//! Credentials go only to the registry's own origin (scheme, host, port): a `Location` on
//! another host (an object store, a CDN) gets none, and neither does a redirect (reqwest drops
//! `Authorization` when a redirect changes scheme, host or port). Basic credentials never go
//! over plain HTTP to a host that is not loopback.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, Url};

use super::auth::{AuthState, Credentials, DockerConfig, parse_challenge};
use super::error::{Error, Result};
use super::reference::{api_host, is_loopback};

/// How the transport reaches registries.
#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// PEM files of CA certificates trusted besides the system's.
    pub ca_certs: Vec<PathBuf>,
    /// How often a failed idempotent request is retried.
    pub retries: u32,
}

/// The HTTP client shared by every registry an operation talks to.
pub struct Transport {
    http: reqwest::Client,
    insecure: HashSet<String>,
    retries: u32,
    docker_config: Option<DockerConfig>,
}

/// A handle on `host` (`host[:port]`) as a configuration names a remote registry (a mirror's
/// upstream, a replication target or source): its own transport, plain HTTP when `plain_http`,
/// `retries` retries, and the bearer `token` when one is given, else Basic/token-flow `creds`.
pub fn configured_remote(
    host: &str,
    plain_http: bool,
    retries: u32,
    token: &str,
    creds: Option<Credentials>,
) -> Result<Registry> {
    let transport = Transport::new(
        &TransportConfig {
            insecure: if plain_http {
                vec![host.to_string()]
            } else {
                Vec::new()
            },
            ca_certs: Vec::new(),
            retries,
        },
        None,
    )?;
    if token.is_empty() {
        transport.registry_with(host, creds)
    } else {
        transport.registry_with_bearer(host, token)
    }
}

/// The wait before retry number `attempt` (1-based): 250 ms doubling, at most 8 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(8))
}

impl Transport {
    /// A transport; credentials come from `docker_config` when given.
    pub fn new(cfg: &TransportConfig, docker_config: Option<DockerConfig>) -> Result<Arc<Self>> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kura/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300));
        let mut certs = Vec::new();
        for path in &cfg.ca_certs {
            let pem = std::fs::read(path)
                .map_err(|e| Error::io(format!("reading CA certificate {}", path.display()), e))?;
            let found = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Invalid(format!("{}: not a PEM certificate: {e}", path.display()))
            })?;
            if found.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: no PEM certificate in it",
                    path.display()
                )));
            }
            certs.extend(found);
        }
        if !certs.is_empty() {
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Error::http("setting up the HTTP client", e))?;
        Ok(Arc::new(Transport {
            http,
            insecure: cfg
                .insecure
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            retries: cfg.retries,
            docker_config,
        }))
    }

    /// True when `registry` is reached over plain HTTP.
    pub fn is_plain_http(&self, registry: &str) -> bool {
        is_loopback(registry) || self.insecure.contains(&registry.to_ascii_lowercase())
    }

    /// A handle on `registry` (`host[:port]`) using the stored credentials for it.
    pub fn registry(&self, registry: &str) -> Result<Registry> {
        let creds = match &self.docker_config {
            Some(c) => c.credentials(registry)?,
            None => None,
        };
        self.registry_with(registry, creds)
    }

    /// A handle on `registry` with the given credentials.
    pub fn registry_with(&self, registry: &str, creds: Option<Credentials>) -> Result<Registry> {
        self.registry_auth(registry, AuthState::new(registry, creds))
    }

    /// A handle on `registry` sending the bearer `token` with every request.
    pub fn registry_with_bearer(&self, registry: &str, token: &str) -> Result<Registry> {
        self.registry_auth(registry, AuthState::with_bearer(registry, token))
    }

    fn registry_auth(&self, registry: &str, auth: AuthState) -> Result<Registry> {
        let scheme = if self.is_plain_http(registry) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{}/", api_host(registry)))
            .map_err(|e| Error::Invalid(format!("invalid registry {registry:?}: {e}")))?;
        Ok(Registry {
            inner: Arc::new(RegistryInner {
                name: registry.to_string(),
                base,
                http: self.http.clone(),
                auth,
                retries: self.retries,
            }),
        })
    }
}

struct RegistryInner {
    name: String,
    base: Url,
    http: reqwest::Client,
    auth: AuthState,
    retries: u32,
}

/// One registry: its base URL and authentication state. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

impl Registry {
    /// The registry as the user named it (`host[:port]`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How often a failed request is retried.
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// The absolute URL of `path` (e.g. `/v2/`) on this registry.
    pub fn url(&self, path: &str) -> Url {
        self.inner
            .base
            .join(path)
            .expect("registry paths are valid")
    }

    /// Resolves a `Location` header (absolute, or relative to the registry).
    pub fn resolve(&self, location: &str) -> Result<Url> {
        self.inner.base.join(location).map_err(|e| {
            Error::Invalid(format!(
                "{}: invalid Location {location:?}: {e}",
                self.name()
            ))
        })
    }

    /// Sends the request `build` makes, answering one authentication challenge for `scopes`
    /// (e.g. `repository:team/app:pull,push`). Returns any response; fails only when no
    /// response came. `build` is called again for the request after the challenge.
    pub async fn send_once(
        &self,
        scopes: &[String],
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        let mut answered = false;
        loop {
            let mut req = build(&self.inner.http)
                .build()
                .map_err(|e| Error::http(format!("building a request to {}", self.name()), e))?;
            let context = format!("{} {}", req.method(), req.url());
            let own = req.url().origin() == self.inner.base.origin();
            let used = own.then(|| self.inner.auth.header_for(scopes)).flatten();
            if let Some(h) = &used {
                if h.starts_with("Basic ") && !may_carry_basic(req.url()) {
                    return Err(Error::Auth {
                        host: self.name().to_string(),
                        message: format!(
                            "refusing to send a password over plain HTTP to {}; use HTTPS",
                            self.name()
                        ),
                    });
                }
                let value = h
                    .parse()
                    .map_err(|_| Error::Invalid("credentials are not a valid header".into()))?;
                req.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = self
                .inner
                .http
                .execute(req)
                .await
                .map_err(|e| Error::http(context, e))?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED || answered || !own {
                return Ok(resp);
            }
            let Some(challenge) = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge)
            else {
                return Ok(resp);
            };
            if !self
                .inner
                .auth
                .answer(&self.inner.http, &challenge, scopes, used.as_deref())
                .await?
            {
                return Ok(resp);
            }
            answered = true;
        }
    }

    /// `send_once`, retried with backoff while it fails transiently (no response, 408, 429,
    /// 5xx). For idempotent requests only.
    pub async fn send(
        &self,
        scopes: &[String],
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let out = self.send_once(scopes, build).await;
            let transient = match &out {
                Ok(r) => {
                    let s = r.status().as_u16();
                    s == 408 || s == 429 || s >= 500
                }
                Err(e) => e.is_transient(),
            };
            if !transient || attempt >= self.inner.retries {
                return out;
            }
            attempt += 1;
            tracing::debug!(registry = self.name(), attempt, "retrying a failed request");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Turns a response whose status is not one of `ok` into an error (401 and 403 into
    /// authentication errors).
    pub async fn expect(&self, context: &str, resp: Response, ok: &[u16]) -> Result<Response> {
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let err = Error::from_response(context, resp).await;
        if status == 401 || status == 403 {
            let hint = if status == 401 {
                format!("; log in with `kura login {}`", self.name())
            } else {
                String::new()
            };
            return Err(Error::Auth {
                host: self.name().to_string(),
                message: format!("{err}{hint}"),
            });
        }
        Err(err)
    }

    /// Checks the registry answers `GET /v2/` (with authentication if it asks for it).
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/");
        let resp = self.send(&[], &|c| c.get(url.clone())).await?;
        self.expect(&format!("GET {url}"), resp, &[200]).await?;
        Ok(())
    }
}

/// Whether Basic credentials may go to `url`: over HTTPS, or to a loopback host.
pub fn may_carry_basic(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    url.scheme() == "https"
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_may_go_over_https_or_to_loopback_only() {
        for (u, ok) in [
            ("https://reg.example/v2/", true),
            ("http://127.0.0.1:5000/v2/", true),
            ("http://[::1]:5000/v2/", true),
            ("http://localhost/v2/", true),
            ("http://reg.example/v2/", false),
            ("http://10.0.0.1:5000/v2/", false),
        ] {
            assert_eq!(may_carry_basic(&Url::parse(u).unwrap()), ok, "{u}");
        }
    }

    #[test]
    fn loopback_and_named_registries_use_plain_http() {
        let t = Transport::new(
            &TransportConfig {
                insecure: vec!["reg.internal:5000".into()],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(
            t.registry("127.0.0.1:5000").unwrap().url("/v2/").scheme(),
            "http"
        );
        assert_eq!(
            t.registry("localhost").unwrap().url("/v2/").scheme(),
            "http"
        );
        assert_eq!(
            t.registry("reg.internal:5000")
                .unwrap()
                .url("/v2/")
                .scheme(),
            "http"
        );
        assert_eq!(
            t.registry("reg.internal").unwrap().url("/v2/").scheme(),
            "https"
        );
        assert_eq!(
            t.registry("docker.io").unwrap().url("/v2/").as_str(),
            "https://registry-1.docker.io/v2/"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(30), Duration::from_secs(8));
    }
}

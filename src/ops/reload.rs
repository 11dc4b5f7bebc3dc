//! Live reload (`POST /admin/reload`, and SIGHUP to `kura serve`): the configuration file(s)
//! the server was started with are read again, with the same environment and flags, and what
//! can change while serving is swapped in at once: the users (the htpasswd file, read again
//! even when its path did not change), the groups and access rules, anonymous pull, the
//! failed-login limits, the token settings, the log level, and the webhook endpoints
//! (`[[notifications.endpoints]]`, when the server started with at least one). A configuration that does not
//! load or validate is refused whole and the running one stays. Any other setting that differs
//! from the running one is reported as needing a restart and is not applied.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::auth::SharedAuth;
use crate::config::Config;
use crate::error::{Code, Error};
use crate::ops::logging::{self, LevelChange};
use crate::ops::notify::Notifier;

/// Where the configuration comes from: what `kura serve` was started with.
#[derive(Debug, Clone)]
pub struct Source {
    pub config: Option<PathBuf>,
    pub auth_config: Option<PathBuf>,
    /// The flags' overrides (`ServeFlags::overrides`).
    pub overrides: serde_json::Value,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings now in force (`auth`: users, groups, rules, token settings; `log.level`).
    pub applied: Vec<String>,
    /// Settings that differ from the running ones and take effect only after a restart.
    pub needs_restart: Vec<String>,
    /// Users in the htpasswd file now in force.
    pub users: Option<usize>,
}

/// Reloads the configuration of a running server.
#[derive(Debug)]
pub struct Reloader {
    source: Source,
    /// The settings in force; one reload at a time.
    running: Mutex<Config>,
    auth: Option<Arc<SharedAuth>>,
    /// The webhook dispatchers and the runtime they run on, when webhooks are configured.
    webhooks: OnceLock<(Notifier, tokio::runtime::Handle)>,
    /// The registry whose policies (`[policies]`) a reload replaces.
    registry: OnceLock<crate::registry::Registry>,
    /// The rate limiter whose limits (`[policies.rate_limit]`) a reload replaces.
    rate_limiter: OnceLock<Arc<crate::policy::rate_limit::RateLimiter>>,
}

impl Reloader {
    /// A reloader for a server started with `running` (loaded from `source`) and `auth`.
    pub fn new(source: Source, running: Config, auth: Option<Arc<crate::auth::Auth>>) -> Reloader {
        Reloader {
            source,
            running: Mutex::new(running),
            auth: auth.map(|a| Arc::new(SharedAuth::new(a))),
            webhooks: OnceLock::new(),
            registry: OnceLock::new(),
            rate_limiter: OnceLock::new(),
        }
    }

    /// Lets reloads replace the webhook endpoints of `notifier`, starting dispatchers on `rt`.
    pub fn set_notifier(&self, notifier: Notifier, rt: tokio::runtime::Handle) {
        let _ = self.webhooks.set((notifier, rt));
    }

    /// Lets reloads replace the policies `registry` enforces.
    pub fn set_registry(&self, registry: crate::registry::Registry) {
        let _ = self.registry.set(registry);
    }

    /// Lets reloads replace the limits of `limiter` (its buckets start full again).
    pub fn set_rate_limiter(&self, limiter: Arc<crate::policy::rate_limit::RateLimiter>) {
        let _ = self.rate_limiter.set(limiter);
    }

    /// The authentication the server's requests use (`None`: authentication is off).
    pub fn auth(&self) -> Option<Arc<SharedAuth>> {
        self.auth.clone()
    }

    /// Reads the configuration again and applies what can change live; on error nothing
    /// changed. Blocking (file reads).
    pub fn reload(&self) -> Result<ReloadReport, String> {
        let result = self.try_reload();
        match &result {
            Ok(r) => {
                tracing::info!(applied = ?r.applied, needs_restart = ?r.needs_restart, users = ?r.users, "configuration reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused: the running configuration stays")
            }
        }
        result
    }

    fn try_reload(&self) -> Result<ReloadReport, String> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let new = Config::load_with_auth(
            self.source.config.as_deref(),
            self.source.auth_config.as_deref(),
            self.source.overrides.clone(),
        )
        .map_err(|e| e.to_string())?;
        let filter = logging::parse_level(&new.log.level)?;
        let webhooks = self.webhooks.get();
        let mut live = vec!["auth", "log"];
        if webhooks.is_some() {
            live.push("notifications");
        }
        let registry = self.registry.get();
        if registry.is_some() {
            live.push("policies");
        }
        let mut report = ReloadReport {
            applied: Vec::new(),
            needs_restart: restart_only_changes(&running, &new, &live),
            users: None,
        };
        // Build everything first: a failure here leaves the running state untouched.
        let new_auth = match (&self.auth, new.auth.enabled()) {
            (Some(slot), true) => Some((slot, slot.current().reloaded(&new.auth)?)),
            (None, false) => None,
            (Some(_), false) | (None, true) => {
                report
                    .needs_restart
                    .push("auth (turning authentication on or off)".into());
                None
            }
        };
        let new_policies = match registry {
            // Signature rules name key and certificate files: read them again on every
            // reload (a key rotated in place), as the htpasswd file is.
            Some(r) if new.policies != running.policies || !new.policies.signatures.is_empty() => {
                Some((r, crate::policy::Policies::compile(&new.policies)?))
            }
            _ => None,
        };
        let new_rate_limits = match self.rate_limiter.get() {
            Some(l) if new.policies.rate_limit != running.policies.rate_limit => Some((
                l,
                crate::policy::rate_limit::Limits::compile(&new.policies.rate_limit)?,
            )),
            _ => None,
        };
        if let Some((limiter, limits)) = new_rate_limits {
            limiter.set_limits(limits);
        }
        if let Some((registry, policies)) = new_policies {
            registry.set_policies(policies);
            running.policies = new.policies.clone();
            report.applied.push("policies".into());
        }
        if let Some((slot, auth)) = new_auth {
            report.users = auth.user_count();
            slot.replace(auth);
            running.auth = new.auth.clone();
            report.applied.push("auth".into());
        }
        if let Some((notifier, rt)) = webhooks
            && new.notifications != running.notifications
        {
            notifier.set_endpoints(rt, &new.notifications.endpoints);
            running.notifications = new.notifications.clone();
            report.applied.push("notifications".into());
        }
        if new.log.level != running.log.level {
            match logging::set_level(filter)? {
                LevelChange::Applied => report.applied.push("log.level".into()),
                LevelChange::OverriddenByEnv => report
                    .needs_restart
                    .push("log.level (KURA_LOG is set and overrides it)".into()),
            }
            running.log.level = new.log.level.clone();
        }
        Ok(report)
    }
}

/// The settings (top-level sections, `log.format`) that differ between `old` and `new` and
/// cannot change while the server runs (`live` names the sections that can; of `log`, only
/// the level).
fn restart_only_changes(old: &Config, new: &Config, live: &[&str]) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["(configuration not comparable)".into()];
    };
    let mut out = Vec::new();
    for (key, va) in &a {
        if b.get(key) == Some(va) || (key != "log" && live.contains(&key.as_str())) {
            continue;
        }
        if key == "log" {
            if old.log.format != new.log.format {
                out.push("log.format".into());
            }
            continue;
        }
        out.push(key.clone());
    }
    out
}

/// `POST /admin/reload`: reloads the configuration; `200` with the `ReloadReport`, `422` with
/// why when the new configuration is refused (the running one stays), `404` when the server
/// was not started from a configuration (`kura serve` always is).
pub async fn handler(reloader: Option<web::Data<Reloader>>) -> Result<HttpResponse, Error> {
    let Some(r) = reloader else {
        return Err(Error::new(
            Code::Unsupported,
            "this server cannot reload its configuration",
        )
        .with_status(actix_web::http::StatusCode::NOT_FOUND));
    };
    let r = r.into_inner();
    let result = web::block(move || r.reload())
        .await
        .map_err(|e| Error::internal("reload", e))?;
    match result {
        Ok(report) => Ok(HttpResponse::Ok().json(report)),
        Err(why) => Err(Error::new(
            Code::Unsupported,
            format!("configuration refused, the running one stays: {why}"),
        )
        .with_status(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sections_that_cannot_change_live_are_listed_as_needing_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.addr = "127.0.0.1:6000".into();
        new.gc.interval = std::time::Duration::from_secs(60);
        new.log.level = "debug".into();
        new.auth.anonymous_pull = true;
        new.notifications
            .endpoints
            .push(crate::config::EndpointConfig::default());
        assert_eq!(
            restart_only_changes(&old, &new, &["auth", "log", "notifications"]),
            ["addr", "gc"]
        );
        // Without webhooks at start, endpoints need a restart; a log format always does.
        new.log.format = crate::config::LogFormat::Json;
        assert_eq!(
            restart_only_changes(&old, &new, &["auth", "log"]),
            ["addr", "gc", "log.format", "notifications"]
        );
        assert!(restart_only_changes(&old, &old, &[]).is_empty());
    }
}

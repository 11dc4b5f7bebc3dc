//! Rate limits (`[policies.rate_limit]`): token buckets with a burst, per client IP and per
//! authenticated user, separately for pulls, pushes and the token endpoint. The settings are
//! checked at start (`validate`) and compiled (`Limits`); `RateLimiter` holds them in a slot a
//! live reload replaces, and the buckets. The HTTP side is `crate::api::rate_limit`; the client
//! IP (behind `trusted_proxies`) is decided by `crate::ops::client_ip`.

pub mod bucket;
pub mod limiter;
pub mod metrics;

use serde::{Deserialize, Serialize};

pub use bucket::Rate;
pub use limiter::{Key, RateLimiter, Refusal};

use crate::ops::client_ip::TrustedProxies;

/// `[policies.rate_limit]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Addresses or CIDR ranges of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Manifest and blob `GET`/`HEAD`.
    pub pull: ClassConfig,
    /// Writes under `/v2/`: upload sessions, manifest `PUT`, manifest and blob `DELETE`.
    pub push: ClassConfig,
    /// The token endpoint, `/auth/token` (`GET` and the OAuth2 `POST`).
    pub token: ClassConfig,
}

/// The limits of one class of requests; an absent rate is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassConfig {
    /// Requests per client IP: `"N/s"`, `"N/m"` or `"N/h"`.
    pub per_ip: Option<String>,
    /// Requests per authenticated user (anonymous requests have only the IP limit).
    pub per_user: Option<String>,
    /// The most requests admitted at once by a full bucket (default: the rate's N).
    pub burst: Option<u32>,
}

/// A class of requests with its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Pull,
    Push,
    Token,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Pull, Class::Push, Class::Token];

    pub fn name(self) -> &'static str {
        match self {
            Class::Pull => "pull",
            Class::Push => "push",
            Class::Token => "token",
        }
    }
}

/// What a bucket is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Ip,
    User,
}

impl KeyKind {
    pub const ALL: [KeyKind; 2] = [KeyKind::Ip, KeyKind::User];

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::User => "user",
        }
    }
}

/// One configured limit: its rate (as written, for messages) and burst.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub rate: Rate,
    pub written: String,
    pub burst: u32,
}

impl Limit {
    pub fn per_second(&self) -> f64 {
        self.rate.per_second()
    }
}

/// The compiled `[policies.rate_limit]`.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub trusted_proxies: TrustedProxies,
    /// Per class (`Class as usize`), per key kind (`KeyKind as usize`).
    limits: [[Option<Limit>; 2]; 3],
}

impl Limits {
    /// Compiles `config`; an error names the key at fault.
    pub fn compile(config: &RateLimitConfig) -> Result<Limits, String> {
        let trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| format!("policies.rate_limit.trusted_proxies: {e}"))?;
        let mut limits: [[Option<Limit>; 2]; 3] = Default::default();
        for class in Class::ALL {
            let c = match class {
                Class::Pull => &config.pull,
                Class::Push => &config.push,
                Class::Token => &config.token,
            };
            let at = |key: &str| format!("policies.rate_limit.{}.{key}", class.name());
            if c.burst == Some(0) {
                return Err(format!("{}: must be at least 1", at("burst")));
            }
            if c.burst.is_some() && c.per_ip.is_none() && c.per_user.is_none() {
                return Err(format!(
                    "{}: a burst without per_ip or per_user limits nothing",
                    at("burst")
                ));
            }
            for kind in KeyKind::ALL {
                let written = match kind {
                    KeyKind::Ip => &c.per_ip,
                    KeyKind::User => &c.per_user,
                };
                let Some(written) = written else { continue };
                let key = format!("per_{}", kind.name());
                let rate = Rate::parse(written).map_err(|e| format!("{}: {e}", at(&key)))?;
                limits[class as usize][kind as usize] = Some(Limit {
                    rate,
                    written: written.trim().to_string(),
                    burst: c.burst.unwrap_or(rate.count),
                });
            }
        }
        Ok(Limits {
            trusted_proxies,
            limits,
        })
    }

    /// The limit of `class` keyed by `kind`; `None`: unlimited.
    pub fn limit(&self, class: Class, kind: KeyKind) -> Option<&Limit> {
        self.limits[class as usize][kind as usize].as_ref()
    }
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        Limits::compile(self).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(per_ip: Option<&str>, per_user: Option<&str>, burst: Option<u32>) -> ClassConfig {
        ClassConfig {
            per_ip: per_ip.map(Into::into),
            per_user: per_user.map(Into::into),
            burst,
        }
    }

    #[test]
    fn limits_compile_per_class_and_key_kind_with_the_burst_defaulting_to_the_rate() {
        let l = Limits::compile(&RateLimitConfig {
            pull: class(Some("50/s"), Some("200/m"), Some(100)),
            push: class(Some("10/s"), None, None),
            ..Default::default()
        })
        .unwrap();
        let pull_ip = l.limit(Class::Pull, KeyKind::Ip).unwrap();
        assert_eq!((pull_ip.per_second(), pull_ip.burst), (50.0, 100));
        assert_eq!(l.limit(Class::Pull, KeyKind::User).unwrap().burst, 100);
        assert_eq!(l.limit(Class::Push, KeyKind::Ip).unwrap().burst, 10);
        assert!(l.limit(Class::Push, KeyKind::User).is_none());
        assert!(l.limit(Class::Token, KeyKind::Ip).is_none());
    }

    #[test]
    fn invalid_settings_are_refused_naming_the_key() {
        let cases = [
            (
                RateLimitConfig {
                    pull: class(Some("fast"), None, None),
                    ..Default::default()
                },
                "policies.rate_limit.pull.per_ip",
            ),
            (
                RateLimitConfig {
                    token: class(None, Some("5/d"), None),
                    ..Default::default()
                },
                "policies.rate_limit.token.per_user",
            ),
            (
                RateLimitConfig {
                    push: class(Some("1/s"), None, Some(0)),
                    ..Default::default()
                },
                "policies.rate_limit.push.burst",
            ),
            (
                RateLimitConfig {
                    push: class(None, None, Some(5)),
                    ..Default::default()
                },
                "limits nothing",
            ),
            (
                RateLimitConfig {
                    trusted_proxies: vec!["10.0.0.0/33".into()],
                    ..Default::default()
                },
                "policies.rate_limit.trusted_proxies",
            ),
        ];
        for (config, want) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.contains(want), "{err:?} does not name {want:?}");
        }
        assert!(RateLimitConfig::default().validate().is_ok());
    }
}

//! Where the metadata lives (`[metadata]`): redb in the data directory (one node; the
//! default), or PostgreSQL shared by the nodes of a cluster.

use serde::{Deserialize, Serialize};

/// The metadata backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataKind {
    /// `meta.redb` under `root`.
    #[default]
    Redb,
    /// A PostgreSQL database (`url`), shared by every node of a cluster.
    Postgres,
}

/// `[metadata]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    pub kind: MetadataKind,
    /// `postgres://user:password@host:port/database` (`kind = "postgres"`); the password is
    /// masked when printed. `KURA_METADATA__URL` keeps it out of the file.
    pub url: String,
    /// Connections this node keeps to PostgreSQL for metadata transactions.
    pub pool_size: u32,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            kind: MetadataKind::Redb,
            url: String::new(),
            pool_size: 16,
        }
    }
}

impl MetadataConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        match self.kind {
            MetadataKind::Redb if !self.url.is_empty() => {
                Err("metadata.url is for kind = \"postgres\"; redb lives in root".into())
            }
            MetadataKind::Redb => Ok(()),
            MetadataKind::Postgres => {
                if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
                    return Err(
                        "metadata.url must be a postgres:// URL for kind = \"postgres\"".into(),
                    );
                }
                if self.pool_size == 0 || self.pool_size > 1000 {
                    return Err(format!(
                        "metadata.pool_size ({}) must be between 1 and 1000",
                        self.pool_size
                    ));
                }
                Ok(())
            }
        }
    }

    /// The URL with its password masked.
    pub fn masked_url(&self) -> String {
        let mut u = self.url.clone();
        if let (Some(scheme), Some(at)) = (u.find("://"), u.rfind('@'))
            && at > scheme
        {
            let userinfo = &u[scheme + 3..at];
            if let Some(colon) = userinfo.find(':') {
                u.replace_range(scheme + 3 + colon + 1..at, "********");
            }
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> MetadataConfig {
        MetadataConfig {
            kind: MetadataKind::Postgres,
            url: url.into(),
            ..MetadataConfig::default()
        }
    }

    #[test]
    fn postgres_needs_a_postgres_url_and_redb_takes_none() {
        assert!(MetadataConfig::default().validate().is_ok());
        assert!(pg("postgres://kura@db/kura").validate().is_ok());
        assert!(pg("postgresql://kura@db/kura").validate().is_ok());
        let e = pg("").validate().unwrap_err();
        assert!(e.contains("metadata.url"), "{e}");
        let e = pg("mysql://db/kura").validate().unwrap_err();
        assert!(e.contains("postgres://"), "{e}");
        let redb_with_url = MetadataConfig {
            url: "postgres://db/kura".into(),
            ..MetadataConfig::default()
        };
        assert!(redb_with_url.validate().is_err());
        let e = MetadataConfig {
            pool_size: 0,
            ..pg("postgres://db/kura")
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("pool_size"), "{e}");
    }

    #[test]
    fn the_printed_url_hides_the_password_only() {
        assert_eq!(
            pg("postgres://kura:s3cr@t@db:5432/kura").masked_url(),
            "postgres://kura:********@db:5432/kura"
        );
        assert_eq!(
            pg("postgres://kura@db/kura").masked_url(),
            "postgres://kura@db/kura"
        );
    }
}

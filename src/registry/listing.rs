//! Listings served from the metadata store: tags, the catalog and referrers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Registry;
use crate::digest::Digest;
use crate::error::{Code, Error, Result};
use crate::meta::{manifests, referrers, repos, tags};
use crate::names::RepoName;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// True when more items follow the last one.
    pub more: bool,
}

/// A descriptor of a referrer, as the referrers API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Registry {
    /// Up to `n` tags of `repo` after `last`, in lexical order.
    pub fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<Page> {
        self.meta().read(|t| {
            if !repos::exists(t, repo.as_str())? {
                return Err(Error::new(
                    Code::NameUnknown,
                    format!("repository {repo} is unknown"),
                ));
            }
            let (items, more) = tags::list(t, repo.as_str(), last, n)?;
            Ok(Page { items, more })
        })
    }

    /// Up to `n` repository names after `last`, in lexical order.
    pub fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page> {
        self.meta().read(|t| {
            let (items, more) = repos::list(t, last, n)?;
            Ok(Page { items, more })
        })
    }

    /// Up to `n` repository names after `last` that `allows` admits, reading only the names
    /// under `prefixes` (sorted, none a prefix of another; see `Rules::pull_prefixes`).
    pub fn catalog_within(
        &self,
        prefixes: &[String],
        last: Option<&str>,
        n: usize,
        allows: impl Fn(&str) -> bool,
    ) -> Result<Page> {
        self.meta().read(|t| {
            let mut items = Vec::new();
            let mut more = false;
            for p in prefixes {
                if last.is_some_and(|l| l > p.as_str() && !l.starts_with(p.as_str())) {
                    continue; // wholly before `last`
                }
                repos::scan_prefix(t, p, last, |name| {
                    if !allows(name) {
                        return true;
                    }
                    if items.len() == n {
                        more = true;
                        return false;
                    }
                    items.push(name.to_string());
                    true
                })?;
                if more {
                    break;
                }
            }
            Ok(Page { items, more })
        })
    }

    /// Up to `n` of the manifests of `repo` whose subject is `subject` (optionally of one
    /// artifact type), in digest order after `last`, and whether more follow.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<Referrer>, bool)> {
        self.meta().read(|t| {
            let mut out = Vec::new();
            let mut more = false;
            let subject = subject.to_string();
            referrers::scan(t, repo.as_str(), &subject, last, |d| {
                let Some(rec) = manifests::get(t, repo.as_str(), d)? else {
                    return Ok(true);
                };
                if artifact_type.is_some_and(|a| rec.artifact_type.as_deref() != Some(a)) {
                    return Ok(true);
                }
                if out.len() == n {
                    more = true;
                    return Ok(false);
                }
                out.push(Referrer {
                    media_type: rec.media_type,
                    digest: d.to_string(),
                    size: rec.size,
                    artifact_type: rec.artifact_type,
                    annotations: rec.annotations,
                });
                Ok(true)
            })?;
            Ok((out, more))
        })
    }
}

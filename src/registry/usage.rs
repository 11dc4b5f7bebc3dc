//! Quotas in the registry: which writes they guard, the namespaces whose usage is tracked, and
//! the usage report (`kura usage`, `GET /admin/usage`, metrics).

use serde::{Deserialize, Serialize};

use super::Registry;
use crate::error::Result;
use crate::meta::{WriteTables, usage};
use crate::policy::quota::{QuotaCheck, Scope};

/// The bytes one repository or namespace holds, and its quota if one is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeUsage {
    /// The repository name or the namespace prefix.
    pub name: String,
    pub used_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
}

/// Usage per repository and per namespace with a quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub repositories: Vec<ScopeUsage>,
    pub namespaces: Vec<ScopeUsage>,
}

impl Registry {
    /// A handle on the same registry whose writes no quota refuses: what the mirror caches (it
    /// has its own size budget) and what an operator imports. Their bytes still count.
    pub fn exempt_from_quotas(&self) -> Registry {
        Registry {
            quota_exempt: true,
            ..self.clone()
        }
    }

    /// Inside a write transaction, before a change that may add bytes to `repo`: the usage of
    /// the quotas `repo` counts toward (none for an exempt handle).
    pub(super) fn quota_check(
        &self,
        t: &mut WriteTables<'_>,
        repo: &str,
    ) -> Result<Option<QuotaCheck>> {
        if self.quota_exempt {
            return Ok(None);
        }
        let quotas = self.policies().quota.applicable(repo);
        if quotas.is_empty() {
            return Ok(None);
        }
        QuotaCheck::start(t, quotas).map(Some)
    }

    /// Tracks the usage of every namespace a quota names (computing it once for a new one) and
    /// forgets the namespaces no quota names any more.
    pub fn sync_quota_namespaces(&self) -> Result<()> {
        let wanted = self.policies().quota.namespaces();
        let tracked = self.meta().read(|t| usage::tracked_namespaces(t))?;
        if tracked == wanted
            || (tracked.len() == wanted.len() && wanted.iter().all(|w| tracked.contains(w)))
        {
            return Ok(());
        }
        self.meta().write(|t| {
            for p in usage::tracked_namespaces(t)? {
                if !wanted.contains(&p) {
                    usage::untrack_namespace(t, &p)?;
                }
            }
            for p in &wanted {
                usage::track_namespace(t, p)?;
            }
            Ok(())
        })
    }

    /// The usage of every repository and of every tracked namespace, with their quotas' limits.
    pub fn usage_report(&self) -> Result<UsageReport> {
        let quotas = self.policies().quota.clone();
        let limit = |scope: &Scope| {
            quotas
                .all()
                .iter()
                .find(|q| &q.scope == scope)
                .map(|q| q.max_bytes)
        };
        let rows = self.meta().read(|t| usage::all(t))?;
        let mut report = UsageReport::default();
        for (key, used) in rows {
            let (list, scope) = if let Some(name) = key.strip_prefix("repo:") {
                (&mut report.repositories, Scope::Repository(name.into()))
            } else if let Some(prefix) = key.strip_prefix("ns:") {
                (&mut report.namespaces, Scope::Namespace(prefix.into()))
            } else {
                continue;
            };
            list.push(ScopeUsage {
                name: key[key.find(':').map_or(0, |i| i + 1)..].to_string(),
                used_bytes: used,
                limit_bytes: limit(&scope),
            });
        }
        // Quotas on scopes holding nothing are listed too (at zero).
        for q in quotas.all() {
            let (list, name) = match &q.scope {
                Scope::Repository(r) => (&mut report.repositories, r),
                Scope::Namespace(p) => (&mut report.namespaces, p),
            };
            if !list.iter().any(|u| &u.name == name) {
                list.push(ScopeUsage {
                    name: name.clone(),
                    used_bytes: 0,
                    limit_bytes: Some(q.max_bytes),
                });
            }
        }
        report.repositories.sort_by(|a, b| a.name.cmp(&b.name));
        report.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(report)
    }
}

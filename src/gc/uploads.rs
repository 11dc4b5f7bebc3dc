//! Purging idle upload sessions and stray temp files.

use std::time::{Duration, SystemTime};

use super::{GcOptions, GcReport, expired};
use crate::error::Result;
use crate::meta::{now_secs, uploads};
use crate::registry::Registry;

/// Temp files without a session record (monolithic uploads, manifests being written) are
/// only removed once untouched this long, whatever the configured maximum age.
const STRAY_FILE_MIN_AGE: Duration = Duration::from_secs(600);

/// Removes sessions idle longer than the maximum age, and stray temp files.
pub(super) fn purge(registry: &Registry, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
    let now = now_secs();
    let stale: Vec<String> = registry.meta().read(|t| {
        Ok(uploads::all(t)?
            .into_iter()
            .filter(|(_, rec)| expired(rec.updated, now, opts.upload_max_age))
            .map(|(id, _)| id)
            .collect())
    })?;
    for id in stale {
        // Under the session's hold: a request streaming into it (on any node) keeps it.
        let purged = registry.with_idle_session(&id, || {
            if opts.dry_run {
                return Ok(true);
            }
            let removed = registry.meta().write(|t| {
                let rec = uploads::get(t, &id)?
                    .filter(|r| expired(r.updated, now_secs(), opts.upload_max_age));
                if rec.is_some() {
                    uploads::remove(t, &id)?;
                }
                Ok(rec)
            })?;
            let Some(rec) = removed else {
                return Ok(false);
            };
            registry.store().remove_upload(&id, Some(&rec.state))?;
            Ok(true)
        })?;
        if purged != Some(true) {
            continue;
        }
        if !opts.dry_run {
            registry.drop_session(&id);
        }
        report.uploads_purged += 1;
        report.items.push(format!("upload {id}"));
    }
    let min_age = opts.upload_max_age.max(STRAY_FILE_MIN_AGE);
    let mut old = Vec::new();
    registry.store().list_uploads(&mut |l| {
        if SystemTime::now()
            .duration_since(l.modified)
            .is_ok_and(|age| age >= min_age)
        {
            old.push(l.name);
        }
        Ok(())
    })?;
    for id in old {
        if registry.meta().read(|t| uploads::get(t, &id))?.is_some() {
            continue;
        }
        if !opts.dry_run {
            registry.store().remove_upload(&id, None)?;
        }
        report.uploads_purged += 1;
        report.items.push(format!("upload file {id}"));
    }
    Ok(())
}

//! The `uploads` table: upload UUID → `UploadRecord`.

use redb::ReadableTable;

use super::{UploadRecord, WriteTables};
use crate::error::Result;

/// The session `id`.
pub fn get(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<UploadRecord>> {
    match t.get(id)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Stores the session `id`.
pub fn put(t: &mut WriteTables<'_>, id: &str, rec: &UploadRecord) -> Result<()> {
    let bytes = serde_json::to_vec(rec)?;
    t.uploads.insert(id, bytes.as_slice())?;
    Ok(())
}

/// Removes the session `id`; returns whether it existed.
pub fn remove(t: &mut WriteTables<'_>, id: &str) -> Result<bool> {
    Ok(t.uploads.remove(id)?.is_some())
}

/// Every open session (bounded by the session caps).
pub fn all(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, UploadRecord)>> {
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_string(), serde_json::from_slice(v.value())?));
    }
    Ok(out)
}

//! Upload sessions: upload UUID → `UploadRecord`.

use super::rows::ReadTx;
use super::{UploadRecord, WriteTables};
use crate::error::Result;

/// The session `id`.
pub fn get(t: &(impl ReadTx + ?Sized), id: &str) -> Result<Option<UploadRecord>> {
    match t.upload(id)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        None => Ok(None),
    }
}

/// Stores the session `id`.
pub fn put(t: &mut WriteTables<'_>, id: &str, rec: &UploadRecord) -> Result<()> {
    let bytes = serde_json::to_vec(rec)?;
    t.put_upload(id, &bytes)
}

/// Removes the session `id`; returns whether it existed.
pub fn remove(t: &mut WriteTables<'_>, id: &str) -> Result<bool> {
    t.remove_upload(id)
}

/// Every open session (bounded by the session caps).
pub fn all(t: &(impl ReadTx + ?Sized)) -> Result<Vec<(String, UploadRecord)>> {
    t.uploads()?
        .into_iter()
        .map(|(id, v)| Ok((id, serde_json::from_slice(&v)?)))
        .collect()
}

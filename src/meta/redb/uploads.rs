//! redb: the `uploads` table.

use redb::ReadableTable;

use super::{RedbWrite, collect, for_both};
use crate::error::Result;
use crate::meta::rows::{UploadsRead, UploadsWrite};

for_both!(UploadsRead {
    fn upload(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.uploads.get(id)?.map(|v| v.value().to_vec()))
    }

    fn uploads(&self) -> Result<Vec<(String, Vec<u8>)>> {
        collect(self.uploads.range::<&str>(..)?, usize::MAX, |k, v| {
            Some((k.to_string(), v.to_vec()))
        })
    }
});

impl UploadsWrite for RedbWrite<'_> {
    fn put_upload(&mut self, id: &str, record: &[u8]) -> Result<()> {
        self.uploads.insert(id, record)?;
        Ok(())
    }

    fn remove_upload(&mut self, id: &str) -> Result<bool> {
        Ok(self.uploads.remove(id)?.is_some())
    }
}

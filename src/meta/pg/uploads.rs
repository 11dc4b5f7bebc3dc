//! PostgreSQL: the `uploads` table (so any node continues any upload session).

use super::Tx;
use crate::error::Result;
use crate::meta::rows::{UploadsRead, UploadsWrite};

impl UploadsRead for &Tx<'_> {
    fn upload(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let r = self.query_opt("SELECT record FROM uploads WHERE id = $1", &[&id])?;
        Ok(r.map(|r| r.get(0)))
    }

    fn uploads(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = self.query("SELECT id, record FROM uploads ORDER BY id", &[])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl UploadsWrite for &Tx<'_> {
    fn put_upload(&mut self, id: &str, record: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO uploads (id, record) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
            &[&id, &record],
        )?;
        Ok(())
    }

    fn remove_upload(&mut self, id: &str) -> Result<bool> {
        Ok(self.execute("DELETE FROM uploads WHERE id = $1", &[&id])? > 0)
    }
}

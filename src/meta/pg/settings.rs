//! PostgreSQL: the `settings` and `stats` tables.

use super::Tx;
use super::rows_util::{i, u, upper};
use crate::error::Result;
use crate::meta::rows::{SettingsRead, SettingsWrite};

impl SettingsRead for &Tx<'_> {
    fn setting(&self, name: &str) -> Result<Option<String>> {
        let r = self.query_opt("SELECT value FROM settings WHERE name = $1", &[&name])?;
        Ok(r.map(|r| r.get(0)))
    }

    fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let rows = self.query(
            "SELECT name, value FROM settings WHERE name >= $1 AND name < $2 ORDER BY name",
            &[&prefix, &upper(prefix)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn stat(&self, name: &str) -> Result<u64> {
        let r = self.query_opt("SELECT value FROM stats WHERE name = $1", &[&name])?;
        Ok(r.map_or(0, |r| u(&r, 0)))
    }
}

impl SettingsWrite for &Tx<'_> {
    fn put_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value],
        )?;
        Ok(())
    }

    fn remove_setting(&mut self, name: &str) -> Result<bool> {
        Ok(self.execute("DELETE FROM settings WHERE name = $1", &[&name])? > 0)
    }

    fn put_stat(&mut self, name: &str, value: u64) -> Result<()> {
        self.execute(
            "INSERT INTO stats (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &i(value)?],
        )?;
        Ok(())
    }
}

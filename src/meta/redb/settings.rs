//! redb: the `settings` and `stats` tables.

use redb::ReadableTable;

use super::{RedbWrite, collect, for_both, has_prefix};
use crate::error::Result;
use crate::meta::rows::{SettingsRead, SettingsWrite};

for_both!(SettingsRead {
    fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(self.settings.get(name)?.map(|v| v.value().to_string()))
    }

    fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        collect(self.settings.range::<&str>(prefix..)?, usize::MAX, |k, v| {
            has_prefix(k, prefix).then(|| (k.to_string(), v.to_string()))
        })
    }

    fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.stats.get(name)?.map_or(0, |v| v.value()))
    }
});

impl SettingsWrite for RedbWrite<'_> {
    fn put_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.settings.insert(name, value)?;
        Ok(())
    }

    fn remove_setting(&mut self, name: &str) -> Result<bool> {
        Ok(self.settings.remove(name)?.is_some())
    }

    fn put_stat(&mut self, name: &str, value: u64) -> Result<()> {
        self.stats.insert(name, value)?;
        Ok(())
    }
}

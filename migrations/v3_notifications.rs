//! Schema version 3: `notifications`, the queue of webhook events not yet delivered.

use crate::meta::tables::NOTIFICATIONS;

pub(super) const STEP: super::Migration = super::Migration {
    version: 3,
    name: "add notifications (endpoint, sequence) -> event, the webhook delivery queue",
    apply,
};

fn apply(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(NOTIFICATIONS)?;
    Ok(())
}

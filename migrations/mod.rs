//! The versioned metadata schema. One module per schema version; each step upgrades the store
//! from the previous version. Pending steps run in one write transaction when the store opens
//! (see `kura::meta::Meta::open`), so an upgrade either completes or leaves the store untouched.

mod v1_initial;
mod v2_blob_links;
mod v3_notifications;
mod v4_stats;
mod v5_settings;
mod v6_mirrors;
mod v7_policies;

/// One schema upgrade step.
#[derive(Clone, Copy)]
pub struct Migration {
    /// The schema version the store is at after this step.
    pub version: u64,
    /// What the step does, for logs.
    pub name: &'static str,
    /// Applies the step inside the opening transaction.
    pub apply: fn(&redb::WriteTransaction) -> Result<(), redb::Error>,
}

/// Every step, in version order.
pub const MIGRATIONS: &[Migration] = &[
    v1_initial::STEP,
    v2_blob_links::STEP,
    v3_notifications::STEP,
    v4_stats::STEP,
    v5_settings::STEP,
    v6_mirrors::STEP,
    v7_policies::STEP,
];

/// The schema version this build of kura writes.
pub const LATEST: u64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

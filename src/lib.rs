//! kura: an OCI Distribution Spec v1.1 container registry. Blobs are flat digest-named files
//! (`store`); all metadata lives in redb tables (`meta`); `registry` holds the operations and
//! `api` the HTTP routes. ARCHITECTURE.md draws the whole design on one page.

pub mod api;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod digest;
pub mod error;
pub mod events;
pub mod fsck;
pub mod gc;
pub mod import;
pub mod manifest;
pub mod meta;
#[path = "../migrations/mod.rs"]
pub mod migrations;
pub mod mirror;
pub mod names;
pub mod ops;
pub mod policy;
pub mod registry;
pub mod replication;
pub mod server;
pub mod store;
pub mod ui;

//! The kura client: push, pull and copy images, list tags and repositories, inspect and
//! delete manifests, over the OCI distribution API of any registry.
//!
//! - `reference`: image references as users write them
//! - `transport`: HTTP, TLS, scheme choice, authentication challenges, retries
//! - `auth`: authentication challenges and the Docker token flow
//! - `docker_config`: `~/.docker/config.json`
//! - `cred_helper`: the `docker-credential-*` programs that keep credentials
//! - `api`: the distribution API calls
//! - `image`: manifests, descriptors and the walk over an image's graph
//! - `blobs`: blob uploads (skip, mount, chunked with resume) and verified downloads
//! - `layout`, `docker_archive`: OCI layouts and `docker save` tarballs on disk
//! - `transfer`: push, pull and copy of whole images
//! - `progress`: progress bars, quiet and JSON output
//! - `options`: the flags client subcommands share

pub mod api;
pub mod auth;
pub mod blobs;
pub mod cred_helper;
pub mod docker_archive;
pub mod docker_config;
pub mod error;
pub mod image;
pub mod layout;
pub mod options;
pub mod progress;
pub mod reference;
pub mod transfer;
pub mod transport;

pub use error::{Error, Result};

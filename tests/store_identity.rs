//! The metadata records which blob store its blobs live in (`settings.blob_store`, schema v5):
//! a server or a tool pointed at the metadata with another store refuses to open it instead of
//! answering every recorded blob with "missing" and writing new ones somewhere else, and
//! `kura gc`/`fsck --root` find a bucket-backed registry's blobs without a config file.

mod common;

use kura::config::StorageConfig;
use kura::meta::Meta;
use kura::migrations::MIGRATIONS;
use kura::registry::{Registry, RegistryOpenError};

fn refused(r: Result<Registry, RegistryOpenError>) -> String {
    match r {
        Err(e @ RegistryOpenError::OtherStore { .. }) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("opened on another blob store"),
    }
}

#[test]
fn a_filesystem_registry_refuses_a_configuration_naming_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    drop(Registry::open(dir.path()).unwrap());
    let msg = refused(Registry::open_with(
        dir.path(),
        &common::s3::s3_config("identity-a"),
    ));
    assert!(msg.contains("filesystem") && msg.contains("s3://"), "{msg}");
    assert!(msg.contains("migrate-storage"), "{msg}");
    // The configured store is still accepted.
    Registry::open_with(dir.path(), &StorageConfig::default()).unwrap();
}

#[test]
fn a_bucket_registry_refuses_the_filesystem_and_another_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = common::s3::s3_config("identity-b");
    drop(Registry::open_with(dir.path(), &s3).unwrap());
    let msg = refused(Registry::open(dir.path()));
    assert!(msg.contains(&s3.prefix), "{msg}");
    let other = StorageConfig {
        prefix: format!("{}-other", s3.prefix),
        ..s3.clone()
    };
    refused(Registry::open_with(dir.path(), &other));
    // Settings that do not move the blobs (part size, redirects) may change.
    let tuned = StorageConfig {
        part_size: 16 << 20,
        redirect: true,
        ..s3.clone()
    };
    Registry::open_with(dir.path(), &tuned).unwrap();
    // (A tool without a config file opening the recorded bucket, with credentials from the
    // AWS_* variables: kura_fsck_and_gc_with_only_root_work_on_the_recorded_bucket.)
}

#[test]
fn backward_compatibility_a_v4_store_with_blobs_is_recorded_as_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    drop(Meta::open_with(&path, &MIGRATIONS[..4]).unwrap());
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(kura::meta::tables::BLOBS)
        .unwrap()
        .insert(
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            (3, 0, 0),
        )
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    // Upgraded by a server configured for a bucket: the blobs it has are on the filesystem.
    refused(Registry::open_with(
        dir.path(),
        &common::s3::s3_config("identity-c"),
    ));
    let meta = Meta::open(&path).unwrap();
    let recorded = meta.read(|t| kura::meta::settings::blob_store(t)).unwrap();
    assert_eq!(
        recorded,
        Some(kura::meta::settings::StoreIdentity::filesystem())
    );
}

#[test]
fn kura_fsck_and_gc_with_only_root_work_on_the_recorded_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = common::s3::s3_config("identity-d");
    {
        let reg = Registry::open_with(dir.path(), &s3).unwrap();
        let d = kura::digest::Digest::sha256_of(b"layer");
        reg.store().put_verified(&d, b"layer", false).unwrap();
        reg.meta()
            .write(|t| {
                kura::meta::blobs::touch(t, &d.to_string(), 5)?;
                kura::meta::blobs::link(t, "r", &d.to_string())?;
                kura::meta::repos::ensure(t, "r")
            })
            .unwrap();
    }
    let g = common::s3::gateway();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kura"))
            .args(args)
            .args(["--root", dir.path().to_str().unwrap()])
            .env("KURA_LOG", "warn")
            .env("AWS_ACCESS_KEY_ID", &g.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &g.secret_key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, out) = run(&["fsck"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("1 blob(s), 5 bytes verified: 0 error(s)"),
        "{out}"
    );
    let (ok, out) = run(&["gc", "--grace", "0s"]);
    assert!(ok, "{out}");
}

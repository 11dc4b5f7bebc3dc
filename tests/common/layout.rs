//! Reading OCI image layouts in end-to-end tests (skopeo, umoci).

use std::collections::BTreeMap;
use std::path::Path;

use kura::digest::Digest;
use serde_json::Value;

/// The annotation naming an entry of `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The descriptor `index.json` of the layout at `dir` gives for `tag`.
pub fn tagged(dir: &Path, tag: &str) -> Value {
    let index: Value = serde_json::from_slice(
        &std::fs::read(dir.join("index.json"))
            .unwrap_or_else(|e| panic!("{}/index.json: {e}", dir.display())),
    )
    .unwrap();
    index["manifests"]
        .as_array()
        .expect("index.json manifests")
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {}/index.json: {index}", dir.display()))
        .clone()
}

/// Every blob of the layout at `dir`, by digest, after checking each file hashes to its name.
pub fn blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        let digest = Digest::sha256_of(&data);
        assert_eq!(
            digest.hex(),
            name,
            "blob file {name} in {} holds other content",
            dir.display()
        );
        out.insert(digest.to_string(), data);
    }
    out
}

pub fn blob_of(dir: &Path, desc: &Value) -> Vec<u8> {
    let digest: Digest = desc["digest"].as_str().unwrap().parse().unwrap();
    std::fs::read(dir.join("blobs/sha256").join(digest.hex())).unwrap()
}

/// Asserts two layouts hold exactly the same blobs, byte for byte.
pub fn assert_same_blobs(src: &Path, dst: &Path) {
    let (a, b) = (blobs(src), blobs(dst));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "blob digests differ between {} and {}",
        src.display(),
        dst.display()
    );
    for (d, data) in &a {
        assert!(b[d] == *data, "blob {d} differs");
    }
}

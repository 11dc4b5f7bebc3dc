//! Reference counts kept by manifest transactions, tested on `Registry` without HTTP.

use bytes::Bytes;
use kura::digest::Digest;
use kura::names::{Reference, RepoName};
use kura::registry::Registry;
use serde_json::json;

struct Fixture {
    reg: Registry,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            reg: Registry::open(dir.path()).unwrap(),
            _dir: dir,
        }
    }

    async fn blob(&self, repo: &str, data: &[u8]) -> (Digest, usize) {
        let d = Digest::sha256_of(data);
        let body =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data.to_vec()))]);
        self.reg
            .put_blob(&RepoName::parse(repo).unwrap(), &d, body)
            .await
            .unwrap();
        (d, data.len())
    }

    async fn manifest(&self, repo: &str, reference: &str, body: serde_json::Value) -> Digest {
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        self.reg
            .put_manifest(
                &RepoName::parse(repo).unwrap(),
                &Reference::parse(reference).unwrap(),
                None,
                bytes,
            )
            .await
            .unwrap()
            .digest
    }

    async fn image(&self, repo: &str, tag: &str, config: &[u8], layers: &[&[u8]]) -> Digest {
        let c = self.blob(repo, config).await;
        let mut ls = Vec::new();
        for l in layers {
            let (d, n) = self.blob(repo, l).await;
            ls.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": n}));
        }
        self.manifest(
            repo,
            tag,
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.0.to_string(), "size": c.1},
                   "layers": ls}),
        )
        .await
    }

    async fn delete(&self, repo: &str, reference: &str) {
        self.reg
            .delete_manifest(
                &RepoName::parse(repo).unwrap(),
                &Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap();
    }

    fn refs(&self, data_or_digest: &Digest) -> u64 {
        self.reg
            .meta()
            .read(|t| kura::meta::blobs::get(t, &data_or_digest.to_string()))
            .unwrap()
            .map_or(0, |r| r.refs)
    }
}

fn d(data: &[u8]) -> Digest {
    Digest::sha256_of(data)
}

#[tokio::test]
async fn shared_layers_are_counted_once_per_manifest_across_repositories() {
    let f = Fixture::new();
    let a = f.image("one", "v1", b"cfg-a", &[b"base", b"app-a"]).await;
    let b = f.image("two", "v1", b"cfg-b", &[b"base", b"app-b"]).await;
    assert_eq!(f.refs(&d(b"base")), 2);
    assert_eq!(f.refs(&d(b"app-a")), 1);
    assert_eq!(f.refs(&a), 1);
    assert_eq!(f.refs(&b), 1);
    f.delete("one", &a.to_string()).await;
    assert_eq!(f.refs(&d(b"base")), 1);
    assert_eq!(f.refs(&d(b"app-a")), 0);
    assert_eq!(f.refs(&a), 0);
    assert_eq!(f.refs(&d(b"cfg-a")), 0);
}

#[tokio::test]
async fn a_layer_listed_twice_in_one_manifest_counts_once() {
    let f = Fixture::new();
    f.image("dup", "v1", b"cfg", &[b"same", b"same"]).await;
    assert_eq!(f.refs(&d(b"same")), 1);
}

#[tokio::test]
async fn index_counts_its_children_and_deleting_it_releases_them() {
    let f = Fixture::new();
    let c1 = f.image("multi", "amd64", b"cfg1", &[b"l1"]).await;
    let c2 = f.image("multi", "arm64", b"cfg2", &[b"l2"]).await;
    let idx = f
        .manifest(
            "multi",
            "latest",
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": c1.to_string(), "size": 1},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": c2.to_string(), "size": 1}]}),
        )
        .await;
    assert_eq!(f.refs(&c1), 2, "own revision + index");
    assert_eq!(f.refs(&idx), 1);
    f.delete("multi", &idx.to_string()).await;
    assert_eq!(f.refs(&c1), 1);
    assert_eq!(f.refs(&c2), 1);
    assert_eq!(f.refs(&idx), 0);
}

#[tokio::test]
async fn retagging_and_deleting_a_tag_keep_the_revision_counted() {
    let f = Fixture::new();
    let first = f.image("retag", "latest", b"cfg1", &[b"old"]).await;
    let second = f.image("retag", "latest", b"cfg2", &[b"new"]).await;
    // The first revision is untagged now but still a revision: its references stand.
    assert_eq!(f.refs(&first), 1);
    assert_eq!(f.refs(&d(b"old")), 1);
    f.delete("retag", "latest").await;
    assert_eq!(f.refs(&second), 1);
    assert_eq!(f.refs(&d(b"new")), 1);
    // Deleting by digest releases the references.
    f.delete("retag", &second.to_string()).await;
    assert_eq!(f.refs(&d(b"new")), 0);
    assert_eq!(f.refs(&second), 0);
}

#[tokio::test]
async fn pushing_the_same_manifest_twice_counts_it_once() {
    let f = Fixture::new();
    let a = f.image("twice", "a", b"cfg", &[b"l"]).await;
    let b = f.image("twice", "b", b"cfg", &[b"l"]).await;
    assert_eq!(a, b);
    assert_eq!(f.refs(&a), 1);
    assert_eq!(f.refs(&d(b"l")), 1);
}

#[tokio::test]
async fn referrers_do_not_keep_their_subject_alive() {
    let f = Fixture::new();
    let subject = f.image("app", "v1", b"cfg", &[b"l"]).await;
    let cfg = f.blob("app", b"{}").await;
    let sig = f
        .manifest(
            "app",
            "sig",
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "artifactType": "application/vnd.example.sig",
                   "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg.0.to_string(), "size": 2},
                   "layers": [],
                   "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 1}}),
        )
        .await;
    assert_eq!(
        f.refs(&subject),
        1,
        "the subject is not counted by its referrer"
    );
    assert_eq!(f.refs(&sig), 1);
    let repo = RepoName::parse("app").unwrap();
    assert_eq!(
        f.reg
            .referrers(&repo, &subject, None, None, 100)
            .unwrap()
            .0
            .len(),
        1
    );
    f.delete("app", &sig.to_string()).await;
    assert!(
        f.reg
            .referrers(&repo, &subject, None, None, 100)
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(f.refs(&d(b"{}")), 0);
}

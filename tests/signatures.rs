//! Required signatures (`[[policies.signatures]]`) end to end: images signed in the test the
//! way cosign (simple-signing payload, P-256 key) and notation (JWS and COSE envelopes, an
//! rcgen CA and code-signing leaf) sign them, then pulled by a real client (skopeo) from a
//! `kura serve` whose config requires signatures for `prod/**`.

mod common;
mod signatures_support;

use signatures_support::{
    CosignAt, Image, Key, Pki, Server, cose_envelope, cosign_sign, jws_envelope, notation_payload,
    pull_status, push_cosign, push_image, push_notation, simple_signing, skopeo_copy, write_config,
};

const RULE: &str = r#"
[[policies.signatures]]
repositories = ["prod/**"]
cosign_keys = ["{dir}/cosign.pub"]
notation_certificates = ["{dir}/root.pem"]
"#;

const POLICY: &str =
    r#"is not signed by a trusted key (policies.signatures repositories = ["prod/**"])"#;

/// A server requiring signatures on `prod/**`, trusting `key` (cosign) and `pki`'s CA.
fn server(key: &Key, pki: &Pki) -> Server {
    Server::start(
        &[("cosign.pub", &key.public_pem), ("root.pem", &pki.ca_pem)],
        RULE,
    )
}

/// skopeo's pull of `repo:tag` fails, and kura says 403 DENIED naming the policy to HEAD and GET.
async fn assert_denied(s: &Server, repo: &str, tag: &str) {
    let (ok, stderr) = skopeo_copy(&format!("{}/{repo}:{tag}", s.host())).await;
    assert!(!ok, "skopeo pulled unsigned {repo}:{tag}");
    assert!(stderr.contains("denied"), "skopeo stderr: {stderr}");
    let (head, get, body) = pull_status(&s.base, repo, tag).await;
    assert_eq!((head, get), (403, 403), "{body}");
    assert!(body.contains("\"DENIED\""), "{body}");
    assert!(
        body.contains(&format!("{repo}:{tag} {}", POLICY.replace('"', "\\\""))),
        "{body}"
    );
}

async fn assert_pulls(s: &Server, reference: &str) {
    let (ok, stderr) = skopeo_copy(&format!("{}/{reference}", s.host())).await;
    assert!(ok, "skopeo copy {reference}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signed_tag_pulls_and_unsigned_tag_is_denied_naming_the_policy() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let signed = push_image(&s.base, "prod/app", "v1", "signed").await;
    cosign_sign(&s.base, "prod/app", &signed, &key, CosignAt::Both).await;
    push_image(&s.base, "prod/app", "unsigned", "unsigned").await;
    assert_pulls(&s, "prod/app:v1").await;
    // Further pulls are answered from the cached verdict: verified once.
    assert_pulls(&s, "prod/app:v1").await;
    assert_pulls(&s, "prod/app:v1").await;
    assert_eq!(metric(&s, "kura_signature_verifications_total").await, 1.0);
    assert!(metric(&s, "kura_signature_checks_total{result=\"allowed\"}").await >= 3.0);
    assert_denied(&s, "prod/app", "unsigned").await;
    assert_eq!(metric(&s, "kura_signature_verifications_total").await, 2.0);
}

/// The value of the sample `name` (with its labels) in kura's `/metrics`.
async fn metric(s: &Server, name: &str) -> f64 {
    let text = common::client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signature_found_as_referrer_alone_and_under_sig_tag_alone() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let a = push_image(&s.base, "prod/app", "referrer", "a").await;
    cosign_sign(&s.base, "prod/app", &a, &key, CosignAt::Referrer).await;
    let b = push_image(&s.base, "prod/app", "tagged", "b").await;
    cosign_sign(&s.base, "prod/app", &b, &key, CosignAt::Tag).await;
    assert_pulls(&s, "prod/app:referrer").await;
    assert_pulls(&s, "prod/app:tagged").await;
    // cosign reads its signature by tag: served, though unsigned itself.
    let sig_tag = format!("{}.sig", b.digest.to_string().replace(':', "-"));
    let (head, get, body) = pull_status(&s.base, "prod/app", &sig_tag).await;
    assert_eq!((head, get), (200, 200), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_by_an_untrusted_key_is_denied() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let img = push_image(&s.base, "prod/app", "v1", "rogue").await;
    cosign_sign(&s.base, "prod/app", &img, &Key::generate(), CosignAt::Both).await;
    let rogue_ca = Pki::new("rogue", false);
    let payload = notation_payload(&img.digest.to_string(), img.size);
    let env = jws_envelope(&rogue_ca, &payload);
    push_notation(&s.base, "prod/app", &img, "application/jose+json", &env).await;
    assert_denied(&s, "prod/app", "v1").await;
    let (_, _, body) = pull_status(&s.base, "prod/app", "v1").await;
    assert!(body.contains("2 signature(s) found"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_denied() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let img = push_image(&s.base, "prod/app", "v1", "tampered").await;
    let other = push_image(&s.base, "prod/app", "v2", "other").await;
    // Bytes altered after signing (a space added), and the digest swapped after signing.
    let payload = simple_signing("prod/app", &img.digest.to_string());
    let sig = key.sign_der(&payload);
    let mut altered = payload.clone();
    altered.push(b' ');
    push_cosign(
        &s.base,
        "prod/app",
        &img,
        &altered,
        &sig,
        CosignAt::Referrer,
    )
    .await;
    let swapped = simple_signing("prod/app", &img.digest.to_string());
    let swapped_sig = key.sign_der(&simple_signing("prod/app", &other.digest.to_string()));
    push_cosign(
        &s.base,
        "prod/app",
        &img,
        &swapped,
        &swapped_sig,
        CosignAt::Tag,
    )
    .await;
    // A notation envelope whose signature is over other bytes than its payload.
    let env = jws_envelope(&pki, &notation_payload(&img.digest.to_string(), img.size));
    let mut jws: serde_json::Value = serde_json::from_slice(&env).unwrap();
    jws["payload"] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        notation_payload(&img.digest.to_string(), img.size + 1),
    )
    .into();
    let env = serde_json::to_vec(&jws).unwrap();
    push_notation(&s.base, "prod/app", &img, "application/jose+json", &env).await;
    assert_denied(&s, "prod/app", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_signature_for_another_digest_is_denied() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let img = push_image(&s.base, "prod/app", "v1", "target").await;
    let other = push_image(&s.base, "prod/app", "other", "other").await;
    // Trusted signatures of `other`, attached to `img` (referrer and .sig tag).
    let payload = simple_signing("prod/app", &other.digest.to_string());
    let sig = key.sign_der(&payload);
    push_cosign(&s.base, "prod/app", &img, &payload, &sig, CosignAt::Both).await;
    let env = cose_envelope(
        &pki,
        &notation_payload(&other.digest.to_string(), other.size),
    );
    push_notation(&s.base, "prod/app", &img, "application/cose", &env).await;
    assert_denied(&s, "prod/app", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_jws_and_cose_signatures_chained_to_the_trusted_root_pull() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let jws = push_image(&s.base, "prod/web", "jws", "jws").await;
    let env = jws_envelope(&pki, &notation_payload(&jws.digest.to_string(), jws.size));
    push_notation(&s.base, "prod/web", &jws, "application/jose+json", &env).await;
    let cose = push_image(&s.base, "prod/web", "cose", "cose").await;
    let env = cose_envelope(&pki, &notation_payload(&cose.digest.to_string(), cose.size));
    push_notation(&s.base, "prod/web", &cose, "application/cose", &env).await;
    assert_pulls(&s, "prod/web:jws").await;
    assert_pulls(&s, "prod/web:cose").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signature_by_an_expired_certificate_is_denied() {
    // The leaf, issued by the trusted CA, expired in 2020.
    let (key, expired) = (Key::generate(), Pki::new("old", true));
    let s = server(&key, &expired);
    let img = push_image(&s.base, "prod/app", "v1", "expired").await;
    let env = jws_envelope(
        &expired,
        &notation_payload(&img.digest.to_string(), img.size),
    );
    push_notation(&s.base, "prod/app", &img, "application/jose+json", &env).await;
    assert_denied(&s, "prod/app", "v1").await;
    let (_, _, body) = pull_status(&s.base, "prod/app", "v1").await;
    assert!(body.contains("does not chain to a trusted one"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_digest_of_an_unsigned_image_and_other_repositories_are_unaffected() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let img = push_image(&s.base, "prod/app", "v1", "unsigned").await;
    assert_denied(&s, "prod/app", "v1").await;
    assert_pulls(&s, &format!("prod/app@{}", img.digest)).await;
    // `prod/**` does not match `production/app` nor `staging/prod/app`.
    push_image(&s.base, "production/app", "v1", "x").await;
    push_image(&s.base, "staging/prod/app", "v1", "y").await;
    assert_pulls(&s, "production/app:v1").await;
    assert_pulls(&s, "staging/prod/app:v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signature_or_a_moved_tag_changes_the_cached_verdict() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = server(&key, &pki);
    let img = push_image(&s.base, "prod/app", "v1", "late").await;
    assert_denied(&s, "prod/app", "v1").await;
    cosign_sign(&s.base, "prod/app", &img, &key, CosignAt::Referrer).await;
    assert_pulls(&s, "prod/app:v1").await;
    // The tag moved to an unsigned image: denied again.
    push_image(&s.base, "prod/app", "v1", "moved").await;
    assert_denied(&s, "prod/app", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adding_the_policy_takes_effect() {
    let (key, pki) = (Key::generate(), Pki::new("t", false));
    let s = Server::start(&[], "");
    let signed = push_image(&s.base, "prod/app", "v1", "signed").await;
    cosign_sign(&s.base, "prod/app", &signed, &key, CosignAt::Both).await;
    let _unsigned: Image = push_image(&s.base, "prod/app", "v2", "unsigned").await;
    assert_pulls(&s, "prod/app:v2").await;
    write_config(
        s.dir.path(),
        &[("cosign.pub", &key.public_pem), ("root.pem", &pki.ca_pem)],
        RULE,
    );
    let r = common::client()
        .post(format!("{}/admin/reload", s.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"],
        serde_json::json!(["policies"]),
        "{report}"
    );
    assert_denied(&s, "prod/app", "v2").await;
    assert_pulls(&s, "prod/app:v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_rotated_in_place_is_read_again_by_a_reload() {
    let (old, new, pki) = (Key::generate(), Key::generate(), Pki::new("t", false));
    let s = server(&old, &pki);
    let img = push_image(&s.base, "prod/app", "v1", "rotated").await;
    cosign_sign(&s.base, "prod/app", &img, &new, CosignAt::Referrer).await;
    assert_denied(&s, "prod/app", "v1").await;
    // Same config, same path, new key in the file.
    std::fs::write(s.dir.path().join("cosign.pub"), &new.public_pem).unwrap();
    let r = common::client()
        .post(format!("{}/admin/reload", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_pulls(&s, "prod/app:v1").await;
}

#[test]
fn unreadable_or_unusable_key_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let check = |files: &[(&str, &str)], rule: &str| {
        let cfg = write_config(dir.path(), files, rule);
        common::kura_cmd(&["config", "check", cfg.to_str().unwrap()])
    };
    let pki = Pki::new("t", false);
    let key = Key::generate();
    let (ok, out, err) = check(
        &[("cosign.pub", &key.public_pem), ("root.pem", &pki.ca_pem)],
        RULE,
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("prod/**") && out.contains("cosign.pub"),
        "{out}"
    );
    let missing = RULE.replace("cosign.pub", "absent.pub");
    let (ok, _, err) = check(&[], &missing);
    assert!(!ok && err.contains("absent.pub"), "{err}");
    // A certificate where a public key belongs, and a key where certificates belong.
    let (ok, _, err) = check(&[("cosign.pub", &pki.ca_pem)], RULE);
    assert!(!ok && err.contains("PUBLIC KEY"), "{err}");
    let (ok, _, err) = check(
        &[
            ("cosign.pub", &key.public_pem),
            ("root.pem", &key.public_pem),
        ],
        RULE,
    );
    assert!(!ok && err.contains("CERTIFICATE"), "{err}");
    let (ok, _, err) = check(
        &[],
        "[[policies.signatures]]\nrepositories = [\"prod/**\"]\n",
    );
    assert!(!ok && err.contains("no trusted key"), "{err}");
}

use super::*;

/// A policy with one rule over `patterns`, trusting a fresh P-256 key.
fn policy(patterns: &[&str]) -> (tempfile::TempDir, SignaturePolicy) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cosign.pub");
    let pair = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key, pair.public_key_pem()).unwrap();
    let rule = SignatureRule {
        repositories: patterns.iter().map(|p| p.to_string()).collect(),
        cosign_keys: vec![key],
        notation_certificates: Vec::new(),
    };
    let p = SignaturePolicy::compile(&[rule]).unwrap();
    (dir, p)
}

#[test]
fn double_star_crosses_slashes_and_single_star_stays_in_a_segment() {
    let (_d, p) = policy(&["prod/**"]);
    assert!(p.applies("prod/app") && p.applies("prod/team/app"));
    assert!(!p.applies("production/app") && !p.applies("staging/prod/app"));
    let (_d, p) = policy(&["prod/*"]);
    assert!(p.applies("prod/app"));
    assert!(!p.applies("prod/team/app"));
}

#[test]
fn only_cosign_signature_and_attestation_tags_are_cosign_tags() {
    assert!(cosign::is_cosign_tag(&format!(
        "sha256-{}.sig",
        "ab".repeat(32)
    )));
    assert!(cosign::is_cosign_tag(&format!(
        "sha256-{}.att",
        "ab".repeat(32)
    )));
    assert!(!cosign::is_cosign_tag("v1.sig"));
    assert!(!cosign::is_cosign_tag("sha256-xyz.sig"));
    assert!(!cosign::is_cosign_tag(&format!(
        "sha256-{}",
        "ab".repeat(32)
    )));
    assert!(!cosign::is_cosign_tag(&format!(
        "sha256-{}.sbom",
        "ab".repeat(32)
    )));
}

#[test]
fn a_rule_without_patterns_or_trusted_keys_is_refused() {
    let none = SignatureRule {
        repositories: vec!["prod/**".into()],
        ..Default::default()
    };
    let err = SignaturePolicy::compile(&[none]).unwrap_err();
    assert!(err.contains("policies.signatures[0]") && err.contains("no trusted key"));
    let bad = SignatureRule {
        repositories: vec!["prod/[".into()],
        cosign_keys: vec!["/nonexistent.pub".into()],
        ..Default::default()
    };
    assert!(
        SignaturePolicy::compile(&[bad])
            .unwrap_err()
            .contains("prod/[")
    );
}

//! Trusted material of `[[policies.signatures]]`: cosign public keys (PEM `PUBLIC KEY`) and
//! notation certificates (PEM `CERTIFICATE`), read and parsed when the policy is compiled.
//! Signatures are checked with aws-lc-rs, certificate paths with rustls-webpki, and X.509
//! structures are read with x509-parser: no cryptography of kura's own.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};
use x509_parser::time::ASN1Time;

/// The key types kura checks signatures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcP256,
    EcP384,
    EcP521,
    Rsa,
    Ed25519,
}

/// A public key: its type and the bytes aws-lc-rs takes (an uncompressed EC point, an
/// `RSAPublicKey`, or the raw Ed25519 key).
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub kind: KeyType,
    bytes: Vec<u8>,
}

/// The signature algorithms of JWS and COSE envelopes that notation produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeAlg {
    Es256,
    Es384,
    Es512,
    Ps256,
    Ps384,
    Ps512,
}

impl EnvelopeAlg {
    /// From a JWS `alg` header.
    pub fn from_jws(name: &str) -> Option<EnvelopeAlg> {
        Some(match name {
            "ES256" => EnvelopeAlg::Es256,
            "ES384" => EnvelopeAlg::Es384,
            "ES512" => EnvelopeAlg::Es512,
            "PS256" => EnvelopeAlg::Ps256,
            "PS384" => EnvelopeAlg::Ps384,
            "PS512" => EnvelopeAlg::Ps512,
            _ => return None,
        })
    }
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

impl PublicKey {
    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
        let alg = spki.algorithm.algorithm.to_id_string();
        let kind = match alg.as_str() {
            OID_EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| x509_parser::der_parser::oid::Oid::try_from(p.clone()).ok())
                    .map(|o| o.to_id_string())
                    .ok_or("an EC key without a named curve")?;
                match curve.as_str() {
                    OID_P256 => KeyType::EcP256,
                    OID_P384 => KeyType::EcP384,
                    OID_P521 => KeyType::EcP521,
                    other => return Err(format!("unsupported elliptic curve {other}")),
                }
            }
            OID_RSA => KeyType::Rsa,
            OID_ED25519 => KeyType::Ed25519,
            other => return Err(format!("unsupported public key algorithm {other}")),
        };
        Ok(PublicKey {
            kind,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Reads a DER `SubjectPublicKeyInfo` from bytes.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
        PublicKey::from_spki(&spki)
    }

    fn verify_with(&self, alg: &'static dyn VerificationAlgorithm, msg: &[u8], s: &[u8]) -> bool {
        UnparsedPublicKey::new(alg, &self.bytes)
            .verify(msg, s)
            .is_ok()
    }

    /// Checks a cosign signature (what `cosign sign --key` makes: ECDSA with SHA-256, DER
    /// encoded; RSA PKCS#1 v1.5 with SHA-256; Ed25519).
    pub fn verify_cosign(&self, msg: &[u8], signature: &[u8]) -> bool {
        let alg: &'static dyn VerificationAlgorithm = match self.kind {
            KeyType::EcP256 => &sig::ECDSA_P256_SHA256_ASN1,
            KeyType::EcP384 => &sig::ECDSA_P384_SHA256_ASN1,
            KeyType::EcP521 => &sig::ECDSA_P521_SHA256_ASN1,
            KeyType::Rsa => &sig::RSA_PKCS1_2048_8192_SHA256,
            KeyType::Ed25519 => &sig::ED25519,
        };
        self.verify_with(alg, msg, signature)
    }

    /// Checks an envelope signature (JWS or COSE: ECDSA as the fixed `r || s` form).
    pub fn verify_envelope(&self, alg: EnvelopeAlg, msg: &[u8], signature: &[u8]) -> bool {
        let alg: &'static dyn VerificationAlgorithm = match (alg, self.kind) {
            (EnvelopeAlg::Es256, KeyType::EcP256) => &sig::ECDSA_P256_SHA256_FIXED,
            (EnvelopeAlg::Es384, KeyType::EcP384) => &sig::ECDSA_P384_SHA384_FIXED,
            (EnvelopeAlg::Es512, KeyType::EcP521) => &sig::ECDSA_P521_SHA512_FIXED,
            (EnvelopeAlg::Ps256, KeyType::Rsa) => &sig::RSA_PSS_2048_8192_SHA256,
            (EnvelopeAlg::Ps384, KeyType::Rsa) => &sig::RSA_PSS_2048_8192_SHA384,
            (EnvelopeAlg::Ps512, KeyType::Rsa) => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return false,
        };
        self.verify_with(alg, msg, signature)
    }
}

/// The PEM blocks of `path`, as (label, DER).
fn pem_blocks(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(&text) {
        let block = block.map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
        out.push((block.label, block.contents));
    }
    Ok(out)
}

/// Reads every `PUBLIC KEY` block of the PEM file at `path` (at least one).
pub fn load_keys(path: &Path) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for (label, der) in pem_blocks(path)? {
        if label == "PUBLIC KEY" {
            keys.push(
                PublicKey::from_spki_der(&der).map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "{}: no PEM \"PUBLIC KEY\" block (cosign keys are PEM public keys)",
            path.display()
        ));
    }
    Ok(keys)
}

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER contents: a leaf that lists extended key usages
/// must list it (notation's rule for signing certificates).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Trusted certificates (roots, intermediates or leaves) for notation signatures.
#[derive(Debug, Default)]
pub struct CertPool {
    /// Every trusted certificate, DER.
    certs: Vec<Vec<u8>>,
    /// The same certificates as trust anchors for path validation.
    anchors: Vec<TrustAnchor<'static>>,
}

impl CertPool {
    /// Adds every `CERTIFICATE` block of the PEM file at `path` (at least one).
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let before = self.certs.len();
        for (label, der) in pem_blocks(path)? {
            if label != "CERTIFICATE" {
                continue;
            }
            X509Certificate::from_der(&der)
                .map_err(|e| format!("{}: not an X.509 certificate: {e}", path.display()))?;
            let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|e| format!("{}: unusable as a trust anchor: {e:?}", path.display()))?
                .to_owned();
            self.anchors.push(anchor);
            self.certs.push(der);
        }
        if self.certs.len() == before {
            return Err(format!("{}: no PEM \"CERTIFICATE\" block", path.display()));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Checks that `chain` (DER, leaf first, then the certificates that issued it) leads to a
    /// trusted certificate at `now`: the leaf is itself trusted, or a valid path from it
    /// through the chain's certificates ends at one. Returns the leaf's public key.
    pub fn verify_chain(&self, chain: &[Vec<u8>], now: SystemTime) -> Result<PublicKey, String> {
        let leaf_der = chain.first().ok_or("the envelope carries no certificate")?;
        let (_, leaf) = X509Certificate::from_der(leaf_der)
            .map_err(|e| format!("the signing certificate does not parse: {e}"))?;
        let key = PublicKey::from_spki(leaf.public_key())
            .map_err(|e| format!("the signing certificate's key: {e}"))?;
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if self.certs.iter().any(|c| c == leaf_der) {
            let at = ASN1Time::from_timestamp(secs as i64).map_err(|e| e.to_string())?;
            if !leaf.validity().is_valid_at(at) {
                return Err("the trusted signing certificate is expired or not yet valid".into());
            }
            return Ok(key);
        }
        let leaf_cert = CertificateDer::from(leaf_der.as_slice());
        let ee = webpki::EndEntityCert::try_from(&leaf_cert)
            .map_err(|e| format!("the signing certificate: {e}"))?;
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(secs)),
            webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| format!("the signing certificate does not chain to a trusted one: {e}"))?;
        Ok(key)
    }
}

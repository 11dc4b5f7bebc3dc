//! Bearer tokens: JWTs as the Docker token spec describes them (`iss`, `sub`, `aud`, `exp`,
//! `nbf`, `iat`, `jti`, `access`). kura signs its own (ES256 or RS256) and verifies its own
//! and those of trusted external issuers, configured by their public keys.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::config::TokenConfig;
use super::rules::Access;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

pub(super) struct Signer {
    pub(super) alg: Algorithm,
    pub(super) key: EncodingKey,
    pub(super) kid: String,
}

struct Verifier {
    issuer: String,
    key: DecodingKey,
    algs: Vec<Algorithm>,
    own: bool,
}

/// Issues and verifies tokens for one service.
pub struct TokenService {
    /// The configured realm, if any (otherwise derived from the request).
    pub realm: Option<String>,
    /// The audience of the tokens.
    pub service: String,
    /// The issuer of kura's own tokens.
    pub issuer: String,
    /// Lifetime of issued tokens.
    pub lifetime: Duration,
    pub(super) signer: Signer,
    verifiers: Vec<Verifier>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("alg", &self.signer.alg)
            .field("verifiers", &self.verifiers.len())
            .finish_non_exhaustive()
    }
}

/// A token that verified: who it was issued to and what it grants.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The `sub` claim (empty for anonymous tokens).
    pub subject: String,
    /// The `access` claim.
    pub access: Vec<Access>,
    /// Issued by kura itself (so `subject` is one of its users and the rules apply to it).
    pub own: bool,
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: SystemTime,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    access: Vec<Access>,
}

/// One PEM block: its label, its text and its decoded bytes.
struct PemBlock {
    label: String,
    text: String,
    der: Vec<u8>,
}

fn pem_blocks(text: &str) -> Vec<PemBlock> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            break;
        };
        let body: String = after[label_end + 5..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let block_text = format!("-----BEGIN {label}-----\n{body}\n{end_marker}\n");
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&body) {
            out.push(PemBlock {
                label,
                text: block_text,
                der,
            });
        }
        rest = &after[end + end_marker.len()..];
    }
    out
}

fn kid_of(public: &[u8]) -> String {
    let d = Sha256::digest(public);
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn ec_signer(pkcs8: &[u8]) -> Result<(Signer, DecodingKey), String> {
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|e| format!("not an EC P-256 key: {e}"))?;
    let public = kp.public_key().as_ref().to_vec();
    Ok((
        Signer {
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8),
            kid: kid_of(&public),
        },
        DecodingKey::from_ec_der(&public),
    ))
}

fn rsa_signer(kp: RsaKeyPair, pem: &str) -> Result<(Signer, DecodingKey), String> {
    let public = kp.public_key().as_ref().to_vec();
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    Ok((
        Signer {
            alg: Algorithm::RS256,
            key,
            kid: kid_of(&public),
        },
        DecodingKey::from_rsa_der(&public),
    ))
}

/// Reads a PEM private key: PKCS#8 (EC P-256 or RSA), SEC1 EC or PKCS#1 RSA.
fn load_signing_key(path: &Path) -> Result<(Signer, DecodingKey), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("token signing key {}: {e}", path.display()))?;
    let fail = |m: String| format!("token signing key {}: {m}", path.display());
    for b in pem_blocks(&text) {
        match b.label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(s) = ec_signer(&b.der) {
                    return Ok(s);
                }
                let kp = RsaKeyPair::from_pkcs8(&b.der)
                    .map_err(|_| fail("neither an EC P-256 nor an RSA key".into()))?;
                return rsa_signer(kp, &b.text).map_err(fail);
            }
            "EC PRIVATE KEY" => {
                let kp =
                    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &b.der)
                        .map_err(|e| fail(format!("not an EC P-256 key: {e}")))?;
                let pkcs8 = kp.to_pkcs8v1().map_err(|e| fail(e.to_string()))?;
                return ec_signer(pkcs8.as_ref()).map_err(fail);
            }
            "RSA PRIVATE KEY" => {
                let kp = RsaKeyPair::from_der(&b.der).map_err(|e| fail(e.to_string()))?;
                return rsa_signer(kp, &b.text).map_err(fail);
            }
            _ => {}
        }
    }
    Err(fail("no private key (PEM) found".into()))
}

/// Reads the public keys (or certificates) of an external issuer.
fn load_public_keys(path: &Path) -> Result<Vec<(DecodingKey, Vec<Algorithm>)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("trusted issuer key {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for b in pem_blocks(&text) {
        if !matches!(
            b.label.as_str(),
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE"
        ) {
            continue;
        }
        let pem = b.text.as_bytes();
        if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            keys.push((k, vec![Algorithm::ES256, Algorithm::ES384]));
        } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            keys.push((
                k,
                vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            ));
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            keys.push((k, vec![Algorithm::EdDSA]));
        } else {
            return Err(format!(
                "trusted issuer key {}: unsupported {} block",
                path.display(),
                b.label
            ));
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "trusted issuer key {}: no public key or certificate (PEM) found",
            path.display()
        ));
    }
    Ok(keys)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not signed by a trusted issuer for this service")]
    Invalid,
}

impl TokenService {
    /// Loads (or generates) the signing key and the trusted issuers' keys.
    pub fn new(cfg: &TokenConfig) -> Result<TokenService, String> {
        let (signer, own_public) = match &cfg.signing_key {
            Some(path) => {
                let s = load_signing_key(path)?;
                tracing::info!(key = %path.display(), alg = ?s.0.alg, kid = %s.0.kid, "token signing key loaded");
                s
            }
            None => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|e| format!("cannot generate a token signing key: {e}"))?;
                let s = ec_signer(pkcs8.as_ref())?;
                tracing::warn!(
                    kid = %s.0.kid,
                    "no auth.token.signing_key configured: generated an ES256 key for this run; \
                     tokens issued now are refused after a restart"
                );
                s
            }
        };
        let mut verifiers = vec![Verifier {
            issuer: cfg.issuer.clone(),
            key: own_public,
            algs: vec![signer.alg],
            own: true,
        }];
        for t in &cfg.trusted {
            for (key, algs) in load_public_keys(&t.public_key)? {
                verifiers.push(Verifier {
                    issuer: t.issuer.clone(),
                    key,
                    algs,
                    own: false,
                });
            }
            tracing::info!(issuer = %t.issuer, key = %t.public_key.display(), "trusting tokens of an external issuer");
        }
        Ok(TokenService {
            realm: cfg.realm.clone(),
            service: cfg.service.clone(),
            issuer: cfg.issuer.clone(),
            lifetime: cfg.lifetime,
            signer,
            verifiers,
        })
    }

    /// Signs a token for `subject` (empty: anonymous) granting `access`.
    pub fn issue(&self, subject: &str, access: &[Access]) -> Result<Issued, String> {
        let now = SystemTime::now();
        let iat = unix(now);
        let claims = IssuedClaims {
            iss: &self.issuer,
            sub: subject,
            aud: &self.service,
            exp: iat + self.lifetime.as_secs(),
            nbf: iat,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let mut header = Header::new(self.signer.alg);
        header.kid = Some(self.signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signer.key)
            .map_err(|e| format!("cannot sign token: {e}"))?;
        Ok(Issued {
            token,
            expires_in: self.lifetime.as_secs(),
            issued_at: now,
        })
    }

    /// The key verifying kura's own signatures.
    pub(super) fn own_key(&self) -> &DecodingKey {
        &self.verifiers[0].key
    }

    /// Checks signature, issuer, audience (`service`), `exp` and `nbf`.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let mut expired = false;
        for v in self
            .verifiers
            .iter()
            .filter(|v| v.algs.contains(&header.alg))
        {
            let mut val = Validation::new(header.alg);
            val.algorithms = vec![header.alg];
            val.set_audience(&[&self.service]);
            val.set_issuer(&[&v.issuer]);
            val.set_required_spec_claims(&["exp", "iss", "aud"]);
            val.leeway = LEEWAY_SECS;
            val.validate_nbf = true;
            match jsonwebtoken::decode::<Claims>(token, &v.key, &val) {
                Ok(data) => {
                    return Ok(Verified {
                        subject: data.claims.sub,
                        access: data.claims.access,
                        own: v.own,
                    });
                }
                Err(e) => {
                    if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) {
                        expired = true;
                    }
                }
            }
        }
        Err(if expired {
            TokenError::Expired
        } else {
            TokenError::Invalid
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::TrustedIssuer;
    use crate::auth::rules::Actions;

    fn service() -> TokenService {
        TokenService::new(&TokenConfig::default()).unwrap()
    }

    #[test]
    fn issued_tokens_verify_with_their_subject_and_access() {
        let s = service();
        let access = [Access::repository("team/app", Actions::PULL)];
        let t = s.issue("alice", &access).unwrap();
        let v = s.verify(&t.token).unwrap();
        assert_eq!(v.subject, "alice");
        assert_eq!(v.access, access);
        assert!(v.own);
    }

    #[test]
    fn tokens_of_another_key_or_audience_are_refused() {
        let a = service();
        let b = service();
        let t = b.issue("alice", &[]).unwrap();
        assert!(matches!(a.verify(&t.token), Err(TokenError::Invalid)));
        let other_aud = TokenService::new(&TokenConfig {
            service: "other".into(),
            ..TokenConfig::default()
        })
        .unwrap();
        let t = other_aud.issue("alice", &[]).unwrap();
        assert!(other_aud.verify(&t.token).is_ok());
        assert!(a.verify(&t.token).is_err());
        assert!(a.verify("not.a.token").is_err());
    }

    #[test]
    fn keys_load_from_pem_files_and_external_issuers_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ext = rcgen::KeyPair::generate().unwrap();
        let key_file = dir.path().join("ext.key");
        std::fs::write(&key_file, ext.serialize_pem()).unwrap();
        let pub_file = dir.path().join("ext.pub");
        std::fs::write(&pub_file, ext.public_key_pem()).unwrap();
        let issuer = TokenService::new(&TokenConfig {
            issuer: "ext".into(),
            signing_key: Some(key_file),
            ..TokenConfig::default()
        })
        .unwrap();
        let kura = TokenService::new(&TokenConfig {
            trusted: vec![TrustedIssuer {
                issuer: "ext".into(),
                public_key: pub_file,
            }],
            ..TokenConfig::default()
        })
        .unwrap();
        let t = issuer.issue("bob", &[]).unwrap();
        let v = kura.verify(&t.token).unwrap();
        assert_eq!(v.subject, "bob");
        assert!(!v.own);
        // The right key under the wrong issuer name is refused.
        let wrong_iss = TokenService::new(&TokenConfig {
            issuer: "someone-else".into(),
            signing_key: Some(dir.path().join("ext.key")),
            ..TokenConfig::default()
        })
        .unwrap();
        let t = wrong_iss.issue("bob", &[]).unwrap();
        assert!(kura.verify(&t.token).is_err());
    }

    #[test]
    fn rsa_keys_sign_rs256_tokens_that_rsa_public_keys_verify() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        std::fs::write(dir.path().join("rsa.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("rsa.pub"), key.public_key_pem()).unwrap();
        let issuer = TokenService::new(&TokenConfig {
            issuer: "ext".into(),
            signing_key: Some(dir.path().join("rsa.key")),
            ..TokenConfig::default()
        })
        .unwrap();
        let t = issuer.issue("r", &[]).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t.token).unwrap().alg,
            Algorithm::RS256
        );
        assert!(issuer.verify(&t.token).unwrap().own);
        let kura = TokenService::new(&TokenConfig {
            trusted: vec![TrustedIssuer {
                issuer: "ext".into(),
                public_key: dir.path().join("rsa.pub"),
            }],
            ..TokenConfig::default()
        })
        .unwrap();
        assert_eq!(kura.verify(&t.token).unwrap().subject, "r");
    }

    #[test]
    fn expired_tokens_are_reported_as_expired() {
        let s = TokenService::new(&TokenConfig::default()).unwrap();
        let claims = serde_json::json!({"iss": "kura", "aud": "kura", "sub": "a", "exp": 1000});
        let t = jsonwebtoken::encode(&Header::new(s.signer.alg), &claims, &s.signer.key).unwrap();
        assert!(matches!(s.verify(&t), Err(TokenError::Expired)));
    }

    #[test]
    fn certificates_are_accepted_as_issuer_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["issuer.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("k"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("c"), cert.pem()).unwrap();
        let issuer = TokenService::new(&TokenConfig {
            issuer: "ext".into(),
            signing_key: Some(dir.path().join("k")),
            ..TokenConfig::default()
        })
        .unwrap();
        let kura = TokenService::new(&TokenConfig {
            trusted: vec![TrustedIssuer {
                issuer: "ext".into(),
                public_key: dir.path().join("c"),
            }],
            ..TokenConfig::default()
        })
        .unwrap();
        assert!(kura.verify(&issuer.issue("x", &[]).unwrap().token).is_ok());
    }
}

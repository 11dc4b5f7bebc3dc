//! Notary Project (notation) signatures: a referrer with `artifactType`
//! `application/vnd.cncf.notary.signature` whose layer is a signature envelope, JWS (JSON
//! serialization, `application/jose+json`) or COSE_Sign1 (`application/cose`). The envelope's
//! payload names the signed manifest (`targetArtifact`); the signature verifies with the leaf
//! of the envelope's certificate chain (`x5c` / `x5chain`), which must lead to a trusted
//! certificate.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use coset::{CborSerializable, Label, RegisteredLabelWithPrivate, TaggedCborSerializable, iana};
use serde::Deserialize;

use super::trust::{CertPool, EnvelopeAlg};

/// The `artifactType` of a notation signature referrer.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// A JWS envelope layer.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// A COSE_Sign1 envelope layer.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// The content type of the signed payload.
const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const EXPIRY: &str = "io.cncf.notary.expiry";
/// Critical headers kura understands; any other listed in `crit` fails the signature (it may
/// carry a condition kura cannot check, such as a verification plugin).
const UNDERSTOOD: &[&str] = &[
    SIGNING_SCHEME,
    EXPIRY,
    "io.cncf.notary.authenticSigningTime",
];

/// What the signed manifest is: the payload's `targetArtifact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub digest: &'a str,
    pub size: u64,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target: TargetArtifact,
}

#[derive(Deserialize)]
struct TargetArtifact {
    digest: String,
    size: u64,
}

/// Checks the envelope `bytes` of `media_type`: the payload names `target`, the signature
/// verifies with the leaf certificate, the chain leads to `trust`, and it has not expired.
pub fn verify_envelope(
    media_type: &str,
    bytes: &[u8],
    target: &Target<'_>,
    trust: &CertPool,
    now: SystemTime,
) -> Result<(), String> {
    let payload = match media_type {
        JWS_MEDIA_TYPE => verify_jws(bytes, trust, now)?,
        COSE_MEDIA_TYPE => verify_cose(bytes, trust, now)?,
        other => return Err(format!("envelope type {other} is not JWS or COSE")),
    };
    let p: Payload = serde_json::from_slice(&payload)
        .map_err(|e| format!("payload is not a notation payload: {e}"))?;
    if p.target.digest != target.digest || p.target.size != target.size {
        return Err(format!(
            "payload signs {} ({} bytes), not {} ({} bytes)",
            p.target.digest, p.target.size, target.digest, target.size
        ));
    }
    Ok(())
}

fn unix(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

fn check_crit(crit: &[String]) -> Result<(), String> {
    match crit.iter().find(|c| !UNDERSTOOD.contains(&c.as_str())) {
        Some(c) => Err(format!("critical header {c:?} is not supported")),
        None => Ok(()),
    }
}

fn check_expiry(expiry: Option<i64>, now: SystemTime) -> Result<(), String> {
    match expiry {
        Some(t) if t <= unix(now) => Err("the signature has expired".into()),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct Jws {
    payload: String,
    protected: String,
    #[serde(default)]
    header: JwsHeader,
    signature: String,
}

#[derive(Deserialize, Default)]
struct JwsHeader {
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct JwsProtected {
    alg: String,
    #[serde(default)]
    crit: Vec<String>,
    cty: Option<String>,
    #[serde(rename = "io.cncf.notary.expiry")]
    expiry: Option<String>,
}

/// A JWS envelope in JSON serialization; returns its payload once verified.
fn verify_jws(bytes: &[u8], trust: &CertPool, now: SystemTime) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let jws: Jws =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWS JSON envelope: {e}"))?;
    let header: JwsProtected = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(&jws.protected)
            .map_err(|e| format!("protected header is not base64url: {e}"))?,
    )
    .map_err(|e| format!("protected header: {e}"))?;
    let alg = EnvelopeAlg::from_jws(&header.alg)
        .ok_or_else(|| format!("signature algorithm {:?} is not supported", header.alg))?;
    check_crit(&header.crit)?;
    if header.cty.as_deref() != Some(PAYLOAD_CONTENT_TYPE) {
        return Err(format!("content type {:?} is not notation's", header.cty));
    }
    let expiry = match &header.expiry {
        Some(t) => Some(
            humantime::parse_rfc3339_weak(t)
                .map(unix)
                .map_err(|e| format!("expiry {t:?}: {e}"))?,
        ),
        None => None,
    };
    let chain = jws
        .header
        .x5c
        .iter()
        .map(|c| STANDARD.decode(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("x5c is not base64: {e}"))?;
    let key = trust.verify_chain(&chain, now)?;
    let signature = URL_SAFE_NO_PAD
        .decode(&jws.signature)
        .map_err(|e| format!("signature is not base64url: {e}"))?;
    let input = format!("{}.{}", jws.protected, jws.payload);
    if !key.verify_envelope(alg, input.as_bytes(), &signature) {
        return Err("signature does not verify with its certificate".into());
    }
    check_expiry(expiry, now)?;
    URL_SAFE_NO_PAD
        .decode(&jws.payload)
        .map_err(|e| format!("payload is not base64url: {e}"))
}

fn cose_alg(alg: &Option<coset::Algorithm>) -> Result<EnvelopeAlg, String> {
    use iana::Algorithm as A;
    Ok(match alg {
        Some(RegisteredLabelWithPrivate::Assigned(A::ES256)) => EnvelopeAlg::Es256,
        Some(RegisteredLabelWithPrivate::Assigned(A::ES384)) => EnvelopeAlg::Es384,
        Some(RegisteredLabelWithPrivate::Assigned(A::ES512)) => EnvelopeAlg::Es512,
        Some(RegisteredLabelWithPrivate::Assigned(A::PS256)) => EnvelopeAlg::Ps256,
        Some(RegisteredLabelWithPrivate::Assigned(A::PS384)) => EnvelopeAlg::Ps384,
        Some(RegisteredLabelWithPrivate::Assigned(A::PS512)) => EnvelopeAlg::Ps512,
        other => return Err(format!("signature algorithm {other:?} is not supported")),
    })
}

/// An integer, or an epoch-based date/time (CBOR tag 1) holding one.
fn cbor_time(v: &coset::cbor::Value) -> Option<i64> {
    match v {
        coset::cbor::Value::Tag(1, inner) => cbor_time(inner),
        coset::cbor::Value::Integer(i) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// The `x5chain` header (label 33): one certificate, or an array of them, leaf first.
fn x5chain(h: &coset::Header) -> Vec<Vec<u8>> {
    let Some((_, v)) = h.rest.iter().find(|(l, _)| *l == Label::Int(33)) else {
        return Vec::new();
    };
    match v {
        coset::cbor::Value::Bytes(b) => vec![b.clone()],
        coset::cbor::Value::Array(a) => a.iter().filter_map(|c| c.as_bytes().cloned()).collect(),
        _ => Vec::new(),
    }
}

/// A COSE_Sign1 envelope (tagged or not); returns its payload once verified.
fn verify_cose(bytes: &[u8], trust: &CertPool, now: SystemTime) -> Result<Vec<u8>, String> {
    let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
        .or_else(|_| coset::CoseSign1::from_slice(bytes))
        .map_err(|e| format!("not a COSE_Sign1 envelope: {e}"))?;
    let h = &sign1.protected.header;
    let alg = cose_alg(&h.alg)?;
    let crit: Vec<String> = h
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    check_crit(&crit)?;
    let cty_ok = matches!(&h.content_type, Some(coset::RegisteredLabel::Text(t)) if t == PAYLOAD_CONTENT_TYPE);
    if !cty_ok {
        return Err(format!(
            "content type {:?} is not notation's",
            h.content_type
        ));
    }
    let expiry = match h
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Text(EXPIRY.into()))
    {
        Some((_, v)) => Some(cbor_time(v).ok_or("expiry is not a time")?),
        None => None,
    };
    let mut chain = x5chain(&sign1.unprotected);
    if chain.is_empty() {
        chain = x5chain(h);
    }
    let key = trust.verify_chain(&chain, now)?;
    sign1.verify_signature(b"", |signature, data| {
        if key.verify_envelope(alg, data, signature) {
            Ok(())
        } else {
            Err("signature does not verify with its certificate".to_string())
        }
    })?;
    check_expiry(expiry, now)?;
    sign1
        .payload
        .clone()
        .ok_or_else(|| "detached payloads are not supported".into())
}

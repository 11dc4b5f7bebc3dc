//! TLS with rustls: the server configuration from PEM certificate and key files. actix-web
//! adds ALPN `h2` and `http/1.1`, so clients that speak HTTP/2 get it.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Builds the rustls configuration from a PEM certificate chain and its PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls certificate {}: no certificate",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls key {}: {e}", key.display()))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls certificate and key: {e}"))
}

/// Whether `addr` (`host:port`) is on the loopback interface only.
pub fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_recognised() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(!is_loopback("0.0.0.0:5000"));
        assert!(!is_loopback("192.0.2.1:443"));
        assert!(!is_loopback("registry.example.com:443"));
    }

    #[test]
    fn a_certificate_and_key_make_a_config_and_a_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        assert!(server_config(&c, &k).is_ok());
        std::fs::write(&k, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(server_config(&c, &k).is_err());
        assert!(server_config(&dir.path().join("none"), &k).is_err());
    }
}

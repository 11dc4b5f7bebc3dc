//! TLS: a client trusting the test CA pushes and pulls over HTTPS (skopeo, oci-client); one
//! that does not trust it is refused; HTTP/2 is offered by ALPN; the binary's TLS flags work.

mod auth_support;
mod common;

use std::sync::Arc;

use auth_support::{AuthServer, TestCa, auth_config, basic_of, oci_layout, pw, skopeo};
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

async fn tls_server(ca: &TestCa, extra: &str) -> (AuthServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = auth_config(tmp.path(), extra);
    let tls = ca.server_config(tmp.path());
    (AuthServer::start(&cfg, Some(tls)).await, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_trusting_the_test_ca_push_and_pull_over_https() {
    let ca = TestCa::new();
    let (s, tmp) = tls_server(&ca, "").await;
    let (_, _, ca_dir) = ca.write(tmp.path());
    let r = ca
        .client()
        .get(s.url("/v2/"))
        .header("Authorization", basic_of("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // skopeo, verifying the server with the CA from --dest-cert-dir.
    let layout = tmp.path().join("layout");
    let digest = oci_layout(&layout, "over https");
    let dest = format!("docker://{}/team/app:v1", s.addr);
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        ca_dir.to_str().unwrap(),
        "--dest-creds",
        &format!("bob:{}", pw("bob")),
        &format!("oci:{}:v1", layout.display()),
        &dest,
    ])
    .await;
    assert!(out.success, "{}", out.stderr);
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        ca_dir.to_str().unwrap(),
        "--creds",
        &format!("carol:{}", pw("carol")),
        &dest,
    ])
    .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        kura::digest::Digest::sha256_of(out.stdout.as_bytes()).to_string(),
        digest
    );

    // oci-client, with the CA as an extra root.
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: ca.ca_pem.as_bytes().to_vec(),
        }],
        ..Default::default()
    });
    let reference: Reference = format!("{}/team/oci:v1", s.addr).parse().unwrap();
    let bob = RegistryAuth::Basic("bob".into(), pw("bob").into());
    client
        .push(
            &reference,
            &[ImageLayer::new(
                b"tls layer".to_vec(),
                IMAGE_LAYER_MEDIA_TYPE.to_string(),
                None,
            )],
            Config::new(
                br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
                IMAGE_CONFIG_MEDIA_TYPE.to_string(),
                None,
            ),
            &bob,
            None,
        )
        .await
        .expect("push over https");
    let image = client
        .pull(&reference, &bob, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("pull over https");
    assert_eq!(image.layers[0].data.as_ref(), b"tls layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_trust_the_ca_are_refused() {
    let ca = TestCa::new();
    let (s, tmp) = tls_server(&ca, "").await;

    // A client trusting another CA fails the handshake.
    let other = TestCa::new();
    let err = other
        .client()
        .get(s.url("/v2/"))
        .send()
        .await
        .expect_err("a client trusting another CA connected");
    assert!(err.is_connect(), "{err:?}");

    // skopeo with the system roots only refuses the certificate.
    let layout = tmp.path().join("layout");
    oci_layout(&layout, "refused");
    let out = skopeo(&[
        "copy",
        "--dest-creds",
        &format!("bob:{}", pw("bob")),
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", s.addr),
    ])
    .await;
    assert!(!out.success, "skopeo pushed without trusting the CA");
    assert!(
        out.stderr.contains("certificate") || out.stderr.contains("x509"),
        "{}",
        out.stderr
    );
    assert!(s.registry.catalog(None, 10).unwrap().items.is_empty());

    // Plain HTTP to the TLS port gets no registry answer.
    let plain = auth_support::http()
        .get(format!("http://{}/v2/", s.addr))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_offers_http2_by_alpn() {
    let ca = TestCa::new();
    let (s, _tmp) = tls_server(&ca, "").await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("handshake with the CA trusted");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_with_the_tls_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key, _) = ca.write(tmp.path());
    let (_, auth_file) = auth_config(tmp.path(), "");
    let root = tmp.path().join("root");
    let (child, url) = common::spawn_kura(
        &root,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--auth-config",
            auth_file.to_str().unwrap(),
        ],
    );
    let _kura = auth_support::KillOnDrop(child);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(
        std::fs::read_to_string(root.join("kura.addr"))
            .unwrap()
            .trim(),
        url
    );
    let r = ca.client().get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = ca
        .client()
        .get(format!("{url}/v2/"))
        .header("Authorization", basic_of("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

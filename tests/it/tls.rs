//! Secure delivery: HTTPS with a private CA, mTLS, bearer token and extra headers, against a
//! real TLS receiver on 127.0.0.1; and secrets kept out of every log line.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use aks_audit_forwarder::tools::receiver::Receiver;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::helpers::*;

struct Pki {
    ca_pem: String,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    ca_der: CertificateDer<'static>,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "audit test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params =
        CertificateParams::new(vec!["aks-audit-forwarder".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server: (
            server.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// An HTTPS receiver that requires a client certificate signed by the test CA.
async fn start_tls_receiver(pki: &Pki) -> (Receiver, SocketAddr) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::new();
    let router = receiver.router();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, tls)
            .expect("TLS listener")
            .serve(router.into_make_service())
            .await
    });
    (receiver, addr)
}

/// HTTPS to a private-CA receiver with mTLS, a bearer token and an extra header: delivered,
/// with the credentials on the wire and nowhere in the logs.
#[tokio::test]
async fn mtls_with_private_ca_bearer_and_headers() {
    let pki = pki();
    let (receiver, addr) = start_tls_receiver(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let key = dir.path().join("client.key");
    std::fs::write(&key, &pki.client_key_pem).unwrap();
    let token = "tok-Z9y8X7w6V5u4";
    let handler = spawn_handler(&[
        (
            "AUDIT_WEBHOOK_URL",
            &format!("https://127.0.0.1:{}/k8s_audit", addr.port()),
        ),
        ("AUDIT_WEBHOOK_CA", ca.to_str().unwrap()),
        ("AUDIT_WEBHOOK_CLIENT_CERT", &pki.client_cert_pem),
        ("AUDIT_WEBHOOK_CLIENT_KEY", key.to_str().unwrap()),
        ("AUDIT_WEBHOOK_BEARER_TOKEN", token),
        ("AUDIT_WEBHOOK_HEADERS", r#"{"X-Tenant":"prod-weu"}"#),
        ("RUST_LOG", "trace"),
    ])
    .await;
    let (bodies, expected) = audit_bodies("tls", 2, 3, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, handler.log());
    assert_same_events(receiver.events(), &expected);
    let batch = &receiver.batches()[0];
    let header = |name: &str| {
        batch
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(header("x-tenant"), Some("prod-weu"));
    let log = handler.log();
    assert!(!log.contains(token), "token in the log");
    assert!(!log.contains("PRIVATE KEY"), "key in the log");
}

/// Without the private CA the server is not trusted; without the client certificate the
/// server refuses the handshake. Either way nothing is delivered and the host gets 500.
#[tokio::test]
async fn tls_failures_fail_the_invocation() {
    let pki = pki();
    let (receiver, addr) = start_tls_receiver(&pki).await;
    let url = format!("https://127.0.0.1:{}/k8s_audit", addr.port());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("AUDIT_WEBHOOK_CLIENT_CERT", pki.client_cert_pem.as_str()),
            ("AUDIT_WEBHOOK_CLIENT_KEY", pki.client_key_pem.as_str()),
        ],
        vec![("AUDIT_WEBHOOK_CA", ca.to_str().unwrap())],
    ];
    for extra in cases {
        let mut env = vec![
            ("AUDIT_WEBHOOK_URL", url.as_str()),
            ("AUDIT_DELIVERY_DEADLINE", "1s"),
        ];
        env.extend(extra);
        let handler = spawn_handler(&env).await;
        let (bodies, _) = audit_bodies("untrusted", 1, 1, 0);
        let answer = handler.invoke_bodies(&bodies, "0").await;
        assert_eq!(answer.status, 500, "{}", answer.body);
    }
    assert_eq!(receiver.stats().events, 0);
}

/// A CA or client certificate that does not parse stops startup naming the variable.
#[test]
fn bad_tls_material_fails_startup() {
    for (var, value) in [
        (
            "AUDIT_WEBHOOK_CA",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        ("AUDIT_WEBHOOK_CA", "/nonexistent/ca.pem"),
    ] {
        let out = std::process::Command::new(BIN)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
            .env("AUDIT_WEBHOOK_URL", "https://127.0.0.1:9/")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{stderr}");
    }
    let out = std::process::Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("AUDIT_WEBHOOK_URL", "https://127.0.0.1:9/")
        .env("AUDIT_WEBHOOK_CLIENT_CERT", "/nonexistent/cert.pem")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUDIT_WEBHOOK_CLIENT_KEY is required"));
}

/// A receiver whose certificate is self-signed and marked `CA:TRUE` (what `openssl req -x509`
/// makes by default), given as `AUDIT_WEBHOOK_CA`, receives the Events: the certificate is
/// trusted because it is byte-equal to the configured one, and still checked for its name
/// and its dates (the `delivery::tls` unit tests).
#[tokio::test]
async fn ca_true_self_signed_receiver_receives_events() {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "receiver made by openssl req -x509");
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Receiver::new();
    let router = receiver.router();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, tls)
            .expect("TLS listener")
            .serve(router.into_make_service())
            .await
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("receiver.pem");
    std::fs::write(&ca, cert.pem()).unwrap();

    let handler = spawn_handler(&[
        (
            "AUDIT_WEBHOOK_URL",
            &format!("https://127.0.0.1:{port}/k8s_audit"),
        ),
        ("AUDIT_WEBHOOK_CA", ca.to_str().unwrap()),
    ])
    .await;
    let (bodies, expected) = audit_bodies("ca-true", 2, 2, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, handler.log());
    assert_same_events(receiver.events(), &expected);
}

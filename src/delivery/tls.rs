//! TLS trust for a webhook with its own CA bundle (`AUDIT_WEBHOOK_CA`, a route's `ca`),
//! including a receiver whose certificate *is* one of those CA certificates.
//!
//! `openssl req -x509 -newkey …` makes a self-signed certificate marked `CA:TRUE` by default.
//! curl and Go's `crypto/x509` (kube-apiserver's webhook client) accept such a server
//! certificate when it is in their trust store; webpki refuses any `CA:TRUE` certificate as an
//! end entity (`CaUsedAsEndEntity`, rustls/webpki#205, seanmonstar/reqwest#2041), so every POST
//! would fail while the configuration looks valid. [`PinnedCaVerifier`] keeps webpki's full
//! verification and accepts, on that one error only, a server certificate that is
//! byte-for-byte one of the configured CA certificates and names the host. Verification is
//! never switched off.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// The client TLS configuration for a webhook whose CA bundle is `ca_pem`: the public roots
/// (webpki's and the system's, as reqwest loads them) plus every certificate of the bundle,
/// verified by [`PinnedCaVerifier`], with the client certificate and key of `identity_pem`
/// (PEM, concatenated) for mTLS, and HTTP/2 or HTTP/1.1 offered by ALPN as reqwest does.
///
/// # Errors
/// A message naming what does not parse: the bundle, the client certificate or its key.
pub fn client_config(
    ca_pem: &[u8],
    identity_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = verifier(ca_pem, &provider)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no TLS version available: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let unusable = || {
                "the client certificate and key are not a PEM certificate chain and private key"
                    .to_string()
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|_| unusable())?;
            let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| unusable())?;
            if chain.is_empty() {
                return Err(unusable());
            }
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| unusable())?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// [`PinnedCaVerifier`] over the public roots and the certificates of `ca_pem`.
fn verifier(
    ca_pem: &[u8],
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<PinnedCaVerifier>, String> {
    let configured: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the CA bundle is not PEM certificates: {e}"))?;
    if configured.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        // System stores hold odd certificates; reqwest skips those that do not parse too.
        let _ = roots.add(cert);
    }
    for (i, cert) in configured.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("certificate {} of the CA bundle is not usable: {e}", i + 1))?;
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("the CA bundle is not usable: {e}"))?;
    Ok(Arc::new(PinnedCaVerifier { inner, configured }))
}

/// webpki's server verification, plus one case it refuses: a server certificate marked
/// `CA:TRUE` that is byte-equal to a configured CA certificate, as curl and Go accept it.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    inner: Arc<WebPkiServerVerifier>,
    configured: Vec<CertificateDer<'static>>,
}

/// Whether webpki refused the certificate only for being a CA used as an end entity.
fn is_ca_used_as_end_entity(error: &Error) -> bool {
    match error {
        Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    /// webpki's verdict, except that `CaUsedAsEndEntity` for a certificate byte-equal to a
    /// configured CA certificate is accepted once the certificate names `server_name`.
    /// Validity dates are not skipped: webpki checks an end entity's dates before its basic
    /// constraints (`check_issuer_independent_properties`), so it reports
    /// `CaUsedAsEndEntity` only for a certificate within its dates (an expired one fails as
    /// expired, which a test holds).
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(error)
                if is_ca_used_as_end_entity(&error)
                    && self
                        .configured
                        .iter()
                        .any(|ca| ca.as_ref() == end_entity.as_ref()) =>
            {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    /// A self-signed certificate for `names`, marked `CA:TRUE`, valid from `from` to `to`
    /// (Unix seconds).
    fn ca_true(names: &[&str], from: i64, to: i64) -> (String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().clone())
    }

    fn verify(bundle: &str, presented: &CertificateDer<'_>, host: &str) -> Result<(), Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = verifier(bundle.as_bytes(), &provider).unwrap();
        let name = ServerName::try_from(host.to_string()).unwrap();
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        verifier
            .verify_server_cert(presented, &[], &name, &[], now)
            .map(drop)
    }

    const FROM: i64 = 1_700_000_000;
    const TO: i64 = 1_900_000_000;

    #[test]
    fn a_configured_ca_true_certificate_is_trusted_for_its_names_only() {
        let (pem, der) = ca_true(&["localhost", "127.0.0.1"], FROM, TO);
        assert_eq!(verify(&pem, &der, "localhost"), Ok(()));
        assert_eq!(verify(&pem, &der, "127.0.0.1"), Ok(()));
        let other = verify(&pem, &der, "receiver.example").unwrap_err();
        assert!(
            matches!(
                other,
                Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{other:?}"
        );
    }

    #[test]
    fn an_expired_or_not_yet_valid_configured_certificate_is_refused() {
        let (pem, der) = ca_true(&["localhost"], FROM, FROM + 1000);
        let error = verify(&pem, &der, "localhost").unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{error:?}"
        );
        let (pem, der) = ca_true(&["localhost"], 1_850_000_000, TO);
        let error = verify(&pem, &der, "localhost").unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
            ),
            "{error:?}"
        );
    }

    /// Only byte equality trusts a `CA:TRUE` server certificate: another one, even with the
    /// same names, is refused as webpki refuses it.
    #[test]
    fn an_unconfigured_ca_true_certificate_is_refused() {
        let (pem, _) = ca_true(&["localhost"], FROM, TO);
        let (_, other) = ca_true(&["localhost"], FROM, TO);
        let error = verify(&pem, &other, "localhost").unwrap_err();
        assert!(is_ca_used_as_end_entity(&error), "{error:?}");
    }

    #[test]
    fn bad_bundles_are_named() {
        assert!(client_config(b"", None)
            .unwrap_err()
            .contains("holds no certificate"));
        let (pem, _) = ca_true(&["localhost"], FROM, TO);
        let error = client_config(pem.as_bytes(), Some(b"not pem")).unwrap_err();
        assert!(error.contains("client certificate"), "{error}");
    }
}

//! How the forwarder talks to a webhook: TLS trust (a private CA), a client certificate for
//! mTLS, credentials (bearer token or basic auth) and extra headers, as a kube-apiserver
//! webhook kubeconfig allows. Every secret is held so that `Debug` and logs never show it.

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret as _, SecretString};
use std::fmt;

/// A bearer token that never shows in `Debug` or logs.
#[derive(Clone)]
pub struct Bearer(pub SecretString);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(***)")
    }
}

impl Bearer {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0.expose_secret())
    }
}

/// Options for one webhook's HTTP client, validated.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Extra trusted CA certificates (PEM), on top of the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM, concatenated) for mTLS.
    pub identity_pem: Option<SecretPem>,
    /// Skip TLS verification entirely (logged loudly at startup).
    pub insecure_skip_verify: bool,
    /// `Authorization: Bearer …`.
    pub bearer: Option<Bearer>,
    /// `Authorization: Basic …` user name and password.
    pub basic: Option<(String, SecretString)>,
    /// Extra headers sent with every POST; values are treated as secrets.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// PEM text holding a private key.
#[derive(Clone)]
pub struct SecretPem(pub SecretString);

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity_pem.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("basic_user", &self.basic.as_ref().map(|(u, _)| u.as_str()))
            .field("headers", &header_names(&self.headers))
            .finish()
    }
}

/// Header names only: what `Debug` may show of a header list.
pub fn header_names(headers: &[(HeaderName, HeaderValue)]) -> Vec<&str> {
    headers.iter().map(|(n, _)| n.as_str()).collect()
}

impl ClientOptions {
    /// Checks that the certificates and key parse, without building a client.
    ///
    /// # Errors
    /// When a certificate or key does not parse.
    pub fn validate(&self) -> Result<(), String> {
        // A credential that cannot be a header value would otherwise be left out silently.
        if self.bearer.is_some() || self.basic.is_some() {
            let has_auth = self
                .request_headers()
                .iter()
                .any(|(name, _)| name == AUTHORIZATION);
            if !has_auth {
                return Err(
                    "the credentials hold characters an HTTP header cannot carry".to_string(),
                );
            }
        }
        self.apply_tls(reqwest::Client::builder())?
            .build()
            .map(drop)
            .map_err(|e| format!("the TLS settings are not usable: {e}"))
    }

    /// Applies the TLS options to a client builder.
    ///
    /// # Errors
    /// When a certificate or key does not parse.
    pub fn apply_tls(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, String> {
        if let (Some(ca), false) = (&self.ca_pem, self.insecure_skip_verify) {
            // Our own rustls configuration: it also trusts a receiver whose certificate is
            // one of these CA certificates (see `delivery::tls`).
            let identity = self.identity_pem.as_ref();
            let identity = identity.map(|pem| pem.0.expose_secret().as_bytes());
            return Ok(builder.use_preconfigured_tls(super::tls::client_config(ca, identity)?));
        }
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the CA bundle is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("the CA bundle holds no certificate".into());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &self.identity_pem {
            let identity =
                reqwest::Identity::from_pem(pem.0.expose_secret().as_bytes()).map_err(|_| {
                    "the client certificate and key are not a PEM certificate chain and private key"
                        .to_string()
                })?;
            builder = builder.identity(identity);
        }
        if self.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(builder)
    }

    /// Every secret value this client sends (token, password, the encoded `Authorization`
    /// value, extra header values), so quoted answers can be masked.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(bearer) = &self.bearer {
            out.push(bearer.0.expose_secret().to_string());
        }
        if let Some((_, password)) = &self.basic {
            out.push(password.expose_secret().to_string());
        }
        for (name, value) in self.request_headers() {
            if let Ok(v) = value.to_str() {
                out.push(v.to_string());
                if name == AUTHORIZATION {
                    if let Some((_, credential)) = v.split_once(' ') {
                        out.push(credential.to_string());
                    }
                }
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// The headers every POST carries: credentials first, then the extra ones. Values are
    /// marked sensitive so HTTP tooling does not print them.
    pub fn request_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let mut auth = None;
        if let Some(bearer) = &self.bearer {
            auth = HeaderValue::from_str(&bearer.header_value()).ok();
        } else if let Some((user, password)) = &self.basic {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.expose_secret()));
            auth = HeaderValue::from_str(&format!("Basic {token}")).ok();
        }
        if let Some(mut value) = auth {
            value.set_sensitive(true);
            out.push((AUTHORIZATION, value));
        }
        for (name, value) in &self.headers {
            let mut value = value.clone();
            value.set_sensitive(true);
            out.push((name.clone(), value));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_headers_and_never_show_in_debug() {
        let options = ClientOptions {
            basic: Some(("svc".into(), SecretString::from("pa55word-xyz"))),
            headers: vec![(
                HeaderName::from_static("x-token"),
                HeaderValue::from_static("hdr-s3cret"),
            )],
            ..Default::default()
        };
        let headers = options.request_headers();
        assert_eq!(headers[0].0, AUTHORIZATION);
        assert_eq!(
            headers[0].1.to_str().unwrap(),
            "Basic c3ZjOnBhNTV3b3JkLXh5eg=="
        );
        assert!(headers.iter().all(|(_, v)| v.is_sensitive()));
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("pa55word") && !shown.contains("hdr-s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_pem_is_refused() {
        let options = ClientOptions {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..Default::default()
        };
        assert!(options.validate().is_err());
        let options = ClientOptions {
            identity_pem: Some(SecretPem(SecretString::from("not pem"))),
            ..Default::default()
        };
        assert!(options.validate().is_err());
    }
}

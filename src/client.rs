//! How the forwarder talks to a webhook: TLS trust (a private CA), a client certificate for
//! mTLS, credentials (bearer token or basic auth) and extra headers, as a kube-apiserver
//! webhook kubeconfig allows. Every secret is held so that `Debug` and logs never show it.

use std::fmt;
use std::path::Path;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret as _, SecretString};

use crate::routes::Bearer;

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

/// Reads PEM given inline (it starts with `-----BEGIN`) or as a file path (relative to `base`).
///
/// # Errors
/// When the file cannot be read.
pub fn load_pem(value: &str, base: &Path) -> Result<Vec<u8>, String> {
    let trimmed = value.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let path = base.join(trimmed);
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses extra headers written as a JSON object, `{"X-Tenant":"prod"}`.
///
/// # Errors
/// When the text is not such an object or a name or value is not a valid header.
pub fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("expected a JSON object of header names and values ({e})"))?;
    map.into_iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .ok_or_else(|| format!("header {name}: the value must be a string"))?
                .to_string();
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a valid header name"))?;
            if header == AUTHORIZATION {
                return Err(
                    "set credentials with the bearer token or basic auth settings, not as a header"
                        .into(),
                );
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| format!("header {name}: the value is not a valid header value"))?;
            Ok((header, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_refuse_authorization() {
        let h = parse_headers(r#"{"X-Tenant":"prod","X-Cluster-Set":"weu"}"#).unwrap();
        assert_eq!(h.len(), 2);
        assert!(parse_headers(r#"{"Authorization":"x"}"#).is_err());
        assert!(parse_headers(r#"{"Bad Name":"x"}"#).is_err());
        assert!(parse_headers(r#"{"X":1}"#).is_err());
        assert!(parse_headers("X-A: b").is_err());
    }

    #[test]
    fn credentials_become_headers_and_never_show_in_debug() {
        let options = ClientOptions {
            basic: Some(("svc".into(), SecretString::from("pa55word-xyz"))),
            headers: parse_headers(r#"{"X-Token":"hdr-s3cret"}"#).unwrap(),
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
        assert!(load_pem("/nonexistent/ca.pem", Path::new("/")).is_err());
        assert_eq!(
            load_pem("  -----BEGIN X-----\n", Path::new("/")).unwrap(),
            b"-----BEGIN X-----"
        );
    }
}

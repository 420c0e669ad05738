//! The single webhook's settings (`AUDIT_WEBHOOK_*`): its URL, TLS trust, client certificate,
//! credentials and extra headers, read into the [`ClientOptions`] the delivery layer uses.
//! PEM values may be inline or file paths; secrets are never echoed in errors.

use std::path::Path;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::SecretString;
use url::Url;

use super::{parse_switch, vars, ConfigError};
use crate::delivery::{Bearer, ClientOptions, SecretPem};
use crate::redact::redact_url;

/// The single webhook's TLS, credentials and headers, from the environment.
pub(super) fn client_options(
    get: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<ClientOptions, ConfigError> {
    let invalid = |var: &'static str, value: &str, reason: String| ConfigError::Invalid {
        var,
        value: value.to_string(),
        reason,
    };
    let mut client = ClientOptions {
        bearer: get(vars::WEBHOOK_BEARER_TOKEN).map(|t| Bearer(SecretString::from(t))),
        ..Default::default()
    };
    match (get(vars::WEBHOOK_USERNAME), get(vars::WEBHOOK_PASSWORD)) {
        (Some(user), Some(password)) => {
            if client.bearer.is_some() {
                return Err(invalid(
                    vars::WEBHOOK_USERNAME,
                    &user,
                    format!("set {} or basic auth, not both", vars::WEBHOOK_BEARER_TOKEN),
                ));
            }
            client.basic = Some((user, SecretString::from(password)));
        }
        (None, None) => {}
        (Some(user), None) => {
            return Err(invalid(
                vars::WEBHOOK_USERNAME,
                &user,
                format!("{} is not set", vars::WEBHOOK_PASSWORD),
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: vars::WEBHOOK_USERNAME,
            })
        }
    }
    if let Some(ca) = get(vars::WEBHOOK_CA) {
        let pem = load_pem(&ca, base).map_err(|e| invalid(vars::WEBHOOK_CA, &shown_pem(&ca), e))?;
        client.ca_pem = Some(pem);
        let probe = ClientOptions {
            ca_pem: client.ca_pem.clone(),
            ..Default::default()
        };
        probe
            .validate()
            .map_err(|e| invalid(vars::WEBHOOK_CA, &shown_pem(&ca), e))?;
    }
    match (
        get(vars::WEBHOOK_CLIENT_CERT),
        get(vars::WEBHOOK_CLIENT_KEY),
    ) {
        (Some(cert), Some(key)) => {
            let cert_pem = load_pem(&cert, base)
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_CERT, &shown_pem(&cert), e))?;
            let key_pem = load_pem(&key, base)
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_KEY, "<not shown>", e))?;
            let mut both = String::from_utf8_lossy(&cert_pem).into_owned();
            both.push('\n');
            both.push_str(&String::from_utf8_lossy(&key_pem));
            let probe = ClientOptions {
                identity_pem: Some(SecretPem(SecretString::from(both.clone()))),
                ..Default::default()
            };
            probe
                .validate()
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_CERT, &shown_pem(&cert), e))?;
            client.identity_pem = Some(SecretPem(SecretString::from(both)));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: vars::WEBHOOK_CLIENT_KEY,
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: vars::WEBHOOK_CLIENT_CERT,
            })
        }
    }
    client.insecure_skip_verify = parse_switch(
        vars::WEBHOOK_INSECURE_SKIP_VERIFY,
        get(vars::WEBHOOK_INSECURE_SKIP_VERIFY),
        false,
    )?;
    if let Some(headers) = get(vars::WEBHOOK_HEADERS) {
        client.headers = parse_headers(&headers)
            .map_err(|e| invalid(vars::WEBHOOK_HEADERS, "<not shown>", e))?;
    }
    Ok(client)
}

/// A PEM setting as it may be shown: its file name, or a placeholder for inline PEM.
fn shown_pem(value: &str) -> String {
    if value.trim_start().starts_with("-----BEGIN") {
        "<inline PEM>".into()
    } else {
        value.to_string()
    }
}

pub(super) fn parse_webhook_url(value: Option<String>) -> Result<Url, ConfigError> {
    let var = vars::WEBHOOK_URL;
    let raw = value.ok_or(ConfigError::Missing { var })?;
    let invalid = |shown: String, reason: &str| ConfigError::Invalid {
        var,
        value: shown,
        reason: reason.to_string(),
    };
    // The raw text may hold a password: never echo it unparsed.
    let url = Url::parse(raw.trim()).map_err(|e| {
        invalid(
            "<unparsable URL, not shown>".into(),
            &format!("not an absolute URL ({e})"),
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            redact_url(&url),
            "the scheme must be http or https",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(redact_url(&url), "the URL has no host"));
    }
    Ok(url)
}

/// Reads PEM given inline (it starts with `-----BEGIN`) or as a file path (relative to `base`).
///
/// # Errors
/// When the file cannot be read.
pub(super) fn load_pem(value: &str, base: &Path) -> Result<Vec<u8>, String> {
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
pub(super) fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
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
    fn pem_inline_or_from_a_file() {
        assert!(load_pem("/nonexistent/ca.pem", Path::new("/")).is_err());
        assert_eq!(
            load_pem("  -----BEGIN X-----\n", Path::new("/")).unwrap(),
            b"-----BEGIN X-----"
        );
    }
}

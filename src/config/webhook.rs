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
    let bearer = match get(vars::WEBHOOK_BEARER_TOKEN) {
        None => None,
        Some(token) => Some(Bearer(SecretString::from(
            clean_secret(&token, true)
                .map_err(|e| invalid(vars::WEBHOOK_BEARER_TOKEN, "<not shown>", e))?,
        ))),
    };
    let mut client = ClientOptions {
        bearer,
        ..Default::default()
    };
    let password = match get(vars::WEBHOOK_PASSWORD) {
        None => None,
        Some(p) => Some(
            clean_secret(&p, false)
                .map_err(|e| invalid(vars::WEBHOOK_PASSWORD, "<not shown>", e))?,
        ),
    };
    let user = get(vars::WEBHOOK_USERNAME).map(|u| u.trim().to_string());
    match (user, password) {
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
        let pem =
            load_pem(&ca, base).map_err(|e| invalid(vars::WEBHOOK_CA, &shown_pem(&ca, base), e))?;
        client.ca_pem = Some(pem);
        let probe = ClientOptions {
            ca_pem: client.ca_pem.clone(),
            ..Default::default()
        };
        probe
            .validate()
            .map_err(|e| invalid(vars::WEBHOOK_CA, &shown_pem(&ca, base), e))?;
    }
    match (
        get(vars::WEBHOOK_CLIENT_CERT),
        get(vars::WEBHOOK_CLIENT_KEY),
    ) {
        (Some(cert), Some(key)) => {
            let cert_pem = load_pem(&cert, base)
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_CERT, &shown_pem(&cert, base), e))?;
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
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_CERT, &shown_pem(&cert, base), e))?;
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

/// A PEM setting as it may be shown: the name of an existing file, else a placeholder. A value
/// that is not a file may be a secret (a bare key, a Key Vault certificate): never echoed.
fn shown_pem(value: &str, base: &Path) -> String {
    let v = strip_wrapping(value);
    if v.contains("-----BEGIN") {
        "<inline PEM>".into()
    } else if is_plausible_path(v) && base.join(v).is_file() {
        v.to_string()
    } else {
        "<not shown>".into()
    }
}

/// A secret setting without the whitespace that Key Vault references and `echo` add. Bearer
/// tokens (RFC 6750 `b64token`) never hold whitespace, so all of it is trimmed; other secrets
/// lose only line breaks at their ends. Control characters left inside are refused.
///
/// # Errors
/// When nothing is left, or a control character remains; never quoting the value.
pub(super) fn clean_secret(value: &str, token: bool) -> Result<String, String> {
    let cleaned = if token {
        value.trim()
    } else {
        value.trim_matches(|c| c == '\r' || c == '\n')
    };
    if cleaned.is_empty() {
        return Err("the value is blank".into());
    }
    if cleaned.chars().any(char::is_control) || (token && cleaned.contains(' ')) {
        return Err(
            "the value holds a line break, a space or another control character inside it".into(),
        );
    }
    Ok(cleaned.to_string())
}

/// The value without a byte order mark, surrounding whitespace or surrounding quotes.
fn strip_wrapping(value: &str) -> &str {
    let v = value.trim_start_matches('\u{feff}').trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return inner.trim();
        }
    }
    v
}

/// Whether a value could be a file name at all (one short line).
fn is_plausible_path(value: &str) -> bool {
    !value.is_empty() && value.len() <= 1024 && !value.contains(['\n', '\r'])
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

/// Reads PEM given inline or as a file path (relative to `base`). Inline PEM may carry a byte
/// order mark, surrounding quotes and `\n` escapes instead of line breaks (as app settings
/// often hold it).
///
/// # Errors
/// When the value is neither PEM nor a readable file. The message never quotes the value or a
/// path built from it: the value may be a secret that was not meant as a path.
pub(super) fn load_pem(value: &str, base: &Path) -> Result<Vec<u8>, String> {
    let v = strip_wrapping(value);
    if let Some(start) = v.find("-----BEGIN") {
        let pem = &v[start..];
        let pem = if pem.contains('\n') {
            pem.to_string()
        } else {
            pem.replace("\\n", "\n")
        };
        return Ok(pem.into_bytes());
    }
    if !is_plausible_path(v) {
        return Err("the value is neither PEM text (-----BEGIN …) nor a file name".into());
    }
    let path = base.join(v);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "the value is not PEM text (-----BEGIN …) and no file of that name can be read ({})",
            e.kind()
        )
    })?;
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err("the file it names holds no PEM text (-----BEGIN …)".into());
    }
    Ok(bytes)
}

/// Headers that describe the request's framing or connection (RFC 9110 §7.6.1, RFC 9112 §6):
/// a second value would corrupt the request, so they are refused.
const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "content-type",
];

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
            if FRAMING_HEADERS.contains(&header.as_str()) {
                return Err(format!(
                    "header {name} is set by the HTTP client (request framing and connection) and cannot be overridden"
                ));
            }
            let value = clean_secret(&value, false)
                .map_err(|e| format!("header {name}: {e}"))?;
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
        // A BOM, quotes and `\n` escapes around inline PEM.
        assert_eq!(
            load_pem(
                "\u{feff}\"-----BEGIN X-----\\nAAAA\\n-----END X-----\"",
                Path::new("/")
            )
            .unwrap(),
            b"-----BEGIN X-----\nAAAA\n-----END X-----"
        );
    }

    /// A secret that is not a file (a bare base64 key, a Key Vault value) is never echoed,
    /// nor turned into a path in the message.
    #[test]
    fn pem_errors_never_quote_the_value() {
        for secret in ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-s3cr3t", "a\nb-s3cr3t"] {
            let err = load_pem(secret, Path::new("/base-dir")).unwrap_err();
            assert!(
                !err.contains("s3cr3t") && !err.contains("base-dir"),
                "{err}"
            );
            assert_eq!(shown_pem(secret, Path::new("/")), "<not shown>");
        }
    }

    #[test]
    fn framing_headers_are_refused_by_name() {
        for name in ["Content-Length", "Transfer-Encoding", "Host", "Connection"] {
            let err = parse_headers(&format!(r#"{{"{name}":"1"}}"#)).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn secrets_are_trimmed_or_refused() {
        assert_eq!(clean_secret("t0k3n\n", true).unwrap(), "t0k3n");
        assert_eq!(
            clean_secret(" pass word \r\n", false).unwrap(),
            " pass word "
        );
        assert!(clean_secret("a\nb", true).is_err());
        assert!(clean_secret("a b", true).is_err());
        assert!(clean_secret("\n", true).is_err());
        let h = parse_headers(r#"{"X-Key":"v4lue\n"}"#).unwrap();
        assert_eq!(h[0].1, "v4lue");
    }
}

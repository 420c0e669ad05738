//! The single webhook's settings (`AUDIT_WEBHOOK_*`): its URL, TLS trust, client certificate,
//! credentials and extra headers, read into the [`ClientOptions`] the delivery layer uses.
//! PEM values may be inline or file paths; secrets are never echoed in errors.

use std::path::Path;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::SecretString;
use url::Url;

use super::routes::scrub;
use super::values::Lookup;
use super::vars::{self, def};
use super::ConfigError;
use crate::delivery::{Bearer, ClientOptions, SecretPem};

/// What an error shows of a value that may be a credential.
const NOT_SHOWN: &str = "<not shown>";

/// The single webhook's TLS, credentials and headers, from the environment.
pub(super) fn client_options(get: Lookup<'_>, base: &Path) -> Result<ClientOptions, ConfigError> {
    let (bearer, basic) = credentials(get)?;
    let ca_pem = ca(get, base)?;
    let identity_pem = identity(get, base)?;
    let insecure_skip_verify = def::WEBHOOK_INSECURE_SKIP_VERIFY.read(get)?;
    let headers = match def::WEBHOOK_HEADERS.read(get) {
        None => Vec::new(),
        Some(text) => {
            parse_headers(&text).map_err(|e| def::WEBHOOK_HEADERS.invalid(NOT_SHOWN, e))?
        }
    };
    Ok(ClientOptions {
        ca_pem,
        identity_pem,
        insecure_skip_verify,
        bearer,
        basic,
        headers,
    })
}

/// Basic auth user name and password.
type Basic = (String, SecretString);

/// The bearer token, or basic auth from a user name and a password (not both). No value is
/// ever shown, the user name included: it may hold a password pasted with it.
fn credentials(get: Lookup<'_>) -> Result<(Option<Bearer>, Option<Basic>), ConfigError> {
    let bearer = match def::WEBHOOK_BEARER_TOKEN.read(get) {
        None => None,
        Some(token) => Some(Bearer(SecretString::from(
            clean_secret(&token, true)
                .map_err(|e| def::WEBHOOK_BEARER_TOKEN.invalid(NOT_SHOWN, e))?,
        ))),
    };
    let password = match def::WEBHOOK_PASSWORD.read(get) {
        None => None,
        Some(p) => {
            Some(clean_secret(&p, false).map_err(|e| def::WEBHOOK_PASSWORD.invalid(NOT_SHOWN, e))?)
        }
    };
    let user = def::WEBHOOK_USERNAME
        .read(get)
        .map(|u| u.trim().to_string());
    if let Some(user) = &user {
        check_user_id(user).map_err(|e| def::WEBHOOK_USERNAME.invalid(NOT_SHOWN, e))?;
    }
    match (user, password) {
        (Some(_), Some(_)) if bearer.is_some() => Err(def::WEBHOOK_USERNAME.invalid(
            NOT_SHOWN,
            format!("set {} or basic auth, not both", vars::WEBHOOK_BEARER_TOKEN),
        )),
        (Some(user), Some(password)) => Ok((None, Some((user, SecretString::from(password))))),
        (None, None) => Ok((bearer, None)),
        (Some(_), None) => Err(def::WEBHOOK_USERNAME
            .invalid(NOT_SHOWN, format!("{} is not set", vars::WEBHOOK_PASSWORD))),
        (None, Some(_)) => Err(ConfigError::Missing {
            var: vars::WEBHOOK_USERNAME,
        }),
    }
}

/// A Basic auth user-id as RFC 7617 §2 allows it: no colon (the first colon ends the
/// user-id, so the rest would be sent as part of the password) and no control character.
///
/// # Errors
/// What is wrong, never quoting the value.
pub(super) fn check_user_id(user: &str) -> Result<(), String> {
    if user.contains(':') {
        return Err(format!(
            "a user name must not contain a colon (RFC 7617 §2: the first colon ends the \
             user-id); set the password in {}",
            vars::WEBHOOK_PASSWORD
        ));
    }
    if user.chars().any(char::is_control) {
        return Err("a user name must not contain control characters (RFC 7617 §2)".into());
    }
    Ok(())
}

/// `AUDIT_WEBHOOK_CA`, checked as the HTTP client will read it.
fn ca(get: Lookup<'_>, base: &Path) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(ca) = def::WEBHOOK_CA.read(get) else {
        return Ok(None);
    };
    let invalid = |e: String| def::WEBHOOK_CA.invalid(shown_pem(&ca, base), e);
    let pem = load_pem(&ca, base).map_err(invalid)?;
    let probe = ClientOptions {
        ca_pem: Some(pem.clone()),
        ..Default::default()
    };
    probe.validate().map_err(invalid)?;
    Ok(Some(pem))
}

/// `AUDIT_WEBHOOK_CLIENT_CERT` and `AUDIT_WEBHOOK_CLIENT_KEY` (both or neither), checked as
/// the HTTP client will read them.
fn identity(get: Lookup<'_>, base: &Path) -> Result<Option<SecretPem>, ConfigError> {
    let (cert, key) = match (
        def::WEBHOOK_CLIENT_CERT.read(get),
        def::WEBHOOK_CLIENT_KEY.read(get),
    ) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
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
    };
    let invalid_cert = |e: String| def::WEBHOOK_CLIENT_CERT.invalid(shown_pem(&cert, base), e);
    let cert_pem = load_pem(&cert, base).map_err(invalid_cert)?;
    let key_pem =
        load_pem(&key, base).map_err(|e| def::WEBHOOK_CLIENT_KEY.invalid(NOT_SHOWN, e))?;
    let mut both = String::from_utf8_lossy(&cert_pem).into_owned();
    both.push('\n');
    both.push_str(&String::from_utf8_lossy(&key_pem));
    let probe = ClientOptions {
        identity_pem: Some(SecretPem(SecretString::from(both.clone()))),
        ..Default::default()
    };
    probe.validate().map_err(invalid_cert)?;
    Ok(Some(SecretPem(SecretString::from(both))))
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
    let setting = &def::WEBHOOK_URL;
    let raw = value.ok_or(ConfigError::Missing { var: setting.name })?;
    // The raw text may hold a password: never echo it unparsed.
    let url = Url::parse(raw.trim()).map_err(|e| {
        setting.invalid(
            "<unparsable URL, not shown>",
            format!("not an absolute URL ({e})"),
        )
    })?;
    // Only the scheme and host are shown: user-info, path and query may hold credentials.
    let shown = format!(
        "{}://{}/…",
        url.scheme(),
        url.host_str().unwrap_or_default()
    );
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(setting.invalid(shown, "the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(setting.invalid(shown, "the URL has no host"));
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
    // The parser's messages quote values, which may be keys: scrubbed.
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| {
            format!(
                "expected a JSON object of header names and values ({})",
                scrub(&e.to_string())
            )
        })?;
    map.into_iter()
        .enumerate()
        .map(|(i, (name, value))| {
            // A name that is no header name may be a whole `Name: value` line: not quoted.
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                format!(
                    "header #{} has a name that is not a valid header field name (RFC 9110 §5.1)",
                    i + 1
                )
            })?;
            let value = value
                .as_str()
                .ok_or_else(|| format!("header {name}: the value must be a string"))?
                .to_string();
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

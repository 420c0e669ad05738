//! Keeps credentials out of logs, errors and `Debug` output.

use url::Url;

/// The URL as it may be shown: user-info and query values replaced by `***`. A query piece
/// without `=` (a bare token, `?TOKEN`) is replaced whole: it is the secret itself.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        // Both calls only fail for URLs that cannot carry credentials, which have none to hide.
        let _ = shown.set_username("***");
        let _ = shown.set_password(None);
    }
    if let Some(query) = url.query() {
        let pieces: Vec<String> = query
            .split('&')
            .map(|piece| match piece.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None if piece.is_empty() => String::new(),
                None => "***".to_string(),
            })
            .collect();
        shown.set_query(Some(&pieces.join("&")));
    }
    shown.to_string()
}

/// Every form in which `url` carries a credential onto the wire or into an answer that echoes
/// the request: the user-info password (as written, percent-encoded, and decoded), the
/// `Authorization: Basic` value a client builds from the user-info (RFC 7617, from the
/// decoded user and password, as reqwest builds it), and each query value or bare query
/// token, as written and decoded. For [`mask`].
pub fn url_secret_values(url: &Url) -> Vec<String> {
    use base64::Engine as _;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out = Vec::new();
    if let Some(password) = url.password() {
        out.push(password.to_string());
        out.push(decode(password));
    }
    if !url.username().is_empty() || url.password().is_some() {
        let pair = format!(
            "{}:{}",
            decode(url.username()),
            decode(url.password().unwrap_or(""))
        );
        let credential = base64::engine::general_purpose::STANDARD.encode(pair);
        out.push(format!("Basic {credential}"));
        out.push(credential);
    }
    for piece in url.query().unwrap_or("").split('&') {
        let value = piece.split_once('=').map_or(piece, |(_, v)| v);
        out.push(value.to_string());
        // `+` is a space in a form-encoded query.
        out.push(decode(&value.replace('+', " ")));
        out.push(decode(value));
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// The first `max` characters of `text` on one line, for log excerpts of bad input.
pub fn excerpt(text: &[u8], max: usize) -> String {
    let lossy = String::from_utf8_lossy(&text[..text.len().min(max * 4)]);
    let mut out: String = lossy
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if lossy.chars().count() > max || text.len() > max * 4 {
        out.push('…');
    }
    out
}

/// `secret` and the forms a receiver that echoes it inside a JSON string writes: escaped as
/// JSON (RFC 8259 §7), with `/` escaped too (PHP's `json_encode` does by default), and with
/// `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026` (Go's `encoding/json` does by
/// default). A base64 token or a Basic credential often holds `/`. For [`mask`].
pub fn echoed_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(secret)
        .to_string();
    let slashes = json.replace('/', "\\/");
    let go = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let mut out = vec![secret.to_string(), json, slashes, go];
    out.sort();
    out.dedup();
    out
}

/// `text` with every occurrence of a known secret value replaced by `***`. Receivers that echo
/// the request headers in their error answers would otherwise put credentials in the logs.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secret_values_are_masked() {
        let secrets = ["t0ken".to_string(), String::new()];
        assert_eq!(
            mask("authorization: Bearer t0ken, again t0ken", &secrets),
            "authorization: Bearer ***, again ***"
        );
        assert_eq!(mask("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn hides_user_info_and_query_values() {
        let url = Url::parse("https://bob:hunter2@audit.example/k8s_audit?sig=abc&x=1").unwrap();
        let shown = redact_url(&url);
        assert_eq!(shown, "https://***@audit.example/k8s_audit?sig=***&x=***");
    }

    /// A bare token as the whole query, and percent-encoded values, never show.
    #[test]
    fn bare_query_tokens_and_encoded_values_are_hidden() {
        let url = Url::parse("https://audit.example/k8s_audit?S3CRET-T0KEN").unwrap();
        assert_eq!(redact_url(&url), "https://audit.example/k8s_audit?***");
        let url = Url::parse("https://a.example/x?sig=Zm9v%2BYmFy%2FSECRET%3D&T0K&&v=1").unwrap();
        assert_eq!(redact_url(&url), "https://a.example/x?sig=***&***&&v=***");
    }

    /// A secret echoed inside a JSON string, escaped the common ways, is masked.
    #[test]
    fn json_escaped_echoes_are_masked() {
        let secrets = echoed_forms("a/b<c>&d\"e");
        let echoed =
            r#"{"php":"a\/b<c>&d\"e","go":"a/b\u003cc\u003e\u0026d\"e","plain":"a/b<c>&d\"e"}"#;
        assert_eq!(
            mask(echoed, &secrets),
            r#"{"php":"***","go":"***","plain":"***"}"#
        );
    }

    /// The forms a URL's credentials take on the wire, each listed for masking.
    #[test]
    fn url_secret_values_cover_every_form() {
        let url = Url::parse(
            "https://svc:p%40ss-w0rd@a.example/x?sig=Zm9v%2BYmFy%2FSECRET%3D&BARE-T0KEN",
        )
        .unwrap();
        let values = url_secret_values(&url);
        for want in [
            "p%40ss-w0rd",
            "p@ss-w0rd",
            // base64("svc:p@ss-w0rd")
            "Basic c3ZjOnBAc3MtdzByZA==",
            "c3ZjOnBAc3MtdzByZA==",
            "Zm9v%2BYmFy%2FSECRET%3D",
            "Zm9v+YmFy/SECRET=",
            "BARE-T0KEN",
        ] {
            assert!(values.iter().any(|v| v == want), "{want} not in {values:?}");
        }
        let echoed = "GET /x?sig=Zm9v%2BYmFy%2FSECRET%3D&BARE-T0KEN\nauthorization: Basic c3ZjOnBAc3MtdzByZA==";
        let masked = mask(echoed, &values);
        assert_eq!(masked, "GET /x?sig=***&***\nauthorization: ***");
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let url = Url::parse("http://10.0.0.4:7765/k8s_audit").unwrap();
        assert_eq!(redact_url(&url), "http://10.0.0.4:7765/k8s_audit");
    }

    #[test]
    fn excerpt_is_short_single_line_and_utf8_safe() {
        assert_eq!(excerpt(b"abc\ndef", 10), "abc def");
        assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
        assert_eq!(excerpt(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}

//! Keeps credentials out of logs, errors and `Debug` output.

use url::Url;

/// The URL as it may be shown: user-info and query values replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        // Both calls only fail for URLs that cannot carry credentials, which have none to hide.
        let _ = shown.set_username("***");
        let _ = shown.set_password(None);
    }
    if shown.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        shown.query_pairs_mut().clear();
        for key in keys {
            shown.query_pairs_mut().append_pair(&key, "***");
        }
    }
    shown.to_string()
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

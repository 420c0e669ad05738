//! The routes document (`AUDIT_ROUTES`, YAML or JSON, a file or inline) read into the
//! [`RouteConfig`]s the delivery layer uses. Secrets stay in app settings that the document
//! names (`bearerTokenSetting`, `basicAuthSetting`, `clientCertificateSetting`).

use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::webhook::{check_user_id, clean_secret, load_pem, parse_headers};
use crate::audit::{Policy, WebhookFormat};
use crate::delivery::{
    Bearer, ClientOptions, Destination, Matcher, ReceiverProfile, RouteConfig, SecretPem,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoutesDoc {
    routes: Vec<RouteDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteDoc {
    name: String,
    #[serde(default, rename = "match")]
    matcher: MatchDoc,
    #[serde(default)]
    webhook: Option<WebhookDoc>,
    #[serde(default)]
    policy_file: Option<String>,
    #[serde(default)]
    drop: bool,
    /// `generic`, `falco` or `sysdig` (else `AUDIT_RECEIVER`).
    #[serde(default)]
    receiver: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MatchDoc {
    #[serde(default)]
    resource_ids: Vec<String>,
    #[serde(default)]
    subscriptions: Vec<String>,
    #[serde(default)]
    resource_groups: Vec<String>,
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default)]
    resource_types: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WebhookDoc {
    url: String,
    #[serde(default)]
    format: Option<String>,
    /// The name of an app setting holding the token (keeps secrets out of the file).
    #[serde(default)]
    bearer_token_setting: Option<String>,
    /// The name of an app setting holding `user:password` for basic auth.
    #[serde(default)]
    basic_auth_setting: Option<String>,
    /// Extra trusted CA certificates: a PEM file path or inline PEM.
    #[serde(default)]
    ca: Option<String>,
    /// The name of an app setting holding the client certificate and key (PEM) for mTLS.
    #[serde(default)]
    client_certificate_setting: Option<String>,
    /// Skip TLS verification (logged loudly).
    #[serde(default)]
    insecure_skip_verify: bool,
    /// Extra headers.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// Parses a routes file (YAML or JSON). Relative `policyFile` paths are resolved against
/// `base`; `lookup` reads app settings named by `bearerTokenSetting`.
///
/// # Errors
/// A message naming the route and the problem; two routes of one name are refused (dead
/// letters, logs and what a failed try taught are keyed by the route's name).
pub(super) fn parse_routes(
    text: &str,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    receiver: ReceiverProfile,
) -> Result<Vec<RouteConfig>, String> {
    // Within the shared loader's budgets (size, nesting, nodes with aliases expanded),
    // merge keys resolved; values quoted by the parser are scrubbed.
    let doc: RoutesDoc = crate::audit::yaml::from_str(text).map_err(|e| scrub(&e.0))?;
    if doc.routes.is_empty() {
        return Err("no routes: add at least one under `routes:`".into());
    }
    let mut out: Vec<RouteConfig> = Vec::new();
    for (i, r) in doc.routes.into_iter().enumerate() {
        let at = |m: String| format!("routes[{i}] ({}): {m}", r.name);
        if let Some(first) = out.iter().position(|o| o.name == r.name) {
            return Err(at(format!(
                "the name is already used by routes[{first}]: route names must be unique \
                 (dead letters, logs and what a failed try taught name the route)"
            )));
        }
        let destination = match (r.drop, r.webhook) {
            (true, Some(_)) => {
                return Err(at("a route cannot both drop and have a webhook".into()))
            }
            (true, None) => None,
            (false, None) => return Err(at("needs a webhook (or drop: true)".into())),
            (false, Some(w)) => {
                let receiver = match &r.receiver {
                    None => receiver,
                    Some(name) => ReceiverProfile::parse(name).ok_or_else(|| {
                        at(format!(
                            "receiver {name:?}: expected generic, falco or sysdig"
                        ))
                    })?,
                };
                let mut d = destination(w, r.policy_file, base, lookup).map_err(at)?;
                d.receiver = receiver;
                Some(d)
            }
        };
        let m = &r.matcher;
        out.push(RouteConfig {
            name: r.name.clone(),
            matcher: Matcher::new(
                &m.resource_ids,
                &m.subscriptions,
                &m.resource_groups,
                &m.clusters,
            )
            .with_resource_types(&m.resource_types),
            destination,
        });
    }
    Ok(out)
}

/// A route's webhook, client settings and own Policy.
fn destination(
    w: WebhookDoc,
    policy_file: Option<String>,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Destination, String> {
    let url = Url::parse(w.url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or("webhook.url is not an http(s) URL")?;
    let format = match w.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("eventlist") => WebhookFormat::EventList,
        Some("event") => WebhookFormat::Event,
        Some(other) => {
            return Err(format!(
                "webhook.format {other:?}: expected eventlist or event"
            ))
        }
    };
    let client = route_client(&w, base, lookup)?;
    let policy = match policy_file {
        None => None,
        Some(file) => Some(Arc::new(
            Policy::from_file(&base.join(file)).map_err(|e| e.to_string())?,
        )),
    };
    Ok(Destination {
        url,
        format,
        policy,
        client,
        receiver: ReceiverProfile::Generic,
    })
}

/// A route's TLS, credentials (from the app settings it names) and headers.
fn route_client(
    w: &WebhookDoc,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientOptions, String> {
    let setting = |name: &str, field: &str| {
        lookup(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("app setting {name} ({field}) is not set"))
    };
    let mut client = ClientOptions {
        insecure_skip_verify: w.insecure_skip_verify,
        ..Default::default()
    };
    if let Some(name) = &w.bearer_token_setting {
        let token = clean_secret(&setting(name, "bearerTokenSetting")?, true)
            .map_err(|e| format!("app setting {name}: {e}"))?;
        client.bearer = Some(Bearer(SecretString::from(token)));
    }
    if let Some(name) = &w.basic_auth_setting {
        let value = clean_secret(&setting(name, "basicAuthSetting")?, false)
            .map_err(|e| format!("app setting {name}: {e}"))?;
        let (user, password) = value
            .split_once(':')
            .ok_or_else(|| format!("app setting {name} must hold user:password"))?;
        check_user_id(user).map_err(|e| format!("app setting {name}: {e}"))?;
        client.basic = Some((user.to_string(), SecretString::from(password.to_string())));
    }
    if let Some(ca) = &w.ca {
        client.ca_pem = Some(load_pem(ca, base).map_err(|e| format!("ca: {e}"))?);
    }
    if let Some(name) = &w.client_certificate_setting {
        let pem = setting(name, "clientCertificateSetting")?;
        client.identity_pem = Some(SecretPem(SecretString::from(pem)));
    }
    if !w.headers.is_empty() {
        let json = serde_json::to_string(&w.headers).map_err(|e| e.to_string())?;
        client.headers = parse_headers(&json).map_err(|e| format!("headers: {e}"))?;
    }
    client.validate().map_err(|e| format!("webhook TLS: {e}"))?;
    Ok(client)
}

/// An inline YAML or JSON document rather than a file name: it starts (after a byte order
/// mark) with `{`, `---` or `routes:`, or spans lines.
pub(super) fn is_inline(value: &str) -> bool {
    let v = value.trim_start_matches('\u{feff}').trim_start();
    v.starts_with('{')
        || v.starts_with("---")
        || v.starts_with("routes:")
        || v.contains(['\n', '\r'])
}

/// A parser message without the values it quotes: a value in a routes document may be a URL
/// with a password or `sig=`, or a header value. Field names (in backticks) stay.
pub(super) fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if quoted {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::ClusterId;

    const ID: &str = "/SUBSCRIPTIONS/1111-2222/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-PROD-WEU";

    fn routes(yaml: &str) -> Result<Vec<RouteConfig>, String> {
        parse_routes(
            yaml,
            Path::new("."),
            &|k| (k == "TOKEN").then(|| "t0k3n".to_string()),
            ReceiverProfile::Generic,
        )
    }

    #[test]
    fn matchers() {
        let r = routes(
            "routes:\n- name: a\n  match: {clusters: ['aks-prod-*'], subscriptions: ['1111-2222']}\n  webhook: {url: 'http://a/'}\n- name: b\n  match: {resourceGroups: [rg-dev]}\n  drop: true\n- name: c\n  match: {resourceIds: ['*/managedclusters/aks-prod-weu']}\n  webhook: {url: 'http://c/', format: event}\n- name: all\n  webhook: {url: 'http://d/', bearerTokenSetting: TOKEN}\n",
        )
        .unwrap();
        let prod = ClusterId::parse(ID);
        let dev = ClusterId::parse("/subscriptions/x/resourceGroups/rg-dev/providers/Microsoft.ContainerService/managedClusters/aks-dev");
        let first = |id: &ClusterId| {
            r.iter()
                .find(|x| x.matcher.matches(id))
                .map(|x| x.name.as_str())
        };
        assert_eq!(first(&prod), Some("a"));
        assert_eq!(first(&dev), Some("b"));
        assert!(r[2].matcher.matches(&prod));
        assert!(!r[2].matcher.matches(&dev));
        assert!(r[3].matcher.matches(&dev));
        assert_eq!(
            r[2].destination.as_ref().unwrap().format,
            WebhookFormat::Event
        );
        assert!(r[1].destination.is_none());
        let shown = format!("{:?}", r[3]);
        assert!(!shown.contains("t0k3n"), "{shown}");
    }

    #[test]
    fn route_errors_name_the_route() {
        for (yaml, want) in [
            ("routes: []", "no routes"),
            ("routes:\n- name: x\n", "routes[0] (x): needs a webhook"),
            (
                "routes:\n- name: x\n  drop: true\n  webhook: {url: 'http://a/'}\n",
                "cannot both",
            ),
            (
                "routes:\n- name: x\n  webhook: {url: 'ftp://a/'}\n",
                "not an http(s) URL",
            ),
            (
                "routes:\n- name: x\n  webhook: {url: 'http://a/', format: xml}\n",
                "format",
            ),
            (
                "routes:\n- name: x\n  webhook: {url: 'http://a/', bearerTokenSetting: NOPE}\n",
                "NOPE",
            ),
            (
                "routes:\n- name: x\n  webhook: {url: 'http://a/'}\n  policyFile: missing.yaml\n",
                "missing.yaml",
            ),
            ("routes:\n- name: x\n  mtach: {}\n", "unknown field"),
        ] {
            let err = routes(yaml).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    /// A document that starts with a BOM or `---` is inline, and parses.
    #[test]
    fn bom_and_document_marker_are_inline() {
        for doc in [
            "\u{feff}routes:\n- name: a\n  webhook: {url: 'http://a/'}\n",
            "---\nroutes:\n- name: a\n  webhook: {url: 'http://a/'}\n",
            "\u{feff}{\"routes\":[{\"name\":\"a\",\"webhook\":{\"url\":\"http://a/\"}}]}",
        ] {
            assert!(is_inline(doc), "{doc:?}");
            assert_eq!(routes(doc).unwrap().len(), 1, "{doc:?}");
        }
        assert!(!is_inline("routes.yaml"));
    }

    /// Errors quote no value of the document: not the URL's password, not a `sig=`.
    #[test]
    fn errors_never_quote_values() {
        let err = routes(
            "routes:\n- name: x\n  webhook: {url: 'https://u:pa55@a/?sig=s1g', insecureSkipVerify: 'n0pe-h3ader'}\n",
        )
        .unwrap_err();
        assert!(
            !err.contains("pa55") && !err.contains("s1g") && !err.contains("n0pe"),
            "{err}"
        );
    }

    /// Aliases of aliases are refused quickly, in bounded memory.
    #[test]
    fn alias_bombs_are_refused() {
        // A large anchored list referenced through a few levels: few alias jumps (the YAML
        // parser's own repetition limit does not trip) but fifty million nodes.
        let mut doc = format!("a0: &a0 [{}]\n", vec!["x"; 5000].join(", "));
        for i in 1..5 {
            let prev = format!("*a{}", i - 1);
            doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        doc.push_str("routes: [*a4]\n");
        let started = std::time::Instant::now();
        let err = routes(&doc).unwrap_err();
        assert!(err.contains("nodes"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    /// Routes sharing webhook settings through anchors and `<<` merge keys load like their
    /// expanded form.
    #[test]
    fn merge_keys_share_webhook_settings() {
        let r = routes(
            "routes:\n- name: a\n  match: {clusters: [a]}\n  webhook: &hook {url: 'http://a/', format: event, bearerTokenSetting: TOKEN}\n- name: b\n  webhook:\n    <<: *hook\n    url: 'http://b/'\n",
        )
        .unwrap();
        let b = r[1].destination.as_ref().unwrap();
        assert_eq!(b.url.as_str(), "http://b/");
        assert_eq!(b.format, WebhookFormat::Event);
        assert!(b.client.bearer.is_some());
    }
}

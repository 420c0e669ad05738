//! Many clusters, one forwarder: routes choose each Event's destination from the cluster that
//! emitted it (the record's `resourceId`), and every Event can carry its cluster's identity.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;
use wildmatch::WildMatch;

use crate::audit::AuditEvent;
use crate::client::{load_pem, parse_headers, ClientOptions, SecretPem};
use crate::config::WebhookFormat;
use crate::jsonedit::{rewrite, Edit};
use crate::policy::Policy;
use crate::redact::redact_url;

/// Annotation holding the full resource id of the source cluster.
pub const CLUSTER_ID_ANNOTATION: &str = "aks.azure.com/cluster-resource-id";
/// Annotation holding the cluster's short name (Falco reads `ka.cluster.name` from it).
pub const CLUSTER_NAME_ANNOTATION: &str = "cluster_name";

/// The parts of an AKS resource id, lower-cased (Azure Monitor upper-cases them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterId {
    /// The whole id.
    pub resource_id: String,
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Cluster name.
    pub name: String,
}

impl ClusterId {
    /// Reads `/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>`
    /// in any case; parts that are missing stay empty.
    pub fn parse(resource_id: &str) -> Self {
        let lower = resource_id.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let after = |key: &str| {
            parts
                .iter()
                .position(|p| *p == key)
                .and_then(|i| parts.get(i + 1))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        Self {
            subscription: after("subscriptions"),
            resource_group: after("resourcegroups"),
            name: after("managedclusters"),
            resource_id: lower,
        }
    }
}

/// Which clusters a route takes. Every list that is set must match (globs with `*` and `?`,
/// case-insensitive); a matcher with no lists takes every cluster.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    resource_ids: Vec<WildMatch>,
    subscriptions: Vec<WildMatch>,
    resource_groups: Vec<WildMatch>,
    clusters: Vec<WildMatch>,
}

fn any(patterns: &[WildMatch], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(value))
}

impl Matcher {
    /// Whether the cluster is taken.
    pub fn matches(&self, id: &ClusterId) -> bool {
        any(&self.resource_ids, &id.resource_id)
            && any(&self.subscriptions, &id.subscription)
            && any(&self.resource_groups, &id.resource_group)
            && any(&self.clusters, &id.name)
    }
}

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

/// Where a route's Events go.
#[derive(Clone)]
pub struct Destination {
    /// The webhook.
    pub url: Url,
    /// How Events are wrapped.
    pub format: WebhookFormat,
    /// A Policy for this route (else the global one, if any).
    pub policy: Option<Arc<Policy>>,
    /// TLS, credentials and headers.
    pub client: ClientOptions,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("policy", &self.policy.is_some())
            .field("client", &self.client)
            .finish()
    }
}

/// One route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Name, for logs and the summary.
    pub name: String,
    /// Which clusters it takes.
    pub matcher: Matcher,
    /// `None`: the Events are dropped (and counted).
    pub destination: Option<Destination>,
}

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

fn globs(list: &[String]) -> Vec<WildMatch> {
    list.iter()
        .map(|p| WildMatch::new(&p.trim().to_ascii_lowercase()))
        .collect()
}

/// Parses a routes file (YAML or JSON). Relative `policyFile` paths are resolved against
/// `base`; `lookup` reads app settings named by `bearerTokenSetting`.
///
/// # Errors
/// A message naming the route and the problem.
pub fn parse_routes(
    text: &str,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<RouteConfig>, String> {
    let doc: RoutesDoc = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if doc.routes.is_empty() {
        return Err("no routes: add at least one under `routes:`".into());
    }
    let mut out = Vec::new();
    for (i, r) in doc.routes.into_iter().enumerate() {
        let at = |m: String| format!("routes[{i}] ({}): {m}", r.name);
        let destination = match (r.drop, r.webhook) {
            (true, Some(_)) => {
                return Err(at("a route cannot both drop and have a webhook".into()))
            }
            (true, None) => None,
            (false, None) => return Err(at("needs a webhook (or drop: true)".into())),
            (false, Some(w)) => {
                let url = Url::parse(w.url.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .ok_or_else(|| at("webhook.url is not an http(s) URL".into()))?;
                let format = match w.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("eventlist") => WebhookFormat::EventList,
                    Some("event") => WebhookFormat::Event,
                    Some(other) => {
                        return Err(at(format!(
                            "webhook.format {other:?}: expected eventlist or event"
                        )))
                    }
                };
                let setting = |name: &str, field: &str| {
                    lookup(name)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| at(format!("app setting {name} ({field}) is not set")))
                };
                let mut client = ClientOptions {
                    insecure_skip_verify: w.insecure_skip_verify,
                    ..Default::default()
                };
                if let Some(name) = &w.bearer_token_setting {
                    client.bearer = Some(Bearer(SecretString::from(setting(
                        name,
                        "bearerTokenSetting",
                    )?)));
                }
                if let Some(name) = &w.basic_auth_setting {
                    let value = setting(name, "basicAuthSetting")?;
                    let (user, password) = value
                        .split_once(':')
                        .ok_or_else(|| at(format!("app setting {name} must hold user:password")))?;
                    client.basic =
                        Some((user.to_string(), SecretString::from(password.to_string())));
                }
                if let Some(ca) = &w.ca {
                    client.ca_pem = Some(load_pem(ca, base).map_err(|e| at(format!("ca: {e}")))?);
                }
                if let Some(name) = &w.client_certificate_setting {
                    let pem = setting(name, "clientCertificateSetting")?;
                    client.identity_pem = Some(SecretPem(SecretString::from(pem)));
                }
                if !w.headers.is_empty() {
                    let json = serde_json::to_string(&w.headers).map_err(|e| at(e.to_string()))?;
                    client.headers =
                        parse_headers(&json).map_err(|e| at(format!("headers: {e}")))?;
                }
                client
                    .validate()
                    .map_err(|e| at(format!("webhook TLS: {e}")))?;
                let policy = match r.policy_file {
                    None => None,
                    Some(file) => Some(Arc::new(
                        Policy::from_file(&base.join(file)).map_err(|e| at(e.to_string()))?,
                    )),
                };
                Some(Destination {
                    url,
                    format,
                    policy,
                    client,
                })
            }
        };
        let m = &r.matcher;
        out.push(RouteConfig {
            name: r.name.clone(),
            matcher: Matcher {
                resource_ids: globs(&m.resource_ids),
                subscriptions: globs(&m.subscriptions),
                resource_groups: globs(&m.resource_groups),
                clusters: globs(&m.clusters),
            },
            destination,
        });
    }
    Ok(out)
}

/// Adds (or replaces) the cluster annotations on an Event.
pub fn annotate(event: &AuditEvent, cluster: &ClusterId) -> AuditEvent {
    let ours = [
        (CLUSTER_ID_ANNOTATION, json_string(&cluster.resource_id)),
        (CLUSTER_NAME_ANNOTATION, json_string(&cluster.name)),
    ];
    // Used when the Event has no annotations object (absent, or null).
    let fresh = format!(
        "{{{}:{},{}:{}}}",
        json_string(CLUSTER_ID_ANNOTATION),
        ours[0].1,
        json_string(CLUSTER_NAME_ANNOTATION),
        ours[1].1
    );
    let edited = rewrite(
        event.json(),
        |key, value| {
            if key != "annotations" {
                return Edit::Keep;
            }
            if !value.get().trim_start().starts_with('{') {
                return Edit::Replace(fresh.clone());
            }
            let merged = rewrite(
                value.get(),
                |k, _| match ours.iter().find(|(o, _)| *o == k) {
                    Some((_, v)) => Edit::Replace(v.clone()),
                    None => Edit::Keep,
                },
                &ours,
            );
            merged.map_or(Edit::Keep, Edit::Replace)
        },
        &[("annotations", fresh.clone())],
    );
    match edited {
        Ok(text) => event.with_json(text),
        Err(_) => event.clone(),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::event_json;

    const ID: &str = "/SUBSCRIPTIONS/1111-2222/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-PROD-WEU";

    #[test]
    fn parses_resource_ids_in_any_case() {
        let id = ClusterId::parse(ID);
        assert_eq!(id.subscription, "1111-2222");
        assert_eq!(id.resource_group, "rg-prod");
        assert_eq!(id.name, "aks-prod-weu");
        assert_eq!(ClusterId::parse("garbage").name, "");
    }

    fn routes(yaml: &str) -> Result<Vec<RouteConfig>, String> {
        parse_routes(yaml, Path::new("."), &|k| {
            (k == "TOKEN").then(|| "t0k3n".to_string())
        })
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

    #[test]
    fn annotations_are_added_or_merged() {
        let id = ClusterId::parse(ID);
        let with = AuditEvent::parse(&event_json("a")).unwrap();
        let out: serde_json::Value = serde_json::from_str(annotate(&with, &id).json()).unwrap();
        assert_eq!(out["annotations"]["authorization.k8s.io/decision"], "allow");
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "aks-prod-weu");
        assert_eq!(out["annotations"][CLUSTER_ID_ANNOTATION], id.resource_id);

        let text = event_json("b").replace(
            r#","annotations":{"authorization.k8s.io/decision":"allow"}"#,
            "",
        );
        let without = AuditEvent::parse(&text).unwrap();
        let annotated = annotate(&without, &id);
        assert!(
            annotated.json().starts_with(&text[..text.len() - 1]),
            "the rest is untouched"
        );
        let out: serde_json::Value = serde_json::from_str(annotated.json()).unwrap();
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "aks-prod-weu");

        let null = AuditEvent::parse(&event_json("c").replace(
            r#""annotations":{"authorization.k8s.io/decision":"allow"}"#,
            r#""annotations":null"#,
        ))
        .unwrap();
        let out: serde_json::Value = serde_json::from_str(annotate(&null, &id).json()).unwrap();
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "aks-prod-weu");
    }
}

//! Many clusters, one forwarder: a route takes the Events of the clusters it matches (by the
//! record's `resourceId`) to one webhook, with its own format, Policy and credentials, or
//! drops them. The first matching route wins.

use std::fmt;
use std::sync::Arc;

use url::Url;
use wildmatch::WildMatch;

use crate::audit::{Policy, WebhookFormat};
use crate::azure::ClusterId;
use crate::delivery::{ClientOptions, ReceiverProfile};
use crate::redact::redact_url;

/// Which clusters a route takes. Every list that is set must match (globs with `*` and `?`,
/// compared after Unicode case folding, see [`fold`]); a matcher with no lists takes every
/// cluster.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    resource_ids: Vec<WildMatch>,
    subscriptions: Vec<WildMatch>,
    resource_groups: Vec<WildMatch>,
    clusters: Vec<WildMatch>,
    resource_types: Vec<WildMatch>,
}

fn any(patterns: &[WildMatch], value: &str) -> bool {
    patterns.is_empty() || {
        let value = fold(value);
        patterns.iter().any(|p| p.matches(&value))
    }
}

/// The form in which ids and names are compared: upper-cased as Azure Monitor writes
/// `resourceId`, then Unicode full case folding (`CaseFolding.txt`, C + F). Resource-group
/// names may hold non-ASCII letters; ASCII-only lowering would keep `RG-MÜNCHEN` and
/// `rg-münchen` apart, and plain lowering keeps `ẞ` and `ß` apart, which folding after
/// upper-casing does not (`ß` upper-cases to `SS`, and `ẞ` and `SS` both fold to `ss`).
pub fn fold(value: &str) -> String {
    caseless::default_case_fold_str(&value.to_uppercase())
}

impl Matcher {
    /// A matcher from glob lists (`*` and `?`, case-insensitive); an empty list matches all.
    pub fn new(
        resource_ids: &[String],
        subscriptions: &[String],
        resource_groups: &[String],
        clusters: &[String],
    ) -> Self {
        Self {
            resource_ids: globs(resource_ids),
            subscriptions: globs(subscriptions),
            resource_groups: globs(resource_groups),
            clusters: globs(clusters),
            resource_types: Vec::new(),
        }
    }

    /// Also requires the resource type (`microsoft.containerservice/fleets`, globs allowed).
    #[must_use]
    pub fn with_resource_types(mut self, resource_types: &[String]) -> Self {
        self.resource_types = globs(resource_types);
        self
    }

    /// Whether the cluster is taken.
    pub fn matches(&self, id: &ClusterId) -> bool {
        any(&self.resource_ids, &id.resource_id)
            && any(&self.subscriptions, &id.subscription)
            && any(&self.resource_groups, &id.resource_group)
            && any(&self.clusters, &id.name)
            && any(&self.resource_types, &id.resource_type)
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
    /// The receiver whose limits the route keeps to.
    pub receiver: ReceiverProfile,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("policy", &self.policy.is_some())
            .field("client", &self.client)
            .field("receiver", &self.receiver)
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

fn globs(list: &[String]) -> Vec<WildMatch> {
    list.iter()
        .map(|p| WildMatch::new(&fold(p.trim())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azure Monitor upper-cases the whole id; resource groups may hold any letters.
    #[test]
    fn non_ascii_names_match_their_upper_cased_ids() {
        let id = ClusterId::parse(
            "/SUBSCRIPTIONS/1111/RESOURCEGROUPS/RG-MÜNCHEN-STRASSE-ΣΟΦΊΑ/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-ÅRHUS",
        );
        for group in [
            "rg-münchen-straße-σοφία",
            "RG-München-Strasse-ΣΟΦΊΑ",
            "rg-münchen-*",
        ] {
            let m = Matcher::new(&[], &[], &[group.to_string()], &["aks-århus".to_string()]);
            assert!(m.matches(&id), "{group}");
        }
        let m = Matcher::new(&[], &[], &["rg-munchen-*".to_string()], &[]);
        assert!(!m.matches(&id), "ü is not u");
        let m = Matcher::new(
            &["*/resourcegroups/rg-münchen-straße-σοφία/*".to_string()],
            &[],
            &[],
            &[],
        );
        assert!(m.matches(&id));
        assert_eq!(fold("ẞ"), fold("ß"));
        assert_eq!(fold("ı"), fold("I"));
    }
}

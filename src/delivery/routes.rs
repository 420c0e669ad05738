//! Many clusters, one forwarder: a route takes the Events of the clusters it matches (by the
//! record's `resourceId`) to one webhook, with its own format, Policy and credentials, or
//! drops them. The first matching route wins.

use std::fmt;
use std::sync::Arc;

use url::Url;
use wildmatch::WildMatch;

use crate::audit::{Policy, WebhookFormat};
use crate::azure::ClusterId;
use crate::delivery::ClientOptions;
use crate::redact::redact_url;

/// Which clusters a route takes. Every list that is set must match (globs with `*` and `?`,
/// case-insensitive); a matcher with no lists takes every cluster.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    resource_ids: Vec<WildMatch>,
    subscriptions: Vec<WildMatch>,
    resource_groups: Vec<WildMatch>,
    clusters: Vec<WildMatch>,
    resource_types: Vec<WildMatch>,
}

fn any(patterns: &[WildMatch], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(value))
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

fn globs(list: &[String]) -> Vec<WildMatch> {
    list.iter()
        .map(|p| WildMatch::new(&p.trim().to_ascii_lowercase()))
        .collect()
}

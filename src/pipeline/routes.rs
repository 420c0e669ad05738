//! Routes: which audit webhook each Event goes to. A route takes the Events of the clusters it
//! matches (the first matching route wins) to its audit webhook, or drops them. Destinations
//! that only receive a copy (notifiers) are not routes: see [`super::copies`].

use std::sync::Arc;

use super::copies::Copies;
use super::steps::{Chain, Place, StepTally, Verdict};
use super::Settings;
use crate::audit::{AuditEvent, Policy, WebhookFormat};
use crate::azure::ClusterId;
use crate::deadletter::DeadLetter;
use crate::delivery::{Matcher, RouteConfig, Shaping, Webhook};
use crate::redact::redact_url;

/// A route with its webhook client built.
#[derive(Debug)]
pub struct Route {
    /// Name, for logs, the summary and dead letters.
    pub name: String,
    matcher: Matcher,
    /// `None`: Events of this route are dropped and counted.
    webhook: Option<AuditWebhook>,
    /// The route's Policy, else the global one.
    policy: Option<Arc<Policy>>,
}

/// The audit webhook a route delivers to, and how its Events are wrapped.
#[derive(Debug)]
pub struct AuditWebhook {
    /// The HTTP client of the webhook.
    pub webhook: Webhook,
    /// `EventList` or one Event per POST.
    pub format: WebhookFormat,
    /// What its receiver can take: truncation and per-Event checks (`AUDIT_RECEIVER`).
    pub shaping: Shaping,
    /// Most bytes in one POST to it: `AUDIT_BATCH_MAX_BYTES`, lowered by its receiver's
    /// limits ([`Shaping::batch_max_bytes`]).
    pub batch_max_bytes: usize,
}

impl Route {
    /// Builds the route's client from its configuration; `settings` give the global Policy,
    /// the retry timing and the limits its receiver's profile starts from.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn build(config: &RouteConfig, settings: &Settings) -> anyhow::Result<Self> {
        let (policy, retry) = (settings.policy.as_ref(), settings.retry);
        let webhook = match &config.destination {
            None => None,
            Some(d) => {
                if d.client.insecure_skip_verify {
                    tracing::warn!(
                        route = %config.name,
                        webhook = %redact_url(&d.url),
                        "TLS VERIFICATION IS OFF for this webhook: anyone on the path can read and change audit Events. Use a CA bundle instead."
                    );
                }
                let shaping = Shaping::new(d.receiver, d.format, settings.truncate);
                Some(AuditWebhook {
                    webhook: Webhook::new(d.url.clone(), retry, &d.client)?,
                    format: d.format,
                    shaping,
                    batch_max_bytes: shaping.batch_max_bytes(settings.batch_max_bytes),
                })
            }
        };
        let policy = config
            .destination
            .as_ref()
            .map(|d| d.policy.clone().or_else(|| policy.cloned()))
            .unwrap_or_default();
        Ok(Self {
            name: config.name.clone(),
            matcher: config.matcher.clone(),
            webhook,
            policy,
        })
    }

    /// A route that takes every cluster and only applies `policy` (`convert` runs the
    /// Policy step with it; it delivers nothing).
    pub fn policy_only(name: &str, policy: Option<Arc<Policy>>) -> Self {
        Self {
            name: name.into(),
            matcher: Matcher::default(),
            webhook: None,
            policy,
        }
    }

    /// Whether it delivers (else it drops what it takes).
    pub fn delivers(&self) -> bool {
        self.webhook.is_some()
    }

    /// Its audit webhook, when it delivers.
    pub fn webhook(&self) -> Option<&AuditWebhook> {
        self.webhook.as_ref()
    }

    /// The Policy its Events go through.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    /// `name -> webhook (format)`, URL redacted, or `name -> drop`.
    pub fn describe(&self) -> String {
        match &self.webhook {
            Some(t) => format!(
                "{} -> {} ({:?})",
                self.name,
                t.webhook.shown_url(),
                t.format
            ),
            None => format!("{} -> drop", self.name),
        }
    }
}

/// The Events bound for each route after the per-Event steps, in partition order.
#[derive(Debug, Default, Clone)]
pub struct Routed {
    /// Index = route order.
    per_route: Vec<Vec<AuditEvent>>,
}

impl Routed {
    /// Empty lists for `routes` routes.
    pub fn new(routes: usize) -> Self {
        Self {
            per_route: vec![Vec::new(); routes],
        }
    }

    /// The Events of the route at `route` (in route order).
    pub fn events(&self, route: usize) -> &[AuditEvent] {
        self.per_route.get(route).map_or(&[], Vec::as_slice)
    }

    /// Each route's Events, in route order.
    pub fn per_route(&self) -> &[Vec<AuditEvent>] {
        &self.per_route
    }

    /// Each route's Events, in route order, taken.
    pub fn into_per_route(self) -> Vec<Vec<AuditEvent>> {
        self.per_route
    }

    /// Room for `additional` more Events on the route at `route`.
    pub fn reserve(&mut self, route: usize, additional: usize) {
        if let Some(events) = self.per_route.get_mut(route) {
            events.reserve(additional);
        }
    }

    /// Adds an Event for the route at `route`.
    pub fn push(&mut self, route: usize, event: AuditEvent) {
        if let Some(events) = self.per_route.get_mut(route) {
            events.push(event);
        }
    }

    /// Events for all routes together.
    pub fn total(&self) -> usize {
        self.per_route.iter().map(Vec::len).sum()
    }
}

/// The cluster and route of one record source, kept while consecutive Events share it.
struct Resolved {
    source: Option<Arc<str>>,
    cluster: Arc<ClusterId>,
    route: Option<usize>,
}

/// Runs each Event through `chain` at the route its cluster matches, and sorts what the
/// steps keep by route; a copy goes to each copy destination. `events` come in runs (one
/// per event body), taken in order. Dead letters are appended to `dead_letters` in the
/// Events' order.
pub(super) fn route_events(
    routes: &[Route],
    copies: &mut Copies,
    chain: &mut Chain,
    events: Vec<Vec<AuditEvent>>,
    dead_letters: &mut Vec<DeadLetter>,
) -> (Routed, StepTally) {
    let mut routed = Routed::new(routes.len());
    if routes.len() == 1 {
        // The usual single route takes (nearly) every Event: one allocation, no regrowth.
        routed.reserve(0, events.iter().map(Vec::len).sum());
    }
    let mut tally = StepTally::default();
    // Events of one envelope share their source: parse and match it once per run.
    let mut last: Option<Resolved> = None;
    for event in events.into_iter().flatten() {
        let source = event.source();
        let resolved = match last.take() {
            Some(r) if same_source(r.source.as_ref(), source) => r,
            _ => {
                let cluster = Arc::new(ClusterId::parse(source.map_or("", |s| &**s)));
                let route = routes.iter().position(|r| r.matcher.matches(&cluster));
                Resolved {
                    source: source.cloned(),
                    cluster,
                    route,
                }
            }
        };
        let place = Place {
            route: resolved.route.map(|i| &routes[i]),
            cluster: &resolved.cluster,
        };
        match chain.run(event, &place) {
            Verdict::Keep(event) => {
                if let (Some(index), Some(route)) = (resolved.route, place.route) {
                    copies.offer(&event, route);
                    routed.push(index, event);
                }
            }
            Verdict::Drop(reason) => tally.count_drop(reason),
            Verdict::DeadLetter(item) => {
                tally.count_dead_letter(item.kind);
                dead_letters.push(item);
            }
        }
        last = Some(resolved);
    }
    chain.finish(&mut tally);
    if tally.policy_unreadable > 0 {
        tracing::warn!(
            events = tally.policy_unreadable,
            "Dead-lettering Events the audit Policy cannot read (see each dead letter's reason)."
        );
    }
    if tally.unrouted > 0 {
        tracing::warn!(
            events = tally.unrouted,
            "Dead-lettering Events of clusters that no route matches; add a catch-all route to deliver them."
        );
    }
    (routed, tally)
}

/// Whether two Events came from the same record source (the same shared id, or both none).
fn same_source(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

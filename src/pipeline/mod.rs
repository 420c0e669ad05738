//! One invocation end to end: decode → convert → route → batch → deliver → summary. No HTTP
//! server types here: the host edge calls [`Forwarder`] and turns its [`Summary`] into the
//! host's answer.

mod deliver;
mod probe;
mod summary;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{AuditEvent, Policy, WebhookFormat};
use crate::azure::{
    annotate, both_categories_warning, convert_body, drop_category_duplicates, BodyOrigin,
    ClusterId, Conversion, ConvertTally,
};
use crate::deadletter::DeadLetter;
use crate::delivery::learned::Learned;
use crate::delivery::{Matcher, RetrySettings, RouteConfig, Webhook};
use crate::redact::redact_url;

pub use deliver::DeliveryOutcome;
pub use deliver::Isolation;
pub use summary::{DeliveryTally, RoutingTally, Summary};

/// What the pipeline needs to know, built once at start-up from the `AUDIT_*` settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where Events go: the routes from `AUDIT_ROUTES`, or one catch-all route to
    /// `AUDIT_WEBHOOK_URL`. `Debug` shows URLs redacted and tokens hidden.
    pub routes: Vec<RouteConfig>,
    /// The Policy applied to routes that have none of their own.
    pub policy: Option<Arc<Policy>>,
    /// Whether every Event gets its cluster's annotations.
    pub cluster_annotations: bool,
    /// Lower-cased categories whose records carry audit Events.
    pub categories: BTreeSet<String>,
    /// Maximum Events in one POST.
    pub batch_max_events: usize,
    /// Maximum bytes in one POST.
    pub batch_max_bytes: usize,
    /// Total delivery budget of one invocation.
    pub delivery_deadline: Duration,
    /// Batches of one invocation in flight at once.
    pub concurrency: usize,
    /// Retry timing.
    pub retry: RetrySettings,
    /// Most records one Event Hub event may hold; a larger event is dead-lettered.
    pub max_records_per_event: usize,
    /// Host retries (`RetryContext.RetryCount`) after which transient failures are isolated
    /// too (`AUDIT_ISOLATE_AFTER_RETRIES`).
    pub isolate_after_retries: u32,
}

/// One decoded invocation: the Event Hub event bodies and what the host told us about them.
#[derive(Debug, Default)]
pub struct Invocation {
    /// The raw bytes of each Event Hub event, in partition order.
    pub bodies: Vec<Vec<u8>>,
    /// Where the events came from, for logs.
    pub meta: InvocationMeta,
}

/// The parts of `Metadata` the handler uses. Every member is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InvocationMeta {
    /// `PartitionContext.PartitionId`.
    pub partition_id: Option<String>,
    /// `PartitionContext.EventHubName`.
    pub event_hub: Option<String>,
    /// `PartitionContext.ConsumerGroup`.
    pub consumer_group: Option<String>,
    /// `SequenceNumberArray` (many) or `[SequenceNumber]` (one).
    pub sequence_numbers: Vec<i64>,
    /// First and last `EnqueuedTimeUtc[Array]` entries, as the host wrote them.
    pub enqueued_first: Option<String>,
    /// See `enqueued_first`.
    pub enqueued_last: Option<String>,
    /// `RetryContext.RetryCount`, present only when a retry policy is configured.
    pub retry_count: Option<i64>,
    /// `RetryContext.MaxRetryCount`.
    pub max_retry_count: Option<i64>,
}

impl InvocationMeta {
    /// Sequence number of the event at `index`, when the host sent them.
    pub fn sequence_number(&self, index: usize) -> Option<i64> {
        self.sequence_numbers.get(index).copied()
    }
}

/// A route with its client built.
#[derive(Debug)]
struct ActiveRoute {
    name: String,
    matcher: Matcher,
    /// `None`: Events of this route are dropped and counted.
    target: Option<Target>,
}

#[derive(Debug)]
struct Target {
    webhook: Webhook,
    format: WebhookFormat,
    policy: Option<Arc<Policy>>,
}

/// Everything one invocation needs, shared by all invocations.
#[derive(Debug)]
pub struct Forwarder {
    settings: Settings,
    routes: Vec<ActiveRoute>,
    /// Clusters already warned about for streaming both audit categories (once each).
    warned_both_categories: Mutex<BTreeSet<Arc<str>>>,
    /// What failed tries of an invocation learned, for the host's next try of it.
    learned: Learned,
}

/// Events converted from one invocation, filtered and sorted by route, ready for delivery.
#[derive(Debug)]
pub struct Converted {
    /// The Events for each route, in partition order (index = route order).
    pub routed: Vec<Vec<AuditEvent>>,
    /// What conversion saw.
    pub tally: ConvertTally,
    /// What routing and the Policy did.
    pub routing: RoutingTally,
    /// Malformed input and unrouted Events, set aside.
    pub dead_letters: Vec<DeadLetter>,
    /// Where they came from.
    pub meta: InvocationMeta,
}

impl Forwarder {
    /// Builds the shared state: one HTTP client per route.
    ///
    /// # Errors
    /// When an HTTP client cannot be built.
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let mut routes = Vec::new();
        for route in &settings.routes {
            let target = match &route.destination {
                None => None,
                Some(d) => Some(Target {
                    webhook: {
                        if d.client.insecure_skip_verify {
                            tracing::warn!(
                                route = %route.name,
                                webhook = %redact_url(&d.url),
                                "TLS VERIFICATION IS OFF for this webhook: anyone on the path can read and change audit Events. Use a CA bundle instead."
                            );
                        }
                        Webhook::new(d.url.clone(), settings.retry, &d.client)?
                    },
                    format: d.format,
                    policy: d.policy.clone().or_else(|| settings.policy.clone()),
                }),
            };
            routes.push(ActiveRoute {
                name: route.name.clone(),
                matcher: route.matcher.clone(),
                target,
            });
        }
        Ok(Arc::new(Self {
            settings,
            routes,
            warned_both_categories: Mutex::default(),
            learned: Learned::default(),
        }))
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `name -> webhook` for each delivering route, URLs redacted.
    pub fn describe_routes(&self) -> String {
        let parts: Vec<String> = self
            .routes
            .iter()
            .map(|r| match &r.target {
                Some(t) => format!("{} -> {} ({:?})", r.name, t.webhook.shown_url(), t.format),
                None => format!("{} -> drop", r.name),
            })
            .collect();
        parts.join("; ")
    }

    /// Converts every event body of an invocation, applies routes, the Policy and cluster
    /// annotations. CPU-bound: run it off the async workers. An event over
    /// `AUDIT_MAX_RECORDS_PER_EVENT` records is dead-lettered, never the whole invocation.
    pub fn convert(&self, invocation: Invocation) -> Converted {
        let Invocation { bodies, meta } = invocation;
        let mut conversion = Conversion {
            max_records_per_event: Some(self.settings.max_records_per_event),
            ..Conversion::default()
        };
        for (index, body) in bodies.into_iter().enumerate() {
            let origin = BodyOrigin {
                index,
                sequence_number: meta.sequence_number(index),
            };
            convert_body(&body, origin, &self.settings.categories, &mut conversion);
        }
        conversion.log_suppressed();
        let Conversion {
            mut events,
            mut tally,
            mut dead_letters,
            categories_seen,
            ..
        } = conversion;
        tally.duplicates = drop_category_duplicates(&mut events, &categories_seen);
        if let Ok(mut warned) = self.warned_both_categories.lock() {
            for source in categories_seen.both() {
                if warned.insert(source.clone()) {
                    both_categories_warning(source);
                }
            }
        }

        let (routed, routing) = self.route(events, &mut dead_letters);
        Converted {
            routed,
            tally,
            routing,
            dead_letters,
            meta,
        }
    }

    /// Sorts Events by route, applying each route's Policy and the cluster annotations.
    /// Events no route takes become dead letters.
    pub fn route(
        &self,
        events: Vec<AuditEvent>,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> (Vec<Vec<AuditEvent>>, RoutingTally) {
        let mut routed: Vec<Vec<AuditEvent>> = self.routes.iter().map(|_| Vec::new()).collect();
        let mut routing = RoutingTally::default();
        // Events of one envelope share their source: parse and match it once per run.
        let mut last: Option<Resolved> = None;
        for event in events {
            let source = event.source();
            let resolved = match last.take() {
                Some(r) if same_source(r.source.as_ref(), source) => r,
                _ => {
                    let cluster = Arc::new(ClusterId::parse(source.map_or("", |s| &**s)));
                    let route = self.routes.iter().position(|r| r.matcher.matches(&cluster));
                    Resolved {
                        source: source.cloned(),
                        cluster,
                        route,
                    }
                }
            };
            let (cluster, index) = (resolved.cluster.clone(), resolved.route);
            last = Some(resolved);
            let Some(index) = index else {
                routing.unrouted += 1;
                dead_letters.push(DeadLetter::for_event(
                    &event,
                    "unrouted",
                    "no route takes this cluster",
                ));
                continue;
            };
            let Some(target) = &self.routes[index].target else {
                routing.route_dropped += 1;
                continue;
            };
            let event = match &target.policy {
                Some(policy) => match policy.apply(&event) {
                    Ok(Some(e)) => e,
                    Ok(None) => {
                        routing.policy_dropped += 1;
                        continue;
                    }
                    // The Policy cannot decide: forwarding could pass what it would strip,
                    // dropping would lose it. Keep it aside for `resend`.
                    Err(unreadable) => {
                        routing.policy_unreadable += 1;
                        dead_letters.push(DeadLetter::for_event(
                            &event,
                            "policy-unreadable",
                            unreadable.to_string(),
                        ));
                        continue;
                    }
                },
                None => event,
            };
            let event = if self.settings.cluster_annotations && !cluster.resource_id.is_empty() {
                annotate(&event, &cluster)
            } else {
                event
            };
            routed[index].push(event);
        }
        if routing.policy_unreadable > 0 {
            tracing::warn!(
                events = routing.policy_unreadable,
                "Dead-lettering Events the audit Policy cannot read (see each dead letter's reason)."
            );
        }
        if routing.unrouted > 0 {
            tracing::warn!(
                events = routing.unrouted,
                "Dead-lettering Events of clusters that no route matches; add a catch-all route to deliver them."
            );
        }
        (routed, routing)
    }
}

/// The cluster and route of one record source, kept while consecutive Events share it.
struct Resolved {
    source: Option<Arc<str>>,
    cluster: Arc<ClusterId>,
    route: Option<usize>,
}

/// Whether two Events came from the same record source (the same shared id, or both none).
fn same_source(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

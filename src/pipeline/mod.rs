//! One invocation end to end: decode → convert → route → batch → deliver → summary. No HTTP
//! server types here: the host edge calls [`Forwarder`] and turns its [`Summary`] into the
//! host's answer.

mod bodies;
mod deliver;
mod probe;
mod summary;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{AuditEvent, Policy, WebhookFormat};
use crate::azure::{
    both_categories_warning, convert_body, drop_category_duplicates, BodyOrigin,
    ClusterAnnotations, ClusterId, Conversion, ConvertTally,
};
use crate::deadletter::DeadLetter;
use crate::delivery::learned::Learned;
use crate::delivery::{Matcher, RetrySettings, RouteConfig, Webhook};
use crate::redact::redact_url;

pub use bodies::Bodies;
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
    pub bodies: Bodies,
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
        let Invocation { mut bodies, meta } = invocation;
        let mut conversion = Conversion {
            max_records_per_event: Some(self.settings.max_records_per_event),
            ..Conversion::default()
        };
        // From the last body to the first, each released once converted: the Events take the
        // place of the bodies in memory. Per-body results are put back in partition order.
        let mut parts = Vec::with_capacity(bodies.len());
        while let Some(part) = bodies.pop_with(|index, body| {
            let origin = BodyOrigin {
                index,
                sequence_number: meta.sequence_number(index),
            };
            convert_body(body, origin, &self.settings.categories, &mut conversion);
            (
                std::mem::take(&mut conversion.events),
                std::mem::take(&mut conversion.dead_letters),
            )
        }) {
            parts.push(part);
        }
        let mut events = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
        let mut dead_letters = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
        for (part_events, part_dead) in parts.into_iter().rev() {
            events.extend(part_events);
            dead_letters.extend(part_dead);
        }
        conversion.log_suppressed();
        let Conversion {
            mut tally,
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
                    let cluster = ClusterId::parse(source.map_or("", |s| &**s));
                    let route = self.routes.iter().position(|r| r.matcher.matches(&cluster));
                    let annotations = (self.settings.cluster_annotations
                        && !cluster.resource_id.is_empty())
                    .then(|| Arc::new(ClusterAnnotations::new(&cluster)));
                    Resolved {
                        source: source.cloned(),
                        annotations,
                        route,
                    }
                }
            };
            let (annotations, index) = (resolved.annotations.clone(), resolved.route);
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
            let event = match &annotations {
                Some(annotations) => annotations.apply(&event),
                None => event,
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
    /// The cluster's annotations, when Events get them.
    annotations: Option<Arc<ClusterAnnotations>>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;

    fn forwarder(max_records: &str) -> Arc<Forwarder> {
        let settings = crate::config::Config::from_lookup(|k| match k {
            "AUDIT_WEBHOOK_URL" => Some("http://127.0.0.1:9/k8s_audit".into()),
            "AUDIT_CLUSTER_ANNOTATIONS" => Some("off".into()),
            "AUDIT_MAX_RECORDS_PER_EVENT" => Some(max_records.into()),
            _ => None,
        })
        .unwrap()
        .forwarder;
        Forwarder::new(settings).unwrap()
    }

    fn invocation(records: &[usize]) -> Invocation {
        let bodies = records
            .iter()
            .enumerate()
            .map(|(b, n)| {
                let records: Vec<_> = (0..*n)
                    .map(|r| {
                        serde_json::json!({"category": "kube-audit",
                        "properties": {"log": event_json(&format!("b{b}-r{r}"))}})
                    })
                    .collect();
                serde_json::json!({ "records": records })
                    .to_string()
                    .into_bytes()
            })
            .collect();
        Invocation {
            bodies: Bodies::from_vecs(bodies),
            meta: InvocationMeta::default(),
        }
    }

    /// Bodies are converted from the last to the first (each released once converted), yet
    /// Events and dead letters come out in partition order.
    #[test]
    fn convert_keeps_partition_order() {
        let converted = forwarder("10").convert(invocation(&[2, 1, 3]));
        let ids: Vec<String> = converted.routed[0]
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(e.json()).unwrap()["auditID"].to_string()
            })
            .collect();
        assert_eq!(
            ids,
            ["b0-r0", "b0-r1", "b1-r0", "b2-r0", "b2-r1", "b2-r2"].map(|s| format!("\"{s}\""))
        );
        assert_eq!(converted.tally.converted, 6);
        // Events over the records limit are dead-lettered, in the order of the events.
        let converted = forwarder("2").convert(invocation(&[1, 3, 1, 4]));
        assert_eq!(converted.tally.converted, 2);
        let reasons: Vec<&str> = converted
            .dead_letters
            .iter()
            .map(|d| d.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons[0].starts_with("event 1 holds 3 records"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("event 3 holds 4 records"),
            "{reasons:?}"
        );
    }
}

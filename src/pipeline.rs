//! One invocation end to end: decode → convert → batch → deliver → summary. No HTTP server
//! types here; `app` calls this and turns the summary into the host's answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::audit::{encode, AuditEvent};
use crate::batch::{plan, BatchLimits};
use crate::config::{Config, WebhookFormat};
use crate::diagnostics::{convert_body, BodyOrigin, ConvertTally};
use crate::host::{Invocation, InvocationMeta};
use crate::policy::Policy;
use crate::retry::Delivery;
use crate::routes::{annotate, Matcher};
use crate::webhook::Webhook;

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
    config: Config,
    routes: Vec<ActiveRoute>,
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
    /// Where they came from.
    pub meta: InvocationMeta,
}

/// Events that conversion produced but that are not delivered, by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutingTally {
    /// Dropped by the audit Policy (level `None` or an omitted stage).
    pub policy_dropped: u64,
    /// Taken by a route that drops.
    pub route_dropped: u64,
    /// Matched by no route.
    pub unrouted: u64,
}

/// Delivery counts of one invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryTally {
    /// Batches the webhook accepted.
    pub delivered_batches: u64,
    /// Events in them.
    pub delivered_events: u64,
    /// Batches the webhook refused for good.
    pub rejected_batches: u64,
    /// Events in them.
    pub rejected_events: u64,
    /// Batches still failing at the deadline.
    pub failed_batches: u64,
    /// Events in them.
    pub failed_events: u64,
    /// POSTs made, retries included.
    pub attempts: u64,
    /// The last transient failure, when there was one.
    pub last_failure: Option<String>,
}

/// The one-line account of an invocation, logged and returned to the host.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `X-Azure-Functions-InvocationId`.
    pub invocation_id: Option<String>,
    /// Where the events came from.
    pub meta: InvocationMeta,
    /// Conversion counts.
    pub convert: ConvertTally,
    /// What routing and the Policy did.
    pub routing: RoutingTally,
    /// Delivery counts, all routes together.
    pub delivery: DeliveryTally,
    /// Delivery counts per route, when there is more than one route.
    pub per_route: Vec<(String, DeliveryTally)>,
    /// Wall time of the invocation.
    pub duration: Duration,
}

impl Summary {
    /// True when a batch is still undelivered and the invocation must be retried.
    pub fn needs_retry(&self) -> bool {
        self.delivery.failed_batches > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.convert;
        let d = &self.delivery;
        let m = &self.meta;
        let outcome = if self.needs_retry() {
            "failed, will be retried"
        } else if d.rejected_batches > 0 {
            "done with rejected batches"
        } else {
            "delivered"
        };
        write!(f, "Invocation {outcome}:")?;
        if let Some(id) = &self.invocation_id {
            write!(f, " invocation={id}")?;
        }
        if let Some(p) = &m.partition_id {
            write!(f, " partition={p}")?;
        }
        if let (Some(first), Some(last)) = (m.sequence_numbers.first(), m.sequence_numbers.last()) {
            write!(f, " seq={first}..{last}")?;
        }
        if let Some(t) = &m.enqueued_first {
            write!(f, " enqueued={t}")?;
        }
        if let Some(r) = m.retry_count {
            write!(f, " retry={r}")?;
        }
        write!(
            f,
            " events={} records={} converted={} skipped={}",
            c.bodies,
            c.records,
            c.converted,
            c.skipped_total()
        )?;
        if !c.skipped.is_empty() {
            let parts: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            write!(f, " ({})", parts.join(","))?;
        }
        write!(
            f,
            " malformed={} (events={} records={}) policy_dropped={}",
            c.malformed_bodies + c.malformed_records,
            c.malformed_bodies,
            c.malformed_records,
            self.routing.policy_dropped,
        )?;
        if self.routing.unrouted > 0 || self.routing.route_dropped > 0 {
            write!(
                f,
                " unrouted={} route_dropped={}",
                self.routing.unrouted, self.routing.route_dropped
            )?;
        }
        write!(
            f,
            " delivered={} batches={} rejected={} failed={} attempts={} duration_ms={}",
            d.delivered_events,
            d.delivered_batches,
            d.rejected_events,
            d.failed_events,
            d.attempts,
            self.duration.as_millis()
        )?;
        if self.per_route.len() > 1 {
            let parts: Vec<String> = self
                .per_route
                .iter()
                .map(|(name, t)| {
                    format!(
                        "{name}:delivered={},rejected={},failed={}",
                        t.delivered_events, t.rejected_events, t.failed_events
                    )
                })
                .collect();
            write!(f, " routes=[{}]", parts.join(" "))?;
        }
        if let Some(reason) = &d.last_failure {
            write!(f, " last_failure={reason:?}")?;
        }
        Ok(())
    }
}

impl DeliveryTally {
    fn add(&mut self, other: &Self) {
        self.delivered_batches += other.delivered_batches;
        self.delivered_events += other.delivered_events;
        self.rejected_batches += other.rejected_batches;
        self.rejected_events += other.rejected_events;
        self.failed_batches += other.failed_batches;
        self.failed_events += other.failed_events;
        self.attempts += other.attempts;
        if other.last_failure.is_some() {
            self.last_failure.clone_from(&other.last_failure);
        }
    }
}

impl Forwarder {
    /// Builds the shared state: one HTTP client per route.
    ///
    /// # Errors
    /// When an HTTP client cannot be built.
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let mut routes = Vec::new();
        for route in &config.routes {
            let target = match &route.destination {
                None => None,
                Some(d) => Some(Target {
                    webhook: Webhook::new(d.url.clone(), config.retry, d.bearer.clone())?,
                    format: d.format,
                    policy: d.policy.clone().or_else(|| config.policy.clone()),
                }),
            };
            routes.push(ActiveRoute {
                name: route.name.clone(),
                matcher: route.matcher.clone(),
                target,
            });
        }
        Ok(Arc::new(Self { config, routes }))
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
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
    /// annotations. CPU-bound: run it off the async workers.
    pub fn convert(&self, invocation: Invocation) -> Converted {
        let Invocation { bodies, meta } = invocation;
        let mut events = Vec::new();
        let mut tally = ConvertTally::default();
        for (index, body) in bodies.into_iter().enumerate() {
            let origin = BodyOrigin {
                index,
                sequence_number: meta.sequence_number(index),
            };
            convert_body(
                &body,
                origin,
                &self.config.categories,
                &mut events,
                &mut tally,
            );
        }

        let mut routed: Vec<Vec<AuditEvent>> = self.routes.iter().map(|_| Vec::new()).collect();
        let mut routing = RoutingTally::default();
        let mut last: Option<(Arc<crate::routes::ClusterId>, Option<usize>)> = None;
        let unknown = Arc::new(crate::routes::ClusterId::default());
        for event in events {
            let cluster = event.cluster().cloned().unwrap_or_else(|| unknown.clone());
            let index = match &last {
                Some((c, i)) if Arc::ptr_eq(c, &cluster) => *i,
                _ => {
                    let i = self.routes.iter().position(|r| r.matcher.matches(&cluster));
                    last = Some((cluster.clone(), i));
                    i
                }
            };
            let Some(index) = index else {
                routing.unrouted += 1;
                continue;
            };
            let Some(target) = &self.routes[index].target else {
                routing.route_dropped += 1;
                continue;
            };
            let event = match &target.policy {
                Some(policy) => match policy.apply(&event) {
                    Some(e) => e,
                    None => {
                        routing.policy_dropped += 1;
                        continue;
                    }
                },
                None => event,
            };
            let event = if self.config.cluster_annotations && !cluster.resource_id.is_empty() {
                annotate(&event, &cluster)
            } else {
                event
            };
            routed[index].push(event);
        }
        if routing.unrouted > 0 {
            tracing::warn!(
                events = routing.unrouted,
                "Dropping Events of clusters that no route matches; add a catch-all route to keep them."
            );
        }
        Converted {
            routed,
            tally,
            routing,
            meta,
        }
    }

    /// Delivers each route's Events, routes in parallel. Returns only once every batch has a
    /// final result: the total, and the tally of each route.
    pub async fn deliver(
        &self,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> (DeliveryTally, Vec<(String, DeliveryTally)>) {
        let work = self
            .routes
            .iter()
            .zip(routed)
            .filter_map(|(route, events)| {
                let target = route.target.as_ref()?;
                Some(async move {
                    let tally = self.deliver_route(target, events, deadline).await;
                    (route.name.clone(), tally)
                })
            });
        let per_route: Vec<(String, DeliveryTally)> = futures::future::join_all(work).await;
        let mut total = DeliveryTally::default();
        for (_, tally) in &per_route {
            total.add(tally);
        }
        (total, per_route)
    }

    /// Delivers `events` in bounded batches, at most `concurrency` at once, each retried until
    /// `deadline`.
    async fn deliver_route(
        &self,
        target: &Target,
        events: &[AuditEvent],
        deadline: Instant,
    ) -> DeliveryTally {
        let limits = BatchLimits {
            format: target.format,
            max_events: self.config.batch_max_events,
            max_bytes: self.config.batch_max_bytes,
        };
        let format = target.format;
        let results: Vec<(usize, Delivery)> = stream::iter(plan(events, limits))
            .map(|range| async move {
                let batch = &events[range];
                let body = encode(format, batch);
                (batch.len(), target.webhook.deliver(body, deadline).await)
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;

        let mut tally = DeliveryTally::default();
        for (count, delivery) in results {
            let count = count as u64;
            match delivery {
                Delivery::Delivered { attempts } => {
                    tally.delivered_batches += 1;
                    tally.delivered_events += count;
                    tally.attempts += u64::from(attempts);
                }
                Delivery::Rejected { reason, attempts } => {
                    tally.rejected_batches += 1;
                    tally.rejected_events += count;
                    tally.attempts += u64::from(attempts);
                    tracing::error!(
                        events = count,
                        %reason,
                        webhook = %target.webhook.shown_url(),
                        "The webhook refused a batch for good; its events are not retried."
                    );
                }
                Delivery::Failed { reason, attempts } => {
                    tally.failed_batches += 1;
                    tally.failed_events += count;
                    tally.attempts += u64::from(attempts);
                    tracing::error!(
                        events = count,
                        %reason,
                        webhook = %target.webhook.shown_url(),
                        "A batch is still undelivered at the deadline; the invocation will fail so the host retries it."
                    );
                    tally.last_failure = Some(reason.into_owned());
                }
            }
        }
        tally
    }
}

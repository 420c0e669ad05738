//! One invocation end to end: decode → convert → batch → deliver → summary. No HTTP server
//! types here; `app` calls this and turns the summary into the host's answer.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::audit::{encode, encoded_len, AuditEvent};
use crate::batch::{plan, BatchLimits};
use crate::config::{Config, WebhookFormat};
use crate::deadletter::DeadLetter;
use crate::diagnostics::{convert_body, BodyOrigin, Conversion, ConvertTally, TooManyRecords};
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
    /// Malformed input and unrouted Events, set aside.
    pub dead_letters: Vec<DeadLetter>,
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
    /// Items set aside as dead letters (malformed, unrouted, poison).
    pub dead_lettered: u64,
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
            " delivered={} batches={} rejected={} failed={} dead_lettered={} attempts={} duration_ms={}",
            d.delivered_events,
            d.delivered_batches,
            d.rejected_events,
            d.failed_events,
            self.dead_lettered,
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

/// Splits `range` in two and pushes both so that the first half is sent first.
fn push_halves(stack: &mut Vec<Range<usize>>, range: Range<usize>) {
    let mid = range.start + range.len() / 2;
    stack.push(mid..range.end);
    stack.push(range.start..mid);
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
                    webhook: {
                        if d.client.insecure_skip_verify {
                            tracing::warn!(
                                route = %route.name,
                                webhook = %crate::redact::redact_url(&d.url),
                                "TLS VERIFICATION IS OFF for this webhook: anyone on the path can read and change audit Events. Use a CA bundle instead."
                            );
                        }
                        Webhook::new(d.url.clone(), config.retry, &d.client)?
                    },
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
    ///
    /// # Errors
    /// When an event holds more records than `AUDIT_MAX_RECORDS_PER_EVENT`.
    pub fn convert(&self, invocation: Invocation) -> Result<Converted, TooManyRecords> {
        let Invocation { bodies, meta } = invocation;
        let mut conversion = Conversion {
            max_records_per_event: Some(self.config.max_records_per_event),
            ..Conversion::default()
        };
        for (index, body) in bodies.into_iter().enumerate() {
            let origin = BodyOrigin {
                index,
                sequence_number: meta.sequence_number(index),
            };
            convert_body(&body, origin, &self.config.categories, &mut conversion);
            if let Some(error) = conversion.over_limit {
                return Err(error);
            }
        }
        let Conversion {
            events,
            tally,
            mut dead_letters,
            ..
        } = conversion;

        let (routed, routing) = self.route(events, &mut dead_letters);
        Ok(Converted {
            routed,
            tally,
            routing,
            dead_letters,
            meta,
        })
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
                "Dead-lettering Events of clusters that no route matches; add a catch-all route to deliver them."
            );
        }
        (routed, routing)
    }

    /// Delivers each route's Events, routes in parallel. Returns only once every batch has a
    /// final result: the total, the tally of each route, and the poison Events set aside.
    pub async fn deliver(
        &self,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> (DeliveryTally, Vec<(String, DeliveryTally)>, Vec<DeadLetter>) {
        let work = self
            .routes
            .iter()
            .zip(routed)
            .filter_map(|(route, events)| {
                let target = route.target.as_ref()?;
                Some(async move {
                    let (tally, poison) = self.deliver_route(route, target, events, deadline).await;
                    (route.name.clone(), tally, poison)
                })
            });
        let results = futures::future::join_all(work).await;
        let mut total = DeliveryTally::default();
        let mut per_route = Vec::new();
        let mut dead_letters = Vec::new();
        for (name, tally, poison) in results {
            total.add(&tally);
            per_route.push((name, tally));
            dead_letters.extend(poison);
        }
        (total, per_route, dead_letters)
    }

    /// Delivers `events` in bounded batches, at most `concurrency` at once, each retried until
    /// `deadline`. A batch refused for good is split in halves until the refused Events stand
    /// alone; those are set aside as poison and the rest delivered. A 413 also lowers the byte
    /// bound for every batch of this route not yet sent.
    async fn deliver_route(
        &self,
        route: &ActiveRoute,
        target: &Target,
        events: &[AuditEvent],
        deadline: Instant,
    ) -> (DeliveryTally, Vec<DeadLetter>) {
        let limits = BatchLimits {
            format: target.format,
            max_events: self.config.batch_max_events,
            max_bytes: self.config.batch_max_bytes,
        };
        let max_bytes = AtomicUsize::new(self.config.batch_max_bytes);
        let max_bytes = &max_bytes;
        let results: Vec<(DeliveryTally, Vec<DeadLetter>)> = stream::iter(plan(events, limits))
            .map(|range| async move {
                self.deliver_batch(route, target, events, range, max_bytes, deadline)
                    .await
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let mut tally = DeliveryTally::default();
        let mut poison = Vec::new();
        for (t, p) in results {
            tally.add(&t);
            poison.extend(p);
        }
        (tally, poison)
    }

    async fn deliver_batch(
        &self,
        route: &ActiveRoute,
        target: &Target,
        events: &[AuditEvent],
        range: Range<usize>,
        max_bytes: &AtomicUsize,
        deadline: Instant,
    ) -> (DeliveryTally, Vec<DeadLetter>) {
        let mut tally = DeliveryTally::default();
        let mut poison = Vec::new();
        // Depth-first, in order: the stack holds what is still to send, last range on top.
        let mut stack = vec![range];
        while let Some(range) = stack.pop() {
            let batch = &events[range.clone()];
            let bound = max_bytes.load(Ordering::Relaxed);
            let size = encoded_len(
                target.format,
                batch.len(),
                batch.iter().map(AuditEvent::len).sum(),
            );
            if batch.len() > 1 && size > bound {
                push_halves(&mut stack, range);
                continue;
            }
            let body = encode(target.format, batch);
            let count = batch.len() as u64;
            match target.webhook.deliver(body, deadline).await {
                Delivery::Delivered { attempts } => {
                    tally.delivered_batches += 1;
                    tally.delivered_events += count;
                    tally.attempts += u64::from(attempts);
                }
                Delivery::Rejected {
                    reason,
                    status,
                    attempts,
                } => {
                    tally.attempts += u64::from(attempts);
                    if status == Some(413) && size > 1 {
                        // The receiver's limit is below ours: remember it for this route.
                        max_bytes.fetch_min((size / 2).max(1), Ordering::Relaxed);
                    }
                    if batch.len() > 1 {
                        tracing::warn!(
                            events = count,
                            %reason,
                            route = %route.name,
                            "The webhook refused a batch; splitting it to isolate the refused Events."
                        );
                        push_halves(&mut stack, range);
                        continue;
                    }
                    tally.rejected_batches += 1;
                    tally.rejected_events += 1;
                    tracing::error!(
                        %reason,
                        route = %route.name,
                        webhook = %target.webhook.shown_url(),
                        sequence_number = batch[0].sequence_number(),
                        "The webhook refused an Event for good; it is dead-lettered."
                    );
                    let mut item = DeadLetter::for_event(&batch[0], "poison", reason);
                    item.status = status;
                    item.route = Some(route.name.clone());
                    poison.push(item);
                }
                Delivery::Failed { reason, attempts } => {
                    tally.failed_batches += 1;
                    tally.failed_events += count;
                    tally.attempts += u64::from(attempts);
                    tracing::error!(
                        events = count,
                        %reason,
                        route = %route.name,
                        webhook = %target.webhook.shown_url(),
                        "A batch is still undelivered at the deadline; the invocation will fail so the host retries it."
                    );
                    tally.last_failure = Some(reason.into_owned());
                }
            }
        }
        (tally, poison)
    }
}

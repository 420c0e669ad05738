//! Delivery of one invocation's routed Events: each route's Events in bounded batches, routes
//! in parallel, every batch with a final result before this returns. One entry point,
//! [`Forwarder::deliver`], for the handler and the tools alike; one route's delivery is the
//! state machine in [`super::route_delivery`], isolating what a receiver refuses
//! ([`super::isolation`]).

use std::ops::Range;

use tokio::time::Instant;

use super::isolation::Isolation;
use super::route_delivery::RouteDelivery;
use super::routes::{AuditWebhook, Route, Routed};
use super::{DeliveryTally, Forwarder, InvocationMeta};
use crate::audit::AuditEvent;
use crate::deadletter::DeadLetter;
use crate::delivery::learned::{InvocationKey, Learned, RouteLearned};
use crate::delivery::{plan, BatchLimits};

/// One route's delivery counts, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTally {
    /// The route's name.
    pub route: String,
    /// Its counts.
    pub tally: DeliveryTally,
}

/// Everything one delivery did, Event by Event where it matters.
#[derive(Debug, Default)]
pub struct DeliveryOutcome {
    /// Counts, all routes together.
    pub total: DeliveryTally,
    /// Counts per delivering route.
    pub per_route: Vec<RouteTally>,
    /// Events refused for good (or failing alone while others pass), as dead letters.
    pub poison: Vec<DeadLetter>,
    /// For each route (same index as the routed input), the indices of the Events still
    /// undelivered at the end, ascending: what a tool that must not send twice keeps.
    pub unsent: Vec<Vec<usize>>,
}

/// What one route's delivery did.
#[derive(Debug, Default)]
pub(super) struct RouteOutcome {
    /// Its counts.
    pub(super) tally: DeliveryTally,
    /// Its poison Events as dead letters, in the Events' order.
    pub(super) poison: Vec<DeadLetter>,
    /// Indices of the Events still undelivered, ascending.
    pub(super) unsent: Vec<usize>,
}

/// The batch limits and concurrency of one route's delivery.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Maximum Events in one POST.
    pub(super) max_events: usize,
    /// Maximum bytes in one POST (lowered by a 413).
    pub(super) max_bytes: usize,
    /// POSTs in flight at once.
    pub(super) concurrency: usize,
}

/// Where a route's delivery stands, and what it needs.
pub(super) struct Start<'a> {
    pub(super) route: &'a Route,
    /// The route's place in the routes list: what identifies it in `memory`.
    pub(super) route_index: usize,
    /// The host's last try of a finite retry policy: what is undelivered at the end is
    /// dead-lettered, since the host checkpoints past it.
    pub(super) last_try: bool,
    pub(super) target: &'a AuditWebhook,
    pub(super) events: &'a [AuditEvent],
    pub(super) deadline: Instant,
    pub(super) isolation: Isolation,
    pub(super) memory: &'a Learned,
    pub(super) key: Option<&'a InvocationKey>,
    pub(super) limits: Limits,
}

impl Forwarder {
    /// Delivers each route's Events, routes in parallel. Returns only once every batch has a
    /// final result. `meta` says which try of which invocation this is (what earlier tries
    /// learned, whether to isolate transient failures); tools that are not the host pass
    /// [`InvocationMeta::standalone`].
    pub async fn deliver(
        &self,
        meta: &InvocationMeta,
        routed: &Routed,
        deadline: Instant,
    ) -> DeliveryOutcome {
        let key = InvocationKey::new(meta.partition_id.as_deref(), &meta.sequence_numbers);
        let isolation = self.isolation(meta);
        // The last try of a finite retry policy: the host checkpoints past a failure.
        let last_try = meta
            .retry_count
            .zip(meta.max_retry_count)
            .is_some_and(|(count, max)| max >= 0 && count >= max);
        let limits = Limits {
            max_events: self.settings.batch_max_events,
            max_bytes: self.settings.batch_max_bytes,
            concurrency: self.settings.concurrency,
        };
        let work = self.routes.iter().enumerate().filter_map(|(index, route)| {
            let target = route.webhook()?;
            let limits = Limits {
                max_bytes: target.batch_max_bytes,
                ..limits
            };
            let start = Start {
                route,
                route_index: index,
                last_try,
                target,
                events: routed.events(index),
                deadline,
                isolation,
                memory: &self.learned,
                key: key.as_ref(),
                limits,
            };
            Some(async move { (index, RouteDelivery::new(start).run().await) })
        });
        let results = futures::future::join_all(work).await;
        let mut outcome = DeliveryOutcome {
            unsent: routed.per_route().iter().map(|_| Vec::new()).collect(),
            ..DeliveryOutcome::default()
        };
        for (index, route) in results {
            outcome.total.add(&route.tally);
            outcome.per_route.push(RouteTally {
                route: self.routes[index].name.clone(),
                tally: route.tally,
            });
            outcome.poison.extend(route.poison);
            if let Some(unsent) = outcome.unsent.get_mut(index) {
                *unsent = route.unsent;
            }
        }
        if let Some(key) = &key {
            if outcome.total.failed_batches == 0 {
                self.learned.forget(key);
            }
        }
        outcome
    }
}

/// The batches of the Events not yet known (delivered or poison in an earlier try, or set
/// apart as failing right after the receiver answered), each
/// bounded by count and bytes, the first to send last.
pub(super) fn plan_queue(
    events: &[AuditEvent],
    learned: &RouteLearned,
    target: &AuditWebhook,
    limits: Limits,
) -> Vec<Range<usize>> {
    let batch_limits = BatchLimits {
        format: target.format,
        max_events: limits.max_events,
        max_bytes: limits.max_bytes,
    };
    // A batch that failed right after the receiver answered is sent last, apart.
    let apart = |i: usize| {
        learned
            .failing_after_answer
            .is_some_and(|(a, b)| (a..b).contains(&i))
    };
    let known = |i: usize| learned.knows(i) || apart(i);
    let mut queue: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    while start < events.len() {
        if known(start) {
            start += 1;
            continue;
        }
        let end = (start..events.len())
            .find(|&i| known(i))
            .unwrap_or(events.len());
        queue.extend(
            plan(&events[start..end], batch_limits)
                .into_iter()
                .map(|r| r.start + start..r.end + start),
        );
        start = end;
    }
    queue.reverse();
    queue
}

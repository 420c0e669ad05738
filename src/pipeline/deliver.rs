//! Delivery of one invocation's routed Events: each route's Events in bounded batches, routes
//! in parallel, every batch with a final result before this returns. One entry point,
//! [`Forwarder::deliver`], for the handler and the tools alike; one route's delivery is the
//! state machine in [`super::route_delivery`], isolating what a receiver refuses
//! ([`super::isolation`]).

use tokio::time::Instant;

use super::route_delivery::{Limits, RouteDelivery, Start};
use super::routes::Routed;
use super::{DeliveryTally, Forwarder, InvocationMeta};
use crate::deadletter::DeadLetter;
use crate::delivery::learned::InvocationKey;

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
        let limits = Limits {
            max_events: self.settings.batch_max_events,
            max_bytes: self.settings.batch_max_bytes,
            concurrency: self.settings.concurrency,
        };
        let work = self.routes.iter().enumerate().filter_map(|(index, route)| {
            let target = route.webhook()?;
            let start = Start {
                route,
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

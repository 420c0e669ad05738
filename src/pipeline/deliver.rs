//! Delivery of one invocation's routed Events: batches per route, sent concurrently, each
//! retried until the deadline; a batch refused for good is split until the refused Events
//! stand alone and are dead-lettered.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use super::{ActiveRoute, DeliveryTally, Forwarder, Target};

/// Everything one delivery did, Event by Event where it matters.
#[derive(Debug, Default)]
pub struct DeliveryOutcome {
    /// Counts, all routes together.
    pub total: DeliveryTally,
    /// Counts per delivering route, by name.
    pub per_route: Vec<(String, DeliveryTally)>,
    /// Events refused for good, as dead letters.
    pub poison: Vec<DeadLetter>,
    /// For each route (same index as the routed input), the indices of the Events still
    /// undelivered at the deadline, ascending: what a tool that must not send twice keeps.
    pub unsent: Vec<Vec<usize>>,
}
use crate::audit::{encode, encoded_len, AuditEvent};
use crate::deadletter::DeadLetter;
use crate::delivery::{plan, BatchLimits, Delivery};

/// Splits `range` in two and pushes both so that the first half is sent first.
fn push_halves(stack: &mut Vec<Range<usize>>, range: Range<usize>) {
    let mid = range.start + range.len() / 2;
    stack.push(mid..range.end);
    stack.push(range.start..mid);
}

impl Forwarder {
    /// Delivers each route's Events, routes in parallel. Returns only once every batch has a
    /// final result: the total, the tally of each route, and the poison Events set aside.
    pub async fn deliver(
        &self,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> (DeliveryTally, Vec<(String, DeliveryTally)>, Vec<DeadLetter>) {
        let outcome = self.deliver_tracked(routed, deadline).await;
        (outcome.total, outcome.per_route, outcome.poison)
    }

    /// [`Forwarder::deliver`], also telling which Events are still undelivered.
    pub async fn deliver_tracked(
        &self,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> DeliveryOutcome {
        let work =
            self.routes
                .iter()
                .zip(routed)
                .enumerate()
                .filter_map(|(index, (route, events))| {
                    let target = route.target.as_ref()?;
                    Some(async move {
                        let (tally, poison, unsent) =
                            self.deliver_route(route, target, events, deadline).await;
                        (index, route.name.clone(), tally, poison, unsent)
                    })
                });
        let results = futures::future::join_all(work).await;
        let mut outcome = DeliveryOutcome {
            unsent: routed.iter().map(|_| Vec::new()).collect(),
            ..DeliveryOutcome::default()
        };
        for (index, name, tally, poison, unsent) in results {
            outcome.total.add(&tally);
            outcome.per_route.push((name, tally));
            outcome.poison.extend(poison);
            outcome.unsent[index] = unsent;
        }
        outcome
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
    ) -> (DeliveryTally, Vec<DeadLetter>, Vec<usize>) {
        let limits = BatchLimits {
            format: target.format,
            max_events: self.settings.batch_max_events,
            max_bytes: self.settings.batch_max_bytes,
        };
        let max_bytes = AtomicUsize::new(self.settings.batch_max_bytes);
        let max_bytes = &max_bytes;
        let results: Vec<(DeliveryTally, Vec<DeadLetter>, Vec<usize>)> =
            stream::iter(plan(events, limits))
                .map(|range| async move {
                    self.deliver_batch(route, target, events, range, max_bytes, deadline)
                        .await
                })
                .buffer_unordered(self.settings.concurrency)
                .collect()
                .await;
        let mut tally = DeliveryTally::default();
        let mut poison = Vec::new();
        let mut unsent = Vec::new();
        for (t, p, u) in results {
            tally.add(&t);
            poison.extend(p);
            unsent.extend(u);
        }
        unsent.sort_unstable();
        (tally, poison, unsent)
    }

    async fn deliver_batch(
        &self,
        route: &ActiveRoute,
        target: &Target,
        events: &[AuditEvent],
        range: Range<usize>,
        max_bytes: &AtomicUsize,
        deadline: Instant,
    ) -> (DeliveryTally, Vec<DeadLetter>, Vec<usize>) {
        let mut tally = DeliveryTally::default();
        let mut poison = Vec::new();
        let mut unsent = Vec::new();
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
                        "A batch is still undelivered at the deadline; it will be sent again."
                    );
                    tally.last_failure = Some(reason.into_owned());
                    unsent.extend(range);
                }
            }
        }
        (tally, poison, unsent)
    }
}

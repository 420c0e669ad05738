//! One invocation end to end, owned here: the Events are prepared off the async workers
//! ([`Forwarder::prepare`]: convert, then the per-Event steps), delivered
//! ([`Forwarder::deliver`]), and accounted for in one [`Forwarded`]: the summary, the dead
//! letters and whether the host must retry. The host edge only turns it into the answer.

use std::sync::Arc;

use tokio::time::Instant;

use super::copies::Copies;
use super::routes::{route_events, Routed};
use super::steps::{handler_steps, StepTally};
use super::{lag_since_enqueued, Forwarder, Invocation, InvocationMeta, Summary};
use crate::audit::AuditEvent;
use crate::azure::{both_categories_warning, convert_body, BodyOrigin, Conversion, ConvertTally};
use crate::deadletter::DeadLetter;

/// Events converted from one invocation and run through the per-Event steps, sorted by route,
/// ready for delivery.
#[derive(Debug)]
pub struct Prepared {
    /// The Events bound for each route, in partition order.
    pub routed: Routed,
    /// What conversion saw.
    pub tally: ConvertTally,
    /// What the per-Event steps did.
    pub steps: StepTally,
    /// Malformed input and Events set aside by a step, in that order.
    pub dead_letters: Vec<DeadLetter>,
    /// Where they came from.
    pub meta: InvocationMeta,
    /// The copies of the kept Events, for the copy destinations (alerts).
    pub copies: Copies,
}

/// The outcome of one invocation.
#[derive(Debug)]
pub struct Forwarded {
    /// The account of it, logged and returned to the host.
    pub summary: Summary,
    /// What was set aside, each stamped with the invocation and partition.
    pub dead_letters: Vec<DeadLetter>,
}

impl Forwarded {
    /// True when Events are still undelivered: the host must retry the invocation.
    pub fn needs_retry(&self) -> bool {
        self.summary.needs_retry()
    }
}

/// Preparing an invocation's Events panicked (a bug); the invocation is answered 500.
#[derive(Debug, thiserror::Error)]
#[error("preparing the invocation's Events panicked: {0}")]
pub struct Panicked(String);

impl Forwarder {
    /// Forwards one decoded invocation: prepares its Events on a blocking thread, delivers
    /// them until `started` + `AUDIT_DELIVERY_DEADLINE`, and logs the summary.
    ///
    /// # Errors
    /// When preparing the Events panicked.
    pub async fn forward(
        self: &Arc<Self>,
        invocation: Invocation,
        invocation_id: Option<String>,
        started: Instant,
    ) -> Result<Forwarded, Panicked> {
        let deadline = started + self.settings.delivery_deadline;
        let worker = self.clone();
        let mut prepared = tokio::task::spawn_blocking(move || worker.prepare(invocation))
            .await
            .map_err(|e| Panicked(e.to_string()))?;
        // Copies (alerts) go out beside delivery, with their own retries; they never fail it.
        let copies = std::mem::take(&mut prepared.copies);
        let (delivery, copy_letters) = tokio::join!(
            self.deliver(&prepared.meta, &prepared.routed, deadline),
            copies.send(deadline),
        );
        let mut dead_letters = prepared.dead_letters;
        dead_letters.extend(delivery.poison);
        dead_letters.extend(copy_letters);
        for item in &mut dead_letters {
            item.invocation_id.clone_from(&invocation_id);
            item.partition.clone_from(&prepared.meta.partition_id);
        }
        // Freshness: the oldest enqueued time to now, when every batch has its final result.
        let lag = lag_since_enqueued(&prepared.meta, std::time::SystemTime::now());
        let summary = Summary {
            invocation_id,
            meta: prepared.meta,
            convert: prepared.tally,
            steps: prepared.steps,
            dead_lettered: dead_letters.len() as u64,
            delivery: delivery.total,
            per_route: delivery.per_route,
            duration: started.elapsed(),
            lag,
        };
        let line = summary.to_string();
        if summary.needs_retry() {
            tracing::error!("{line}");
        } else {
            tracing::info!("{line}");
        }
        Ok(Forwarded {
            summary,
            dead_letters,
        })
    }

    /// Converts every event body of an invocation and runs the Events through the per-Event
    /// steps. CPU-bound: run it off the async workers. An event over
    /// `AUDIT_MAX_RECORDS_PER_EVENT` records is dead-lettered, never the whole invocation.
    pub fn prepare(&self, invocation: Invocation) -> Prepared {
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
        let mut events = Vec::with_capacity(parts.len());
        let mut dead_letters = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
        for (part_events, part_dead) in parts.into_iter().rev() {
            events.push(part_events);
            dead_letters.extend(part_dead);
        }
        conversion.log_suppressed();
        let Conversion {
            tally,
            categories_seen,
            ..
        } = conversion;
        if let Ok(mut warned) = self.warned_both_categories.lock() {
            for source in categories_seen.both() {
                if warned.insert(source.clone()) {
                    both_categories_warning(source);
                }
            }
        }
        let mut chain = handler_steps(&categories_seen, self.settings.cluster_annotations);
        let mut copies = self.copies.begin();
        let (routed, steps) = route_events(
            &self.routes,
            &mut copies,
            &mut chain,
            events,
            &mut dead_letters,
        );
        Prepared {
            routed,
            tally,
            steps,
            dead_letters,
            meta,
            copies,
        }
    }

    /// Runs Events that were converted elsewhere (`resend` reads them from dead letters)
    /// through the per-Event steps and sorts them by route. Events no route takes become dead
    /// letters.
    pub fn route(
        &self,
        events: Vec<AuditEvent>,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> (Routed, StepTally) {
        let mut chain = handler_steps(&Default::default(), self.settings.cluster_annotations);
        // Copies of resent Events are not sent again: they were offered when first forwarded.
        let mut copies = self.copies.begin();
        route_events(
            &self.routes,
            &mut copies,
            &mut chain,
            vec![events],
            dead_letters,
        )
    }
}

//! Isolation: finding the Events a receiver will not take, so that they are dead-lettered
//! instead of blocking their partition, without ever dead-lettering because a receiver is
//! simply down.
//!
//! Once the host has retried an invocation `AUDIT_ISOLATE_AFTER_RETRIES` times (or when it
//! sends no `RetryContext`: without a retry policy a failed invocation is checkpointed and
//! lost), transient failures (5xx, resets, timeouts) are split like refusals, with a few
//! attempts per POST. An Event that still fails alone is dead-lettered only when other Events
//! to the same route were delivered after its failure began, or when a probe (one resent,
//! already-delivered Event) passes at the end. The state machine that applies these rules is
//! [`super::route_delivery`]; this file holds the rules' parts: when to isolate, the probe and
//! the poison dead letter.

use tokio::time::Instant;

use super::routes::{AuditWebhook, Route};
use super::{DeliveryTally, Forwarder, InvocationMeta};
use crate::audit::{encode, AuditEvent};
use crate::deadletter::{DeadLetter, DeadLetterKind};
use crate::delivery::learned::RouteLearned;
use crate::delivery::Delivery;

/// Failed attempts one POST gets while isolating (429s aside): the host's retry, not this
/// loop, is what spaces out tries of a receiver that is down.
pub(super) const ISOLATION_FAILURES: u32 = 2;

/// How one try of an invocation treats transient failures (5xx, resets, timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Retried until the deadline; the host retries the invocation.
    Off,
    /// Batches are retried for half the delivery budget, then bisected (no `RetryContext`:
    /// this try is the only one).
    AfterHalfTheDeadline,
    /// Bisected at once, a few attempts per POST (the host has retried the invocation
    /// `AUDIT_ISOLATE_AFTER_RETRIES` times).
    Immediate,
}

impl Forwarder {
    /// How transient failures are handled on this try of the invocation.
    pub fn isolation(&self, meta: &InvocationMeta) -> Isolation {
        match meta.retry_count {
            // No retry policy: the host checkpoints a failed invocation and its Events are
            // lost, so this is the only try.
            None => Isolation::AfterHalfTheDeadline,
            Some(count)
                if count >= i64::from(self.settings.isolate_after_retries)
                    || meta
                        .max_retry_count
                        .is_some_and(|max| max >= 0 && count >= max) =>
            {
                Isolation::Immediate
            }
            Some(_) => Isolation::Off,
        }
    }
}

/// Whether the receiver takes an Event now: resends one Event already delivered (in this try
/// or an earlier one), alone. A duplicate, which at-least-once delivery allows, is the price
/// of never dead-lettering because a receiver is down.
pub(super) async fn probe(
    target: &AuditWebhook,
    events: &[AuditEvent],
    learned: &RouteLearned,
    deadline: Instant,
    tally: &mut DeliveryTally,
) -> bool {
    let Some(&i) = learned.delivered.iter().next() else {
        return false;
    };
    if Instant::now() >= deadline {
        return false;
    }
    let body = encode(target.format, std::slice::from_ref(&events[i]));
    let outcome = target
        .webhook
        .deliver_limited(body, deadline, ISOLATION_FAILURES)
        .await;
    tally.attempts += u64::from(outcome.attempts());
    matches!(outcome, Delivery::Delivered { .. })
}

/// The dead letter of an Event a route's receiver will not take.
pub(super) fn poison_letter(
    route: &Route,
    event: &AuditEvent,
    reason: String,
    status: Option<u16>,
) -> DeadLetter {
    let mut item = DeadLetter::for_event(event, DeadLetterKind::Poison, reason);
    item.status = status;
    item.route = Some(route.name.clone());
    item
}

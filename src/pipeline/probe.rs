//! The evidence isolation rests on: whether the receiver takes an Event right now (a probe
//! that resends one already-delivered Event), and the dead letter of an Event set aside.

use tokio::time::Instant;

use super::{ActiveRoute, DeliveryTally, Forwarder, Target};
use crate::audit::{encode, AuditEvent};
use crate::deadletter::DeadLetter;
use crate::delivery::learned::RouteLearned;
use crate::delivery::Delivery;

/// Failed attempts one POST gets while isolating (429s aside): the host's retry, not this
/// loop, is what spaces out tries of a receiver that is down.
pub(super) const ISOLATION_FAILURES: u32 = 2;

impl Forwarder {
    /// Whether the receiver takes an Event now: resends one Event already delivered (in this
    /// try or an earlier one), alone. A duplicate, which at-least-once delivery allows, is the
    /// price of never dead-lettering because a receiver is down.
    pub(super) async fn probe(
        &self,
        target: &Target,
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
        tally.attempts += u64::from(attempts_of(&outcome));
        matches!(outcome, Delivery::Delivered { .. })
    }
}

fn attempts_of(outcome: &Delivery) -> u32 {
    match outcome {
        Delivery::Delivered { attempts }
        | Delivery::Rejected { attempts, .. }
        | Delivery::Halted { attempts, .. }
        | Delivery::Failed { attempts, .. } => *attempts,
    }
}

/// The dead letter of an Event a route's receiver will not take.
pub(super) fn poison_letter(
    route: &ActiveRoute,
    event: &AuditEvent,
    reason: String,
    status: Option<u16>,
) -> DeadLetter {
    let mut item = DeadLetter::for_event(event, "poison", reason);
    item.status = status;
    item.route = Some(route.name.clone());
    item
}

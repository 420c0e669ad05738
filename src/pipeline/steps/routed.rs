//! Whether a route takes the Event: an Event of a cluster no route matches is dead-lettered
//! (`unrouted`, for `resend` once a route takes it); one taken by a dropping route is dropped.

use super::{DropReason, Place, Step, Verdict};
use crate::audit::AuditEvent;
use crate::deadletter::DeadLetterKind;

/// Keeps the Events a delivering route takes.
#[derive(Debug, Default)]
pub struct RouteTaken;

impl Step for RouteTaken {
    fn apply(&mut self, event: AuditEvent, place: &Place<'_>) -> Verdict {
        match place.route {
            None => Verdict::dead_letter(
                &event,
                DeadLetterKind::Unrouted,
                "no route takes this cluster",
            ),
            Some(route) if !route.delivers() => Verdict::Drop(DropReason::ROUTE),
            Some(_) => Verdict::Keep(event),
        }
    }
}

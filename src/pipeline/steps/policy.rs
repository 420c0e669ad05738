//! The audit Policy of the Event's route (else the global one): level `None` or an omitted
//! stage drops the Event; a lower level strips its bodies ([`crate::audit::Policy::apply`]).

use super::{DropReason, Place, Step, Verdict};
use crate::audit::policy::Judged;
use crate::audit::AuditEvent;
use crate::deadletter::DeadLetterKind;

/// Applies the route's Policy.
#[derive(Debug, Default)]
pub struct PolicyStep;

impl Step for PolicyStep {
    fn apply(&mut self, event: AuditEvent, place: &Place<'_>) -> Verdict {
        let Some(policy) = place.route.and_then(|r| r.policy()) else {
            return Verdict::Keep(event);
        };
        match policy.judge(&event) {
            Ok(Judged::Unchanged) => Verdict::Keep(event),
            Ok(Judged::Edited(edited)) => Verdict::Keep(edited),
            Ok(Judged::Dropped) => Verdict::Drop(DropReason::POLICY),
            // The Policy cannot decide: forwarding could pass what it would strip, dropping
            // would lose it. Keep it aside for `resend`.
            Err(unreadable) => Verdict::dead_letter(
                &event,
                DeadLetterKind::PolicyUnreadable,
                unreadable.to_string(),
            ),
        }
    }
}

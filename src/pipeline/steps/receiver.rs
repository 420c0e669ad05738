//! The route's receiver limits (`AUDIT_RECEIVER`, `AUDIT_TRUNCATE_*`): an Event over the
//! per-Event limit is truncated as kube-apiserver's truncate backend does; one still too large,
//! or one the receiver's parser cannot read, is set aside ([`crate::delivery::Shaping`]).
//! Last in the chain, so it measures the Event as it will be sent.

use super::{Place, Step, StepTally, Verdict};
use crate::audit::AuditEvent;
use crate::deadletter::{DeadLetter, DeadLetterKind};
use crate::delivery::{Refusal, Shaped};

/// Applies the route's receiver limits; counts what it truncated.
#[derive(Debug, Default)]
pub struct ReceiverLimits {
    truncated: u64,
}

impl Step for ReceiverLimits {
    fn apply(&mut self, event: AuditEvent, place: &Place<'_>) -> Verdict {
        let Some(target) = place.route.and_then(|r| r.webhook()) else {
            return Verdict::Keep(event);
        };
        match target.shaping.shape(event, target.batch_max_bytes) {
            Shaped::Kept(event) => Verdict::Keep(event),
            Shaped::Truncated(event) => {
                self.truncated += 1;
                Verdict::Keep(event)
            }
            Shaped::Refused {
                event,
                kind,
                reason,
            } => {
                let kind = match kind {
                    Refusal::TooLarge => DeadLetterKind::TooLarge,
                    Refusal::ReceiverInvalid => DeadLetterKind::ReceiverInvalid,
                };
                let mut letter = DeadLetter::for_event(&event, kind, reason);
                letter.route = place.route.map(|r| r.name.clone());
                Verdict::DeadLetter(letter)
            }
        }
    }

    fn finish(&mut self, tally: &mut StepTally) {
        tally.truncated += self.truncated;
        if self.truncated > 0 {
            tracing::warn!(
                events = self.truncated,
                "Events over their route's per-Event limit are sent truncated: without requestObject and responseObject, annotated audit.k8s.io/truncated."
            );
        }
        if tally.too_large + tally.receiver_invalid > 0 {
            tracing::warn!(
                too_large = tally.too_large,
                receiver_invalid = tally.receiver_invalid,
                "Dead-lettering Events their route's receiver would drop (see each dead letter's reason)."
            );
        }
        self.truncated = 0;
    }
}

//! What to do with a batch after the receiver's answer: the classification, apart from the
//! mechanism that carries it out ([`super::route_delivery`]). The answer itself (delivered,
//! refused for good, halted, failing) comes from [`crate::delivery::retry`].

use crate::delivery::Delivery;

/// What to do with a batch after its answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Delivered,
    /// Refused for good, more than one Event: split to find the refused ones.
    SplitRefused(String),
    /// Refused for good, one Event: set aside only once there is evidence that the route
    /// takes other payloads (a status it gives to every payload is a route problem).
    Refused(String, Option<u16>),
    /// Failing while others pass, during isolation: split.
    SplitFailing(String),
    /// Failing right after the receiver answered, while sending one POST at a time
    /// (stepping: the receiver went down after a batch): cut into pieces, sent after the rest.
    Narrow(String),
    /// Failing alone during isolation.
    Suspect(String),
    /// Failing while nothing passes, during isolation: wait.
    Defer(String),
    /// Failing at the deadline, halted, or not isolating: the host retries.
    GiveUp(String),
}

/// How far isolation goes on this try, before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolating {
    /// Not isolating (or the deadline has passed): what fails is given up on.
    No,
    /// Transient failures (5xx, resets, timeouts) are isolated.
    Transient,
    /// The host has retried the invocation: statuses that usually mean a misconfigured
    /// receiver (401, 403, 404…) are isolated too.
    Everything,
}

/// Classifies an answer; `others_passed` once any batch of the route was delivered;
/// `stepping` when the batch was sent alone right after the receiver answered.
pub(super) fn classify(
    delivery: Delivery,
    events: usize,
    isolating: Isolating,
    others_passed: bool,
    stepping: bool,
) -> Next {
    let (reason, isolated) = match delivery {
        Delivery::Delivered { .. } => return Next::Delivered,
        Delivery::Rejected { reason, .. } if events > 1 => {
            return Next::SplitRefused(reason.into())
        }
        Delivery::Rejected { reason, status, .. } => return Next::Refused(reason.into(), status),
        // A status the route gives to every payload (401, 404…) is a route problem, but one it
        // does not give to other payloads is a refusal of that content, whatever its code
        // (a WAF's 403): once the host has retried, it is judged like a transient failure,
        // and only an Event that fails alone while others pass is set aside.
        Delivery::Halted { reason, .. } => (reason, isolating == Isolating::Everything),
        Delivery::Failed { reason, .. } => (reason, isolating != Isolating::No),
    };
    if !isolated {
        Next::GiveUp(reason.into())
    } else if events == 1 {
        Next::Suspect(reason.into())
    } else if stepping {
        Next::Narrow(reason.into())
    } else if others_passed {
        Next::SplitFailing(reason.into())
    } else {
        Next::Defer(reason.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Delivery {
        Delivery::Failed {
            reason: "HTTP 503".into(),
            attempts: 2,
        }
    }

    /// The classification table: what each answer leads to, apart from any I/O.
    #[test]
    fn answers_are_classified_apart_from_the_mechanism() {
        let refused = Delivery::Rejected {
            reason: "HTTP 400".into(),
            status: Some(400),
            attempts: 1,
        };
        let reason = || "HTTP 400".to_string();
        assert_eq!(
            classify(
                Delivery::Delivered { attempts: 1 },
                5,
                Isolating::Everything,
                false,
                false
            ),
            Next::Delivered
        );
        assert_eq!(
            classify(refused.clone(), 5, Isolating::No, false, false),
            Next::SplitRefused(reason())
        );
        assert_eq!(
            classify(refused, 1, Isolating::No, false, false),
            Next::Refused(reason(), Some(400))
        );
        let halted = Delivery::Halted {
            reason: "HTTP 401".into(),
            attempts: 1,
        };
        assert_eq!(
            classify(halted.clone(), 1, Isolating::No, true, false),
            Next::GiveUp("HTTP 401".into())
        );
        assert_eq!(
            classify(halted.clone(), 1, Isolating::Everything, true, false),
            Next::Suspect("HTTP 401".into())
        );
        assert_eq!(
            classify(halted.clone(), 4, Isolating::Everything, false, false),
            Next::Defer("HTTP 401".into())
        );
        assert_eq!(
            classify(halted, 1, Isolating::Transient, true, false),
            Next::GiveUp("HTTP 401".into())
        );
        assert_eq!(
            classify(failed(), 1, Isolating::Transient, true, false),
            Next::Suspect("HTTP 503".into())
        );
        let r = || "HTTP 503".to_string();
        assert_eq!(
            classify(failed(), 1, Isolating::No, true, false),
            Next::GiveUp(r())
        );
        assert_eq!(
            classify(failed(), 1, Isolating::Everything, false, false),
            Next::Suspect(r())
        );
        assert_eq!(
            classify(failed(), 4, Isolating::Everything, true, false),
            Next::SplitFailing(r())
        );
        assert_eq!(
            classify(failed(), 4, Isolating::Everything, false, false),
            Next::Defer(r())
        );
        // Sent alone right after the receiver answered (stepping): failing is evidence against
        // the batch, whatever passed before; one Event is a suspect as ever.
        assert_eq!(
            classify(failed(), 4, Isolating::Everything, true, true),
            Next::Narrow(r())
        );
        assert_eq!(
            classify(failed(), 1, Isolating::Everything, true, true),
            Next::Suspect(r())
        );
        assert_eq!(
            classify(failed(), 4, Isolating::No, true, true),
            Next::GiveUp(r())
        );
    }
}

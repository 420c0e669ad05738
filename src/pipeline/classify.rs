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
    /// Refused for good, one Event.
    Poison(String, Option<u16>),
    /// Failing while others pass, during isolation: split.
    SplitFailing(String),
    /// Failing alone during isolation.
    Suspect(String),
    /// Failing while nothing passes, during isolation: wait.
    Defer(String),
    /// Failing at the deadline, halted, or not isolating: the host retries.
    GiveUp(String),
}

/// Classifies an answer; `isolating` once isolation is on and before the deadline,
/// `others_passed` once any batch of the route was delivered.
pub(super) fn classify(
    delivery: Delivery,
    events: usize,
    isolating: bool,
    others_passed: bool,
) -> Next {
    match delivery {
        Delivery::Delivered { .. } => Next::Delivered,
        Delivery::Rejected { reason, .. } if events > 1 => Next::SplitRefused(reason.into()),
        Delivery::Rejected { reason, status, .. } => Next::Poison(reason.into(), status),
        Delivery::Halted { reason, .. } => Next::GiveUp(reason.into()),
        Delivery::Failed { reason, .. } if !isolating => Next::GiveUp(reason.into()),
        Delivery::Failed { reason, .. } if events == 1 => Next::Suspect(reason.into()),
        Delivery::Failed { reason, .. } if others_passed => Next::SplitFailing(reason.into()),
        Delivery::Failed { reason, .. } => Next::Defer(reason.into()),
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
            classify(Delivery::Delivered { attempts: 1 }, 5, true, false),
            Next::Delivered
        );
        assert_eq!(
            classify(refused.clone(), 5, false, false),
            Next::SplitRefused(reason())
        );
        assert_eq!(
            classify(refused, 1, false, false),
            Next::Poison(reason(), Some(400))
        );
        let halted = Delivery::Halted {
            reason: "HTTP 401".into(),
            attempts: 1,
        };
        assert_eq!(
            classify(halted, 1, true, true),
            Next::GiveUp("HTTP 401".into())
        );
        let r = || "HTTP 503".to_string();
        assert_eq!(classify(failed(), 1, false, true), Next::GiveUp(r()));
        assert_eq!(classify(failed(), 1, true, false), Next::Suspect(r()));
        assert_eq!(classify(failed(), 4, true, true), Next::SplitFailing(r()));
        assert_eq!(classify(failed(), 4, true, false), Next::Defer(r()));
    }
}

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
use crate::audit::{encode, AuditEvent, WebhookFormat};
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

/// Whether the receiver takes a payload now: resends one Event already delivered (in this
/// try or an earlier one), alone. A duplicate, which at-least-once delivery allows, is the
/// price of never dead-lettering because a receiver is down.
///
/// When none was delivered and `empty_allowed` (the Event judged is the only one of its route
/// still undelivered: there is no other to resend), an empty `EventList` (harmless, as
/// `check-config --probe` sends) is the probe. It is not used otherwise: a receiver that takes
/// empty lists while refusing every Event would make every Event look guilty. With the bare
/// `Event` format there is no harmless payload: the answer is no.
pub(super) async fn probe(
    target: &AuditWebhook,
    events: &[AuditEvent],
    learned: &RouteLearned,
    deadline: Instant,
    tally: &mut DeliveryTally,
    empty_allowed: bool,
) -> bool {
    let Some(body) = probe_body(target, events, learned, empty_allowed, deadline) else {
        return false;
    };
    let outcome = target
        .webhook
        .deliver_limited(body, deadline, ISOLATION_FAILURES)
        .await;
    tally.attempts += u64::from(outcome.attempts());
    matches!(outcome, Delivery::Delivered { .. })
}

/// [`probe`], sent again every [`AWAIT_POLL`] until the receiver takes it or the deadline
/// (a refusal ends it: the receiver answers, but not to say it takes Events): waits for a
/// receiver that went down (a crash and restart) to answer again. Same payload as [`probe`].
pub(super) async fn await_receiver(
    target: &AuditWebhook,
    events: &[AuditEvent],
    learned: &RouteLearned,
    deadline: Instant,
    tally: &mut DeliveryTally,
    empty_allowed: bool,
) -> bool {
    let Some(body) = probe_body(target, events, learned, empty_allowed, deadline) else {
        return false;
    };
    // Polled at a steady pace, not with the growing backoff: a receiver back after a restart
    // is seen within [`AWAIT_POLL`], not seconds later.
    loop {
        let outcome = target
            .webhook
            .deliver_limited(body.clone(), deadline, 1)
            .await;
        tally.attempts += u64::from(outcome.attempts());
        match outcome {
            Delivery::Delivered { .. } => return true,
            Delivery::Failed { .. } => {}
            Delivery::Rejected { .. } | Delivery::Halted { .. } => return false,
        }
        let next = Instant::now() + AWAIT_POLL;
        if next >= deadline {
            return false;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Pause between the probes of [`await_receiver`].
pub(super) const AWAIT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// The probe's payload (see [`probe`]), if there is one and the deadline has not come.
fn probe_body(
    target: &AuditWebhook,
    events: &[AuditEvent],
    learned: &RouteLearned,
    empty_allowed: bool,
    deadline: Instant,
) -> Option<bytes::Bytes> {
    if Instant::now() >= deadline {
        return None;
    }
    match learned.delivered.first() {
        Some(i) => Some(encode(target.format, std::slice::from_ref(&events[i]))),
        None if empty_allowed && target.format == WebhookFormat::EventList => {
            Some(encode(target.format, &[]))
        }
        None => None,
    }
}

/// Pieces a failing batch is cut into while stepping (one POST at a time, each once the
/// receiver answers again): an Event that takes its receiver down costs one restart per level,
/// so fewer, wider levels than halves (400 Events: 3 restarts, not 9).
pub(super) const STEP_PIECES: usize = 8;

/// Failed attempts (429s aside) of one POST of an Event alone right after the receiver
/// answered, when that POST counts against the Event ([`send_after_answer`]).
pub(super) const ALONE_ATTEMPTS: u32 = 4;

/// Counted failures ([`send_after_answer`]) that isolate an Event, carried across the host's
/// tries: 3 × [`ALONE_ATTEMPTS`] = 12 failed attempts, each right after the receiver took
/// something; a receiver failing half the requests at random fails a healthy Event so often
/// with probability 2⁻¹² = 4⁻⁶, the bound the retests keep ([`SUSPECT_RETESTS`]).
pub(super) const ALONE_FAILURES_TO_ISOLATE: u32 = 3;

/// How one POST of an Event alone, right after the receiver answered, ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AloneTry {
    Delivered,
    /// Failed [`ALONE_ATTEMPTS`] times before the deadline: evidence against the Event.
    Failed(String),
    /// The deadline came first, or the receiver refused it for good: no count.
    NoVerdict,
}

/// Sends `event` alone with [`ALONE_ATTEMPTS`] failed attempts; the caller has just seen the
/// receiver answer (a passing [`await_receiver`]), so failures that follow are counted
/// against the Event. Returns how it ended and the attempts made.
pub(super) async fn send_after_answer(
    target: &AuditWebhook,
    event: &AuditEvent,
    deadline: Instant,
) -> (AloneTry, u32) {
    let body = encode(target.format, std::slice::from_ref(event));
    let delivery = target
        .webhook
        .deliver_limited(body, deadline, ALONE_ATTEMPTS)
        .await;
    let attempts = delivery.attempts();
    let counted = attempts >= ALONE_ATTEMPTS && Instant::now() < deadline;
    let result = match delivery {
        Delivery::Delivered { .. } => AloneTry::Delivered,
        Delivery::Failed { reason, .. } | Delivery::Halted { reason, .. } if counted => {
            AloneTry::Failed(reason.into())
        }
        _ => AloneTry::NoVerdict,
    };
    (result, attempts)
}

/// Times an Event that failed alone is sent alone again before it is judged: chance (a
/// receiver failing at random) must not single out a healthy Event, an Event that causes its
/// failure fails every time. With two attempts per POST, a receiver failing half the requests
/// at random fails all of them with probability 4⁻⁶.
pub(super) const SUSPECT_RETESTS: u32 = 5;

/// How an Event's retests ended.
pub(super) enum Retest {
    Delivered,
    FailedEveryTime,
    /// The deadline came first: no verdict.
    Unfinished,
}

/// Times an Event refused alone (400, 422…) is sent alone again before it is judged: a
/// receiver refusing half the requests at random refuses all of them with probability 2⁻¹¹.
/// Refusals are answered at once, so these cost little. A 413 is not retested: the same bytes
/// are the same size.
pub(super) const REFUSAL_RETESTS: u32 = 10;

/// Sends each Event `(index, times)` alone up to `times` times, until it is delivered,
/// `concurrency` Events at a time; returns how each ended, in order, and the attempts made.
pub(super) async fn retest_refused(
    target: &AuditWebhook,
    events: &[AuditEvent],
    which: &[(usize, u32)],
    deadline: Instant,
    concurrency: usize,
) -> Vec<(Retest, u32)> {
    let mut results = Vec::with_capacity(which.len());
    for chunk in which.chunks(concurrency.max(1)) {
        let retests = chunk
            .iter()
            .map(|&(i, times)| retest_times(target, &events[i], deadline, times));
        results.extend(futures::future::join_all(retests).await);
    }
    results
}

/// Sends `event` alone up to [`SUSPECT_RETESTS`] times, until it is delivered; returns how
/// that ended and the attempts made.
pub(super) async fn retest(
    target: &AuditWebhook,
    event: &AuditEvent,
    deadline: Instant,
) -> (Retest, u32) {
    retest_times(target, event, deadline, SUSPECT_RETESTS).await
}

/// [`retest`], up to `times` times.
async fn retest_times(
    target: &AuditWebhook,
    event: &AuditEvent,
    deadline: Instant,
    times: u32,
) -> (Retest, u32) {
    let mut attempts = 0;
    for _ in 0..times {
        if Instant::now() >= deadline {
            return (Retest::Unfinished, attempts);
        }
        let body = encode(target.format, std::slice::from_ref(event));
        let delivery = target
            .webhook
            .deliver_limited(body, deadline, ISOLATION_FAILURES)
            .await;
        attempts += delivery.attempts();
        if let Delivery::Delivered { .. } = delivery {
            return (Retest::Delivered, attempts);
        }
    }
    (Retest::FailedEveryTime, attempts)
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

/// The dead letter of an Event still undelivered on the host's last try.
pub(super) fn undelivered_letter(route: &Route, event: &AuditEvent, reason: String) -> DeadLetter {
    let mut item = DeadLetter::for_event(event, DeadLetterKind::Undelivered, reason);
    item.route = Some(route.name.clone());
    item
}

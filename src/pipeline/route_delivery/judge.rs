//! Judging the Events that failed alone during isolation ([`RouteDelivery::judge_suspects`]):
//! retests, the evidence of other deliveries or a passing probe, and failures that follow the
//! receiver answering again, counted across the host's tries.

use tokio::time::Instant;

use super::{RouteDelivery, Suspect, Unfinished};
use crate::pipeline::isolation::{
    retest, retest_refused, send_after_answer, AloneTry, Retest, ALONE_FAILURES_TO_ISOLATE,
    REFUSAL_RETESTS,
};

impl RouteDelivery<'_> {
    /// An Event that failed alone is sent alone again a few times ([`crate::pipeline::isolation::SUSPECT_RETESTS`]); if
    /// it passes once it is delivered. If it fails every time and no other suspect failed
    /// with it, it is poison only if the receiver took other Events after its failure began,
    /// or a probe passes now. Otherwise it is judged by failures right after the receiver
    /// answers ([`Self::judge_after_answers`]).
    /// The rest are given up on.
    pub(super) async fn judge_suspects(&mut self) {
        let suspects = std::mem::take(&mut self.suspects);
        let (target, events, deadline) = (self.target, self.events, self.deadline);
        let retests = suspects
            .iter()
            .map(|s| retest(target, &events[s.index], deadline));
        let results = futures::future::join_all(retests).await;
        let mut failing = Vec::new();
        let mut still = Vec::new();
        for (suspect, (result, attempts)) in suspects.into_iter().zip(results) {
            self.tally.attempts += u64::from(attempts);
            match result {
                Retest::Delivered => self.delivered_alone(suspect.index),
                Retest::FailedEveryTime => failing.push(suspect),
                Retest::Unfinished => still.push(suspect),
            }
        }
        // Other deliveries, or a probe, prove a failure the Event's own only when one Event
        // failed its retests: with several retested at once, one of them may have taken the
        // receiver down (a crash and restart) while the others were sent, so each is sent
        // alone again once the receiver answers (`judge_after_answers`).
        let several = failing.len() > 1;
        let last_success = self.last_success;
        let (mut judged, mut unproven): (Vec<Suspect>, Vec<Suspect>) = failing
            .into_iter()
            .partition(|s| !several && last_success.is_some_and(|t| t > s.began));
        // The empty probe only for an Event alone on its route (see `probe`).
        let known = self.learned.known();
        let alone = unproven.len() == 1 && self.events.len() == known + 1;
        if !several && !unproven.is_empty() && self.probe(alone).await {
            judged.append(&mut unproven);
        }
        let mut unproven = self.judge_after_answers(unproven, alone).await;
        still.append(&mut unproven);
        for s in judged {
            let reason = format!(
                "failed alone ({}) while other Events to this route were delivered",
                s.reason
            );
            self.isolate_failing(s.index, reason);
        }
        for s in still {
            self.failed.push(Unfinished {
                range: s.index..s.index + 1,
                reason: s.reason,
            });
        }
    }

    /// An Event refused for good alone (400, 422…) is sent alone again ([`REFUSAL_RETESTS`]
    /// times, a 413 not at all); if it passes once it is delivered. If it is refused every
    /// time, it is dead-lettered only when the route took another Event in this invocation,
    /// or a probe passes (an empty `EventList` for an Event alone on its route): a status the
    /// route gives to every payload is a route problem, and the invocation fails instead.
    pub(super) async fn judge_refused(&mut self) {
        let refused = std::mem::take(&mut self.refused);
        let which: Vec<(usize, u32)> = refused
            .iter()
            .map(|r| {
                (
                    r.index,
                    if r.status == Some(413) {
                        0
                    } else {
                        REFUSAL_RETESTS
                    },
                )
            })
            .collect();
        let (target, events, deadline) = (self.target, self.events, self.deadline);
        let concurrency = self.limits.concurrency;
        let results = retest_refused(target, events, &which, deadline, concurrency).await;
        let mut failing = Vec::new();
        for (r, (result, attempts)) in refused.into_iter().zip(results) {
            self.tally.attempts += u64::from(attempts);
            match result {
                Retest::Delivered => self.delivered_alone(r.index),
                Retest::FailedEveryTime => failing.push(r),
                Retest::Unfinished => self.failed.push(Unfinished {
                    range: r.index..r.index + 1,
                    reason: r.reason,
                }),
            }
        }
        let known = self.learned.known();
        let alone = failing.len() == 1 && self.events.len() == known + 1;
        let evidence =
            !failing.is_empty() && (!self.learned.delivered.is_empty() || self.probe(alone).await);
        for r in failing {
            if !evidence {
                self.failed.push(Unfinished {
                    range: r.index..r.index + 1,
                    reason: r.reason,
                });
                continue;
            }
            tracing::error!(
                reason = %r.reason,
                route = %self.route.name,
                webhook = %self.target.webhook.shown_url(),
                sequence_number = self.events[r.index].sequence_number(),
                "The webhook refused an Event for good; it is dead-lettered."
            );
            self.set_aside(r.index, r.reason, r.status);
        }
    }

    /// Suspects nothing else proves guilty, such as an Event that takes its receiver down for
    /// longer than a probe waits: each is sent alone once the receiver answers again, while
    /// the deadline allows. A failure right after the receiver answered counts against the
    /// Event ([`Self::count_failure`]), across the host's tries. Returns those still unjudged.
    async fn judge_after_answers(&mut self, suspects: Vec<Suspect>, alone: bool) -> Vec<Suspect> {
        let mut still = Vec::new();
        for mut s in suspects {
            loop {
                if !self.await_receiver(alone).await {
                    still.push(s);
                    break;
                }
                let event = &self.events[s.index];
                let (result, attempts) = send_after_answer(self.target, event, self.deadline).await;
                self.tally.attempts += u64::from(attempts);
                match result {
                    AloneTry::Delivered => self.delivered_alone(s.index),
                    AloneTry::NoVerdict => still.push(s),
                    AloneTry::Failed(reason) => {
                        if !self.count_failure(s.index, &reason) {
                            s.reason = reason;
                            continue;
                        }
                    }
                }
                break;
            }
        }
        still
    }

    /// Counts a failure of the Event at `index` alone right after the receiver answered;
    /// isolates it once [`ALONE_FAILURES_TO_ISOLATE`] are counted. Returns whether it did.
    pub(super) fn count_failure(&mut self, index: usize, reason: &str) -> bool {
        let count = self.learned.failed_alone.entry(index).or_default();
        *count += 1;
        let count = *count;
        if count < ALONE_FAILURES_TO_ISOLATE {
            return false;
        }
        let reason = format!(
            "failed alone {count} times right after the receiver answered (last: {reason})"
        );
        self.isolate_failing(index, reason);
        true
    }

    /// Dead-letters an Event that keeps failing while the receiver takes others.
    fn isolate_failing(&mut self, index: usize, reason: String) {
        tracing::error!(
            %reason,
            route = %self.route.name,
            webhook = %self.target.webhook.shown_url(),
            sequence_number = self.events[index].sequence_number(),
            "An Event keeps failing while others are delivered; it is dead-lettered."
        );
        self.set_aside(index, reason, None);
    }

    /// The Event at `index`, sent alone, was delivered.
    pub(super) fn delivered_alone(&mut self, index: usize) {
        self.tally.delivered_batches += 1;
        self.tally.delivered_events += 1;
        self.learned.delivered.insert(index);
        self.last_success = Some(Instant::now());
    }
}

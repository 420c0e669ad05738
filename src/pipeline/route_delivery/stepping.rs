//! Waiting for a receiver that went down and stepping: once nothing passes, not even a probe
//! (a batch may have taken the receiver down: a crash and restart), delivery waits for the
//! receiver to answer again and then sends one POST at a time, each once it answers, cutting
//! a batch that fails right after an answer into pieces sent after the rest.

use std::ops::Range;

use tokio::time::Instant;

use super::{push_halves, RouteDelivery, Suspect, Unfinished};
use crate::pipeline::isolation::{await_receiver, STEP_PIECES};

/// Cuts `range` in up to [`STEP_PIECES`] pieces and puts them under the rest of `stack`, the
/// first piece first among them: what failed right after the receiver answered goes last.
pub(super) fn push_pieces_under(stack: &mut Vec<Range<usize>>, range: Range<usize>) {
    let size = range.len().div_ceil(STEP_PIECES).max(1);
    let pieces: Vec<Range<usize>> = (range.start..range.end)
        .step_by(size)
        .map(|start| start..(start + size).min(range.end))
        .collect();
    stack.splice(0..0, pieces.into_iter().rev());
}

impl RouteDelivery<'_> {
    /// Nothing in flight: whether to go on. Failures set aside while nothing was getting
    /// through are split again only once the receiver has taken something since (a delivery
    /// in this try, or one resent Event an earlier try delivered): a receiver that is down
    /// costs a few POSTs per try, not one per Event. With no evidence either way, they are
    /// split once: halves that pass are the evidence.
    pub(super) async fn when_idle(&mut self) -> bool {
        if self.deferred.is_empty() || Instant::now() >= self.deadline {
            return false;
        }
        if self.progress == self.progress_at_resume && !self.probed {
            self.probed = true;
            if self.probe(false).await {
                self.progress += 1;
                self.last_success = Some(Instant::now());
            }
        }
        if self.progress == self.progress_at_resume && self.explored {
            // Nothing passed since the last split, the receiver not even the probe: it may be
            // restarting after a batch took it down. Once it answers again, the deferred
            // batches go one POST at a time, in pieces.
            if self.stepping || !self.await_receiver(false).await {
                return false;
            }
            self.stepping = true;
            self.answering = true;
            self.progress_at_resume = self.progress;
            for unfinished in std::mem::take(&mut self.deferred) {
                push_pieces_under(&mut self.queue, unfinished.range);
            }
            return true;
        }
        self.explored = true;
        self.progress_at_resume = self.progress;
        for unfinished in self.deferred.drain(..).rev() {
            push_halves(&mut self.queue, unfinished.range);
        }
        true
    }

    /// Waits for the receiver to take a probe ([`await_receiver`]); counts it as progress.
    pub(super) async fn await_receiver(&mut self, empty_allowed: bool) -> bool {
        let (target, events, deadline) = (self.target, self.events, self.deadline);
        let up = await_receiver(
            target,
            events,
            &self.learned,
            deadline,
            &mut self.tally,
            empty_allowed,
        )
        .await;
        if up {
            self.progress += 1;
            self.last_success = Some(Instant::now());
        }
        up
    }

    /// While stepping, a batch failed right after the receiver answered: it is remembered
    /// (the next try sends it last) and cut into pieces sent after the rest.
    pub(super) fn narrow(&mut self, range: Range<usize>, reason: String) {
        tracing::warn!(
            events = range.len(),
            %reason,
            route = %self.route.name,
            "A batch failed right after the webhook answered again; sending it last, in pieces."
        );
        self.learned.failing_after_answer = Some((range.start, range.end));
        push_pieces_under(&mut self.queue, range);
    }

    /// One Event failed alone: counted against it when it was sent right after the receiver
    /// answered (isolated once counted enough), else judged at the end.
    pub(super) fn on_suspect(
        &mut self,
        range: Range<usize>,
        reason: String,
        began: Instant,
        counted: bool,
    ) {
        if self.stepping {
            self.learned.failing_after_answer = Some((range.start, range.end));
        }
        if counted && self.count_failure(range.start, &reason) {
            return;
        }
        self.suspects.push(Suspect {
            index: range.start,
            reason,
            began,
        });
    }

    /// Gives up on every queued batch (stepping, the receiver did not answer again).
    pub(super) fn give_up_queue(&mut self, reason: &str) {
        for range in std::mem::take(&mut self.queue) {
            self.failed.push(Unfinished {
                range,
                reason: reason.to_string(),
            });
        }
    }
}

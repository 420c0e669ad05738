//! One route's delivery of one invocation, as a small state machine ([`RouteDelivery`]).
//!
//! Each batch is a range of the route's Events. It is *queued*, then *in flight* (at most
//! `AUDIT_WEBHOOK_CONCURRENCY` at once, one at a time while a 413 is being sized), and its
//! answer is classified ([`classify`], no I/O) into what comes [`Next`]:
//! - delivered: remembered, so that a later try of the invocation skips it;
//! - split: a batch refused for good, or failing while others pass during isolation, is
//!   cut in two and both halves queued again (413 also lowers the byte bound);
//! - refused: one Event refused for good waits for [`RouteDelivery::judge_refused`];
//! - suspect: one Event failing alone during isolation waits for [`RouteDelivery::judge_suspects`];
//! - deferred: a batch failing while nothing passes waits for [`RouteDelivery::when_idle`];
//! - given up: still failing at the deadline, or halted (401, 404…): the invocation fails
//!   and the host retries it.
//!
//! When nothing is in flight, deferred batches are split again only once the receiver has
//! taken something since (a delivery, or a probe: see [`super::isolation`]); otherwise
//! delivery ends. At the end, suspects are judged and what was learned is kept for the host's
//! next try ([`crate::delivery::learned`]).

use std::collections::HashSet;
use std::ops::Range;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::classify::{classify, Isolating, Next};
use super::deliver::{plan_queue, Limits, RouteOutcome, Start};
use super::isolation::{
    poison_letter, probe, undelivered_letter, Isolation, ALONE_ATTEMPTS, ISOLATION_FAILURES,
};
use super::routes::{AuditWebhook, Route};
use super::DeliveryTally;
use crate::audit::{encode, encoded_len, AuditEvent};
use crate::deadletter::DeadLetter;
use crate::delivery::learned::{InvocationKey, Learned, Poisoned, RouteLearned};
use crate::delivery::Delivery;

mod judge;
mod stepping;

use stepping::push_pieces_under;

/// A batch that is not delivered (yet), and the last reason.
#[derive(Debug)]
struct Unfinished {
    range: Range<usize>,
    reason: String,
}

/// An Event that failed alone during isolation: its index, why, and when its POST began.
#[derive(Debug)]
struct Suspect {
    index: usize,
    reason: String,
    began: Instant,
}

/// An Event refused for good alone: its index, why, and the status.
#[derive(Debug)]
struct Refused {
    index: usize,
    reason: String,
    status: Option<u16>,
}

/// The answer to one POST, with what was sent.
struct Answer {
    range: Range<usize>,
    /// Encoded size of the batch, in bytes.
    size: usize,
    began: Instant,
    delivery: Delivery,
}

/// Splits `range` in two and pushes both so that the first half is sent first.
fn push_halves(stack: &mut Vec<Range<usize>>, range: Range<usize>) {
    let mid = range.start + range.len() / 2;
    stack.push(mid..range.end);
    stack.push(range.start..mid);
}

/// The state of one route's delivery of one invocation.
pub(super) struct RouteDelivery<'a> {
    route: &'a Route,
    route_index: usize,
    last_try: bool,
    target: &'a AuditWebhook,
    events: &'a [AuditEvent],
    deadline: Instant,
    /// Planned batches under `AfterHalfTheDeadline` are retried until this instant.
    half: Instant,
    isolation: Isolation,
    /// Where what a failed try learned is kept, and this invocation's key there.
    memory: &'a Learned,
    key: Option<&'a InvocationKey>,
    limits: Limits,
    tally: DeliveryTally,
    /// What this try and earlier tries of the invocation learned.
    learned: RouteLearned,
    /// Poison Events as dead letters, with their index, in the order they were found.
    poison: Vec<(usize, DeadLetter)>,
    /// Batches to send, the next one last.
    queue: Vec<Range<usize>>,
    /// Batches as planned (not split): retried until `half` under `AfterHalfTheDeadline`.
    planned: HashSet<(usize, usize)>,
    /// After a 413, one POST at a time until one passes: halves sent together would all be
    /// refused before the lowered bound is known.
    sizing: bool,
    suspects: Vec<Suspect>,
    /// Events refused for good alone, judged by [`Self::judge_refused`].
    refused: Vec<Refused>,
    /// Batches failing while nothing passed, split again only once something passes.
    deferred: Vec<Unfinished>,
    /// Batches given up on: the invocation fails.
    failed: Vec<Unfinished>,
    /// When a batch (or the probe) was last delivered.
    last_success: Option<Instant>,
    /// Deliveries so far, and at the last split of the deferred batches.
    progress: u64,
    progress_at_resume: u64,
    /// Whether the probe ran while idle, and whether the deferred batches were split once.
    probed: bool,
    explored: bool,
    isolation_logged: bool,
    /// One POST at a time, each once the receiver answered: a batch took the receiver down
    /// for longer than a probe waits (a crash and restart). Whether it answered since the
    /// last failure.
    stepping: bool,
    answering: bool,
}

impl<'a> RouteDelivery<'a> {
    /// Plans the batches, skipping what earlier tries delivered or isolated.
    pub(super) fn new(start: Start<'a>) -> Self {
        let Start {
            route,
            route_index,
            last_try,
            target,
            events,
            deadline,
            isolation,
            memory,
            key,
            limits,
        } = start;
        let now = Instant::now();
        let mut learned = key
            .map(|k| memory.get(k, route_index, events.len()))
            .unwrap_or_default();
        learned.events = events.len();
        let mut tally = DeliveryTally::default();
        let mut poison = Vec::new();
        for p in &learned.poison {
            let letter = poison_letter(route, &events[p.index], p.reason.clone(), p.status);
            poison.push((p.index, letter));
            tally.rejected_batches += 1;
            tally.rejected_events += 1;
        }
        // A batch that failed right after the receiver answered in an earlier try: the rest
        // first, then it, one POST at a time.
        let failing = learned.failing_after_answer.filter(|&(a, b)| {
            isolation != Isolation::Off
                && a < b
                && b <= events.len()
                && !(a..b).any(|i| learned.knows(i))
        });
        learned.failing_after_answer = failing;
        let mut queue = plan_queue(events, &learned, target, limits);
        if let Some((a, b)) = failing {
            push_pieces_under(&mut queue, a..b);
        }
        let planned = queue.iter().map(|r| (r.start, r.end)).collect();
        Self {
            route,
            route_index,
            last_try,
            target,
            events,
            deadline,
            half: now + deadline.saturating_duration_since(now) / 2,
            isolation,
            memory,
            key,
            limits,
            tally,
            learned,
            poison,
            queue,
            planned,
            sizing: false,
            suspects: Vec::new(),
            refused: Vec::new(),
            deferred: Vec::new(),
            failed: Vec::new(),
            last_success: None,
            progress: 0,
            progress_at_resume: 0,
            probed: false,
            explored: false,
            isolation_logged: false,
            stepping: failing.is_some(),
            answering: false,
        }
    }

    /// Runs to the end: every batch delivered, dead-lettered, or given up on.
    pub(super) async fn run(mut self) -> RouteOutcome {
        let mut in_flight = FuturesUnordered::new();
        loop {
            if self.stepping && !self.answering && in_flight.is_empty() && !self.queue.is_empty() {
                self.answering = self.await_receiver(false).await;
                if !self.answering {
                    self.give_up_queue("the receiver did not answer again before the deadline");
                }
            }
            self.send_more(&mut in_flight);
            match in_flight.next().await {
                Some(answer) => self.on_answer(answer),
                None => {
                    if !self.when_idle().await {
                        break;
                    }
                }
            }
        }
        self.failed.append(&mut self.deferred);
        self.judge_suspects().await;
        self.judge_refused().await;
        self.finish()
    }

    /// Fills the in-flight set from the queue, halving a batch over the byte bound.
    fn send_more(&mut self, in_flight: &mut FuturesUnordered<BoxFuture<'a, Answer>>) {
        let limit = if self.sizing || self.stepping {
            1
        } else {
            self.limits.concurrency
        };
        while in_flight.len() < limit {
            let Some(range) = self.queue.pop() else { break };
            let batch = &self.events[range.clone()];
            let format = self.target.format;
            let size = encoded_len(format, batch.len(), batch.iter().map(AuditEvent::len).sum());
            if batch.len() > 1 && size > self.limits.max_bytes {
                push_halves(&mut self.queue, range);
                continue;
            }
            in_flight.push(self.post(range, size));
        }
    }

    /// The POST of one batch: retried until the deadline, until half of it for a planned batch
    /// when isolating after half the deadline, a few attempts when isolating at once.
    fn post(&self, range: Range<usize>, size: usize) -> BoxFuture<'a, Answer> {
        let body = encode(self.target.format, &self.events[range.clone()]);
        let top = self.planned.contains(&(range.start, range.end));
        let (target, deadline, half, isolation) =
            (self.target, self.deadline, self.half, self.isolation);
        // Alone right after the receiver answered: enough attempts to count against the Event.
        let failures = if self.stepping && range.len() == 1 {
            ALONE_ATTEMPTS
        } else {
            ISOLATION_FAILURES
        };
        Box::pin(async move {
            let began = Instant::now();
            let webhook = &target.webhook;
            let delivery = match isolation {
                Isolation::Off => webhook.deliver(body, deadline).await,
                Isolation::AfterHalfTheDeadline if top => webhook.deliver(body, half).await,
                _ => webhook.deliver_limited(body, deadline, failures).await,
            };
            Answer {
                range,
                size,
                began,
                delivery,
            }
        })
    }

    /// Applies the step the answer calls for.
    fn on_answer(&mut self, answer: Answer) {
        let Answer {
            range,
            size,
            began,
            delivery,
        } = answer;
        self.tally.attempts += u64::from(delivery.attempts());
        if let Delivery::Rejected {
            status: Some(413), ..
        } = &delivery
        {
            if size > 1 {
                // The receiver's limit is below ours: remember it for this route.
                self.limits.max_bytes = self.limits.max_bytes.min((size / 2).max(1));
                self.sizing = true;
            }
        }
        let isolating = match self.isolation {
            _ if Instant::now() >= self.deadline => Isolating::No,
            Isolation::Off => Isolating::No,
            Isolation::AfterHalfTheDeadline => Isolating::Transient,
            Isolation::Immediate => Isolating::Everything,
        };
        // A POST of one Event alone with all its attempts, right after the receiver answered.
        let counted = self.stepping
            && range.len() == 1
            && delivery.attempts() >= ALONE_ATTEMPTS
            && Instant::now() < self.deadline;
        let stepping = self.stepping;
        if !matches!(delivery, Delivery::Delivered { .. }) {
            self.answering = false;
        }
        let next = classify(
            delivery,
            range.len(),
            isolating,
            self.last_success.is_some(),
            stepping,
        );
        let count = range.len() as u64;
        match next {
            Next::Delivered => {
                self.tally.delivered_batches += 1;
                self.tally.delivered_events += count;
                self.learned.delivered.extend(range);
                self.last_success = Some(Instant::now());
                self.progress += 1;
                self.sizing = false;
                self.answering = true;
            }
            Next::SplitRefused(reason) => {
                tracing::warn!(
                    events = count,
                    %reason,
                    route = %self.route.name,
                    "The webhook refused a batch; splitting it to isolate the refused Events."
                );
                push_halves(&mut self.queue, range);
            }
            Next::Refused(reason, status) => self.refused.push(Refused {
                index: range.start,
                reason,
                status,
            }),
            Next::SplitFailing(reason) => {
                if !self.isolation_logged {
                    self.isolation_logged = true;
                    tracing::warn!(
                        events = count,
                        %reason,
                        route = %self.route.name,
                        "A batch keeps failing while others are delivered; splitting it to isolate the failing Events."
                    );
                }
                push_halves(&mut self.queue, range);
            }
            Next::Narrow(reason) => self.narrow(range, reason),
            Next::Suspect(reason) => self.on_suspect(range, reason, began, counted),
            Next::Defer(reason) => self.deferred.push(Unfinished { range, reason }),
            Next::GiveUp(reason) => self.failed.push(Unfinished { range, reason }),
        }
    }

    async fn probe(&mut self, empty_allowed: bool) -> bool {
        let (target, events, deadline) = (self.target, self.events, self.deadline);
        let tally = &mut self.tally;
        probe(
            target,
            events,
            &self.learned,
            deadline,
            tally,
            empty_allowed,
        )
        .await
    }

    /// On the host's last try, what is still undelivered is dead-lettered (the host would
    /// checkpoint past it): each Event, with the last reason.
    fn dead_letter_the_rest(&mut self) {
        for unfinished in std::mem::take(&mut self.failed) {
            for index in unfinished.range {
                let reason = format!(
                    "undelivered on the host's last try of the invocation: {}",
                    unfinished.reason
                );
                let letter = undelivered_letter(self.route, &self.events[index], reason);
                self.poison.push((index, letter));
                self.tally.rejected_batches += 1;
                self.tally.rejected_events += 1;
            }
        }
    }

    /// Dead-letters the Event at `index` as poison and remembers it for later tries.
    fn set_aside(&mut self, index: usize, reason: String, status: Option<u16>) {
        self.tally.rejected_batches += 1;
        self.tally.rejected_events += 1;
        let letter = poison_letter(self.route, &self.events[index], reason.clone(), status);
        self.poison.push((index, letter));
        self.learned.poison.push(Poisoned {
            index,
            reason,
            status,
        });
    }

    /// Counts what was given up on, keeps what was learned when the invocation will be tried
    /// again, and puts the dead letters in the Events' order.
    fn finish(mut self) -> RouteOutcome {
        if self.last_try {
            self.dead_letter_the_rest();
        }
        for unfinished in &self.failed {
            self.tally.failed_batches += 1;
            self.tally.failed_events += unfinished.range.len() as u64;
            self.tally.last_failure = Some(unfinished.reason.clone());
        }
        if let Some(last) = self.failed.last() {
            tracing::error!(
                events = self.tally.failed_events,
                batches = self.tally.failed_batches,
                reason = %last.reason,
                route = %self.route.name,
                webhook = %self.target.webhook.shown_url(),
                "Events are still undelivered at the end of delivery; they will be sent again."
            );
        }
        // Whatever order the concurrent POSTs ended in.
        self.poison.sort_by_key(|(index, _)| *index);
        let mut unsent: Vec<usize> = self.failed.iter().flat_map(|u| u.range.clone()).collect();
        unsent.sort_unstable();
        if let Some(key) = self.key {
            if !unsent.is_empty() {
                self.memory.put(key, self.route_index, self.learned);
            }
        }
        RouteOutcome {
            tally: self.tally,
            poison: self.poison.into_iter().map(|(_, letter)| letter).collect(),
            unsent,
        }
    }
}

//! Delivery of one invocation's routed Events: batches per route, sent concurrently (at most
//! `AUDIT_WEBHOOK_CONCURRENCY` POSTs per route), each retried until the deadline. A batch
//! refused for good is split until the refused Events stand alone and are dead-lettered.
//!
//! Once the host has retried an invocation `AUDIT_ISOLATE_AFTER_RETRIES` times (or when it
//! sends no `RetryContext`: without a retry policy a failed invocation is checkpointed and
//! lost), transient failures (5xx, resets, timeouts) are split the same way, with a few
//! attempts per POST. An Event that still fails alone is dead-lettered only when other Events
//! to the same route were delivered after its failure began (or a resent, already-delivered
//! Event passes at the end): a receiver that is simply down fails the invocation instead.
//! What each try learns is kept for the next try of the same invocation
//! ([`crate::delivery::learned`]).

use std::ops::Range;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::probe::{poison_letter, ISOLATION_FAILURES};
use super::{ActiveRoute, DeliveryTally, Forwarder, InvocationMeta, Target};
use crate::audit::{encode, encoded_len, AuditEvent};
use crate::deadletter::DeadLetter;
use crate::delivery::learned::InvocationKey;
use crate::delivery::{plan, BatchLimits, Delivery};

/// Splits `range` in two and pushes both so that the first half is sent first.
fn push_halves(stack: &mut Vec<Range<usize>>, range: Range<usize>) {
    let mid = range.start + range.len() / 2;
    stack.push(mid..range.end);
    stack.push(range.start..mid);
}

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

/// Everything one delivery did, Event by Event where it matters.
#[derive(Debug, Default)]
pub struct DeliveryOutcome {
    /// Counts, all routes together.
    pub total: DeliveryTally,
    /// Counts per delivering route, by name.
    pub per_route: Vec<(String, DeliveryTally)>,
    /// Events refused for good (or failing alone while others pass), as dead letters.
    pub poison: Vec<DeadLetter>,
    /// For each route (same index as the routed input), the indices of the Events still
    /// undelivered at the end, ascending: what a tool that must not send twice keeps.
    pub unsent: Vec<Vec<usize>>,
}

/// One route's delivery results.
pub(super) type RouteResult = (DeliveryTally, Vec<DeadLetter>, Vec<usize>);

/// An Event that failed alone during isolation: its index, why, and when its POST began.
struct Suspect {
    index: usize,
    reason: String,
    began: Instant,
}

impl Forwarder {
    /// Delivers each route's Events, routes in parallel, with no host retry context: transient
    /// failures are not isolated (used by `resend`).
    pub async fn deliver(
        &self,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> (DeliveryTally, Vec<(String, DeliveryTally)>, Vec<DeadLetter>) {
        let outcome = self.deliver_tracked(routed, deadline).await;
        (outcome.total, outcome.per_route, outcome.poison)
    }

    /// [`Forwarder::deliver`], also telling which Events are still undelivered.
    pub async fn deliver_tracked(
        &self,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> DeliveryOutcome {
        let meta = InvocationMeta {
            retry_count: Some(0),
            ..InvocationMeta::default()
        };
        self.deliver_invocation_tracked(&meta, routed, deadline)
            .await
    }

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

    /// Delivers each route's Events, routes in parallel. Returns only once every batch has a
    /// final result: the total, the tally of each route, and the poison Events set aside.
    pub async fn deliver_invocation(
        &self,
        meta: &InvocationMeta,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> (DeliveryTally, Vec<(String, DeliveryTally)>, Vec<DeadLetter>) {
        let outcome = self
            .deliver_invocation_tracked(meta, routed, deadline)
            .await;
        (outcome.total, outcome.per_route, outcome.poison)
    }

    /// [`Forwarder::deliver_invocation`], also telling which Events are still undelivered.
    pub async fn deliver_invocation_tracked(
        &self,
        meta: &InvocationMeta,
        routed: &[Vec<AuditEvent>],
        deadline: Instant,
    ) -> DeliveryOutcome {
        let key = InvocationKey::new(meta.partition_id.as_deref(), &meta.sequence_numbers);
        let isolation = self.isolation(meta);
        let work =
            self.routes
                .iter()
                .zip(routed)
                .enumerate()
                .filter_map(|(index, (route, events))| {
                    let target = route.target.as_ref()?;
                    let key = key.as_ref();
                    Some(async move {
                        let (tally, poison, unsent) = self
                            .deliver_route(route, target, events, deadline, key, isolation)
                            .await;
                        (index, route.name.clone(), tally, poison, unsent)
                    })
                });
        let results = futures::future::join_all(work).await;
        let mut outcome = DeliveryOutcome {
            unsent: routed.iter().map(|_| Vec::new()).collect(),
            ..DeliveryOutcome::default()
        };
        for (index, name, tally, poison, unsent) in results {
            outcome.total.add(&tally);
            outcome.per_route.push((name, tally));
            outcome.poison.extend(poison);
            outcome.unsent[index] = unsent;
        }
        if let Some(key) = &key {
            if outcome.total.failed_batches == 0 {
                self.learned.forget(key);
            }
        }
        outcome
    }

    /// Delivers `events` in bounded batches, at most `concurrency` POSTs at once, each retried
    /// until `deadline`. See the module documentation for the splitting rules. A 413 also
    /// lowers the byte bound for every batch of this route not yet sent.
    async fn deliver_route(
        &self,
        route: &ActiveRoute,
        target: &Target,
        events: &[AuditEvent],
        deadline: Instant,
        key: Option<&InvocationKey>,
        isolation: Isolation,
    ) -> RouteResult {
        let isolating = isolation != Isolation::Off;
        // Planned batches under `AfterHalfTheDeadline` are retried until this instant.
        let half = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        let mut tally = DeliveryTally::default();
        let mut poison = Vec::new();
        let mut learned = key
            .map(|k| self.learned.get(k, &route.name, events.len()))
            .unwrap_or_default();
        learned.events = events.len();
        for (index, reason, status) in &learned.poison {
            poison.push(poison_letter(
                route,
                &events[*index],
                reason.clone(),
                *status,
            ));
            tally.rejected_batches += 1;
            tally.rejected_events += 1;
        }
        let limits = BatchLimits {
            format: target.format,
            max_events: self.settings.batch_max_events,
            max_bytes: self.settings.batch_max_bytes,
        };
        let known = |i: usize| {
            learned.delivered.contains(&i) || learned.poison.iter().any(|(p, _, _)| *p == i)
        };
        let mut queue: Vec<Range<usize>> = Vec::new();
        let mut start = 0;
        while start < events.len() {
            if known(start) {
                start += 1;
                continue;
            }
            let end = (start..events.len())
                .find(|&i| known(i))
                .unwrap_or(events.len());
            queue.extend(
                plan(&events[start..end], limits)
                    .into_iter()
                    .map(|r| r.start + start..r.end + start),
            );
            start = end;
        }
        queue.reverse();
        let planned: std::collections::HashSet<(usize, usize)> =
            queue.iter().map(|r| (r.start, r.end)).collect();
        // After a 413, one POST at a time until one passes: halves sent together would all be
        // refused before the lowered bound is known.
        let mut sizing = false;
        let mut max_bytes = self.settings.batch_max_bytes;
        let mut in_flight = FuturesUnordered::new();
        let mut suspects: Vec<Suspect> = Vec::new();
        let mut deferred: Vec<(Range<usize>, String)> = Vec::new();
        let mut failed: Vec<(Range<usize>, String)> = Vec::new();
        let mut last_success: Option<Instant> = None;
        let (mut progress, mut progress_at_resume) = (0u64, 0u64);
        let (mut probed, mut explored) = (false, false);
        let mut isolation_logged = false;
        loop {
            let limit = if sizing { 1 } else { self.settings.concurrency };
            while in_flight.len() < limit {
                let Some(range) = queue.pop() else { break };
                let batch = &events[range.clone()];
                let size = encoded_len(
                    target.format,
                    batch.len(),
                    batch.iter().map(AuditEvent::len).sum(),
                );
                if batch.len() > 1 && size > max_bytes {
                    push_halves(&mut queue, range);
                    continue;
                }
                let body = encode(target.format, batch);
                let top = planned.contains(&(range.start, range.end));
                in_flight.push(async move {
                    let began = Instant::now();
                    let outcome = match isolation {
                        Isolation::Off => target.webhook.deliver(body, deadline).await,
                        Isolation::AfterHalfTheDeadline if top => {
                            target.webhook.deliver(body, half).await
                        }
                        _ => {
                            target
                                .webhook
                                .deliver_limited(body, deadline, ISOLATION_FAILURES)
                                .await
                        }
                    };
                    (range, size, began, outcome)
                });
            }
            let Some((range, size, began, outcome)) = in_flight.next().await else {
                if deferred.is_empty() || Instant::now() >= deadline {
                    break;
                }
                // Failures set aside while nothing was getting through are split again only
                // once the receiver has taken something since: a delivery in this try, or one
                // resent Event that an earlier try delivered. A receiver that is down costs a
                // few POSTs per try, not one per Event.
                if progress == progress_at_resume && !probed {
                    probed = true;
                    if self
                        .probe(target, events, &learned, deadline, &mut tally)
                        .await
                    {
                        progress += 1;
                        last_success = Some(Instant::now());
                    }
                }
                // With no evidence either way, split once: halves that pass are the evidence.
                if progress == progress_at_resume && explored {
                    break;
                }
                explored = true;
                progress_at_resume = progress;
                for (range, _) in deferred.drain(..).rev() {
                    push_halves(&mut queue, range);
                }
                continue;
            };
            let count = range.len() as u64;
            match outcome {
                Delivery::Delivered { attempts } => {
                    tally.delivered_batches += 1;
                    tally.delivered_events += count;
                    tally.attempts += u64::from(attempts);
                    learned.delivered.extend(range);
                    last_success = Some(Instant::now());
                    progress += 1;
                    sizing = false;
                }
                Delivery::Rejected {
                    reason,
                    status,
                    attempts,
                } => {
                    tally.attempts += u64::from(attempts);
                    if status == Some(413) && size > 1 {
                        // The receiver's limit is below ours: remember it for this route.
                        max_bytes = max_bytes.min((size / 2).max(1));
                        sizing = true;
                    }
                    if range.len() > 1 {
                        tracing::warn!(
                            events = count,
                            %reason,
                            route = %route.name,
                            "The webhook refused a batch; splitting it to isolate the refused Events."
                        );
                        push_halves(&mut queue, range);
                        continue;
                    }
                    tally.rejected_batches += 1;
                    tally.rejected_events += 1;
                    let event = &events[range.start];
                    tracing::error!(
                        %reason,
                        route = %route.name,
                        webhook = %target.webhook.shown_url(),
                        sequence_number = event.sequence_number(),
                        "The webhook refused an Event for good; it is dead-lettered."
                    );
                    learned
                        .poison
                        .push((range.start, reason.to_string(), status));
                    poison.push(poison_letter(route, event, reason.into_owned(), status));
                }
                Delivery::Halted { reason, attempts } => {
                    tally.attempts += u64::from(attempts);
                    failed.push((range, reason.into_owned()));
                }
                Delivery::Failed { reason, attempts } => {
                    tally.attempts += u64::from(attempts);
                    let reason = reason.into_owned();
                    if !isolating || Instant::now() >= deadline {
                        failed.push((range, reason));
                    } else if range.len() == 1 {
                        suspects.push(Suspect {
                            index: range.start,
                            reason,
                            began,
                        });
                    } else if last_success.is_some() {
                        if !isolation_logged {
                            isolation_logged = true;
                            tracing::warn!(
                                events = count,
                                %reason,
                                route = %route.name,
                                "A batch keeps failing while others are delivered; splitting it to isolate the failing Events."
                            );
                        }
                        push_halves(&mut queue, range);
                    } else {
                        deferred.push((range, reason));
                    }
                }
            }
        }
        failed.extend(deferred);
        // An Event that failed alone is poison only if the receiver took other Events after
        // its failure began; otherwise one resent, already-delivered Event must pass now.
        let mut still: Vec<Suspect> = Vec::new();
        let mut judged: Vec<Suspect> = Vec::new();
        for s in suspects {
            if last_success.is_some_and(|t| t > s.began) {
                judged.push(s);
            } else {
                still.push(s);
            }
        }
        if !still.is_empty()
            && self
                .probe(target, events, &learned, deadline, &mut tally)
                .await
        {
            judged.append(&mut still);
        }
        for s in judged {
            let reason = format!(
                "failed alone ({}) while other Events to this route were delivered",
                s.reason
            );
            let event = &events[s.index];
            tracing::error!(
                %reason,
                route = %route.name,
                webhook = %target.webhook.shown_url(),
                sequence_number = event.sequence_number(),
                "An Event keeps failing while others are delivered; it is dead-lettered."
            );
            tally.rejected_batches += 1;
            tally.rejected_events += 1;
            learned.poison.push((s.index, reason.clone(), None));
            poison.push(poison_letter(route, event, reason, None));
        }
        for s in still {
            failed.push((s.index..s.index + 1, s.reason));
        }
        for (range, reason) in &failed {
            tally.failed_batches += 1;
            tally.failed_events += range.len() as u64;
            tally.last_failure = Some(reason.clone());
        }
        if let Some((_, reason)) = failed.last() {
            tracing::error!(
                events = tally.failed_events,
                batches = tally.failed_batches,
                %reason,
                route = %route.name,
                webhook = %target.webhook.shown_url(),
                "Events are still undelivered at the end of delivery; they will be sent again."
            );
        }
        // Dead letters in the Events' order, whatever order the concurrent POSTs ended in
        // (each one was recorded in `learned.poison` as it was made).
        let mut keyed: Vec<(usize, DeadLetter)> = learned
            .poison
            .iter()
            .map(|(i, _, _)| *i)
            .zip(poison)
            .collect();
        keyed.sort_by_key(|(i, _)| *i);
        let poison: Vec<DeadLetter> = keyed.into_iter().map(|(_, d)| d).collect();
        let mut unsent: Vec<usize> = failed.iter().flat_map(|(r, _)| r.clone()).collect();
        unsent.sort_unstable();
        let any_failed = !unsent.is_empty();
        if let Some(key) = key {
            if any_failed {
                self.learned.put(key, &route.name, learned);
            }
        }
        (tally, poison, unsent)
    }
}

//! The account of one invocation: what conversion, routing and delivery did, as counts, and
//! the one-line summary that is logged and returned to the host.

use std::fmt;
use std::time::Duration;

use super::steps::StepTally;
use super::{InvocationMeta, RouteTally};
use crate::azure::ConvertTally;
use crate::redact::excerpt;

/// Delivery counts of one invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryTally {
    /// Batches the webhook accepted.
    pub delivered_batches: u64,
    /// Events in them.
    pub delivered_events: u64,
    /// Batches the webhook refused for good.
    pub rejected_batches: u64,
    /// Events in them.
    pub rejected_events: u64,
    /// Batches still failing at the deadline.
    pub failed_batches: u64,
    /// Events in them.
    pub failed_events: u64,
    /// POSTs made, retries included.
    pub attempts: u64,
    /// The last transient failure, when there was one.
    pub last_failure: Option<String>,
}

/// The one-line account of an invocation, logged and returned to the host.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `X-Azure-Functions-InvocationId`.
    pub invocation_id: Option<String>,
    /// Where the events came from.
    pub meta: InvocationMeta,
    /// Conversion counts.
    pub convert: ConvertTally,
    /// What the per-Event steps did (routing, the Policy…).
    pub steps: StepTally,
    /// Items set aside as dead letters (malformed, unrouted, poison).
    pub dead_lettered: u64,
    /// Delivery counts, all routes together.
    pub delivery: DeliveryTally,
    /// Delivery counts per route, when there is more than one route.
    pub per_route: Vec<RouteTally>,
    /// Wall time of the invocation.
    pub duration: Duration,
}

impl Summary {
    /// True when a batch is still undelivered and the invocation must be retried.
    pub fn needs_retry(&self) -> bool {
        self.delivery.failed_batches > 0
    }
}

/// Skipped categories named in the summary; the rest are counted.
const SHOWN_CATEGORIES: usize = 8;

/// A name from the input as the summary shows it: one line, at most 64 characters.
fn shown_name(name: &str) -> String {
    excerpt(name.as_bytes(), 64).replace(' ', "_")
}

impl Summary {
    /// The counts of the per-Event steps beyond `policy_dropped`, each when not zero.
    fn fmt_steps(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.steps;
        if s.duplicates > 0 {
            write!(f, " duplicates={}", s.duplicates)?;
        }
        if s.policy_unreadable > 0 {
            write!(f, " policy_unreadable={}", s.policy_unreadable)?;
        }
        if s.unrouted > 0 || s.route_dropped > 0 {
            write!(
                f,
                " unrouted={} route_dropped={}",
                s.unrouted, s.route_dropped
            )?;
        }
        for (reason, count) in &s.dropped_other {
            write!(f, " {}={count}", reason.name())?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.convert;
        let d = &self.delivery;
        let m = &self.meta;
        let outcome = if self.needs_retry() {
            "failed, will be retried"
        } else if d.rejected_batches > 0 {
            "done with rejected batches"
        } else {
            "delivered"
        };
        write!(f, "Invocation {outcome}:")?;
        if let Some(id) = &self.invocation_id {
            write!(f, " invocation={id}")?;
        }
        if let Some(p) = &m.partition_id {
            write!(f, " partition={p}")?;
        }
        if let (Some(first), Some(last)) = (m.sequence_numbers.first(), m.sequence_numbers.last()) {
            write!(f, " seq={first}..{last}")?;
        }
        if let Some(t) = &m.enqueued_first {
            write!(f, " enqueued={t}")?;
        }
        if let Some(r) = m.retry_count {
            write!(f, " retry={r}")?;
        }
        write!(
            f,
            " events={} records={} converted={} skipped={}",
            c.bodies,
            c.records,
            c.converted,
            c.skipped_total()
        )?;
        if !c.skipped.is_empty() {
            // Category names come from the input: escaped, shortened, and only the first few.
            let mut parts: Vec<String> = c
                .skipped
                .iter()
                .take(SHOWN_CATEGORIES)
                .map(|(k, v)| format!("{}:{v}", shown_name(k)))
                .collect();
            if c.skipped.len() > SHOWN_CATEGORIES {
                parts.push(format!("+{} more", c.skipped.len() - SHOWN_CATEGORIES));
            }
            write!(f, " ({})", parts.join(","))?;
        }
        write!(
            f,
            " malformed={} (events={} records={}) policy_dropped={}",
            c.malformed_bodies + c.malformed_records,
            c.malformed_bodies,
            c.malformed_records,
            self.steps.policy_dropped,
        )?;
        self.fmt_steps(f)?;
        write!(
            f,
            " delivered={} batches={} rejected={} failed={} dead_lettered={} attempts={} duration_ms={}",
            d.delivered_events,
            d.delivered_batches,
            d.rejected_events,
            d.failed_events,
            self.dead_lettered,
            d.attempts,
            self.duration.as_millis()
        )?;
        if self.per_route.len() > 1 {
            let parts: Vec<String> = self
                .per_route
                .iter()
                .map(|RouteTally { route, tally: t }| {
                    format!(
                        "{route}:delivered={},rejected={},failed={}",
                        t.delivered_events, t.rejected_events, t.failed_events
                    )
                })
                .collect();
            write!(f, " routes=[{}]", parts.join(" "))?;
        }
        if let Some(reason) = &d.last_failure {
            write!(f, " last_failure={:?}", excerpt(reason.as_bytes(), 300))?;
        }
        Ok(())
    }
}

impl DeliveryTally {
    /// Adds another tally's counts; the newest failure reason wins.
    pub(super) fn add(&mut self, other: &Self) {
        self.delivered_batches += other.delivered_batches;
        self.delivered_events += other.delivered_events;
        self.rejected_batches += other.rejected_batches;
        self.rejected_events += other.rejected_events;
        self.failed_batches += other.failed_batches;
        self.failed_events += other.failed_events;
        self.attempts += other.attempts;
        if other.last_failure.is_some() {
            self.last_failure.clone_from(&other.last_failure);
        }
    }
}

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
    /// From the oldest enqueued time of the invocation's events to the end of its delivery
    /// ([`lag_since_enqueued`]): Event Hubs Standard has no consumer-lag metric, this is it.
    pub lag: Option<Duration>,
}

/// The time from the oldest `EnqueuedTimeUtc` of `meta` to `now`: the invocation's freshness
/// when `now` is the end of its delivery. The host writes enqueued times without an offset
/// (`2026-08-01T12:00:00.123`, UTC; `host-contract.md`), sometimes with one; `None` when
/// neither the first nor the last parses. A clock behind the enqueued time gives zero.
pub fn lag_since_enqueued(meta: &InvocationMeta, now: std::time::SystemTime) -> Option<Duration> {
    use time::format_description::well_known::Rfc3339;
    let parse = |text: &Option<String>| {
        let text = text.as_deref()?.trim();
        time::OffsetDateTime::parse(text, &Rfc3339)
            .or_else(|_| time::OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
            .ok()
    };
    let oldest = [parse(&meta.enqueued_first), parse(&meta.enqueued_last)]
        .into_iter()
        .flatten()
        .min()?;
    let now = time::OffsetDateTime::from(now);
    Some(Duration::try_from(now - oldest).unwrap_or(Duration::ZERO))
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
        if s.truncated > 0 || s.too_large > 0 || s.receiver_invalid > 0 {
            write!(
                f,
                " truncated={} too_large={} receiver_invalid={}",
                s.truncated, s.too_large, s.receiver_invalid
            )?;
        }
        for (reason, count) in &s.dropped_other {
            write!(f, " {}={count}", reason.name())?;
        }
        Ok(())
    }
}

/// The outcome that opens the summary line, `Invocation <outcome>:`: every Event delivered;
/// some refused for good and dead-lettered; or failed, so the host retries the invocation
/// (logged at error level). The docs quote the line with these words.
const OUTCOMES: [&str; 3] = [
    "delivered",
    "done with rejected batches",
    "failed, will be retried",
];

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.convert;
        let d = &self.delivery;
        let m = &self.meta;
        let [delivered, rejected, failed] = OUTCOMES;
        let outcome = if self.needs_retry() {
            failed
        } else if d.rejected_batches > 0 {
            rejected
        } else {
            delivered
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
        if let Some(lag) = self.lag {
            write!(f, " lag_ms={}", lag.as_millis())?;
        }
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

#[cfg(test)]
mod lag_tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn meta(first: &str, last: &str) -> InvocationMeta {
        InvocationMeta {
            enqueued_first: Some(first.into()),
            enqueued_last: Some(last.into()),
            ..InvocationMeta::default()
        }
    }

    /// Every `Invocation <outcome>:` the README and the docs quote is one the handler writes,
    /// and the Verify step of deployment.md quotes each.
    #[test]
    fn the_docs_quote_the_summary_line_as_it_is_written() {
        let deployment = include_str!("../../docs/deployment.md");
        for (name, text) in [
            ("README.md", include_str!("../../README.md")),
            (
                "docs/operations.md",
                include_str!("../../docs/operations.md"),
            ),
            ("docs/deployment.md", deployment),
        ] {
            // A code span may wrap: Markdown reads the line break as a space.
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            for quoted in text.split("`Invocation ").skip(1) {
                let outcome = quoted.split(['`', ':']).next().unwrap_or_default();
                assert!(
                    OUTCOMES.contains(&outcome),
                    "{name} quotes `Invocation {outcome}`, which the handler never writes"
                );
            }
        }
        for outcome in OUTCOMES {
            let quoted = format!("`Invocation {outcome}: …");
            assert!(deployment.contains(&quoted), "deployment.md lacks {quoted}");
        }
    }

    /// The host's forms: no offset (UTC), with `Z` or an offset, whole seconds.
    #[test]
    fn lag_counts_from_the_oldest_enqueued_time() {
        // 2026-08-01T12:00:00Z
        let base = UNIX_EPOCH + Duration::from_secs(1_785_585_600);
        let now = base + Duration::from_millis(2_500);
        let lag = |m: &InvocationMeta| lag_since_enqueued(m, now).map(|d| d.as_millis());
        assert_eq!(
            lag(&meta("2026-08-01T12:00:00.123", "2026-08-01T12:00:01.456")),
            Some(2377)
        );
        assert_eq!(
            lag(&meta("2026-08-01T12:00:01Z", "2026-08-01T12:00:00")),
            Some(2500)
        );
        assert_eq!(
            lag(&meta("2026-08-01T14:00:00+02:00", "garbage")),
            Some(2500)
        );
        assert_eq!(lag(&meta("garbage", "")), None);
        assert_eq!(lag(&InvocationMeta::default()), None);
        // A clock behind the broker's: zero, not a panic.
        let early = lag_since_enqueued(&meta("2026-08-01T12:00:05", "x"), base);
        assert_eq!(early, Some(Duration::ZERO));
        let real = lag_since_enqueued(&meta("2026-08-01T12:00:00", "x"), SystemTime::now());
        assert!(real.is_some());
    }
}

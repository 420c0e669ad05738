//! Splits an invocation's Events into webhook batches bounded by count and encoded bytes.

use std::ops::Range;

use crate::audit::{encoded_len, AuditEvent, WebhookFormat};

/// Limits of one POST.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// How the batch is encoded.
    pub format: WebhookFormat,
    /// Most Events in one batch (1 for [`WebhookFormat::Event`], whatever is set).
    pub max_events: usize,
    /// Most encoded bytes in one batch; a single larger Event still forms a batch alone.
    pub max_bytes: usize,
}

/// Consecutive ranges of `events`, in order, each within `limits`. Every Event is in exactly
/// one range; no range is empty.
pub fn plan(events: &[AuditEvent], limits: BatchLimits) -> Vec<Range<usize>> {
    let max_events = match limits.format {
        WebhookFormat::Event => 1,
        WebhookFormat::EventList => limits.max_events.max(1),
    };
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, event) in events.iter().enumerate() {
        let count = i - start;
        let fits = count < max_events
            && encoded_len(limits.format, count + 1, bytes + event.len()) <= limits.max_bytes;
        if count > 0 && !fits {
            batches.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += event.len();
    }
    if start < events.len() {
        batches.push(start..events.len());
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{encode, event::tests::event_json};

    fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| AuditEvent::parse(&event_json(&format!("{i:04}"))).unwrap())
            .collect()
    }

    fn limits(max_events: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            format: WebhookFormat::EventList,
            max_events,
            max_bytes,
        }
    }

    /// Every Event once, in order, and no batch over either bound unless it holds one Event.
    fn check(events: &[AuditEvent], l: BatchLimits, batches: &[Range<usize>]) {
        let flat: Vec<usize> = batches.iter().flat_map(Clone::clone).collect();
        assert_eq!(flat, (0..events.len()).collect::<Vec<_>>());
        for b in batches {
            assert!(!b.is_empty());
            let size = encode(l.format, &events[b.clone()]).len();
            if b.len() > 1 {
                assert!(b.len() <= l.max_events, "{b:?}");
                assert!(size <= l.max_bytes, "{b:?}: {size} > {}", l.max_bytes);
            }
        }
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(plan(&[], limits(400, 1 << 20)).is_empty());
    }

    #[test]
    fn one_event() {
        assert_eq!(plan(&events(1), limits(400, 1 << 20)), vec![0..1]);
    }

    #[test]
    fn count_limit_edges() {
        let ev = events(9);
        for (max, want) in [(1, 9), (3, 3), (4, 3), (8, 2), (9, 1), (10, 1)] {
            let l = limits(max, 1 << 20);
            let batches = plan(&ev, l);
            assert_eq!(batches.len(), want, "max_events {max}");
            check(&ev, l, &batches);
        }
    }

    /// A batch exactly at the byte bound is allowed; one byte less splits it.
    #[test]
    fn byte_limit_is_inclusive() {
        let ev = events(4);
        let exact = encode(WebhookFormat::EventList, &ev).len();
        assert_eq!(plan(&ev, limits(400, exact)), vec![0..4]);
        let batches = plan(&ev, limits(400, exact - 1));
        assert_eq!(batches, vec![0..3, 3..4]);
        check(&ev, limits(400, exact - 1), &batches);
    }

    #[test]
    fn oversized_event_goes_alone() {
        let ev = events(3);
        let small = ev[0].len();
        let l = limits(400, small); // smaller than any encoded batch
        let batches = plan(&ev, l);
        assert_eq!(batches, vec![0..1, 1..2, 2..3]);
        check(&ev, l, &batches);
    }

    #[test]
    fn event_format_is_one_per_batch() {
        let ev = events(3);
        let l = BatchLimits {
            format: WebhookFormat::Event,
            max_events: 400,
            max_bytes: 1 << 20,
        };
        assert_eq!(plan(&ev, l), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn many_mixed_limits_hold() {
        let ev = events(257);
        for max_bytes in [2_000, 10_000, 50_000] {
            for max_events in [1, 7, 100, 400] {
                let l = limits(max_events, max_bytes);
                check(&ev, l, &plan(&ev, l));
            }
        }
    }
}

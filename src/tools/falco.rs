//! `receive --profile falco`: the local receiver holds each POST to the limits of Falco's
//! k8saudit plugin (`plugins/k8saudit/pkg/k8saudit/{source,config}.go`) and counts the Events
//! Falco would drop after answering 200, so a user sees locally what their Falco would lose.
//!
//! What the plugin does, in order: a body over `webhookMaxBatchSize` (12,582,912 bytes) or
//! without `application/json` in its `Content-Type` is refused with 400; otherwise it answers
//! 200 *before parsing*, then drops, one by one, each Event without a `stageTimestamp` that
//! Go's `time.Parse(time.RFC3339Nano, …)` reads and each Event larger than `maxEventSize`
//! (262,144 bytes) as `fastjson` re-marshals it ([`falco_size`]).

use super::receiver::ReceiverStats;
use crate::audit::measure::falco_size;
use crate::delivery::profile::{strict_rfc3339, FALCO_MAX_BODY_SIZE, FALCO_MAX_EVENT_SIZE};

/// Falco's two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FalcoLimits {
    /// `maxEventSize`, bytes as Falco re-marshals an Event.
    pub max_event_size: usize,
    /// `webhookMaxBatchSize`, bytes of a POST body.
    pub max_body_size: usize,
}

impl Default for FalcoLimits {
    fn default() -> Self {
        Self {
            max_event_size: FALCO_MAX_EVENT_SIZE,
            max_body_size: FALCO_MAX_BODY_SIZE,
        }
    }
}

/// One Event Falco would drop after answering 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalcoDrop {
    /// Its position in the POST.
    pub index: usize,
    /// Its size as Falco measures it.
    pub size: usize,
    /// Why Falco drops it, in the plugin's words where it has some.
    pub reason: String,
}

/// What Falco would make of one accepted body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FalcoView {
    /// The Events it would drop.
    pub drops: Vec<FalcoDrop>,
    /// The largest Event, as Falco measures it.
    pub largest: usize,
}

impl FalcoLimits {
    /// `Err` with Falco's 400 message when it refuses the whole body.
    ///
    /// # Errors
    /// The body is over `webhookMaxBatchSize`.
    pub fn check_body(&self, len: usize) -> Result<(), String> {
        if len > self.max_body_size {
            return Err(format!(
                "bad request: http: request body too large ({len} bytes, Falco's webhookMaxBatchSize is {})",
                self.max_body_size
            ));
        }
        Ok(())
    }

    /// What Falco would make of the Events `items` of an accepted body: the drops and the
    /// largest Event as Falco measures it.
    pub fn observe(&self, items: &[String], bare: bool) -> FalcoView {
        FalcoView {
            drops: self.drops(items, bare),
            largest: items.iter().map(|i| falco_size(i, bare)).max().unwrap_or(0),
        }
    }

    /// The Events of a body Falco accepted that it would then drop. `items` are the Events'
    /// exact texts; `bare` when the body was one Event rather than a list.
    pub fn drops(&self, items: &[String], bare: bool) -> Vec<FalcoDrop> {
        let mut out = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let size = falco_size(item, bare);
            let stamp = serde_json::from_str::<serde_json::Value>(item)
                .ok()
                .and_then(|v| v.get("stageTimestamp")?.as_str().map(str::to_string));
            let reason = match stamp {
                None => Some("can't read stageTimestamp".to_string()),
                Some(s) if strict_rfc3339(&s).is_err() => {
                    Some(format!("stageTimestamp {s:?} is not RFC 3339"))
                }
                Some(_) if size > self.max_event_size => {
                    Some(format!("event larger than maxEventSize: size={size}"))
                }
                Some(_) => None,
            };
            if let Some(reason) = reason {
                out.push(FalcoDrop {
                    index,
                    size,
                    reason,
                });
            }
        }
        out
    }
}

/// Adds what Falco would make of one body to the receiver's counts, printing each drop when
/// `print` is set.
pub(super) fn count(stats: &mut ReceiverStats, view: &FalcoView, print: bool) {
    stats.falco_dropped += view.drops.len() as u64;
    stats.falco_largest_event = stats.falco_largest_event.max(view.largest as u64);
    if print {
        for drop in &view.drops {
            outln!(
                "receiver: Falco would drop item {} ({} bytes as Falco measures it): {}",
                drop.index,
                drop.size,
                drop.reason
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: usize, stamp: &str) -> String {
        format!(
            r#"{{"kind":"Event","auditID":"a","requestObject":{{"d":"{}"}},"stageTimestamp":"{stamp}"}}"#,
            "x".repeat(data)
        )
    }

    #[test]
    fn counts_what_falco_would_drop() {
        let limits = FalcoLimits::default();
        let fits = event(1000, "2026-11-23T07:00:00Z");
        let overhead = fits.len() - 1000;
        let at_limit = event(FALCO_MAX_EVENT_SIZE - overhead, "2026-11-23T07:00:00Z");
        assert_eq!(at_limit.len(), FALCO_MAX_EVENT_SIZE);
        let over = event(FALCO_MAX_EVENT_SIZE - overhead + 1, "2026-11-23T07:00:00Z");
        let bad_stamp = event(10, "yesterday");
        let items = vec![fits, at_limit, over, bad_stamp];
        let drops = limits.drops(&items, false);
        assert_eq!(drops.iter().map(|d| d.index).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(drops[0].size, FALCO_MAX_EVENT_SIZE + 1);
        assert!(drops[0].reason.contains("maxEventSize"));
        assert!(limits.check_body(FALCO_MAX_BODY_SIZE).is_ok());
        assert!(limits.check_body(FALCO_MAX_BODY_SIZE + 1).is_err());
    }
}

//! Receiver profiles: what each audit receiver can take, so that an Event it would drop in
//! silence after answering 200 is truncated or kept aside instead.
//!
//! - `generic`: kube-apiserver's webhook backend. Truncation off unless
//!   `AUDIT_TRUNCATE_ENABLED=true`, then its defaults: 100 KiB per Event, 10 MiB per batch
//!   (`--audit-webhook-truncate-max-event-size`, `--audit-webhook-truncate-max-batch-size`).
//! - `falco`: Falco's k8saudit plugin (`plugins/k8saudit/pkg/k8saudit/{source,config}.go`)
//!   drops an Event over `maxEventSize` (262,144 bytes) as it re-marshals it
//!   ([`crate::audit::measure::falco_size`]), refuses a body over `webhookMaxBatchSize`
//!   (12,582,912 bytes) and any `Content-Type` without `application/json` (we always send
//!   `application/json`), and drops an Event whose `stageTimestamp` Go's `time.Parse` refuses.
//!   Truncation is on, measured as Falco measures; bodies stay within 12 MiB.
//! - `sysdig`: the Sysdig agent's `/k8s_audit` parser (the legacy Falco
//!   `parse_k8s_audit_json`) drops the **whole payload** when one Event lacks a
//!   `stageTimestamp` that `strptime("%Y-%m-%dT%H:%M:")` and a decimal seconds field read. Each
//!   Event's timestamp is checked before it joins a batch; one that fails is dead-lettered
//!   alone. Limits as `generic`.
//!
//! `AUDIT_TRUNCATE_*` settings override a profile's truncation values on every route.

use std::fmt;

use crate::audit::measure::Measure;
use crate::audit::truncate::truncate;
use crate::audit::{encoded_len, AuditEvent, WebhookFormat};

/// kube-apiserver's `--audit-webhook-truncate-max-event-size` default.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 100 * 1024;
/// kube-apiserver's `--audit-webhook-truncate-max-batch-size` default.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 10 * 1024 * 1024;
/// Falco k8saudit's `maxEventSize` default (`sdk.DefaultEvtSize`).
pub const FALCO_MAX_EVENT_SIZE: usize = 256 * 1024;
/// Falco k8saudit's `webhookMaxBatchSize` default: larger bodies get 400.
pub const FALCO_MAX_BODY_SIZE: usize = 12 * 1024 * 1024;

/// Which receiver a route delivers to (`AUDIT_RECEIVER`, a route's `receiver:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiverProfile {
    /// Any `audit.k8s.io` webhook, treated as kube-apiserver treats it.
    #[default]
    Generic,
    /// Falco's k8saudit plugin.
    Falco,
    /// The Sysdig agent or Sysdig Shield.
    Sysdig,
}

impl ReceiverProfile {
    /// Every profile, in documentation order.
    pub const ALL: [Self; 3] = [Self::Generic, Self::Falco, Self::Sysdig];

    /// Reads `generic`, `falco` or `sysdig`, any case; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(value.trim()))
    }

    /// The profile's name, as settings spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Falco => "falco",
            Self::Sysdig => "sysdig",
        }
    }

    /// The truncation the profile needs, before settings override it.
    pub fn truncation(self) -> Truncation {
        match self {
            Self::Generic | Self::Sysdig => Truncation {
                enabled: false,
                max_event_size: DEFAULT_MAX_EVENT_SIZE,
                max_batch_size: DEFAULT_MAX_BATCH_SIZE,
                measure: Measure::Bytes,
            },
            Self::Falco => Truncation {
                enabled: true,
                max_event_size: FALCO_MAX_EVENT_SIZE,
                max_batch_size: FALCO_MAX_BODY_SIZE,
                measure: Measure::Falco,
            },
        }
    }

    /// The largest POST body the receiver takes at all, whatever truncation does.
    pub fn max_body_size(self) -> Option<usize> {
        match self {
            Self::Falco => Some(FALCO_MAX_BODY_SIZE),
            Self::Generic | Self::Sysdig => None,
        }
    }
}

impl fmt::Display for ReceiverProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// kube-apiserver's truncate backend settings for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Whether over-sized Events are truncated (`AUDIT_TRUNCATE_ENABLED`).
    pub enabled: bool,
    /// Largest Event in bytes, under `measure` (`AUDIT_TRUNCATE_MAX_EVENT_SIZE`).
    pub max_event_size: usize,
    /// Largest batch body in bytes (`AUDIT_TRUNCATE_MAX_BATCH_SIZE`).
    pub max_batch_size: usize,
    /// How an Event's size is measured.
    pub measure: Measure,
}

/// The `AUDIT_TRUNCATE_*` settings that were set: each replaces its profile's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TruncateOverrides {
    /// `AUDIT_TRUNCATE_ENABLED`.
    pub enabled: Option<bool>,
    /// `AUDIT_TRUNCATE_MAX_EVENT_SIZE`.
    pub max_event_size: Option<usize>,
    /// `AUDIT_TRUNCATE_MAX_BATCH_SIZE`.
    pub max_batch_size: Option<usize>,
}

/// What a route does to each Event before it joins a batch, and its batch byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shaping {
    /// The receiver.
    pub profile: ReceiverProfile,
    /// Its truncation, settings applied.
    pub truncation: Truncation,
    /// How the route wraps Events.
    pub format: WebhookFormat,
}

/// One Event after [`Shaping::shape`].
#[derive(Debug)]
pub enum Shaped {
    /// Sent as it is.
    Kept(AuditEvent),
    /// Sent without its request and response objects, annotated.
    Truncated(AuditEvent),
    /// Not sent: dead-lettered with this kind and reason.
    Refused {
        /// The Event as it was before truncation.
        event: AuditEvent,
        /// Why it is not sent.
        kind: Refusal,
        /// Why, naming the limit or the receiver's rule.
        reason: String,
    },
}

/// Why [`Shaping::shape`] refused an Event (the dead letter's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the per-Event limit even truncated, or alone over the batch limit.
    TooLarge,
    /// Its `stageTimestamp` is not what the receiver's parser reads.
    ReceiverInvalid,
}

impl Shaping {
    /// The shaping of a route to `profile` in `format`, `overrides` applied.
    pub fn new(
        profile: ReceiverProfile,
        format: WebhookFormat,
        overrides: TruncateOverrides,
    ) -> Self {
        let mut truncation = profile.truncation();
        truncation.enabled = overrides.enabled.unwrap_or(truncation.enabled);
        if let Some(size) = overrides.max_event_size {
            truncation.max_event_size = size;
        }
        if let Some(size) = overrides.max_batch_size {
            truncation.max_batch_size = size;
        }
        Self {
            profile,
            truncation,
            format,
        }
    }

    /// The byte bound of a POST body: `configured` (`AUDIT_BATCH_MAX_BYTES`), lowered to
    /// the truncation batch size when truncation is on and to the receiver's body limit.
    pub fn batch_max_bytes(&self, configured: usize) -> usize {
        let mut bound = configured;
        if self.truncation.enabled {
            bound = bound.min(self.truncation.max_batch_size);
        }
        if let Some(limit) = self.profile.max_body_size() {
            bound = bound.min(limit);
        }
        bound
    }

    /// Checks `event` against what the receiver parses, then truncates it when it is over the
    /// per-Event limit. An Event still over the limit, or whose body alone would be over the
    /// batch bound, is refused (kube-apiserver drops it; we dead-letter it).
    pub fn shape(&self, event: AuditEvent, configured_batch_bytes: usize) -> Shaped {
        if let Err(reason) = self.check_timestamp(&event) {
            return Shaped::Refused {
                event,
                kind: Refusal::ReceiverInvalid,
                reason,
            };
        }
        let t = &self.truncation;
        if !t.enabled {
            return Shaped::Kept(event);
        }
        let bare = self.format == WebhookFormat::Event;
        let bound = self.batch_max_bytes(configured_batch_bytes);
        let too_large = |event: AuditEvent, reason: String| Shaped::Refused {
            event,
            kind: Refusal::TooLarge,
            reason,
        };
        let over_event_limit = |measured: usize, truncated: bool| {
            format!(
                "the Event is {measured} bytes ({}){}, over the {} receiver's per-Event limit of {} bytes (AUDIT_TRUNCATE_MAX_EVENT_SIZE)",
                t.measure.name(),
                if truncated { " even without requestObject and responseObject" } else { "" },
                self.profile,
                t.max_event_size
            )
        };
        let over_batch_limit = |body: usize| {
            format!(
                "a body holding only this Event is {body} bytes, over the route's batch limit of {bound} bytes (AUDIT_TRUNCATE_MAX_BATCH_SIZE, AUDIT_BATCH_MAX_BYTES or the receiver's body limit)"
            )
        };
        let size = t.measure.size(event.json(), bare);
        if size <= t.max_event_size {
            let body = encoded_len(self.format, 1, event.len());
            if body > bound {
                return too_large(event, over_batch_limit(body));
            }
            return Shaped::Kept(event);
        }
        // Still too large: the Event as it came is kept aside whole, nothing of it is lost.
        let Some(smaller) = truncate(&event) else {
            return too_large(event, over_event_limit(size, false));
        };
        let measured = t.measure.size(smaller.json(), bare);
        if measured > t.max_event_size {
            return too_large(event, over_event_limit(measured, true));
        }
        let body = encoded_len(self.format, 1, smaller.len());
        if body > bound {
            return too_large(event, over_batch_limit(body));
        }
        Shaped::Truncated(smaller)
    }

    /// Whether the receiver's parser reads the Event's `stageTimestamp`.
    fn check_timestamp(&self, event: &AuditEvent) -> Result<(), String> {
        if self.profile == ReceiverProfile::Generic {
            return Ok(());
        }
        #[derive(serde::Deserialize)]
        struct Stamp<'a> {
            #[serde(rename = "stageTimestamp", borrow)]
            stage_timestamp: std::borrow::Cow<'a, str>,
        }
        let stamp: Stamp<'_> = serde_json::from_str(event.json())
            .map_err(|e| format!("stageTimestamp is unreadable: {e}"))?;
        strict_rfc3339(&stamp.stage_timestamp).map_err(|why| {
            format!(
                "stageTimestamp {:?} {why}: the {} receiver would drop {}",
                stamp.stage_timestamp,
                self.profile,
                match self.profile {
                    ReceiverProfile::Sysdig => "the whole payload holding it",
                    _ => "it",
                }
            )
        })
    }
}

/// The timestamps both Go's `time.Parse(time.RFC3339Nano, …)` (Falco) and the Sysdig agent's
/// `strptime("%Y-%m-%dT%H:%M:")` + `sscanf("%lfZ")` read:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, upper-case `T` and `Z`, fields in range.
///
/// # Errors
/// What is wrong with it.
pub fn strict_rfc3339(stamp: &str) -> Result<(), &'static str> {
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let shape = "is not YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM";
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(shape);
    }
    let (Some(_), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Err(shape);
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err("has a field out of range");
    }
    let mut rest = &stamp[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err(shape);
        }
        rest = &fraction[n..];
    }
    let zone = rest.as_bytes();
    let offset_ok = zone.len() == 6
        && matches!(zone[0], b'+' | b'-')
        && zone[3] == b':'
        && zone[1..3].iter().chain(&zone[4..6]).all(u8::is_ascii_digit);
    if rest == "Z" || offset_ok {
        Ok(())
    } else {
        Err(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::truncate::TRUNCATED_ANNOTATION;

    /// A `RequestResponse` Event whose `requestObject` holds `body` bytes of data.
    fn big(body: usize, stamp: &str) -> AuditEvent {
        AuditEvent::parse(&format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"big","stage":"ResponseComplete","requestObject":{{"data":"{}"}},"stageTimestamp":"{stamp}"}}"#,
            "x".repeat(body)
        ))
        .unwrap()
    }

    const STAMP: &str = "2026-11-23T07:00:00.234567Z";

    fn shaping(profile: ReceiverProfile, overrides: TruncateOverrides) -> Shaping {
        Shaping::new(profile, WebhookFormat::EventList, overrides)
    }

    #[test]
    fn generic_sends_whole_unless_truncation_is_on() {
        let event = big(300 * 1024, STAMP);
        let off = shaping(ReceiverProfile::Generic, TruncateOverrides::default());
        assert!(matches!(
            off.shape(event.clone(), 10 << 20),
            Shaped::Kept(_)
        ));
        let on = shaping(
            ReceiverProfile::Generic,
            TruncateOverrides {
                enabled: Some(true),
                ..Default::default()
            },
        );
        let Shaped::Truncated(t) = on.shape(event, 10 << 20) else {
            panic!("not truncated")
        };
        let value: serde_json::Value = serde_json::from_str(t.json()).unwrap();
        assert!(value.get("requestObject").is_none());
        assert_eq!(value["annotations"][TRUNCATED_ANNOTATION], "true");
    }

    /// Still too large without the objects: refused, the original kept for the dead letter.
    #[test]
    fn too_large_after_truncation_is_refused_whole() {
        let event = big(2048, STAMP);
        let tiny = shaping(
            ReceiverProfile::Generic,
            TruncateOverrides {
                enabled: Some(true),
                max_event_size: Some(64),
                ..Default::default()
            },
        );
        let Shaped::Refused {
            event: kept,
            kind,
            reason,
        } = tiny.shape(event.clone(), 10 << 20)
        else {
            panic!("not refused")
        };
        assert_eq!((kept.json(), kind), (event.json(), Refusal::TooLarge));
        assert!(reason.contains("even without requestObject"), "{reason}");
        assert!(reason.contains("AUDIT_TRUNCATE_MAX_EVENT_SIZE"), "{reason}");
    }

    /// Falco measures compact JSON: a pretty-printed Event under 256 KiB as Falco measures it
    /// is kept even though its bytes are over; one over is truncated.
    #[test]
    fn falco_truncates_by_its_own_measure() {
        let falco = shaping(ReceiverProfile::Falco, TruncateOverrides::default());
        assert_eq!(falco.batch_max_bytes(64 << 20), FALCO_MAX_BODY_SIZE);
        let compact = big(200 * 1024, STAMP);
        let pretty = compact.json().replace(",\"", ",\n    \"");
        let padded = format!("{{{}{}", " ".repeat(70 * 1024), &pretty[1..]);
        let padded = AuditEvent::parse(&padded).unwrap();
        assert!(padded.len() > FALCO_MAX_EVENT_SIZE);
        assert!(matches!(falco.shape(padded, 10 << 20), Shaped::Kept(_)));
        let over = big(300 * 1024, STAMP);
        assert!(matches!(falco.shape(over, 10 << 20), Shaped::Truncated(_)));
    }

    #[test]
    fn sysdig_and_falco_refuse_timestamps_their_parsers_refuse() {
        let odd = big(1, "2026-11-23t07:00:00Z");
        for profile in [ReceiverProfile::Sysdig, ReceiverProfile::Falco] {
            let Shaped::Refused { kind, reason, .. } =
                shaping(profile, TruncateOverrides::default()).shape(odd.clone(), 10 << 20)
            else {
                panic!("{profile}: not refused")
            };
            assert_eq!(kind, Refusal::ReceiverInvalid);
            assert!(reason.contains(profile.name()), "{reason}");
        }
        let generic = shaping(ReceiverProfile::Generic, TruncateOverrides::default());
        assert!(matches!(generic.shape(odd, 10 << 20), Shaped::Kept(_)));
    }

    #[test]
    fn strict_timestamps() {
        for good in [
            "2026-11-23T07:00:00Z",
            "2026-11-23T07:00:00.234567Z",
            "2026-11-23T07:00:00.123456789+01:00",
            "2026-11-23T23:59:59-05:30",
        ] {
            assert_eq!(strict_rfc3339(good), Ok(()), "{good}");
        }
        for bad in [
            "2026-11-23t07:00:00Z",
            "2026-11-23T07:00:00z",
            "2026-11-23 07:00:00Z",
            "2026-11-23T07:00:60Z",
            "2026-13-23T07:00:00Z",
            "2026-11-23T07:00:00.Z",
            "2026-11-23T07:00:00",
            "2026-11-23T07:00:00+0100",
        ] {
            assert!(strict_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profiles_parse_by_name() {
        for p in ReceiverProfile::ALL {
            assert_eq!(ReceiverProfile::parse(&p.name().to_uppercase()), Some(p));
        }
        assert_eq!(ReceiverProfile::parse("splunk"), None);
    }
}

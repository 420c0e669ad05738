//! Dead letters: what the forwarder could not deliver and will not retry, kept for inspection
//! and replay instead of being dropped.
//!
//! Poison Events (refused for good by the receiver), Events of clusters no route takes,
//! malformed records and event bodies become one JSON line each. The handler returns them
//! through the `deadletter` blob output binding of `function.json`, so the Functions host
//! writes them to storage with its own identity, as part of the same invocation: if the write
//! fails, the invocation fails and is retried, and nothing is lost.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::audit::AuditEvent;

/// One item that could not be delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Why it was set aside.
    pub reason: String,
    /// What was set aside: `poison`, `unrouted`, `policy-unreadable`, `too-large`,
    /// `receiver-invalid`, `malformed-record`, `malformed-event`, `undelivered` or `alert` on
    /// the wire.
    pub kind: DeadLetterKind,
    /// The receiver's HTTP status, for poison Events.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// The route that refused it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// The alert rule, for `alert` items.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule: Option<String>,
    /// The notifier's name (never its URL), for `alert` items.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notifier: Option<String>,
    /// The source cluster's resource id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cluster: Option<String>,
    /// Event Hub partition.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition: Option<String>,
    /// Event Hub sequence number of the event that carried it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sequence_number: Option<i64>,
    /// The host's invocation id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub invocation_id: Option<String>,
    /// The audit Event, for poison, unrouted and alert items: ready to resend.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event: Option<Box<RawValue>>,
    /// The Event Hub event body, exactly as received, for malformed items: as text when it
    /// is UTF-8 and JSON escaping does not inflate it by more than a third, else in
    /// `rawBase64`. Kept once per event, however many of its records are bad.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw: Option<String>,
    /// The event body, base64 (standard alphabet, padded), when `raw` cannot hold it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_base64: Option<String>,
    /// The bad records of the event: their index in `records` and why, the first
    /// [`MAX_RECORD_PROBLEMS`] of them.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub records: Vec<RecordProblem>,
    /// Bad records of the event left out of `records` (the body still holds them).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub omitted_records: Option<u64>,
}

/// What a dead letter holds and why it was set aside; serialised as the kebab-case names
/// that `resend` and operators' queries read (`"poison"`, `"malformed-record"`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterKind {
    /// An Event a route's receiver refused for good, or that kept failing alone while other
    /// Events to the same route were delivered.
    Poison,
    /// An Event of a cluster that no route takes.
    Unrouted,
    /// An Event the audit Policy cannot read (`level: 5`, a key given twice).
    PolicyUnreadable,
    /// An Event over its route's per-Event limit even without its request and response
    /// objects (kube-apiserver's truncate backend would drop it), kept as it came.
    TooLarge,
    /// An Event its route's receiver cannot read (a `stageTimestamp` its parser refuses).
    ReceiverInvalid,
    /// An event body holding records that are not diagnostic records.
    MalformedRecord,
    /// An Event Hub event body that is not a diagnostic envelope.
    MalformedEvent,
    /// An Event still undelivered on the host's last try of a finite retry policy (the host
    /// checkpoints past it next).
    Undelivered,
    /// An alert card that could not be sent to its notifier (the rule, the notifier's name
    /// and the Event are kept).
    Alert,
}

impl DeadLetterKind {
    /// The name written in the `kind` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poison => "poison",
            Self::Unrouted => "unrouted",
            Self::PolicyUnreadable => "policy-unreadable",
            Self::TooLarge => "too-large",
            Self::ReceiverInvalid => "receiver-invalid",
            Self::MalformedRecord => "malformed-record",
            Self::MalformedEvent => "malformed-event",
            Self::Undelivered => "undelivered",
            Self::Alert => "alert",
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for DeadLetterKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Bad records listed per dead letter; the rest are counted in `omittedRecords`.
pub const MAX_RECORD_PROBLEMS: usize = 20;

/// One bad record of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordProblem {
    /// Index in the event's `records` array.
    pub index: usize,
    /// Why it was set aside.
    pub reason: String,
}

impl DeadLetter {
    /// A dead letter of `kind` for `reason`, with nothing else set.
    pub fn new(kind: DeadLetterKind, reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            kind,
            status: None,
            route: None,
            rule: None,
            notifier: None,
            cluster: None,
            partition: None,
            sequence_number: None,
            invocation_id: None,
            event: None,
            raw: None,
            raw_base64: None,
            records: Vec::new(),
            omitted_records: None,
        }
    }

    /// Keeps `bytes` exactly: as text when it is UTF-8 and escaping keeps it within 4/3 of its
    /// size, else as base64 (4/3 of its size). Either way a dead letter is at most about 4/3 of
    /// the bytes it keeps.
    pub fn keep_raw(&mut self, bytes: &[u8]) {
        use base64::Engine as _;
        let text = std::str::from_utf8(bytes).ok().filter(|t| {
            let escaped: usize = t
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' => 2,
                    0..=0x1f => 6,
                    _ => 1,
                })
                .sum();
            escaped <= bytes.len() + bytes.len() / 3
        });
        match text {
            Some(t) => self.raw = Some(t.to_string()),
            None => {
                self.raw_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
    }

    /// The raw bytes kept by [`Self::keep_raw`].
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        match (&self.raw, &self.raw_base64) {
            (Some(t), _) => Some(t.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            (None, None) => None,
        }
    }
}

impl DeadLetter {
    /// A dead letter carrying `event`, with its cluster and sequence number.
    pub fn for_event(event: &AuditEvent, kind: DeadLetterKind, reason: impl Into<String>) -> Self {
        let mut item = Self::new(kind, reason);
        item.cluster = event
            .source()
            .map(|id| id.to_string())
            .filter(|id| !id.is_empty());
        item.sequence_number = event.sequence_number();
        item.event = RawValue::from_string(event.json().to_string()).ok();
        item
    }
}

/// JSON lines, one dead letter a line.
pub fn to_json_lines(items: &[DeadLetter]) -> String {
    let mut out = String::new();
    for item in items {
        if let Ok(line) = serde_json::to_string(item) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Reads JSON lines of dead letters, skipping blank lines.
///
/// # Errors
/// The line number and reason of the first line that is not a dead letter.
pub fn from_json_lines(text: &str) -> Result<Vec<DeadLetter>, String> {
    // A leading UTF-8 byte order mark (some editors add one) is not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json_lines() {
        let mut poison = DeadLetter::new(DeadLetterKind::Poison, "HTTP 400 Bad Request: bad event");
        poison.status = Some(400);
        poison.sequence_number = Some(42);
        poison.event = Some(RawValue::from_string(r#"{"kind":"Event","n":2.50}"#.into()).unwrap());
        let mut bad = DeadLetter::new(
            DeadLetterKind::MalformedRecord,
            "properties.log is not JSON",
        );
        bad.raw = Some("{\"category\":\"kube-audit\"}".into());
        let text = to_json_lines(&[poison.clone(), bad.clone()]);
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.contains(r#""event":{"kind":"Event","n":2.50}"#),
            "{text}"
        );
        let back = from_json_lines(&text).unwrap();
        assert_eq!(to_json_lines(&back), text);
        assert_eq!(back[0].status, Some(400));
        assert_eq!(back[1].raw, bad.raw);
        assert!(from_json_lines("{}\n").unwrap_err().starts_with("line 1"));
        // Every kind is written as today's name and read back.
        for kind in [
            DeadLetterKind::Poison,
            DeadLetterKind::Unrouted,
            DeadLetterKind::PolicyUnreadable,
            DeadLetterKind::MalformedRecord,
            DeadLetterKind::MalformedEvent,
            DeadLetterKind::Undelivered,
        ] {
            let line = to_json_lines(&[DeadLetter::new(kind, "r")]);
            assert_eq!(line, format!("{{\"reason\":\"r\",\"kind\":\"{kind}\"}}\n"));
            assert_eq!(from_json_lines(&line).unwrap()[0].kind, kind);
        }
    }

    /// Bytes are kept exactly: text when cheap, base64 when not UTF-8 or quote-heavy.
    #[test]
    fn raw_bytes_are_kept_exactly_and_bounded() {
        for bytes in [
            &b"{\"records\":[]}"[..],
            &[b'{', 0xff, 0x00, b'}'],
            "\"\"\"\"\"\"".as_bytes(),
            "\u{feff}{}".as_bytes(),
        ] {
            let mut item = DeadLetter::new(DeadLetterKind::MalformedEvent, "x");
            item.keep_raw(bytes);
            let line = to_json_lines(std::slice::from_ref(&item));
            assert!(line.len() < 120 + bytes.len() * 4 / 3, "{line}");
            let back = from_json_lines(&line).unwrap();
            assert_eq!(back[0].raw_bytes().unwrap(), bytes);
        }
    }
}

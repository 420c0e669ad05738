//! Input that JSON cannot carry as it is, and input in bulk: the text conversion parses when
//! an event body holds invalid UTF-8 or raw NUL bytes (so only the records holding them are
//! set aside), whole event bodies set aside with their bytes exact, and the per-invocation
//! limit on warnings about bad input.

use std::borrow::Cow;

use super::diagnostics::{BodyOrigin, Conversion};
use crate::deadletter::{DeadLetter, DeadLetterKind};

/// Warnings about bad input logged in full per invocation; the rest are counted and
/// summarised once by [`Conversion::log_suppressed`], so hostile input cannot flood the logs.
pub const WARNINGS_IN_FULL: u64 = 5;

impl Conversion {
    /// Whether the next warning is logged in full; counts it either way.
    pub(super) fn warn_in_full(&mut self) -> bool {
        self.warnings += 1;
        self.warnings <= WARNINGS_IN_FULL
    }

    /// Logs how many warnings were left out, once, at the end of the invocation.
    pub fn log_suppressed(&self) {
        if self.warnings > WARNINGS_IN_FULL {
            tracing::warn!(
                suppressed = self.warnings - WARNINGS_IN_FULL,
                "More malformed input in this invocation than is logged in full; the dead letters hold every case."
            );
        }
    }

    /// Counts and dead-letters a whole event body, its bytes kept exactly.
    pub(super) fn malformed_body(&mut self, body: &[u8], origin: BodyOrigin, reason: String) {
        self.tally.malformed_bodies += 1;
        let mut item = DeadLetter::new(DeadLetterKind::MalformedEvent, reason);
        item.sequence_number = origin.sequence_number;
        item.keep_raw(body);
        self.dead_letters.push(item);
    }
}

/// `body` as text for parsing, and the byte offsets in that text that stand for bytes JSON
/// cannot carry there (invalid UTF-8, raw NUL), each replaced by U+FFFD. Valid UTF-8 without
/// NUL is borrowed unchanged.
pub(super) fn parseable_text(body: &[u8]) -> (Cow<'_, str>, Vec<usize>) {
    if let Ok(text) = std::str::from_utf8(body) {
        if !text.contains('\0') {
            return (Cow::Borrowed(text), Vec::new());
        }
    }
    let mut text = String::with_capacity(body.len() + 16);
    let mut bad = Vec::new();
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\0' {
                bad.push(text.len());
                text.push('\u{fffd}');
            } else {
                text.push(c);
            }
        }
        if !chunk.invalid().is_empty() {
            bad.push(text.len());
            text.push('\u{fffd}');
        }
    }
    (Cow::Owned(text), bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;
    use crate::audit::AuditEvent;
    use crate::azure::convert_body;
    use crate::azure::ConvertTally;
    use crate::deadletter::DeadLetter;
    use crate::deadletter::MAX_RECORD_PROBLEMS;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn record(category: &str, log: serde_json::Value) -> serde_json::Value {
        json!({"category": category, "properties": {"log": log}})
    }

    fn convert_all(body: &[u8]) -> (Vec<AuditEvent>, ConvertTally, Vec<DeadLetter>) {
        let mut conversion = Conversion::default();
        let origin = BodyOrigin {
            index: 0,
            sequence_number: Some(7),
        };
        let categories: BTreeSet<String> = ["kube-audit".to_string()].into();
        convert_body(body, origin, &categories, &mut conversion);
        (conversion.events, conversion.tally, conversion.dead_letters)
    }

    #[test]
    fn valid_text_is_borrowed_and_bad_bytes_are_marked() {
        assert!(matches!(parseable_text(b"{}").0, Cow::Borrowed(_)));
        let (text, bad) = parseable_text(b"a\xffb\x00c");
        assert_eq!(text, "a\u{fffd}b\u{fffd}c");
        assert_eq!(bad, vec![1, 5]);
    }

    /// A record with an invalid UTF-8 byte or a raw NUL is set aside alone; its neighbours
    /// convert, and the dead letter keeps the event's bytes exactly (base64).
    #[test]
    fn bad_bytes_only_set_aside_their_record() {
        for bad in [&[0xffu8][..], &[0x00], &[0xc3]] {
            let good = event_json("good");
            let mut body = format!(
                r#"{{"records":[{{"category":"kube-audit","properties":{{"log":{good:?}}}}},{{"category":"kube-audit","properties":{{"log":"x"#
            )
            .into_bytes();
            body.extend_from_slice(bad);
            body.extend_from_slice(br#""}},"#);
            body.extend_from_slice(
                format!(r#"{{"category":"kube-audit","properties":{{"log":{good:?}}}}}]}}"#)
                    .as_bytes(),
            );
            let (events, tally, dead) = convert_all(&body);
            assert_eq!(events.len(), 2, "{bad:?}");
            assert_eq!(tally.malformed_records, 1);
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].records[0].index, 1);
            if std::str::from_utf8(&body).is_err() {
                assert!(dead[0].raw.is_none() && dead[0].raw_base64.is_some());
            }
            assert_eq!(dead[0].raw_bytes().unwrap(), body);
        }
    }

    /// Past the cap, bad records are counted, not listed; the warning is logged per event.
    #[test]
    fn many_bad_records_make_one_bounded_dead_letter() {
        let records: Vec<serde_json::Value> = (0..500)
            .map(|_| record("kube-audit", json!("not an event")))
            .collect();
        let body = json!({ "records": records }).to_string();
        let (_, _, dead) = convert_all(body.as_bytes());
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].records.len(), MAX_RECORD_PROBLEMS);
        assert_eq!(
            dead[0].omitted_records,
            Some(500 - MAX_RECORD_PROBLEMS as u64)
        );
        let line = crate::deadletter::to_json_lines(&dead);
        assert!(line.len() < body.len() * 4 / 3 + 4096, "{}", line.len());
    }
}

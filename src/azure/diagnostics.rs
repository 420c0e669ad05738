//! AKS diagnostic-settings records in, audit Events out.
//!
//! Azure Monitor packs several records into one Event Hub event:
//! `{"records":[{"category":"kube-audit","properties":{"log":"<Event JSON>"},…},…]}`.
//! Records of the configured audit categories are converted; other categories are skipped and
//! counted; anything malformed is counted and logged, and never stops the rest of the batch.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::categories::{canonical, CategoriesSeen};
use super::records::parseable_text;
pub use super::records::WARNINGS_IN_FULL;
use crate::audit::{AuditEvent, EventError};
use crate::deadletter::{DeadLetter, RecordProblem, MAX_RECORD_PROBLEMS};
use crate::redact::excerpt;

/// The UTF-8 byte order mark (`EF BB BF`), skipped where JSON text starts.
pub const UTF8_BOM: &str = "\u{feff}";

/// Characters of bad input quoted in a log line.
const EXCERPT_CHARS: usize = 120;

/// What conversion saw, for the invocation summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConvertTally {
    /// Event Hub events read.
    pub bodies: u64,
    /// Event Hub events that were not a diagnostic envelope at all.
    pub malformed_bodies: u64,
    /// Records found in the envelopes.
    pub records: u64,
    /// Records turned into audit Events.
    pub converted: u64,
    /// Records of other categories, by category.
    pub skipped: BTreeMap<String, u64>,
    /// Records of an audit category whose log is not a valid Event, or with no category.
    pub malformed_records: u64,
    /// Second copies of Events sent under both `kube-audit` and `kube-audit-admin`, dropped.
    pub duplicates: u64,
}

impl ConvertTally {
    /// Records skipped for their category, all categories together.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Everything conversion produces: the Events, the counts, and the dead letters of what
/// could not be converted.
#[derive(Debug, Default)]
pub struct Conversion {
    /// Audit Events, in order.
    pub events: Vec<AuditEvent>,
    /// Counts.
    pub tally: ConvertTally,
    /// Malformed records and event bodies, kept for inspection.
    pub dead_letters: Vec<DeadLetter>,
    /// Most records one event may hold (`None`: no limit); a larger event is dead-lettered.
    pub max_records_per_event: Option<usize>,
    /// Which audit categories each cluster sent, to find Events sent under both.
    pub categories_seen: CategoriesSeen,
    /// Warnings counted so far in this invocation (see [`WARNINGS_IN_FULL`]).
    pub warnings: u64,
}

/// An Event Hub event with more records than `AUDIT_MAX_RECORDS_PER_EVENT`: dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index} holds {count} records, more than AUDIT_MAX_RECORDS_PER_EVENT ({max})")]
pub struct TooManyRecords {
    /// Index of the event in the invocation.
    pub index: usize,
    /// Records it holds.
    pub count: usize,
    /// The limit.
    pub max: usize,
}

/// Where a body came from, for log lines.
#[derive(Debug, Clone, Copy)]
pub struct BodyOrigin {
    /// Index of the event in the invocation.
    pub index: usize,
    /// Its Event Hub sequence number, when the host sent it.
    pub sequence_number: Option<i64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceId")]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(borrow, default)]
    log: Option<&'a RawValue>,
}

/// Why a record could not be converted.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("the record is not a JSON object with a category: {0}")]
    Shape(String),
    #[error("the record holds invalid UTF-8 or a NUL byte")]
    Bytes,
    #[error("the record has no category")]
    NoCategory,
    #[error("the record has no properties.log")]
    NoLog,
    #[error("properties.log is neither a string nor an object")]
    LogType,
    #[error("properties.log is not a valid audit Event: {0}")]
    Event(#[from] EventError),
}

/// Converts one Event Hub event body, appending its audit Events to `out`.
pub fn convert_body(
    body: &[u8],
    origin: BodyOrigin,
    categories: &BTreeSet<String>,
    conversion: &mut Conversion,
) {
    conversion.tally.bodies += 1;
    // A leading UTF-8 byte order mark is not part of the JSON text (RFC 8259 §8.1 lets a
    // parser ignore it); some writers add one.
    let original = body;
    let body = body.strip_prefix(UTF8_BOM.as_bytes()).unwrap_or(body);
    // Invalid UTF-8 and raw NUL bytes are replaced for parsing and remembered, so that only
    // the records holding them are set aside and the rest of the event still converts.
    let (text, bad_bytes) = parseable_text(body);
    // An object, not the array serde would also accept for a struct.
    let is_object = text
        .bytes()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| b == b'{');
    let parsed = if is_object {
        serde_json::from_str(&text)
    } else {
        Err(serde::de::Error::custom("the event is not a JSON object"))
    };
    let envelope: Envelope<'_> = match parsed {
        Ok(envelope) => envelope,
        Err(error) => {
            if conversion.warn_in_full() {
                tracing::warn!(
                    index = origin.index,
                    sequence_number = origin.sequence_number,
                    %error,
                    excerpt = %excerpt(body, EXCERPT_CHARS),
                    "Skipping an event that is not a diagnostic-settings envelope."
                );
            }
            conversion.malformed_body(original, origin, error.to_string());
            return;
        }
    };
    if let Some(max) = conversion.max_records_per_event {
        if envelope.records.len() > max {
            let error = TooManyRecords {
                index: origin.index,
                count: envelope.records.len(),
                max,
            };
            if conversion.warn_in_full() {
                tracing::warn!(
                    %error,
                    sequence_number = origin.sequence_number,
                    "Dead-lettering an event over the records limit."
                );
            }
            conversion.malformed_body(original, origin, error.to_string());
            return;
        }
    }
    let base = text.as_ptr() as usize;
    let total = envelope.records.len();
    // Records of one envelope nearly always share a cluster: keep its id once.
    let mut source: Option<Arc<str>> = None;
    let mut problems: Vec<RecordProblem> = Vec::new();
    let mut bad = 0u64;
    let mut first_excerpt = String::new();
    for (record_index, raw) in envelope.records.into_iter().enumerate() {
        conversion.tally.records += 1;
        let start = raw.get().as_ptr() as usize - base;
        let span = start..start + raw.get().len();
        let outcome = if bad_bytes.iter().any(|b| span.contains(b)) {
            Err(Malformed(RecordError::Bytes, None))
        } else {
            convert_record(raw, categories)
        };
        match outcome {
            Ok((event, resource_id, category)) => {
                conversion.tally.converted += 1;
                let id = resource_id.as_deref().unwrap_or("").trim();
                let same = source
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(id));
                if !same {
                    source = Some(Arc::from(id.to_ascii_lowercase()));
                }
                conversion.categories_seen.note(source.as_ref(), category);
                let event = event.with_sequence_number(origin.sequence_number);
                match &source {
                    Some(s) => conversion.events.push(event.with_source(s.clone())),
                    None => conversion.events.push(event),
                }
            }
            Err(Skip(category)) => *conversion.tally.skipped.entry(category).or_default() += 1,
            Err(Malformed(error, quoted)) => {
                conversion.tally.malformed_records += 1;
                bad += 1;
                if problems.is_empty() {
                    first_excerpt = excerpt(quoted.unwrap_or(raw.get()).as_bytes(), EXCERPT_CHARS);
                }
                if problems.len() < MAX_RECORD_PROBLEMS {
                    problems.push(RecordProblem {
                        index: record_index,
                        reason: error.to_string(),
                    });
                }
            }
        }
    }
    let Some(first) = problems.first() else {
        return;
    };
    let reason = format!(
        "{bad} of {total} records are malformed; record {}: {}",
        first.index, first.reason
    );
    if conversion.warn_in_full() {
        tracing::warn!(
            index = origin.index,
            sequence_number = origin.sequence_number,
            records = bad,
            record = first.index,
            error = %first.reason,
            excerpt = %first_excerpt,
            "Skipping malformed diagnostic records; their event is dead-lettered for them."
        );
    }
    // One dead letter per event, holding its exact bytes once; the records list is capped.
    let mut item = DeadLetter::new("malformed-record", reason);
    item.sequence_number = origin.sequence_number;
    let listed = problems.len() as u64;
    item.records = problems;
    item.omitted_records = (bad > listed).then_some(bad - listed);
    item.keep_raw(original);
    conversion.dead_letters.push(item);
}

/// A record that yields no Event: another category (skipped) or broken (malformed).
enum Outcome<'a> {
    Skip(String),
    /// The error, and the text to quote when it is not the whole record (the bad log).
    Malformed(RecordError, Option<&'a str>),
}
use Outcome::{Malformed, Skip};

/// A converted record: its Event, its `resourceId` and its category.
type Converted<'a> = (AuditEvent, Option<Cow<'a, str>>, &'static str);

fn convert_record<'a>(
    raw: &'a RawValue,
    categories: &BTreeSet<String>,
) -> Result<Converted<'a>, Outcome<'a>> {
    if !raw.get().starts_with('{') {
        return Err(Malformed(
            RecordError::Shape("the record is not a JSON object".into()),
            None,
        ));
    }
    let record: Record<'a> = serde_json::from_str(raw.get())
        .map_err(|e| Malformed(RecordError::Shape(e.to_string()), None))?;
    let category = match record.category.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => c,
        _ => return Err(Malformed(RecordError::NoCategory, None)),
    };
    let wanted = categories.contains(category)
        || categories.iter().any(|c| c.eq_ignore_ascii_case(category));
    if !wanted {
        return Err(Skip(category.to_ascii_lowercase()));
    }
    let log = record
        .properties
        .as_ref()
        .and_then(|p| p.log)
        .ok_or(Malformed(RecordError::NoLog, None))?;
    let quoted = Some(log.get());
    let event = match log.get().as_bytes().first() {
        Some(b'"') => {
            let text: Cow<'_, str> = serde_json::from_str(log.get())
                .map_err(|e| Malformed(RecordError::Shape(e.to_string()), quoted))?;
            // An unescaped log without a byte-order mark is kept without another copy.
            let bom = text.trim_start().starts_with(UTF8_BOM);
            match text {
                Cow::Owned(text) if !bom => AuditEvent::parse_owned(text),
                text => {
                    let text = text.trim_start();
                    AuditEvent::parse(text.strip_prefix(UTF8_BOM).unwrap_or(text))
                }
            }
        }
        Some(b'{') => AuditEvent::parse(log.get()),
        _ => return Err(Malformed(RecordError::LogType, quoted)),
    };
    let category = canonical(category);
    event
        .map(|e| (e, record.resource_id, category))
        .map_err(|e| Malformed(e.into(), quoted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;
    use serde_json::json;

    fn categories() -> BTreeSet<String> {
        ["kube-audit".to_string(), "kube-audit-admin".to_string()].into()
    }

    fn record(category: &str, log: serde_json::Value) -> serde_json::Value {
        json!({
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "category": category,
            "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1",
            "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-1"},
            "time": "2026-11-23T07:00:00.0000000Z"
        })
    }

    fn convert(body: &[u8]) -> (Vec<AuditEvent>, ConvertTally) {
        let (events, tally, _) = convert_all(body);
        (events, tally)
    }

    fn convert_all(body: &[u8]) -> (Vec<AuditEvent>, ConvertTally, Vec<DeadLetter>) {
        let mut conversion = Conversion::default();
        let origin = BodyOrigin {
            index: 0,
            sequence_number: Some(7),
        };
        convert_body(body, origin, &categories(), &mut conversion);
        (conversion.events, conversion.tally, conversion.dead_letters)
    }

    #[test]
    fn both_audit_categories_convert_exactly() {
        let a = event_json("id-a");
        let b = event_json("id-b");
        let body = json!({"records": [
            record("kube-audit", json!(format!("{a}\n"))),
            record("kube-audit-admin", json!(b)),
        ]});
        let (events, tally) = convert(body.to_string().as_bytes());
        assert_eq!(
            events.iter().map(AuditEvent::json).collect::<Vec<_>>(),
            [a.as_str(), b.as_str()]
        );
        assert_eq!(
            (tally.records, tally.converted, tally.malformed_records),
            (2, 2, 0)
        );
    }

    #[test]
    fn a_log_that_is_already_an_object_is_accepted() {
        let a = event_json("id-obj");
        let body =
            format!(r#"{{"records":[{{"category":"kube-audit","properties":{{"log":{a}}}}}]}}"#);
        let (events, _) = convert(body.as_bytes());
        assert_eq!(events[0].json(), a);
    }

    #[test]
    fn other_categories_are_skipped_and_counted() {
        let body = json!({"records": [
            record("kube-apiserver", json!("I1123 07:00:00 plain text")),
            record("guard", json!("{}")),
            record("kube-apiserver", json!("another line")),
            record("KUBE-AUDIT", json!(event_json("upper"))),
        ]});
        let (events, tally) = convert(body.to_string().as_bytes());
        assert_eq!(events.len(), 1);
        assert_eq!(tally.skipped.get("kube-apiserver"), Some(&2));
        assert_eq!(tally.skipped.get("guard"), Some(&1));
        assert_eq!(tally.skipped_total(), 3);
    }

    /// Each malformed record is counted and skipped; its neighbours still convert.
    #[test]
    fn malformed_records_never_sink_the_batch() {
        let good = event_json("good");
        let truncated = &good[..good.len() / 2];
        let body = json!({"records": [
            record("kube-audit", json!(truncated)),
            record("kube-audit", json!("plain text, not JSON")),
            record("kube-audit", json!(42)),
            {"category": "kube-audit"},
            {"category": "kube-audit", "properties": {}},
            {"properties": {"log": good}},
            "a string where a record belongs",
            ["kube-audit", null, {"log": good}],
            record("kube-audit", json!(good.replace("ResponseComplete", "Bogus"))),
            record("kube-audit", json!(good)),
        ]});
        let (events, tally, dead) = convert_all(body.to_string().as_bytes());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].json(), good);
        assert_eq!(events[0].sequence_number(), Some(7));
        // One dead letter for the event: every bad record listed, the body kept once, exactly.
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].kind, "malformed-record");
        assert_eq!(dead[0].sequence_number, Some(7));
        assert_eq!(
            dead[0].records.iter().map(|r| r.index).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        assert_eq!(dead[0].omitted_records, None);
        assert_eq!(dead[0].raw_bytes().unwrap(), body.to_string().into_bytes());
        assert_eq!(tally.records, 10);
        assert_eq!(tally.malformed_records, 9);
        assert_eq!(tally.converted, 1);
    }

    #[test]
    fn records_per_event_limit() {
        let body = json!({"records": [record("kube-audit", json!(event_json("a"))), record("guard", json!("x"))]});
        let mut conversion = Conversion {
            max_records_per_event: Some(1),
            ..Conversion::default()
        };
        let origin = BodyOrigin {
            index: 3,
            sequence_number: None,
        };
        convert_body(
            body.to_string().as_bytes(),
            origin,
            &categories(),
            &mut conversion,
        );
        assert!(conversion.events.is_empty());
        // The event is dead-lettered whole, its bytes exact; nothing else is held up.
        assert_eq!(conversion.dead_letters.len(), 1);
        let item = &conversion.dead_letters[0];
        assert_eq!(item.kind, "malformed-event");
        assert!(
            item.reason.contains("AUDIT_MAX_RECORDS_PER_EVENT (1)"),
            "{}",
            item.reason
        );
        assert_eq!(item.raw_bytes().unwrap(), body.to_string().into_bytes());
    }

    #[test]
    fn bodies_that_are_not_envelopes_are_counted() {
        for body in [
            &b"hello"[..],
            b"{\"records\":5}",
            b"[]",
            b"{\"records\":[",
            &[0xff, 0xfe],
        ] {
            let (events, tally) = convert(body);
            assert!(events.is_empty());
            assert_eq!((tally.bodies, tally.malformed_bodies), (1, 1), "{body:?}");
        }
        let (_, tally) = convert(br#"{"records":[]}"#);
        assert_eq!(
            (tally.bodies, tally.malformed_bodies, tally.records),
            (1, 0, 0)
        );
    }
}

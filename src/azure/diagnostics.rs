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

use super::bad_input::parseable_text;
pub use super::bad_input::WARNINGS_IN_FULL;
use super::categories::{canonical, CategoriesSeen, KUBE_AUDIT};
use super::onepass;
use crate::audit::text::optional;
use crate::audit::{AuditEvent, EventError};
use crate::deadletter::{DeadLetter, DeadLetterKind, RecordProblem, MAX_RECORD_PROBLEMS};
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
    #[serde(borrow, default, deserialize_with = "optional")]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceId", deserialize_with = "optional")]
    resource_id: Option<Cow<'a, str>>,
    /// Read only once the category says the record is an audit one: other services put
    /// strings or pseudo-JSON here (Function App logs).
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(borrow, default)]
    log: Option<&'a RawValue>,
}

/// Why a record could not be converted.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
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
    // Clean text takes one pass; anything unusual (and the excerpt of a warning logged in
    // full) takes the exact path below, which reads each record's raw text.
    if is_object && bad_bytes.is_empty() {
        let max = conversion.max_records_per_event;
        if let Some(outcomes) = onepass::read_records(&text, categories, max) {
            let quiet = conversion.warnings >= WARNINGS_IN_FULL;
            if quiet || !outcomes.iter().any(|o| matches!(o, Err(Malformed(..)))) {
                let mut records = EnvelopeTally::default();
                conversion.events.reserve(outcomes.len());
                for outcome in outcomes {
                    records.add(conversion, origin, outcome, || "");
                }
                records.finish(conversion, original, origin);
                return;
            }
        }
    }
    let parsed = if is_object {
        serde_json::from_str(&text)
    } else {
        Err(serde::de::Error::custom("the event is not a JSON object"))
    };
    let envelope: Envelope<'_> = match parsed {
        Ok(envelope) => envelope,
        // Another service's output on a shared hub (a PostgreSQL log line, pseudo-JSON): it
        // cannot hold an audit record, so it is another category, not a dead letter.
        Err(_) if !holds_audit_category(body) => return not_an_envelope(conversion),
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
    let mut records = EnvelopeTally::default();
    let base = text.as_ptr() as usize;
    for raw in envelope.records {
        let start = raw.get().as_ptr() as usize - base;
        let span = start..start + raw.get().len();
        let outcome = if bad_bytes.iter().any(|b| span.contains(b)) {
            // Bad bytes in a record whose category is readable and not an audit one.
            match other_category(raw, categories) {
                Some(category) => Err(Skip(category)),
                None => Err(Malformed(RecordError::Bytes, None)),
            }
        } else {
            convert_record(raw, categories)
        };
        records.add(conversion, origin, outcome, || raw.get());
    }
    records.finish(conversion, original, origin);
}

/// What one envelope's records gave so far: Events go to the conversion as they come, bad
/// records are counted and listed (capped) for the envelope's one dead letter.
#[derive(Default)]
struct EnvelopeTally {
    total: usize,
    source: Option<Arc<str>>,
    /// The category last noted in `categories_seen` for `source`: records of one envelope
    /// share both, so each pair is noted once.
    noted: Option<&'static str>,
    problems: Vec<RecordProblem>,
    bad: u64,
    first_excerpt: String,
}

impl EnvelopeTally {
    /// Adds the next record's outcome; `raw` gives its text, quoted when it is the first bad
    /// record and its error does not name a better excerpt.
    fn add<'a>(
        &mut self,
        conversion: &mut Conversion,
        origin: BodyOrigin,
        outcome: Result<RecordEvent<'a>, NoEvent<'a>>,
        raw: impl FnOnce() -> &'a str,
    ) {
        let record_index = self.total;
        self.total += 1;
        conversion.tally.records += 1;
        match outcome {
            Ok(RecordEvent {
                event,
                resource_id,
                category,
            }) => {
                conversion.tally.converted += 1;
                let id = resource_id.as_deref().unwrap_or("").trim();
                let same = self
                    .source
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(id));
                if !same {
                    self.source = Some(Arc::from(id.to_ascii_lowercase()));
                    self.noted = None;
                }
                if self.noted != Some(category) {
                    conversion
                        .categories_seen
                        .note(self.source.as_ref(), category);
                    self.noted = Some(category);
                }
                let event = event.with_sequence_number(origin.sequence_number);
                match &self.source {
                    Some(s) => conversion.events.push(event.with_source(s.clone())),
                    None => conversion.events.push(event),
                }
            }
            Err(Skip(category)) => *conversion.tally.skipped.entry(category).or_default() += 1,
            Err(Malformed(error, quoted)) => {
                conversion.tally.malformed_records += 1;
                self.bad += 1;
                if self.problems.is_empty() {
                    let text = quoted.unwrap_or_else(raw);
                    self.first_excerpt = excerpt(text.as_bytes(), EXCERPT_CHARS);
                }
                if self.problems.len() < MAX_RECORD_PROBLEMS {
                    self.problems.push(RecordProblem {
                        index: record_index,
                        reason: error.to_string(),
                    });
                }
            }
        }
    }

    /// Logs and dead-letters the envelope when any of its records was bad.
    fn finish(self, conversion: &mut Conversion, original: &[u8], origin: BodyOrigin) {
        let Some(first) = self.problems.first() else {
            return;
        };
        let (bad, total) = (self.bad, self.total);
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
                excerpt = %self.first_excerpt,
                "Skipping malformed diagnostic records; their event is dead-lettered for them."
            );
        }
        // One dead letter per event, holding its exact bytes once; the records list is capped.
        let mut item = DeadLetter::new(DeadLetterKind::MalformedRecord, reason);
        item.sequence_number = origin.sequence_number;
        let listed = self.problems.len() as u64;
        item.records = self.problems;
        item.omitted_records = (bad > listed).then_some(bad - listed);
        item.keep_raw(original);
        conversion.dead_letters.push(item);
    }
}

/// A record that yields no Event: another category (skipped) or broken (malformed).
pub(super) enum NoEvent<'a> {
    Skip(String),
    /// The error, and the text to quote when it is not the whole record (the bad log).
    Malformed(RecordError, Option<&'a str>),
}
pub(super) use NoEvent::{Malformed, Skip};

/// A converted record: its Event, its `resourceId` and its category.
pub(super) struct RecordEvent<'a> {
    /// The audit Event in `properties.log`.
    pub(super) event: AuditEvent,
    /// The record's `resourceId`, as written.
    pub(super) resource_id: Option<Cow<'a, str>>,
    /// The record's audit category, canonical (`kube-audit` or `kube-audit-admin`).
    pub(super) category: &'static str,
}

/// What [`ConvertTally::skipped`] counts a body under when it is not a diagnostic-settings
/// envelope and holds no audit category's name.
pub const NOT_AN_ENVELOPE: &str = "(not an envelope)";

/// Whether `body` holds the bytes of an audit category's name (`kube-audit`, in any case):
/// only such a body can hold an audit record.
fn holds_audit_category(body: &[u8]) -> bool {
    const NAME: &[u8] = KUBE_AUDIT.as_bytes();
    body.windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
}

/// Counts a body that cannot hold an audit record under [`NOT_AN_ENVELOPE`].
fn not_an_envelope(conversion: &mut Conversion) {
    *conversion
        .tally
        .skipped
        .entry(NOT_AN_ENVELOPE.into())
        .or_default() += 1;
}

/// The category of a record, lower-cased, when it can be read and is not an audit one.
fn other_category(raw: &RawValue, categories: &BTreeSet<String>) -> Option<String> {
    #[derive(Deserialize)]
    struct Category<'a> {
        #[serde(borrow)]
        category: Cow<'a, str>,
    }
    let category: Category<'_> = serde_json::from_str(raw.get()).ok()?;
    let category = category.category.trim();
    (!category.is_empty() && !wanted(categories, category)).then(|| category.to_ascii_lowercase())
}

fn convert_record<'a>(
    raw: &'a RawValue,
    categories: &BTreeSet<String>,
) -> Result<RecordEvent<'a>, NoEvent<'a>> {
    if !raw.get().starts_with('{') {
        return Err(Malformed(
            RecordError::Shape("the record is not a JSON object".into()),
            None,
        ));
    }
    let record: Record<'a> = match serde_json::from_str(raw.get()) {
        Ok(record) => record,
        // A readable category that is not an audit one is skipped whatever else the record
        // holds (a `resourceId` that is not a string): issue 18, shared hubs.
        Err(e) => {
            return Err(match other_category(raw, categories) {
                Some(category) => Skip(category),
                None => Malformed(RecordError::Shape(e.to_string()), None),
            })
        }
    };
    let category = match record.category.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => c,
        _ => return Err(Malformed(RecordError::NoCategory, None)),
    };
    if !wanted(categories, category) {
        return Err(Skip(category.to_ascii_lowercase()));
    }
    let properties = match record.properties.filter(|p| p.get() != "null") {
        Some(raw) => serde_json::from_str::<Properties<'a>>(raw.get())
            .map_err(|e| Malformed(RecordError::Shape(e.to_string()), None))?,
        None => return Err(Malformed(RecordError::NoLog, None)),
    };
    let log = properties
        .log
        .filter(|l| l.get() != "null")
        .ok_or(Malformed(RecordError::NoLog, None))?;
    let event = convert_log(log)?;
    Ok(RecordEvent {
        event,
        resource_id: record.resource_id,
        category: canonical(category),
    })
}

/// Whether `category` (trimmed) is one of the audit categories, in any case.
pub(super) fn wanted(categories: &BTreeSet<String>, category: &str) -> bool {
    categories.contains(category) || categories.iter().any(|c| c.eq_ignore_ascii_case(category))
}

/// The Event in a record's `properties.log`: a JSON string holding the Event (the usual
/// form) or the Event object itself.
pub(super) fn convert_log(log: &RawValue) -> Result<AuditEvent, NoEvent<'_>> {
    let quoted = Some(log.get());
    let event = match log.get().as_bytes().first() {
        Some(b'"') => {
            let text: Cow<'_, str> = serde_json::from_str(log.get())
                .map_err(|e| Malformed(RecordError::Shape(e.to_string()), quoted))?;
            event_from_text(text)
        }
        Some(b'{') => AuditEvent::parse(log.get()),
        _ => return Err(Malformed(RecordError::LogType, quoted)),
    };
    event.map_err(|e| Malformed(e.into(), quoted))
}

/// The Event in an unescaped log: surrounding whitespace and a leading byte-order mark
/// dropped, the rest kept byte for byte.
pub(super) fn event_from_text(text: Cow<'_, str>) -> Result<AuditEvent, EventError> {
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

/// The outcome of every record of `text` on the exact path (raw records, each parsed again),
/// to check the one-pass read against.
#[cfg(test)]
pub(super) fn exact_outcomes<'a>(
    text: &'a str,
    categories: &BTreeSet<String>,
) -> Option<Vec<Result<RecordEvent<'a>, NoEvent<'a>>>> {
    let envelope: Envelope<'a> = serde_json::from_str(text).ok()?;
    let outcomes = envelope.records.into_iter();
    Some(
        outcomes
            .map(|raw| convert_record(raw, categories))
            .collect(),
    )
}

//! The `audit.k8s.io/v1` Event: validated once, kept as the exact text kube-apiserver wrote.
//!
//! An Event is kept as the exact JSON text the API server wrote. It is parsed once to check
//! what receivers require (Sysdig drops a whole payload for one bad Event) and never
//! re-serialised, so unknown fields, key order and timestamp precision survive untouched.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::text::JsonStr;

/// The API version of every Event the forwarder sends.
pub const API_VERSION: &str = "audit.k8s.io/v1";

/// Spare bytes an Event unescaped from its record is given for the edits made to it later
/// (the cluster annotations take about 150 plus the length of the `resourceId`), so that they
/// are made in place instead of copying the Event.
pub const ROOM_FOR_EDITS: usize = 320;

/// A validated audit Event, held as its original JSON text, with where it came from: the
/// resource id of the Azure resource whose record carried it and the Event Hub sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The text; an Event unescaped from its record keeps [`ROOM_FOR_EDITS`] bytes of
    /// capacity, so the cluster annotations are spliced in without moving it.
    json: String,
    layout: Layout,
    source: Option<Arc<str>>,
    sequence_number: Option<i64>,
}

impl AuditEvent {
    /// Checks that `json` is one complete audit Event that receivers accept, and keeps it.
    /// Surrounding white space (AKS adds a trailing newline) is dropped.
    ///
    /// # Errors
    /// [`EventError`] naming the first problem found.
    pub fn parse(json: &str) -> Result<Self, EventError> {
        let json = json.trim();
        let layout = Self::check(json)?;
        Ok(Self::new(json.to_owned(), layout))
    }

    /// [`Self::parse`] of text the caller owns (a log unescaped from its record), kept
    /// without a copy, with the capacity it has.
    ///
    /// # Errors
    /// As [`Self::parse`].
    pub fn parse_owned(mut json: String) -> Result<Self, EventError> {
        let end = json.trim_end().len();
        json.truncate(end);
        let start = json.len() - json.trim_start().len();
        json.drain(..start);
        let layout = Self::check(&json)?;
        Ok(Self::new(json, layout))
    }

    fn new(json: String, layout: Layout) -> Self {
        Self {
            json,
            layout,
            source: None,
            sequence_number: None,
        }
    }

    /// The checks of [`Self::parse`] on trimmed text, and the layout found on the way.
    fn check(json: &str) -> Result<Layout, EventError> {
        if !json.starts_with('{') {
            return Err(EventError::NotJson("it does not start with `{`".into()));
        }
        let header: Header<'_> =
            serde_json::from_str(json).map_err(|e| EventError::NotJson(e.to_string()))?;
        let layout = header.layout(json);
        match header.kind.as_deref() {
            Some("Event") => {}
            Some(other) => return Err(EventError::Kind(other.to_string())),
            None => return Err(EventError::Missing("kind")),
        }
        match header.api_version.as_deref() {
            Some(API_VERSION) => {}
            Some(other) => return Err(EventError::ApiVersion(other.to_string())),
            None => return Err(EventError::Missing("apiVersion")),
        }
        match header.audit_id.as_deref() {
            Some(id) if !id.is_empty() => {}
            _ => return Err(EventError::Missing("auditID")),
        }
        match header.stage.as_deref() {
            Some("RequestReceived" | "ResponseStarted" | "ResponseComplete" | "Panic") => {}
            Some(other) => return Err(EventError::Stage(other.to_string())),
            None => return Err(EventError::Missing("stage")),
        }
        let stamp = header
            .stage_timestamp
            .ok_or(EventError::Missing("stageTimestamp"))?;
        time::OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339)
            .map_err(|_| EventError::Timestamp(stamp.to_string()))?;
        Ok(layout)
    }

    /// Where the members that edits touch lie in [`Self::json`], found while validating.
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The same Event with `edits` made to its text: each replaces a range of the text with
    /// new text. The layout follows the edits. `None` when ranges overlap or do not fall on
    /// character boundaries of the text.
    pub(crate) fn with_edits(&self, mut edits: Vec<(Range<usize>, String)>) -> Option<Self> {
        edits.sort_by_key(|(r, _)| (r.start, r.end));
        let old = &*self.json;
        let added: usize = edits.iter().map(|(_, t)| t.len()).sum();
        let mut out = String::with_capacity(old.len() + added);
        let mut at = 0;
        for (range, text) in &edits {
            out.push_str(old.get(at..range.start)?);
            out.push_str(text);
            at = range.end;
        }
        out.push_str(old.get(at..)?);
        Some(Self {
            json: out,
            layout: self.layout.after(&edits),
            source: self.source.clone(),
            sequence_number: self.sequence_number,
        })
    }

    /// [`Self::with_edits`] made in place: each range replaced, from the last to the first,
    /// in this Event's own text (edits near its end move only the bytes after them, and fit
    /// in [`ROOM_FOR_EDITS`] without reallocating). False, and the Event unchanged, when ranges
    /// overlap or do not fall on character boundaries.
    pub(crate) fn edit_in_place<S: AsRef<str>>(&mut self, edits: &mut [(Range<usize>, S)]) -> bool {
        edits.sort_by_key(|(r, _)| (r.start, r.end));
        let fits = |r: &Range<usize>| {
            r.start <= r.end
                && self.json.is_char_boundary(r.start)
                && self.json.is_char_boundary(r.end)
        };
        let apart = edits.windows(2).all(|w| w[0].0.end <= w[1].0.start);
        if !apart || !edits.iter().all(|(r, _)| fits(r)) {
            return false;
        }
        self.layout = self.layout.after(edits);
        for (range, text) in edits.iter().rev() {
            if range.is_empty() {
                // One move of the bytes after it (`replace_range` writes byte by byte).
                self.json.insert_str(range.start, text.as_ref());
            } else {
                self.json.replace_range(range.clone(), text.as_ref());
            }
        }
        true
    }

    /// Records where a member added by an edit holds its `annotations` value.
    pub(crate) fn with_annotations_at(mut self, span: Range<usize>) -> Self {
        self.layout.annotations = Some(span);
        self
    }

    /// The same Event with different text, produced by an edit of this validated Event.
    pub(crate) fn with_json(&self, json: String) -> Self {
        let layout = serde_json::from_str::<Header<'_>>(&json)
            .map(|h| h.layout(&json))
            .unwrap_or_default();
        Self {
            json,
            layout,
            source: self.source.clone(),
            sequence_number: self.sequence_number,
        }
    }

    /// Records the sequence number of the Event Hub event that carried it.
    pub fn with_sequence_number(mut self, sequence_number: Option<i64>) -> Self {
        self.sequence_number = sequence_number;
        self
    }

    /// The sequence number of the Event Hub event that carried it.
    pub fn sequence_number(&self) -> Option<i64> {
        self.sequence_number
    }

    /// Records the resource that emitted the Event: the record's `resourceId`, shared by the
    /// Events of one envelope.
    pub fn with_source(mut self, resource_id: Arc<str>) -> Self {
        self.source = Some(resource_id);
        self
    }

    /// The resource id of the record that carried the Event, when it named one.
    pub fn source(&self) -> Option<&Arc<str>> {
        self.source.as_ref()
    }

    /// The Event's JSON text, exactly as received (trimmed).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Encoded size inside a batch body.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// Always false: an Event is never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }
}

/// Where the top-level members that the Policy and the cluster annotations edit lie in an
/// Event's text (byte ranges of their values). `known` is false when the Event repeats one
/// of them: edits then take the slower path that parses the text again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) known: bool,
    pub(crate) level: Option<Range<usize>>,
    pub(crate) request_object: Option<Range<usize>>,
    pub(crate) response_object: Option<Range<usize>>,
    pub(crate) annotations: Option<Range<usize>>,
}

impl Layout {
    /// The layout of the text that `edits` (ordered, not overlapping) make of this one: a
    /// value replaced as a whole takes the new text's place, a value inside a removed range
    /// is gone, and every other value moves by what changed before it (or grows by what was
    /// inserted inside it).
    fn after<S: AsRef<str>>(&self, edits: &[(Range<usize>, S)]) -> Self {
        let map = |span: &Option<Range<usize>>| -> Option<Range<usize>> {
            let span = span.as_ref()?;
            let delta = |e: &(Range<usize>, S)| e.1.as_ref().len() as isize - e.0.len() as isize;
            let mut start = span.start as isize;
            let mut end = span.end as isize;
            for edit in edits {
                let range = &edit.0;
                if *range == *span {
                    let new_start = start;
                    return Some(new_start as usize..(new_start as usize + edit.1.as_ref().len()));
                }
                if range.start <= span.start && range.end >= span.end {
                    return None;
                }
                if range.end <= span.start {
                    start += delta(edit);
                }
                if range.end < span.end {
                    end += delta(edit);
                }
            }
            Some(start as usize..end as usize)
        };
        Self {
            known: self.known,
            level: map(&self.level),
            request_object: map(&self.request_object),
            response_object: map(&self.response_object),
            annotations: map(&self.annotations),
        }
    }
}

/// The fields every receiver checks, and where the members that edits touch lie. Everything
/// else is skipped unparsed (but its syntax is still checked, so the text is known to be one
/// valid JSON object).
#[derive(Default)]
struct Header<'a> {
    kind: Option<Cow<'a, str>>,
    api_version: Option<Cow<'a, str>>,
    audit_id: Option<Cow<'a, str>>,
    stage: Option<Cow<'a, str>>,
    stage_timestamp: Option<Cow<'a, str>>,
    level: Option<&'a RawValue>,
    request_object: Option<&'a RawValue>,
    response_object: Option<&'a RawValue>,
    annotations: Option<&'a RawValue>,
    repeated: bool,
}

impl<'a> Header<'a> {
    fn layout(&self, text: &str) -> Layout {
        let span = |raw: Option<&RawValue>| {
            let raw = raw?;
            let start = (raw.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
            (start + raw.get().len() <= text.len()).then_some(start..start + raw.get().len())
        };
        Layout {
            known: !self.repeated,
            level: span(self.level),
            request_object: span(self.request_object),
            response_object: span(self.response_object),
            annotations: span(self.annotations),
        }
    }
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an audit Event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut h = Header::default();
                // Keys and values borrowed from the text (`JsonStr`): no allocation per member.
                while let Some(JsonStr(key)) = map.next_key::<JsonStr<'de>>()? {
                    let text =
                        |slot: &mut Option<Cow<'de, str>>, name: &'static str, map: &mut A| {
                            if slot.is_some() {
                                return Err(serde::de::Error::duplicate_field(name));
                            }
                            *slot = map.next_value::<Option<JsonStr<'de>>>()?.map(|s| s.0);
                            Ok(())
                        };
                    let raw =
                        |slot: &mut Option<&'de RawValue>, repeated: &mut bool, map: &mut A| {
                            *repeated |= slot.is_some();
                            *slot = Some(map.next_value::<&'de RawValue>()?);
                            Ok::<(), A::Error>(())
                        };
                    match key.as_ref() {
                        "kind" => text(&mut h.kind, "kind", &mut map)?,
                        "apiVersion" => text(&mut h.api_version, "apiVersion", &mut map)?,
                        "auditID" => text(&mut h.audit_id, "auditID", &mut map)?,
                        "stage" => text(&mut h.stage, "stage", &mut map)?,
                        "stageTimestamp" => {
                            text(&mut h.stage_timestamp, "stageTimestamp", &mut map)?
                        }
                        "level" => raw(&mut h.level, &mut h.repeated, &mut map)?,
                        "requestObject" => raw(&mut h.request_object, &mut h.repeated, &mut map)?,
                        "responseObject" => raw(&mut h.response_object, &mut h.repeated, &mut map)?,
                        "annotations" => raw(&mut h.annotations, &mut h.repeated, &mut map)?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(h)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Why a record's log is not a usable audit Event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// Not one JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A required field is absent.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// `kind` is not `Event`.
    #[error("kind is {0:?}, not \"Event\"")]
    Kind(String),
    /// `apiVersion` is not `audit.k8s.io/v1`.
    #[error("apiVersion is {0:?}, not \"audit.k8s.io/v1\"")]
    ApiVersion(String),
    /// `stage` is not one of the four audit stages.
    #[error("unknown stage {0:?}")]
    Stage(String),
    /// `stageTimestamp` is not RFC 3339.
    #[error("stageTimestamp {0:?} is not an RFC 3339 time")]
    Timestamp(String),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid Event with `auditID` `id`, in kube-apiserver's compact form.
    pub(crate) fn event_json(id: &str) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{{"username":"alice"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":201}},"requestReceivedTimestamp":"2026-11-23T07:00:00.123456Z","stageTimestamp":"2026-11-23T07:00:00.234567Z","annotations":{{"authorization.k8s.io/decision":"allow"}},"futureField":{{"x":[1,2.50,"é"]}}}}"#
        )
    }

    #[test]
    fn keeps_text_exactly() {
        let text = event_json("a-1");
        let event = AuditEvent::parse(&format!("{text}\n")).unwrap();
        assert_eq!(event.json(), text);
        let owned = AuditEvent::parse_owned(format!(" \t{text}\n")).unwrap();
        assert_eq!(
            owned, event,
            "the same text and layout, kept without a copy"
        );
        // Unknown fields, number spelling and non-ASCII text are untouched.
        assert!(event.json().contains(r#""futureField":{"x":[1,2.50,"é"]}"#));
    }

    #[test]
    fn accepts_string_bodies_and_offsets() {
        let text = event_json("a-2")
            .replace(
                r#""verb":"create""#,
                r#""verb":"get","responseObject":"skipped-too-big-size-object""#,
            )
            .replace(
                "2026-11-23T07:00:00.234567Z",
                "2026-11-23T08:00:00.234567+01:00",
            );
        assert!(AuditEvent::parse(&text).is_ok());
    }

    #[test]
    fn rejects_what_receivers_reject() {
        let good = event_json("a-3");
        let cases = [
            (
                good.replace(r#""kind":"Event","#, ""),
                EventError::Missing("kind"),
            ),
            (
                good.replace(r#""kind":"Event""#, r#""kind":"EventList""#),
                EventError::Kind("EventList".into()),
            ),
            (
                good.replace("audit.k8s.io/v1", "audit.k8s.io/v1beta1"),
                EventError::ApiVersion("audit.k8s.io/v1beta1".into()),
            ),
            (
                good.replace(r#""auditID":"a-3","#, ""),
                EventError::Missing("auditID"),
            ),
            (
                good.replace(r#""auditID":"a-3""#, r#""auditID":"""#),
                EventError::Missing("auditID"),
            ),
            (
                good.replace("ResponseComplete", "Done"),
                EventError::Stage("Done".into()),
            ),
            (
                good.replace("2026-11-23T07:00:00.234567Z", "yesterday"),
                EventError::Timestamp("yesterday".into()),
            ),
            (
                good.replace(r#","stageTimestamp":"2026-11-23T07:00:00.234567Z""#, ""),
                EventError::Missing("stageTimestamp"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(AuditEvent::parse(&text), Err(want), "{text}");
        }
        for text in [
            &good[..good.len() - 40],
            "plain text log line",
            "[]",
            "{} {}",
            "",
        ] {
            assert!(
                matches!(AuditEvent::parse(text), Err(EventError::NotJson(_))),
                "{text}"
            );
        }
    }
}

//! The `audit.k8s.io/v1` Event: validated once, kept as the exact text kube-apiserver wrote.
//!
//! An Event is kept as the exact JSON text the API server wrote. It is parsed once to check
//! what receivers require (Sysdig drops a whole payload for one bad Event) and never
//! re-serialised, so unknown fields, key order and timestamp precision survive untouched.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

/// The API version of every Event the forwarder sends.
pub const API_VERSION: &str = "audit.k8s.io/v1";

/// A validated audit Event, held as its original JSON text, with where it came from: the
/// resource id of the Azure resource whose record carried it and the Event Hub sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    json: Box<str>,
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
        if !json.starts_with('{') {
            return Err(EventError::NotJson("it does not start with `{`".into()));
        }
        let header: Header<'_> =
            serde_json::from_str(json).map_err(|e| EventError::NotJson(e.to_string()))?;
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
        Ok(Self {
            json: json.into(),
            source: None,
            sequence_number: None,
        })
    }

    /// The same Event with different text, produced by an edit of this validated Event.
    pub(crate) fn with_json(&self, json: String) -> Self {
        Self {
            json: json.into(),
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

/// The fields every receiver checks. Everything else is skipped unparsed (but its syntax is
/// still checked, so the text is known to be one valid JSON object).
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stage: Option<Cow<'a, str>>,
    #[serde(rename = "stageTimestamp", borrow, default)]
    stage_timestamp: Option<Cow<'a, str>>,
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

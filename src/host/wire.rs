//! The Functions host's wire format: invocation requests in, invocation results out.
//!
//! The host POSTs `{"Data":{…},"Metadata":{…}}` (see `host-contract` §1.2–1.4 in the README's
//! references). The Event Hub trigger value under `Data` arrives in one of several encodings,
//! depending on `cardinality` and `dataType` in `function.json`; [`decode_invocation`] accepts
//! all of them and yields the raw bytes of each Event Hub event, byte-exact where the host keeps
//! them so (`binary`).

use std::collections::HashMap;
use std::ops::Range;

use base64::Engine as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::inplace::{decode_array_in_place, lead, span_of, unescape_in_place};
use super::metadata::{decode_meta, first_byte};
use crate::pipeline::{Bodies, Invocation};

/// Why an invocation request could not be read at all. Answered with 400.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The body is not a JSON object with `Data`.
    #[error("the invocation body is not a Functions host request: {0}")]
    Envelope(String),
    /// `Data` has no trigger value.
    #[error("the invocation has no trigger data under `Data`")]
    NoData,
    /// The trigger value has a shape no host encoding produces.
    #[error("the trigger data under `Data.{binding}` is not an Event Hub batch: {reason}")]
    Data {
        /// The binding name.
        binding: String,
        /// What was wrong.
        reason: String,
    },
}

/// The handler's answer to the host (`HttpScriptInvocationResult`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResult {
    /// Output bindings; the forwarder has none.
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Lines the host writes to the function's log (discarded by the host on non-2xx).
    pub logs: Vec<String>,
    /// Always null.
    pub return_value: Option<serde_json::Value>,
    /// Set on failures, for whoever reads the body (the host does not).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl InvocationResult {
    /// A result carrying `logs`, and `error` when the invocation failed.
    pub fn new(logs: Vec<String>, error: Option<String>) -> Self {
        Self {
            outputs: serde_json::Map::new(),
            logs,
            return_value: None,
            error,
        }
    }
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(rename = "Data", alias = "data", borrow, default)]
    data: Option<HashMap<String, &'a RawValue>>,
    #[serde(rename = "Metadata", alias = "metadata", borrow, default)]
    metadata: Option<HashMap<String, &'a RawValue>>,
}

/// Reads a host invocation request. The body is taken by value and decoded in place: a `many`
/// batch's events string is unescaped where it lies and each event's base64 is decoded over
/// itself, so the bodies take no more memory than the request did (see [`Bodies`]).
///
/// # Errors
/// [`HostError`] when the body is not a host request or the trigger value has no known shape.
/// Bad *event bodies* are not errors here: they are passed on and counted later.
pub fn decode_invocation(body: impl Into<Vec<u8>>) -> Result<Invocation, HostError> {
    let buffer: Vec<u8> = body.into();
    let (binding, span, meta) = {
        let request: Request<'_> =
            serde_json::from_slice(&buffer).map_err(|e| HostError::Envelope(e.to_string()))?;
        let meta = request
            .metadata
            .as_ref()
            .map(decode_meta)
            .unwrap_or_default();
        let data = request.data.unwrap_or_default();
        let (binding, raw) = pick_binding(&data).ok_or(HostError::NoData)?;
        let span = span_of(&buffer, raw.get()).ok_or_else(|| HostError::Data {
            binding: binding.to_string(),
            reason: "the trigger value lies outside the request".into(),
        })?;
        (binding.to_string(), span, meta)
    };
    let bodies =
        decode_trigger(buffer, span).map_err(|reason| HostError::Data { binding, reason })?;
    Ok(Invocation { bodies, meta })
}

/// Decodes the trigger value at `buffer[span]`: a batch in place, a single event by copy.
fn decode_trigger(mut buffer: Vec<u8>, span: Range<usize>) -> Result<Bodies, String> {
    match lead(&buffer[span.clone()]) {
        Some(b'"') => {
            let (text, controls) = unescape_in_place(&mut buffer, span)?;
            if lead(&buffer[text.clone()]) == Some(b'[') {
                return decode_array_in_place(buffer, text, !controls);
            }
            let text = std::str::from_utf8(&buffer[text])
                .map_err(|_| "the trigger value is not UTF-8 text".to_string())?;
            decode_text(text).map(Bodies::from_vecs)
        }
        Some(b'[') => decode_array_in_place(buffer, span, true),
        Some(b'{') => Bodies::in_buffer(buffer, vec![span]).ok_or_else(|| "no body".into()),
        Some(b'n') => Err("it is null".into()),
        _ => Err("expected a string, an array or an object".into()),
    }
}

/// The trigger value: the only `Data` member, or `events` when there are several.
fn pick_binding<'m, 'a>(
    data: &'m HashMap<String, &'a RawValue>,
) -> Option<(&'m str, &'a RawValue)> {
    if data.len() == 1 {
        return data.iter().next().map(|(k, v)| (k.as_str(), *v));
    }
    data.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("events"))
        .map(|(k, v)| (k.as_str(), *v))
}

// Shapes of the trigger value (host-contract §1.2):
//
// | function.json | `Data.<name>` |
// |---|---|
// | many + binary | a string holding a JSON array of base64 strings |
// | many + string | a string holding a JSON array of body strings |
// | many + unset | a string holding a JSON array of parsed bodies |
// | one + string/unset | a string holding the body as a JSON string |
// | one + binary | a base64 string |
//
// A structured array or object (no string wrapping) is accepted too.

/// The trigger value was a string that is not a batch (decoded in place): its text is a JSON
/// string (one + string) or base64 (one + binary).
fn decode_text(text: &str) -> Result<Vec<Vec<u8>>, String> {
    match first_byte(text) {
        Some(b'"') => {
            let body: String = serde_json::from_str(text)
                .map_err(|e| format!("a quoted single event that is not a JSON string: {e}"))?;
            Ok(vec![body.into_bytes()])
        }
        Some(b'{') => Ok(vec![text.as_bytes().to_vec()]),
        _ => Ok(vec![decode_element_text(text)]),
    }
}

/// A string element is base64 (`binary`) or the body itself (`string`). Every diagnostic
/// envelope starts with `{`, which base64 never contains, so the two cannot be confused for
/// any body the forwarder can use; text that is not valid base64 is passed on as it is and
/// reported as malformed later.
fn decode_element_text(text: &str) -> Vec<u8> {
    if matches!(first_byte(text), Some(b'{' | b'[')) {
        return text.as_bytes().to_vec();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_else(|_| text.as_bytes().to_vec())
}

/// The text of a JSON string literal, unescaped (what [`unescape_in_place`] does, on a copy).
#[cfg(test)]
fn unescape(literal: &str) -> Result<String, String> {
    let mut buffer = literal.as_bytes().to_vec();
    let len = buffer.len();
    let (text, _) = unescape_in_place(&mut buffer, 0..len)?;
    buffer.truncate(text.end);
    buffer.drain(..text.start);
    String::from_utf8(buffer).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::InvocationMeta;
    use serde_json::json;

    const BODY_A: &str = r#"{"records":[{"category":"kube-audit"}]}"#;
    const BODY_B: &str = "hello";

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn request(data: serde_json::Value, metadata: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"Data": {"events": data}, "Metadata": metadata})).unwrap()
    }

    fn bodies(data: serde_json::Value) -> Vec<Vec<u8>> {
        decode_invocation(request(data, json!({})))
            .unwrap()
            .bodies
            .to_vecs()
    }

    /// many + binary: a string holding a JSON array of base64 strings; bytes come back exact,
    /// non-UTF-8 included.
    #[test]
    fn many_binary() {
        let raw = [0xffu8, 0xfe, b'{'];
        let inner = serde_json::to_string(&[b64(BODY_A.as_bytes()), b64(&raw)]).unwrap();
        assert_eq!(
            bodies(json!(inner)),
            vec![BODY_A.as_bytes().to_vec(), raw.to_vec()]
        );
    }

    /// The batch is decoded inside the request's own buffer: escaped slashes in base64,
    /// white space around it, a body as text and an element that is not base64 all come back
    /// as before, and the bodies take no more room than the request did.
    #[test]
    fn many_binary_in_place() {
        let a = b64(BODY_A.as_bytes()).replace('/', "\\/");
        let inner = format!(r#"["{a}", " {} ", "not base64!", {BODY_A}]"#, b64(b"xyz"));
        let body = request(json!(inner), json!({}));
        let size = body.len();
        let bodies = decode_invocation(body).unwrap().bodies;
        assert_eq!(
            bodies.to_vecs(),
            vec![
                BODY_A.as_bytes().to_vec(),
                b"xyz".to_vec(),
                b"not base64!".to_vec(),
                BODY_A.as_bytes().to_vec()
            ]
        );
        assert!(bodies.iter().map(<[u8]>::len).sum::<usize>() < size);
    }

    /// many + string: a string holding a JSON array of body strings.
    #[test]
    fn many_string() {
        let inner = serde_json::to_string(&[BODY_A, BODY_B]).unwrap();
        assert_eq!(
            bodies(json!(inner)),
            vec![BODY_A.as_bytes().to_vec(), BODY_B.as_bytes().to_vec()]
        );
    }

    /// many + dataType unset: a string holding an array of re-serialised JSON bodies.
    #[test]
    fn many_unset_objects() {
        let inner = r#"[{"records":[]},{"records":[{"a":1}]}]"#;
        assert_eq!(
            bodies(json!(inner)),
            vec![
                br#"{"records":[]}"#.to_vec(),
                br#"{"records":[{"a":1}]}"#.to_vec()
            ]
        );
    }

    /// one + string (or unset): the body as a JSON string inside the string.
    #[test]
    fn one_string() {
        let inner = serde_json::to_string(BODY_A).unwrap();
        assert_eq!(bodies(json!(inner)), vec![BODY_A.as_bytes().to_vec()]);
        let inner = serde_json::to_string(BODY_B).unwrap();
        assert_eq!(bodies(json!(inner)), vec![BODY_B.as_bytes().to_vec()]);
    }

    /// one + binary: plain base64, not double-encoded.
    #[test]
    fn one_binary() {
        assert_eq!(
            bodies(json!(b64(BODY_A.as_bytes()))),
            vec![BODY_A.as_bytes().to_vec()]
        );
    }

    /// A structured array (no string wrapping) of strings or objects, for robustness.
    #[test]
    fn structured_array() {
        let got = bodies(json!([b64(BODY_A.as_bytes()), {"records": []}, BODY_A]));
        assert_eq!(
            got,
            vec![
                BODY_A.as_bytes().to_vec(),
                br#"{"records":[]}"#.to_vec(),
                BODY_A.as_bytes().to_vec()
            ]
        );
    }

    #[test]
    fn empty_batch_is_not_an_error() {
        assert!(bodies(json!("[]")).is_empty());
        assert!(bodies(json!([])).is_empty());
    }

    /// Text that is neither JSON nor base64 is passed on for the converter to count.
    #[test]
    fn undecodable_element_is_kept_for_counting() {
        let inner = serde_json::to_string(&["not base64 !"]).unwrap();
        assert_eq!(bodies(json!(inner)), vec![b"not base64 !".to_vec()]);
    }

    #[test]
    fn binding_name_is_free_when_alone_and_events_when_not() {
        let body = serde_json::to_vec(&json!({"Data": {"auditBatch": "[]"}})).unwrap();
        assert!(decode_invocation(&body[..]).unwrap().bodies.is_empty());
        let body =
            serde_json::to_vec(&json!({"Data": {"other": 1, "Events": "[\"e30=\"]"}})).unwrap();
        assert_eq!(
            decode_invocation(&body[..]).unwrap().bodies.to_vecs(),
            vec![b"{}".to_vec()]
        );
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            decode_invocation(b"nope"),
            Err(HostError::Envelope(_))
        ));
        assert!(matches!(
            decode_invocation(b"[1]"),
            Err(HostError::Envelope(_))
        ));
        assert!(matches!(decode_invocation(b"{}"), Err(HostError::NoData)));
        assert!(matches!(
            decode_invocation(br#"{"Data":{"a":1,"b":2}}"#),
            Err(HostError::NoData)
        ));
        let err = decode_invocation(br#"{"Data":{"events":42}}"#).unwrap_err();
        assert!(err.to_string().contains("Data.events"), "{err}");
        let err = decode_invocation(br#"{"Data":{"events":"[1,"}}"#).unwrap_err();
        assert!(matches!(err, HostError::Data { .. }), "{err}");
    }

    /// Metadata as the host writes it for `many`: arrays as JSON text in strings, partition
    /// context as an object, unknown keys ignored.
    #[test]
    fn metadata_many() {
        let meta = json!({
            "PartitionContext": {"IsCheckpointingAfterInvocation": true, "EventHubName": "aks-audit",
                                 "ConsumerGroup": "forwarder", "PartitionId": "3"},
            "SequenceNumberArray": "[4211,4212]",
            "EnqueuedTimeUtcArray": "[\"2026-08-01T12:00:00.123\",\"2026-08-01T12:00:00.456\"]",
            "RetryContext": {"RetryCount": 2, "MaxRetryCount": -1, "Exception": null},
            "SomethingNew": "[1,2,3]",
            "sys": {"MethodName": "EventHubForwarder"}
        });
        let inv = decode_invocation(request(json!("[]"), meta)).unwrap();
        assert_eq!(
            inv.meta,
            InvocationMeta {
                partition_id: Some("3".into()),
                event_hub: Some("aks-audit".into()),
                consumer_group: Some("forwarder".into()),
                sequence_numbers: vec![4211, 4212],
                enqueued_first: Some("2026-08-01T12:00:00.123".into()),
                enqueued_last: Some("2026-08-01T12:00:00.456".into()),
                retry_count: Some(2),
                max_retry_count: Some(-1),
            }
        );
    }

    /// Metadata for `one`: scalars double-encoded, keys in any case, older builds without
    /// `PartitionContext` but with `TriggerPartitionContext`.
    #[test]
    fn metadata_one_and_quirks() {
        let meta = json!({
            "triggerPartitionContext": {"PartitionId": "0"},
            "sequencenumber": "4212",
            "EnqueuedTimeUtc": "2026-08-01T12:00:00",
            "Offset": "\"8589934704\""
        });
        let inv = decode_invocation(request(json!("\"{}\""), meta)).unwrap();
        assert_eq!(inv.meta.partition_id.as_deref(), Some("0"));
        assert_eq!(inv.meta.sequence_numbers, vec![4212]);
        assert_eq!(
            inv.meta.enqueued_first.as_deref(),
            Some("2026-08-01T12:00:00")
        );
        assert_eq!(inv.meta.sequence_number(0), Some(4212));
        assert_eq!(inv.meta.sequence_number(1), None);
    }

    /// Missing or garbled metadata never fails an invocation.
    #[test]
    fn metadata_missing_or_garbled() {
        let inv = decode_invocation(br#"{"Data":{"events":"[]"}}"#).unwrap();
        assert_eq!(inv.meta, InvocationMeta::default());
        let meta = json!({"PartitionContext": "not json", "SequenceNumberArray": "[x]",
                          "EnqueuedTimeUtcArray": 7, "RetryContext": []});
        let inv = decode_invocation(request(json!("[]"), meta)).unwrap();
        assert_eq!(inv.meta, InvocationMeta::default());
    }

    /// The hand-written unescape agrees with serde_json on every escape form.
    #[test]
    fn unescape_matches_serde_json() {
        let samples = [
            "plain",
            "",
            r#"["eyJpZCI6MX0=","aGVsbG8="]"#,
            "quote \" backslash \\ slash / controls \u{8}\u{c}\n\r\t",
            "unicode é ü 日本 😀 \u{1f600}",
            "nul \u{0} and \u{1f}",
        ];
        for text in samples {
            let literal = serde_json::to_string(text).unwrap();
            assert_eq!(unescape(&literal).unwrap(), text, "{literal}");
        }
        // Escapes serde_json does not write but accepts.
        for literal in [r#""\/\u00e9\u0041""#, r#""\ud83d\ude00""#, r#""\u00""#] {
            let ours = unescape(literal);
            let theirs: Result<String, _> = serde_json::from_str(literal);
            assert_eq!(ours.ok(), theirs.ok(), "{literal}");
        }
        assert!(unescape("nope").is_err());
    }

    proptest::proptest! {
        /// Any string, as serde_json (and Json.NET) escape it, comes back unchanged.
        #[test]
        fn unescape_round_trips(text in "\\PC*") {
            let literal = serde_json::to_string(&text).unwrap();
            proptest::prop_assert_eq!(unescape(&literal).unwrap(), text);
        }
    }

    #[test]
    fn result_shape_is_what_the_host_reads() {
        let text = serde_json::to_string(&InvocationResult::new(vec!["x".into()], None)).unwrap();
        assert_eq!(text, r#"{"Outputs":{},"Logs":["x"],"ReturnValue":null}"#);
    }
}

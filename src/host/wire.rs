//! The Functions host's wire format: invocation requests in, invocation results out.
//!
//! The host POSTs `{"Data":{…},"Metadata":{…}}` (see `host-contract` §1.2–1.4 in the README's
//! references). The Event Hub trigger value under `Data` arrives in one of several encodings,
//! depending on `cardinality` and `dataType` in `function.json`; [`decode_invocation`] accepts
//! all of them and yields the raw bytes of each Event Hub event, byte-exact where the host keeps
//! them so (`binary`).

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::metadata::{decode_meta, first_byte};
use crate::pipeline::Invocation;

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

/// Reads a host invocation request. Pass the body by value to let it go as soon as the trigger
/// value is extracted: that keeps the peak memory of a large batch near twice its size.
///
/// # Errors
/// [`HostError`] when the body is not a host request or the trigger value has no known shape.
/// Bad *event bodies* are not errors here: they are passed on and counted later.
pub fn decode_invocation(body: impl AsRef<[u8]>) -> Result<Invocation, HostError> {
    let (binding, data, meta) = {
        let request: Request<'_> = serde_json::from_slice(body.as_ref())
            .map_err(|e| HostError::Envelope(e.to_string()))?;
        let meta = request
            .metadata
            .as_ref()
            .map(decode_meta)
            .unwrap_or_default();
        let data = request.data.unwrap_or_default();
        let (binding, raw) = pick_binding(&data).ok_or(HostError::NoData)?;
        let value = TriggerValue::extract(raw).map_err(|reason| HostError::Data {
            binding: binding.to_string(),
            reason,
        })?;
        (binding.to_string(), value, meta)
    };
    drop(body);
    let bodies = data
        .decode()
        .map_err(|reason| HostError::Data { binding, reason })?;
    Ok(Invocation { bodies, meta })
}

/// The trigger value, copied out of the request so the request can be freed.
enum TriggerValue {
    /// A JSON string, unescaped: a batch or a single event encoded as text.
    Text(String),
    /// A JSON array or object, as its text.
    Structured(String),
}

impl TriggerValue {
    fn extract(raw: &RawValue) -> Result<Self, String> {
        match first_byte(raw.get()) {
            Some(b'"') => unescape(raw.get()).map(Self::Text),
            Some(b'[' | b'{') => Ok(Self::Structured(raw.get().to_string())),
            Some(b'n') => Err("it is null".into()),
            _ => Err("expected a string, an array or an object".into()),
        }
    }

    fn decode(self) -> Result<Vec<Vec<u8>>, String> {
        match self {
            Self::Text(text) => decode_text(&text),
            Self::Structured(text) if first_byte(&text) == Some(b'[') => decode_array(&text),
            Self::Structured(text) => Ok(vec![text.into_bytes()]),
        }
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

/// The trigger value was a string: its text is a JSON array (many), a JSON string (one +
/// string) or base64 (one + binary).
fn decode_text(text: &str) -> Result<Vec<Vec<u8>>, String> {
    match first_byte(text) {
        Some(b'[') => decode_array(text),
        Some(b'"') => {
            let body: String = serde_json::from_str(text)
                .map_err(|e| format!("a quoted single event that is not a JSON string: {e}"))?;
            Ok(vec![body.into_bytes()])
        }
        Some(b'{') => Ok(vec![text.as_bytes().to_vec()]),
        _ => Ok(vec![decode_element_text(text)]),
    }
}

fn decode_array(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| format!("a batch that is not a JSON array: {e}"))?;
    items.into_iter().map(decode_element).collect()
}

/// One element of a `many` batch: a base64 string (binary), a body string (string) or a parsed
/// body (dataType unset).
fn decode_element(raw: &RawValue) -> Result<Vec<u8>, String> {
    if first_byte(raw.get()) == Some(b'"') {
        let text: Cow<'_, str> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        Ok(decode_element_text(&text))
    } else {
        Ok(raw.get().as_bytes().to_vec())
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

/// The text of a JSON string literal, unescaped into a buffer sized once. The trigger value of
/// a large batch is one such string of 100+ MiB; serde_json would unescape it into a growing
/// scratch buffer and then copy it, tripling the peak memory of the invocation. `literal` has
/// already been validated as JSON by the request parser.
fn unescape(literal: &str) -> Result<String, String> {
    let inner = literal
        .trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or("not a JSON string")?;
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let mut chars = rest[at + 1..].chars();
        let escape = chars.next().ok_or("a string ends with a backslash")?;
        let mut used = 1 + escape.len_utf8();
        match escape {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex = |s: &str| -> Result<u32, String> {
                    s.get(..4)
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .ok_or_else(|| "a \\u escape without four hex digits".to_string())
                };
                let after = &rest[at + 2..];
                let first = hex(after)?;
                used += 4;
                let mut code = first;
                if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate: combine with the low one that should follow.
                    if let Some(low) = after[4..].strip_prefix("\\u").and_then(|s| hex(s).ok()) {
                        if (0xDC00..0xE000).contains(&low) {
                            code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
                            used += 6;
                        }
                    }
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            other => return Err(format!("an unknown escape \\{other}")),
        }
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    Ok(out)
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
        decode_invocation(request(data, json!({}))).unwrap().bodies
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
        assert!(decode_invocation(&body).unwrap().bodies.is_empty());
        let body =
            serde_json::to_vec(&json!({"Data": {"other": 1, "Events": "[\"e30=\"]"}})).unwrap();
        assert_eq!(
            decode_invocation(&body).unwrap().bodies,
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

//! kube-apiserver's truncation of an Event that is too large for its receiver
//! (`staging/src/k8s.io/apiserver/plugin/pkg/audit/truncate/truncate.go`): an Event at level
//! `Request` or `RequestResponse` loses `requestObject` and `responseObject` and gains the
//! annotation `"audit.k8s.io/truncated": "true"`. Every other member keeps its exact bytes:
//! the edit is a splice at the ranges found while the Event was validated, and only an Event
//! whose layout is unknown (a repeated or escaped key) is rewritten member by member.

use std::ops::Range;

use crate::audit::jsonedit::{member_range, rewrite, Edit};
use crate::audit::AuditEvent;

/// The annotation kube-apiserver's truncate backend adds (`annotationKey`).
pub const TRUNCATED_ANNOTATION: &str = "audit.k8s.io/truncated";

/// The Event without its request and response objects and with
/// `"audit.k8s.io/truncated":"true"` among its annotations. `None` when truncating cannot
/// make it smaller: kube-apiserver truncates only at level `Request` or above
/// (`event.Level.GreaterOrEqual(LevelRequest)`), where the objects can be.
pub fn truncate(event: &AuditEvent) -> Option<AuditEvent> {
    let text = event.json();
    let layout = event.layout();
    let level = layout
        .level
        .as_ref()
        .and_then(|span| serde_json::from_str::<String>(&text[span.clone()]).ok());
    if !matches!(level.as_deref(), Some("Request" | "RequestResponse")) {
        return None;
    }
    Some(splice(event).unwrap_or_else(|| rewritten(event)))
}

const MEMBER: &str = r#""audit.k8s.io/truncated":"true""#;

/// The truncation as splices of the validated text; `None` when the layout is unknown or
/// the annotations already hold the key.
fn splice(event: &AuditEvent) -> Option<AuditEvent> {
    let layout = event.layout();
    if !layout.known {
        return None;
    }
    let text = event.json();
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for (key, span) in [
        ("requestObject", &layout.request_object),
        ("responseObject", &layout.response_object),
    ] {
        if let Some(span) = span {
            edits.push((member_range(text, key, span)?, String::new()));
        }
    }
    match &layout.annotations {
        Some(span) if text[span.clone()].starts_with('{') => {
            let object = &text[span.clone()];
            if object.contains(TRUNCATED_ANNOTATION) {
                return None;
            }
            let empty = object[1..object.len() - 1].trim().is_empty();
            let at = span.end - 1;
            edits.push((at..at, format!("{}{MEMBER}", if empty { "" } else { "," })));
        }
        Some(span) => edits.push((span.clone(), format!("{{{MEMBER}}}"))),
        None => {
            // Appended as the last member (an Event always has members before it).
            let at = text.len() - 1;
            let member = format!(",\"annotations\":{{{MEMBER}}}");
            let removed: usize = edits.iter().map(|(r, _)| r.len()).sum();
            let end = at - removed + member.len();
            let value = end - MEMBER.len() - 2..end;
            edits.push((at..at, member));
            return Some(event.with_edits(edits)?.with_annotations_at(value));
        }
    }
    event.with_edits(edits)
}

/// The truncation by rewriting the members (the slower path).
fn rewritten(event: &AuditEvent) -> AuditEvent {
    let fresh = format!("{{{MEMBER}}}");
    let edited = rewrite(
        event.json(),
        |key, value| match key {
            "requestObject" | "responseObject" => Edit::Drop,
            "annotations" if !value.get().trim_start().starts_with('{') => {
                Edit::Replace(fresh.clone())
            }
            "annotations" => rewrite(
                value.get(),
                |k, _| match k {
                    TRUNCATED_ANNOTATION => Edit::Replace("\"true\"".into()),
                    _ => Edit::Keep,
                },
                &[(TRUNCATED_ANNOTATION, "\"true\"".into())],
            )
            .map_or(Edit::Keep, Edit::Replace),
            _ => Edit::Keep,
        },
        &[("annotations", fresh.clone())],
    );
    match edited {
        Ok(text) => event.with_json(text),
        Err(_) => event.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(level: &str, rest: &str) -> AuditEvent {
        AuditEvent::parse(&format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"{level}","auditID":"t-1","stage":"ResponseComplete"{rest},"stageTimestamp":"2026-11-23T07:00:00.234567Z"}}"#
        ))
        .unwrap()
    }

    /// The objects go, the annotation arrives, and every other byte stays.
    #[test]
    fn drops_bodies_and_annotates_keeping_other_bytes() {
        let cases = [
            (
                r#","requestObject":{"a":1},"responseObject":{"b":[2.50]},"annotations":{"x":"\u00e9"}"#,
                r#","annotations":{"x":"\u00e9","audit.k8s.io/truncated":"true"}"#,
            ),
            (
                r#","requestObject":{"a":1},"annotations":{}"#,
                r#","annotations":{"audit.k8s.io/truncated":"true"}"#,
            ),
            (
                r#","responseObject":"skipped-too-big-size-object","annotations":null"#,
                r#","annotations":{"audit.k8s.io/truncated":"true"}"#,
            ),
            (r#","requestObject":{"a":1}"#, ""),
        ];
        for (rest, want_rest) in cases {
            let e = event("RequestResponse", rest);
            let got = truncate(&e).unwrap();
            let mut want = event("RequestResponse", want_rest).json().to_string();
            if !want_rest.contains("annotations") {
                want.insert_str(
                    want.len() - 1,
                    r#","annotations":{"audit.k8s.io/truncated":"true"}"#,
                );
            }
            assert_eq!(got.json(), want, "{rest}");
            // The layout follows the text: a second edit sees where things are.
            let again = AuditEvent::parse(got.json()).unwrap();
            assert_eq!(got.layout(), again.layout(), "{rest}");
        }
    }

    #[test]
    fn below_request_level_nothing_is_truncated() {
        assert!(truncate(&event("Metadata", "")).is_none());
        assert!(truncate(&event("None", "")).is_none());
        assert!(truncate(&event("Request", r#","requestObject":{}"#)).is_some());
    }

    /// Escaped keys and repeated members take the rewrite; the result is the same Event.
    #[test]
    fn unknown_layouts_are_rewritten() {
        let e = event(
            "Request",
            r#","request\u004fbject":{"a":1},"annotations":{"x":"y"},"annotations":{"audit.k8s.io/truncated":"false"}"#,
        );
        let got = truncate(&e).unwrap();
        let value: serde_json::Value = serde_json::from_str(got.json()).unwrap();
        assert!(value.get("requestObject").is_none(), "{}", got.json());
        assert_eq!(value["annotations"][TRUNCATED_ANNOTATION], "true");
    }
}

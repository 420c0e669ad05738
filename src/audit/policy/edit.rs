//! The Policy's edits of a recorded Event made in place: splices at the member ranges found
//! while the Event was validated, so applying a level neither parses nor re-serialises it.

use serde_json::value::RawValue;

use super::{strip_managed_fields, Level};
use crate::audit::jsonedit::member_range;
use crate::audit::AuditEvent;

/// Where `managedFields` are stripped (`omitManagedFields`): from the request object, the
/// response object, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct StripManagedFields {
    /// From `requestObject` (never for a patch: its body is recorded as sent).
    pub(super) request: bool,
    /// From `responseObject`.
    pub(super) response: bool,
}

/// The Policy's edits made as splices at the member ranges found while the Event was
/// validated, without parsing the Event again: the level replaced, bodies dropped below their
/// level, `managedFields` stripped from the request and the response object as asked. `None` when the layout is not known (a repeated member,
/// an escaped key): [`super::Policy::apply`] then rewrites the Event member by member.
pub(super) fn edit_in_place(
    event: &AuditEvent,
    set_level: bool,
    level_json: &str,
    level: Level,
    strip: StripManagedFields,
) -> Option<AuditEvent> {
    let (strip_request, strip_response) = (strip.request, strip.response);
    let layout = event.layout();
    if !layout.known {
        return None;
    }
    let text = event.json();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    if set_level {
        if let Some(span) = &layout.level {
            edits.push((span.clone(), level_json.to_string()));
        }
    }
    for (key, span, keep_from, strip) in [
        (
            "requestObject",
            &layout.request_object,
            Level::Request,
            strip_request,
        ),
        (
            "responseObject",
            &layout.response_object,
            Level::RequestResponse,
            strip_response,
        ),
    ] {
        let Some(span) = span else { continue };
        if level < keep_from {
            edits.push((member_range(text, key, span)?, String::new()));
        } else if strip {
            let value: &RawValue = serde_json::from_str(&text[span.clone()]).ok()?;
            if let Some(stripped) = strip_managed_fields(value) {
                edits.push((span.clone(), stripped));
            }
        }
    }
    event.with_edits(edits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::jsonedit::{rewrite, Edit};

    const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"e","stage":"ResponseComplete","requestObject":{"kind":"ConfigMap","metadata":{"name":"a","managedFields":[{"manager":"kubectl"}]},"data":{"k":"v"}},"responseObject":{"kind":"ConfigMap","metadata":{"managedFields":[],"uid":"1"}},"stageTimestamp":"2026-11-23T07:00:00.234567Z","annotations":{}}"#;

    /// The splices write what the member-by-member rewrite writes, at every level, with and
    /// without `omitManagedFields`, and the edited Event's layout is that of its new text.
    #[test]
    fn splices_match_the_rewrite() {
        let event = AuditEvent::parse(EVENT).unwrap();
        for level in [Level::Metadata, Level::Request, Level::RequestResponse] {
            for strip in [false, true] {
                let level_json = format!("\"{}\"", level.name());
                let set = level != Level::RequestResponse;
                let spliced = edit_in_place(
                    &event,
                    set,
                    &level_json,
                    level,
                    StripManagedFields {
                        request: strip,
                        response: strip,
                    },
                )
                .unwrap();
                let rewritten = rewrite(
                    EVENT,
                    |key, value| match key {
                        "level" if set => Edit::Replace(level_json.clone()),
                        "requestObject" if level < Level::Request => Edit::Drop,
                        "responseObject" if level < Level::RequestResponse => Edit::Drop,
                        "requestObject" | "responseObject" if strip => {
                            strip_managed_fields(value).map_or(Edit::Keep, Edit::Replace)
                        }
                        _ => Edit::Keep,
                    },
                    &[],
                )
                .unwrap();
                assert_eq!(spliced.json(), rewritten, "{level:?} strip={strip}");
                let again = AuditEvent::parse(spliced.json()).unwrap();
                assert_eq!(spliced.layout(), again.layout(), "{level:?} strip={strip}");
            }
        }
    }

    /// A repeated member leaves the layout unknown: the Policy takes the rewrite path.
    #[test]
    fn repeated_members_are_left_to_the_rewrite() {
        let text = EVENT.replace(r#""annotations":{}"#, r#""level":"Metadata""#);
        let event = AuditEvent::parse(&text).unwrap();
        assert!(edit_in_place(
            &event,
            true,
            "\"None\"",
            Level::Metadata,
            StripManagedFields::default()
        )
        .is_none());
    }
}

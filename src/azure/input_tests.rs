//! Input as AKS and Azure Monitor write it: a leading UTF-8 byte order mark, in an event body
//! or in a `properties.log` string, is not malformed (RFC 8259 §8.1 lets a parser ignore it).

use std::collections::BTreeSet;

use super::diagnostics::{convert_body, BodyOrigin, Conversion, UTF8_BOM};
use crate::audit::event::tests::event_json;

fn convert(body: &[u8]) -> Conversion {
    let categories: BTreeSet<String> = ["kube-audit".to_string()].into();
    let mut conversion = Conversion::default();
    let origin = BodyOrigin {
        index: 0,
        sequence_number: None,
    };
    convert_body(body, origin, &categories, &mut conversion);
    conversion
}

fn envelope(log: serde_json::Value) -> String {
    serde_json::json!({"records": [{"category": "kube-audit", "properties": {"log": log}}]})
        .to_string()
}

#[test]
fn a_leading_bom_in_an_event_body_is_not_malformed() {
    let event = event_json("bom-1");
    let mut body = UTF8_BOM.as_bytes().to_vec();
    body.extend_from_slice(envelope(serde_json::json!(event)).as_bytes());
    assert_eq!(&body[..3], b"\xEF\xBB\xBF");
    let out = convert(&body);
    assert_eq!(out.tally.malformed_bodies, 0, "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].json(), event);
}

#[test]
fn a_leading_bom_in_a_log_string_is_not_malformed() {
    let event = event_json("bom-2");
    for log in [
        format!("{UTF8_BOM}{event}\n"),
        format!("\n{UTF8_BOM}{event}"),
    ] {
        let out = convert(envelope(serde_json::json!(log)).as_bytes());
        assert_eq!(out.tally.malformed_records, 0, "{:?}", out.dead_letters);
        assert_eq!(out.events[0].json(), event);
    }
    // Only a leading one: a BOM inside the text is still malformed.
    let inside = format!("{}{UTF8_BOM}{}", &event[..1], &event[1..]);
    assert_eq!(
        convert(envelope(serde_json::json!(inside)).as_bytes())
            .tally
            .malformed_records,
        1
    );
}

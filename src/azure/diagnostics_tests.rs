//! Tests of the conversion of diagnostic-settings envelopes into audit Events.

use std::collections::BTreeSet;

use super::diagnostics::*;
use crate::audit::event::tests::event_json;
use crate::audit::AuditEvent;
use crate::deadletter::DeadLetter;
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
    let body = format!(r#"{{"records":[{{"category":"kube-audit","properties":{{"log":{a}}}}}]}}"#);
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

/// A record of another category is skipped whatever else it holds, bad bytes or not: a
/// `resourceId` that is not a string does not make it a dead letter. The same record of an
/// audit category is malformed.
#[test]
fn other_categories_with_a_bad_resource_id_are_skipped() {
    let mut other = record("Guard", json!("a line"));
    other["resourceId"] = json!(5);
    let mut audit = record("kube-audit", json!(event_json("bad-id")));
    audit["resourceId"] = json!(5);
    let body = json!({"records": [other.clone()]}).to_string();
    let mut bad_bytes = body.clone().into_bytes();
    let at = body.find("a line").unwrap();
    bad_bytes[at] = 0xff;
    for body in [body.into_bytes(), bad_bytes] {
        let (events, tally, dead) = convert_all(&body);
        assert!(events.is_empty());
        assert_eq!(tally.skipped.get("guard"), Some(&1), "{body:?}");
        assert_eq!((tally.malformed_records, dead.len()), (0, 0), "{body:?}");
    }
    let body = json!({"records": [audit, other]}).to_string();
    let (events, tally, dead) = convert_all(body.as_bytes());
    assert!(events.is_empty());
    assert_eq!(tally.skipped.get("guard"), Some(&1));
    assert_eq!((tally.malformed_records, dead.len()), (1, 1));
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

/// A body that is not an envelope is malformed (and dead-lettered) only when it holds an
/// audit category's name; anything else is another service's output, counted as skipped.
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
        assert_eq!((tally.bodies, tally.malformed_bodies), (1, 0), "{body:?}");
        assert_eq!(tally.skipped.get(NOT_AN_ENVELOPE), Some(&1), "{body:?}");
    }
    for body in [
        &b"{\"records\":[{\"category\":\"kube-audit\""[..],
        b"{\"records\":5,\"category\":\"KUBE-AUDIT-ADMIN\"}",
        b"kube-audit \xff",
    ] {
        let (events, tally) = convert(body);
        assert!(events.is_empty());
        assert_eq!((tally.bodies, tally.malformed_bodies), (1, 1), "{body:?}");
        assert_eq!(tally.skipped_total(), 0, "{body:?}");
    }
    let (_, tally) = convert(br#"{"records":[]}"#);
    assert_eq!(
        (tally.bodies, tally.malformed_bodies, tally.records),
        (1, 0, 0)
    );
}

//! What the handler answers the host, for every trigger encoding and for bad input.

use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use serde_json::Value;

use crate::helpers::*;

/// Every `Data` encoding the host can send delivers every valid Event, each with the exact
/// bytes its record held in `properties.log` (key order, escapes and all), and nothing else:
/// other categories, malformed records and non-envelope bodies stay out.
#[tokio::test]
async fn every_shape_delivers_exactly_the_valid_events() {
    for shape in [
        Shape::ManyBinary,
        Shape::ManyString,
        Shape::StructuredArray,
        Shape::OneString,
        Shape::OneBinary,
    ] {
        let receiver = start_exact_receiver().await;
        let url = receiver.url("/k8s_audit");
        let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &url)]).await;

        let (mut bodies, expected) = audit_bodies(&format!("{shape:?}"), 3, 4, 10);
        let good = audit_event("admin-1", 0);
        bodies.push(envelope(vec![
            record("kube-audit-admin", &good),
            record("kube-apiserver", "I1123 07:00:00 plain text"),
            record("kube-audit", &good[..good.len() / 2]),
            record("kube-audit", "not json"),
        ]));
        bodies.push(b"not an envelope".to_vec());
        let mut expected = expected;
        expected.push(good);

        let mut partition = SimPartition::new("1");
        let groups: Vec<Vec<Vec<u8>>> = if shape.is_single() {
            bodies.iter().map(|b| vec![b.clone()]).collect()
        } else {
            vec![bodies.clone()]
        };
        for group in groups {
            let request = build_request(shape, &group, &mut partition, None).unwrap();
            let answer = handler
                .host
                .invoke("EventHubForwarder", request)
                .await
                .unwrap();
            assert_eq!(answer.status, 200, "{shape:?}: {}", answer.body);
            assert!(answer.is_success(), "{shape:?}: {}", answer.body);
            assert_eq!(
                answer.content_type.as_deref(),
                Some("application/json"),
                "{shape:?}"
            );
        }
        assert_eq!(receiver.receiver.stats().refused, 0);
        assert_eq!(receiver.receiver.stats().duplicates, 0);
        assert_same_events(receiver.receiver.events(), &expected);
        assert_exact_events(&receiver.sent(), &bodies, &expected, str::to_string);
        for batch in receiver.receiver.batches() {
            assert_eq!(batch.shape, "EventList");
            assert_eq!(batch.path, "/k8s_audit");
        }
    }
}

/// The answer's `Logs` carry the invocation summary with every count the issue asks for.
#[tokio::test]
async fn summary_is_logged_and_returned() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (mut bodies, _) = audit_bodies("sum", 2, 3, 0);
    bodies.push(envelope(vec![
        record("guard", "x"),
        record("kube-audit", "{"),
    ]));
    let mut partition = SimPartition::new("5");
    partition.next_sequence = 4211;
    let answer = handler.invoke_as(&bodies, &mut partition, Some(0)).await;
    let result = answer.result.expect("invocation result");
    assert_eq!(result.logs.len(), 1);
    let line = &result.logs[0];
    for part in [
        "partition=5",
        "seq=4211..4213",
        "retry=0",
        "events=3",
        "records=8",
        "converted=6",
        "skipped=1 (guard:1)",
        "malformed=1 (events=0 records=1)",
        "delivered=6",
        "batches=1",
        "failed=0",
        "enqueued=2026-11-23T07:00:",
        "invocation=",
        "duration_ms=",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    assert!(
        handler.log().contains(line.as_str()),
        "summary not in the process log"
    );
}

/// A body that is not a host request gets a 400 with a JSON error, and the process stays up.
#[tokio::test]
async fn malformed_envelope_is_refused_and_process_survives() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    for body in [
        &b"not json"[..],
        b"{}",
        br#"{"Data":{"events":42}}"#,
        br#"{"Data":{"events":"[1,"}}"#,
    ] {
        let answer = handler
            .host
            .invoke("EventHubForwarder", body.to_vec())
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        let value: Value = serde_json::from_str(&answer.body).unwrap();
        assert!(
            value["Error"].as_str().is_some_and(|e| !e.is_empty()),
            "{value}"
        );
    }
    // Still serving.
    let (bodies, expected) = audit_bodies("after", 1, 1, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200);
    assert_same_events(receiver.receiver.events(), &expected);
}

/// Routes other than `GET /` and `POST /EventHubForwarder` get a JSON 404.
#[tokio::test]
async fn unknown_routes_are_404_json() {
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/x")]).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", handler.port);
    for (method, path) in [
        ("POST", "/Other"),
        ("GET", "/EventHubForwarder"),
        ("GET", "/api/x"),
    ] {
        let response = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
    }
}

/// A body over `AUDIT_MAX_BODY_BYTES` gets a 413 that names the setting.
#[tokio::test]
async fn oversized_body_names_the_limit() {
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/x"),
        ("AUDIT_MAX_BODY_BYTES", "64KiB"),
    ])
    .await;
    let (bodies, _) = audit_bodies("big", 1, 1, 100_000);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    // 500, never a 4xx: the host retries it, and the message says what to change.
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(
        answer.body.contains("AUDIT_MAX_BODY_BYTES"),
        "{}",
        answer.body
    );
}

/// An event with more records than `AUDIT_MAX_RECORDS_PER_EVENT` is dead-lettered naming the
/// limit; the other events are delivered and the invocation succeeds.
#[tokio::test]
async fn records_per_event_limit_is_named() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_MAX_RECORDS_PER_EVENT", "5"),
    ])
    .await;
    let (mut bodies, _) = audit_bodies("many", 1, 6, 0);
    let (few, expected) = audit_bodies("few", 1, 5, 0);
    bodies.extend(few);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("AUDIT_MAX_RECORDS_PER_EVENT (5)"),
        "{}",
        answer.body
    );
    assert_same_events(receiver.receiver.events(), &expected);
}

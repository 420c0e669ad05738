//! A hub shared with other Azure services: what cannot be an audit record is counted and
//! skipped as another category, never dead-lettered (a dead letter `resend` could never send).

use crate::helpers::{audit_event, envelope, record, spawn_handler, start_receiver};
use crate::hostile::dead_letters;

/// Issue 18 row 9: a PostgreSQL log line (not JSON), Function App records whose `properties`
/// is a single-quoted pseudo-JSON string, and a whole body of such pseudo-JSON are skipped
/// and counted; valid audit Events beside them are delivered; a broken body that does hold
/// an audit category's bytes is still dead-lettered, as it may hold an audit record.
#[tokio::test]
async fn other_services_junk_on_a_shared_hub_is_skipped_not_dead_lettered() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let function_app = serde_json::json!({"records": [
        {"category": "FunctionAppLogs", "resourceId": "/SUBSCRIPTIONS/1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.WEB/SITES/APP",
         "properties": "{'appName':'app','message':'Executed \\'Functions.x\\' (Succeeded)'}"},
        {"properties": "{'level':'Information'}", "category": "FunctionAppLogs"}
    ]});
    let events = [audit_event("hub-1", 0), audit_event("hub-2", 0)];
    let bodies = vec![
        b"2024-07-30 12:00:00 UTC-66a8d1c0.1b2-LOG:  connection received: host=10.0.0.4 port=5432"
            .to_vec(),
        serde_json::to_vec(&function_app).unwrap(),
        b"{'records': [{'category': 'PostgreSQLLogs', 'properties': {'message': 'checkpoint'}}]}"
            .to_vec(),
        envelope(events.iter().map(|e| record("kube-audit", e)).collect()),
        // Cut short: it could be an audit record, so it is kept.
        br#"{"records":[{"category":"kube-audit","properties":{"log":"{\"kind\":"#.to_vec(),
    ];
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("delivered=2"), "{}", answer.body);
    assert!(answer.body.contains("skipped=4"), "{}", answer.body);
    assert!(answer.body.contains("functionapplogs:2"), "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0]
        .raw_bytes()
        .unwrap()
        .starts_with(br#"{"records":[{"category":"kube-audit""#));
    assert_eq!(receiver.receiver.events().len(), 2);
}

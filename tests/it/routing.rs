//! Audit Policy, routes and cluster identity, end to end through the real binary.

use std::time::Duration;

use aks_audit_forwarder::tools::hostsim::SimPartition;
use aks_audit_forwarder::tools::receiver::Scripted;
use serde_json::{json, Value};

use crate::helpers::*;

fn example(name: &str) -> String {
    format!("{}/examples/policies/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The `responseObject` of [`full_event`], as kube-apiserver writes it.
const RESPONSE_OBJECT: &str = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"app","namespace":"shop","managedFields":[]}}"#;

/// An Event at RequestResponse with bodies, of `stage`, spelt as kube-apiserver writes it.
fn full_event(id: &str, stage: &str) -> String {
    audit_event(id, 10)
        .replace(r#""level":"Request""#, r#""level":"RequestResponse""#)
        .replace(
            r#""stage":"ResponseComplete""#,
            &format!(r#""stage":"{stage}""#),
        )
        .replace(
            r#","requestReceivedTimestamp""#,
            &format!(r#","responseObject":{RESPONSE_OBJECT},"requestReceivedTimestamp""#),
        )
}

/// `AUDIT_POLICY_FILE` with the shipped metadata-only policy: bodies are stripped, the level
/// lowered, RequestReceived dropped and counted; every other byte of each Event is as its
/// record held it.
#[tokio::test]
async fn policy_file_filters_through_the_handler() {
    let receiver = start_exact_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_POLICY_FILE", &example("metadata-only.yaml")),
    ])
    .await;
    let events = [
        full_event("p-1", "ResponseComplete"),
        full_event("p-2", "RequestReceived"),
        full_event("p-3", "ResponseComplete"),
    ];
    assert!(events[0].contains(RESPONSE_OBJECT) && events[0].contains("RequestResponse"));
    let body = envelope(events.iter().map(|e| record("kube-audit", e)).collect());
    let answer = handler
        .invoke_bodies(std::slice::from_ref(&body), "0")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("policy_dropped=1"), "{}", answer.body);

    let got = receiver.receiver.events();
    assert_eq!(got.len(), 2);
    for (out, input) in got.iter().zip([&events[0], &events[2]]) {
        let mut want: Value = serde_json::from_str(input).unwrap();
        let obj = want.as_object_mut().unwrap();
        obj.remove("requestObject");
        obj.remove("responseObject");
        obj.insert("level".into(), json!("Metadata"));
        assert_eq!(out, &want);
    }
    // The Policy's edits, and nothing else: the bodies' members gone, the level replaced.
    let metadata_only = |logged: &str| {
        let text = drop_member(logged, "requestObject");
        let text = drop_member(&text, "responseObject");
        replace_member(&text, "level", r#""Metadata""#)
    };
    let want = [events[0].clone(), events[2].clone()];
    assert_exact_events(&receiver.sent(), &[body], &want, metadata_only);
}

/// Events the Policy cannot read as kube-apiserver types (`level: 5`, a key given twice) are
/// dead-lettered and counted under a Policy, never dropped; `user.groups: null` reads as no
/// groups and the Event is delivered.
#[tokio::test]
async fn events_the_policy_cannot_read_are_dead_lettered() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        (
            "AUDIT_POLICY",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Request\n",
        ),
    ])
    .await;
    let ok = audit_event("u-1", 1);
    let null_groups = audit_event("u-2", 1).replace(r#"["system:authenticated"]"#, "null");
    let level_5 = audit_event("u-3", 1).replace(r#""level":"Request""#, r#""level":5"#);
    let duplicate =
        audit_event("u-4", 1).replace(r#""verb":"update""#, r#""verb":"update","verb":"get""#);
    assert!(
        null_groups.contains("null")
            && level_5.contains(":5")
            && duplicate.contains(r#""verb":"get""#)
    );
    let body = envelope(
        [&ok, &null_groups, &level_5, &duplicate]
            .iter()
            .map(|e| record("kube-audit", e))
            .collect(),
    );
    let answer = handler.invoke_bodies(&[body], "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("policy_unreadable=2"),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("dead_lettered=2"), "{}", answer.body);
    assert!(answer.body.contains("policy-unreadable"), "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &[ok, null_groups]);
}

/// A policy that does not parse stops startup, naming the variable, the file and the line.
#[test]
fn bad_policy_file_fails_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/")
        .env("AUDIT_POLICY_FILE", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AUDIT_POLICY_FILE"), "{stderr}");
    assert!(
        stderr.contains("policy.yaml") && stderr.contains("line 4"),
        "{stderr}"
    );
}

/// One hub, three clusters, two receivers: each cluster's Events go to its route, annotated
/// with their cluster; a dropping route counts its Events. While one receiver is down the
/// invocation fails without losing the other route's Events; the host's retry then delivers
/// the rest, repeating what the healthy route already had (at-least-once).
#[tokio::test]
async fn routes_split_a_mixed_batch_and_isolate_a_failing_receiver() {
    let prod = start_exact_receiver().await;
    let staging = start_exact_receiver().await;
    staging
        .receiver
        .push_script(std::iter::repeat_n(Scripted::Status(503), 1000));
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "routes:\n\
             - name: prod\n  match: {{clusters: ['aks-prod-*']}}\n  webhook: {{url: '{}'}}\n\
             - name: dev\n  match: {{resourceGroups: ['rg-aks-dev']}}\n  drop: true\n\
             - name: staging\n  match: {{clusters: [aks-staging]}}\n  webhook: {{url: '{}', format: event}}\n",
            prod.url("/k8s_audit"),
            staging.url("/k8s-audit")
        ),
    )
    .unwrap();
    let handler = spawn_handler(&[
        ("AUDIT_ROUTES", routes.to_str().unwrap()),
        ("AUDIT_CLUSTER_ANNOTATIONS", "on"),
        ("AUDIT_DELIVERY_DEADLINE", "2s"),
    ])
    .await;

    let mut records = Vec::new();
    let mut expected_prod = Vec::new();
    let mut expected_staging = Vec::new();
    for i in 0..4 {
        for (cluster, sink) in [
            ("aks-prod-weu", Some(&mut expected_prod)),
            ("aks-dev", None),
            ("aks-staging", Some(&mut expected_staging)),
        ] {
            let event = audit_event(&format!("{cluster}-{i}"), 0);
            records.push(record_from(&cluster_id(cluster), "kube-audit", &event));
            if let Some(sink) = sink {
                sink.push((cluster, event));
            }
        }
    }
    let bodies = vec![envelope(records)];

    let mut partition = SimPartition::new("0");
    let answer = handler.invoke_as(&bodies, &mut partition, Some(0)).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    for part in [
        "route_dropped=4",
        "prod:delivered=4",
        "staging:delivered=0,rejected=0,failed=4",
    ] {
        assert!(
            answer.body.contains(part),
            "{part} missing: {}",
            answer.body
        );
    }
    assert_eq!(
        prod.receiver.stats().events,
        4,
        "the healthy route delivered"
    );

    // The staging receiver recovers; the host retries the whole invocation.
    staging.receiver.clear_script();
    partition.next_sequence = 0;
    let answer = handler.invoke_as(&bodies, &mut partition, Some(1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let annotated = |(cluster, event): &(&str, String)| {
        let mut v: Value = serde_json::from_str(event).unwrap();
        let id = cluster_id(cluster).to_lowercase();
        v["annotations"]["aks.azure.com/cluster-resource-id"] = json!(id);
        v["annotations"]["cluster_name"] = json!(cluster);
        v.to_string()
    };
    let want_staging: Vec<String> = expected_staging.iter().map(annotated).collect();
    assert_same_events(staging.receiver.events(), &want_staging);
    assert!(staging
        .receiver
        .batches()
        .iter()
        .all(|b| b.shape == "Event"));
    // Prod got its four Events twice: once per invocation attempt.
    let prod_events = prod.receiver.events();
    assert_eq!(prod.receiver.stats().duplicates, 4);
    let want_prod: Vec<String> = expected_prod.iter().map(annotated).collect();
    assert_same_events(prod_events[..4].to_vec(), &want_prod);
    assert_same_events(prod_events[4..].to_vec(), &want_prod);
    // Byte for byte: each Event as its record held it, plus the documented splice.
    let splice = |logged: &str| {
        let id = audit_id(logged).unwrap();
        let cluster = id.rsplit_once('-').unwrap().0.to_string();
        splice_cluster(
            logged,
            &cluster_members(&cluster_id(&cluster), &cluster, None),
        )
    };
    let staging_want: Vec<String> = expected_staging.iter().map(|(_, e)| e.clone()).collect();
    assert_exact_events(&staging.sent(), &bodies, &staging_want, splice);
    let prod_sent = prod.sent();
    let prod_want: Vec<String> = expected_prod.iter().map(|(_, e)| e.clone()).collect();
    assert_exact_events(&prod_sent[..4], &bodies, &prod_want, splice);
    assert_exact_events(&prod_sent[4..], &bodies, &prod_want, splice);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Clusters no route matches are dropped and counted, not delivered anywhere.
#[tokio::test]
async fn unmatched_clusters_are_counted() {
    let receiver = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "routes:\n- name: only-prod\n  match: {{clusters: [aks-prod]}}\n  webhook: {{url: '{}'}}\n",
            receiver.url("/k8s_audit")
        ),
    )
    .unwrap();
    let handler = spawn_handler(&[("AUDIT_ROUTES", routes.to_str().unwrap())]).await;
    let body = envelope(vec![
        record_from(&cluster_id("aks-prod"), "kube-audit", &audit_event("in", 0)),
        record_from(
            &cluster_id("aks-other"),
            "kube-audit",
            &audit_event("out", 0),
        ),
    ]);
    let answer = handler.invoke_bodies(&[body], "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("unrouted=1"), "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &[audit_event("in", 0)]);
}

/// Records from a resource that is not an AKS managed cluster (a Fleet Manager hub) are
/// routed by their name and type, and carry the type in their annotations.
#[tokio::test]
async fn clusters_of_any_resource_type_are_routed_and_annotated() {
    let receiver = start_exact_receiver().await;
    let routes = format!(
        "routes:\n- name: hubs\n  match: {{clusters: ['hub-*'], resourceTypes: ['microsoft.containerservice/fleets']}}\n  webhook: {{url: '{}'}}\n",
        receiver.url("/k8s_audit")
    );
    let handler = spawn_handler(&[
        ("AUDIT_ROUTES", &routes),
        ("AUDIT_CLUSTER_ANNOTATIONS", "on"),
    ])
    .await;
    let fleet = "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG-FLEET/PROVIDERS/MICROSOFT.CONTAINERSERVICE/FLEETS/HUB-WEU";
    let event = audit_event("fleet-1", 0);
    let body = envelope(vec![
        record_from(fleet, "kube-audit", &event),
        // Same name, but an AKS cluster: not this route's type.
        record_from(
            &cluster_id("hub-weu"),
            "kube-audit",
            &audit_event("aks-1", 0),
        ),
    ]);
    let answer = handler
        .invoke_bodies(std::slice::from_ref(&body), "0")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("unrouted=1"), "{}", answer.body);
    let mut want: Value = serde_json::from_str(&event).unwrap();
    want["annotations"]["aks.azure.com/cluster-resource-id"] = json!(fleet.to_lowercase());
    want["annotations"]["cluster_name"] = json!("hub-weu");
    want["annotations"]["aks.azure.com/cluster-resource-type"] =
        json!("microsoft.containerservice/fleets");
    assert_same_events(receiver.receiver.events(), &[want.to_string()]);
    let members = cluster_members(fleet, "hub-weu", Some("microsoft.containerservice/fleets"));
    assert_exact_events(&receiver.sent(), &[body], &[event], |logged| {
        splice_cluster(logged, &members)
    });
}

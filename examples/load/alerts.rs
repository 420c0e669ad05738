//! The harness's alert latency scenario: from sending an invocation to the moment the
//! stand-in Teams webhook has the card's POST.

use std::time::Instant;

use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use aks_audit_forwarder::tools::notified::Notified;
use serde_json::{json, Value};

use crate::requests::padded_event;
use crate::{median, Process};

/// Alert latency: invocations of one matching Event each (a `kubectl patch` of coredns), one
/// at a time, to a handler with one Teams rule and no grouping window; the time from sending
/// the invocation to the moment the stand-in Teams webhook has the card's POST.
pub async fn alert_latency(bin: &str, webhook: &str) -> Value {
    let teams = Notified::start(202).await.expect("notifier stand-in");
    let rules = format!(
        "notifiers: [{{name: secops, type: teams, url: \"{}\"}}]\nrules:\n- name: coredns-changed\n  notify: [secops]\n  match: {{verbs: [patch], namespaces: [kube-system], resources: [{{group: apps, resources: [deployments], resourceNames: [coredns]}}]}}\ngrouping: {{window: 0s}}\n",
        teams.url("/workflows/load")
    );
    let handler = Process::start(bin, webhook, &[("AUDIT_ALERTS", rules)]).await;
    let mut partition = SimPartition::new("0");
    let mut latencies = Vec::new();
    for i in 0..30 {
        let mut e = padded_event(&format!("alert-{i}"), 0);
        e["verb"] = json!("patch");
        e["requestURI"] = json!("/apis/apps/v1/namespaces/kube-system/deployments/coredns");
        e["objectRef"] = json!({"resource": "deployments", "namespace": "kube-system",
                                "name": "coredns", "apiGroup": "apps", "apiVersion": "v1"});
        let record = json!({"category": "kube-audit-admin", "resourceId": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-LOAD",
                            "properties": {"log": e.to_string()}});
        let body = json!({"records": [record]}).to_string().into_bytes();
        let request =
            build_request(Shape::ManyBinary, &[body], &mut partition, None).expect("request");
        let before = teams.posts().len();
        let sent = Instant::now();
        let answer = handler
            .host
            .invoke("EventHubForwarder", request)
            .await
            .expect("invoke");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let posts = teams.posts();
        assert_eq!(posts.len(), before + 1, "one card per invocation");
        latencies.push(posts[before].at.duration_since(sent).as_secs_f64() * 1e3);
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, max) = (median(latencies.clone()), sorted[sorted.len() - 1]);
    let p95 = sorted[(sorted.len() * 95).div_ceil(100) - 1];
    println!(
        "alerts: invocation sent -> card POST received: median {p50:.1} ms, p95 {p95:.1} ms, max {max:.1} ms ({} invocations, one matching Event each)",
        latencies.len()
    );
    json!({"scenario": "alert latency (invocation -> card POST)", "median_ms": p50, "p95_ms": p95,
           "max_ms": max, "runs_ms": latencies})
}

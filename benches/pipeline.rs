//! Throughput of the CPU-bound half of an invocation (host request → audit Events → webhook
//! bodies), side by side with a naive `serde_json::Value` round trip of the same input, so the
//! figure to read is the ratio between the two in one run.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aks_audit_forwarder::audit::encode;
use aks_audit_forwarder::audit::WebhookFormat;
use aks_audit_forwarder::azure::{convert_body, BodyOrigin, Conversion};
use aks_audit_forwarder::delivery::{plan, BatchLimits};
use aks_audit_forwarder::host::decode_invocation;
use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use aks_audit_forwarder::{Config, Forwarder};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

/// 100 Event Hub events of 20 kube-audit records, each Event about 1.5 KiB.
fn request() -> Vec<u8> {
    let bodies: Vec<Vec<u8>> = (0..100)
        .map(|b| {
            let records: Vec<Value> = (0..20)
                .map(|r| {
                    let event = json!({
                        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                        "auditID": format!("{b:04}-{r:04}-6c5b3f3e-8a4d-4e21-9d55"),
                        "stage": "ResponseComplete",
                        "requestURI": "/api/v1/namespaces/shop/pods?fieldManager=kubectl-client-side-apply",
                        "verb": "create",
                        "user": {"username": "system:serviceaccount:argocd:argocd-application-controller",
                                 "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]},
                        "sourceIPs": ["20.61.10.4"], "userAgent": "argocd-application-controller/v2.13.1 ".repeat(8),
                        "objectRef": {"resource": "pods", "namespace": "shop", "name": "web-5d8f7", "apiVersion": "v1"},
                        "responseStatus": {"metadata": {}, "code": 201},
                        "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
                        "stageTimestamp": "2026-11-23T07:00:00.234567Z",
                        "annotations": {"authorization.k8s.io/decision": "allow",
                                        "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"argocd\" ".repeat(6)}
                    });
                    json!({"category": "kube-audit", "resourceId": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1",
                           "properties": {"log": format!("{event}\n"), "stream": "stdout", "pod": "kube-apiserver-1"},
                           "time": "2026-11-23T07:00:00.0000000Z"})
                })
                .collect();
            json!({ "records": records }).to_string().into_bytes()
        })
        .collect();
    build_request(
        Shape::ManyBinary,
        &bodies,
        &mut SimPartition::new("0"),
        None,
    )
    .expect("request")
}

fn forwarder_path(request: &[u8], categories: &BTreeSet<String>) -> usize {
    let invocation = decode_invocation(request).expect("decode");
    let mut conversion = Conversion::default();
    for (index, body) in invocation.bodies.iter().enumerate() {
        let origin = BodyOrigin {
            index,
            sequence_number: None,
        };
        convert_body(body, origin, categories, &mut conversion);
    }
    let events = conversion.events;
    let limits = BatchLimits {
        format: WebhookFormat::EventList,
        max_events: 400,
        max_bytes: 10 << 20,
    };
    plan(&events, limits)
        .into_iter()
        .map(|r| encode(WebhookFormat::EventList, &events[r]).len())
        .sum()
}

/// What a straightforward implementation does: everything through `serde_json::Value`.
fn naive_path(request: &[u8]) -> usize {
    use base64::Engine as _;
    let outer: Value = serde_json::from_slice(request).expect("request");
    let inner: Vec<String> =
        serde_json::from_str(outer["Data"]["events"].as_str().expect("data")).expect("array");
    let mut items = Vec::new();
    for b64 in inner {
        let body = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let envelope: Value = serde_json::from_slice(&body).expect("envelope");
        for record in envelope["records"].as_array().into_iter().flatten() {
            if let Some(log) = record["properties"]["log"].as_str() {
                items.push(serde_json::from_str::<Value>(log).expect("event"));
            }
        }
    }
    items
        .chunks(400)
        .map(|c| {
            serde_json::to_vec(
                &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": c}),
            )
            .expect("encode")
            .len()
        })
        .sum()
}

/// The whole CPU-bound half as the handler runs it: decode, convert, route, Policy,
/// annotations, then encode every batch.
fn handler_path(forwarder: &Forwarder, request: &[u8]) -> usize {
    let invocation = decode_invocation(request).expect("decode");
    let converted = forwarder.convert(invocation);
    converted
        .routed
        .iter()
        .flat_map(|events| events.chunks(400))
        .map(|c| encode(WebhookFormat::EventList, c).len())
        .sum()
}

fn forwarder(settings: &[(&str, &str)]) -> Arc<Forwarder> {
    let mut map: HashMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert(
        "AUDIT_WEBHOOK_URL".into(),
        "http://127.0.0.1:9/k8s_audit".into(),
    );
    Forwarder::new(
        Config::from_lookup(|k| map.get(k).cloned())
            .expect("config")
            .forwarder,
    )
    .expect("forwarder")
}

fn bench(c: &mut Criterion) {
    let request = request();
    let categories: BTreeSet<String> = ["kube-audit".to_string()].into();
    let plain = forwarder(&[("AUDIT_CLUSTER_ANNOTATIONS", "off")]);
    let annotated = forwarder(&[]);
    let policy = format!(
        "{}/examples/policies/sysdig-general-purpose.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let with_policy = forwarder(&[("AUDIT_POLICY_FILE", policy.as_str())]);
    let mut group = c.benchmark_group("invocation_2000_events");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.sample_size(20);
    group.bench_function("forwarder", |b| {
        b.iter(|| forwarder_path(&request, &categories))
    });
    group.bench_function("handler_annotations_off", |b| {
        b.iter(|| handler_path(&plain, &request))
    });
    group.bench_function("handler_default_annotations_on", |b| {
        b.iter(|| handler_path(&annotated, &request))
    });
    group.bench_function("handler_sysdig_policy_and_annotations", |b| {
        b.iter(|| handler_path(&with_policy, &request))
    });
    group.bench_function("naive_value_round_trip", |b| {
        b.iter(|| naive_path(&request))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

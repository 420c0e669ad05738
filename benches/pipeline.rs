//! CPU cost of the CPU-bound half of an invocation (host request → audit Events → webhook
//! bodies) per configuration, against the floor (`tools::floor`: the least work any forwarder
//! must do on the same bytes) and a naive `serde_json::Value` round trip of the same request.
//!
//! Two parts, in one run: criterion's timings on 2,000 small Events, then a table of ratios
//! (floor CPU / handler CPU, thread CPU time, medians of interleaved rounds) on that request
//! and on a realistic mix of 1.5–40 KiB Events. Read the ratios: absolute times depend on
//! the machine and on what else runs on it.
//!
//! Run: `cargo bench --bench pipeline` (`-- --ratios` skips criterion's part;
//! `-- --profile <path>` runs one path for 10 s under a profiler).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aks_audit_forwarder::audit::encode;
use aks_audit_forwarder::audit::WebhookFormat;
use aks_audit_forwarder::azure::{convert_body, BodyOrigin, Conversion};
use aks_audit_forwarder::delivery::{plan, BatchLimits};
use aks_audit_forwarder::host::decode_invocation;
use aks_audit_forwarder::tools::floor::floor_batches;
use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use aks_audit_forwarder::{Config, Forwarder};
use criterion::{Criterion, Throughput};
use serde_json::{json, Value};

const RESOURCE_ID: &str =
    "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1";

fn record(event: &Value) -> Value {
    json!({"category": "kube-audit", "resourceId": RESOURCE_ID,
           "properties": {"log": format!("{event}\n"), "stream": "stdout", "pod": "kube-apiserver-1"},
           "time": "2026-11-23T07:00:00.0000000Z"})
}

fn request_of(bodies: &[Vec<u8>]) -> Vec<u8> {
    build_request(Shape::ManyBinary, bodies, &mut SimPartition::new("0"), None).expect("request")
}

/// 100 Event Hub events of 20 kube-audit records, each Event about 1.5 KiB.
fn small_request() -> Vec<u8> {
    let bodies: Vec<Vec<u8>> = (0..100)
        .map(|b| {
            let records: Vec<Value> = (0..20)
                .map(|r| {
                    record(&json!({
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
                    }))
                })
                .collect();
            json!({ "records": records }).to_string().into_bytes()
        })
        .collect();
    request_of(&bodies)
}

/// A realistic mix: 60 Event Hub events of 12 records; Events of 1.5–40 KiB at the
/// RequestResponse level, with request and response objects (managedFields included), about
/// 15 MB in all.
fn mix_request() -> Vec<u8> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let bodies: Vec<Vec<u8>> = (0..60)
        .map(|b| {
            let records: Vec<Value> = (0..12)
                .map(|r| {
                    let target = 1536 + (next() % (38 * 1024)) as usize;
                    let entries = target / 160;
                    let object = |kind: &str| {
                        let data: serde_json::Map<String, Value> = (0..entries / 2)
                            .map(|i| (format!("key-{i:04}"), json!(format!("value \"{i}\" ").repeat(5))))
                            .collect();
                        json!({"kind": kind, "apiVersion": "v1",
                               "metadata": {"name": format!("app-{b}-{r}"), "namespace": "shop",
                                            "managedFields": [{"manager": "kubectl", "operation": "Update",
                                                               "apiVersion": "v1", "fieldsType": "FieldsV1",
                                                               "fieldsV1": {"f:data": {"f:key-0000": {}}}}]},
                               "data": data})
                    };
                    let verb = ["update", "patch", "create", "get"][r % 4];
                    record(&json!({
                        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
                        "auditID": format!("{b:04}-{r:04}-6c5b3f3e-8a4d-4e21-9d55"),
                        "stage": "ResponseComplete",
                        "requestURI": "/api/v1/namespaces/shop/configmaps/app",
                        "verb": verb,
                        "user": {"username": "system:serviceaccount:argocd:argocd-application-controller",
                                 "groups": ["system:serviceaccounts", "system:authenticated"]},
                        "sourceIPs": ["20.61.10.4"], "userAgent": "argocd-application-controller/v2.13.1",
                        "objectRef": {"resource": "configmaps", "namespace": "shop", "name": format!("app-{b}-{r}"), "apiVersion": "v1"},
                        "responseStatus": {"metadata": {}, "code": 200},
                        "requestObject": object("ConfigMap"),
                        "responseObject": object("ConfigMap"),
                        "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
                        "stageTimestamp": "2026-11-23T07:00:00.234567Z",
                        "annotations": {"authorization.k8s.io/decision": "allow",
                                        "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"argocd\""}
                    }))
                })
                .collect();
            json!({ "records": records }).to_string().into_bytes()
        })
        .collect();
    request_of(&bodies)
}

/// The library's conversion without the pipeline: decode, convert, batch, encode.
fn convert_only(request: &[u8], categories: &BTreeSet<String>) -> usize {
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

/// The floor: see `tools::floor`.
fn floor_path(request: &[u8]) -> usize {
    floor_batches(request, 400)
        .expect("floor")
        .0
        .iter()
        .map(|b| b.len())
        .sum()
}

/// The whole CPU-bound half as the handler runs it: decode, convert, route, Policy,
/// annotations, then encode every batch.
fn handler_path(forwarder: &Forwarder, request: &[u8]) -> usize {
    let invocation = decode_invocation(request).expect("decode");
    let prepared = forwarder.prepare(invocation);
    prepared
        .routed
        .per_route()
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
    if !map.contains_key("AUDIT_ROUTES") {
        map.insert(
            "AUDIT_WEBHOOK_URL".into(),
            "http://127.0.0.1:9/k8s_audit".into(),
        );
    }
    Forwarder::new(
        Config::from_lookup(|k| map.get(k).cloned())
            .expect("config")
            .forwarder,
    )
    .expect("forwarder")
}

const ROUTES: &str = r#"{"routes": [
  {"name": "dev", "match": {"resourceGroups": ["rg-aks-dev"]}, "drop": true},
  {"name": "prod", "match": {"clusters": ["aks-prod-*"]}, "webhook": {"url": "http://127.0.0.1:9/prod"}},
  {"name": "everything-else", "webhook": {"url": "http://127.0.0.1:9/k8s_audit"}}]}"#;

/// The configurations measured against the floor, by name.
fn configurations() -> Vec<(&'static str, Arc<Forwarder>)> {
    let policy = format!(
        "{}/examples/policies/sysdig-general-purpose.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    vec![
        (
            "annotations_off",
            forwarder(&[("AUDIT_CLUSTER_ANNOTATIONS", "off")]),
        ),
        ("default_annotations_on", forwarder(&[])),
        (
            "sysdig_policy_and_annotations",
            forwarder(&[("AUDIT_POLICY_FILE", policy.as_str())]),
        ),
        (
            "sysdig_policy_annotations_off",
            forwarder(&[
                ("AUDIT_POLICY_FILE", policy.as_str()),
                ("AUDIT_CLUSTER_ANNOTATIONS", "off"),
            ]),
        ),
        (
            "three_routes_and_annotations",
            forwarder(&[("AUDIT_ROUTES", ROUTES)]),
        ),
    ]
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Interleaved rounds of the floor, the naive round trip and every configuration on one
/// request; prints medians and the ratios floor / configuration.
fn ratios(name: &str, request: &[u8], rounds: usize) {
    let configurations = configurations();
    let mut floor = Vec::new();
    let mut naive = Vec::new();
    let mut times: Vec<Vec<Duration>> = configurations.iter().map(|_| Vec::new()).collect();
    let time = |f: &mut dyn FnMut() -> usize| {
        let t = thread_cpu();
        std::hint::black_box(f());
        thread_cpu() - t
    };
    for _ in 0..rounds {
        floor.push(time(&mut || floor_path(request)));
        for (i, (_, forwarder)) in configurations.iter().enumerate() {
            times[i].push(time(&mut || handler_path(forwarder, request)));
        }
        naive.push(time(&mut || naive_path(request)));
    }
    let floor = median(floor);
    let naive = median(naive);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "\n{name}: {:.1} MB request; thread CPU, medians of {rounds} interleaved rounds",
        request.len() as f64 / 1e6
    );
    println!(
        "  {:<34} {:>9}  {:>13}  {:>13}",
        "path", "ms", "floor / path", "naive / path"
    );
    println!(
        "  {:<34} {:>9.2}  {:>13.2}  {:>13.2}",
        "floor",
        ms(floor),
        1.0,
        ms(naive) / ms(floor)
    );
    for ((label, _), t) in configurations.iter().zip(times) {
        let t = median(t);
        println!(
            "  {:<34} {:>9.2}  {:>13.2}  {:>13.2}",
            format!("handler_{label}"),
            ms(t),
            ms(floor) / ms(t),
            ms(naive) / ms(t)
        );
    }
    println!(
        "  {:<34} {:>9.2}  {:>13.2}  {:>13.2}",
        "naive_value_round_trip",
        ms(naive),
        ms(floor) / ms(naive),
        1.0
    );
}

fn criterion_part(request: &[u8]) {
    let categories: BTreeSet<String> = ["kube-audit".to_string()].into();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut group = c.benchmark_group("invocation_2000_events");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("floor", |b| b.iter(|| floor_path(request)));
    group.bench_function("convert_only", |b| {
        b.iter(|| convert_only(request, &categories))
    });
    for (label, forwarder) in configurations() {
        group.bench_function(format!("handler_{label}"), |b| {
            b.iter(|| handler_path(&forwarder, request))
        });
    }
    group.bench_function("naive_value_round_trip", |b| b.iter(|| naive_path(request)));
    group.finish();
    c.final_summary();
}

fn main() {
    let small = small_request();
    let mix = mix_request();
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        ratios("smoke", &small, 1);
        return;
    }
    // `--profile <path>`: run one path over the small request for 10 s, for `perf record`.
    if let Some(at) = args.iter().position(|a| a == "--profile") {
        let name = args.get(at + 1).map_or("floor", String::as_str);
        let run: Box<dyn Fn() -> usize> = match name {
            "floor" => Box::new(|| floor_path(&small)),
            "naive" => Box::new(|| naive_path(&small)),
            _ => {
                let (_, f) = configurations()
                    .into_iter()
                    .find(|(label, _)| name.ends_with(label))
                    .expect("a configuration name");
                Box::new(move || handler_path(&f, &small))
            }
        };
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(run());
        }
        return;
    }
    if !args.iter().any(|a| a == "--ratios") {
        criterion_part(&small);
    }
    ratios("2,000 small Events", &small, 15);
    ratios("realistic mix, 1.5-40 KiB Events", &mix, 9);
}

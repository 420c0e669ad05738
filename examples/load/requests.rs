//! The load harness's Event Hub bodies: the realistic Metadata / Request / RequestResponse mix
//! and many small Events for the comparison with the floor handler, and ~1 MiB bodies (valid,
//! malformed, quote-heavy) for peak memory. Deterministic: the same bytes on every run.

use serde_json::{json, Map, Value};

pub const RESOURCE_ID: &str =
    "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1";

/// A diagnostic-settings record carrying `event`, as AKS writes it (the log ends with a line
/// break).
fn record(event: &Value) -> Value {
    json!({"category": "kube-audit", "resourceId": RESOURCE_ID,
           "properties": {"log": format!("{event}\n"), "stream": "stdout", "pod": "kube-apiserver-7d9f"},
           "time": "2026-11-23T07:00:00.0000000Z", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read"})
}

fn envelope(records: Vec<Value>) -> Vec<u8> {
    json!({ "records": records }).to_string().into_bytes()
}

/// xorshift64: the same pseudo-random sizes and kinds on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A Kubernetes object of about `len` bytes of JSON: metadata with managedFields, then data
/// entries with quotes and some non-ASCII text.
fn object(kind: &str, name: &str, len: usize) -> Value {
    let data: Map<String, Value> = (0..len / 96)
        .map(|i| {
            let value = format!("value \"{i}\" = {}; größe", i * 7919);
            (format!("key-{i:04}"), json!(value))
        })
        .collect();
    json!({"kind": kind, "apiVersion": "v1",
           "metadata": {"name": name, "namespace": "shop", "uid": "5f0c6b8e-2b1c-4a47-a3b4-8d1f0e6c9a21",
                        "resourceVersion": "48213377", "labels": {"app": "web", "tier": "frontend"},
                        "managedFields": [{"manager": "argocd-controller", "operation": "Update", "apiVersion": "v1",
                                           "time": "2026-11-23T07:00:00Z", "fieldsType": "FieldsV1",
                                           "fieldsV1": {"f:data": {"f:key-0000": {}, "f:key-0001": {}}}}]},
           "data": data})
}

/// One Event of the realistic mix: 55 % Metadata (reads and lease renewals by controllers,
/// about 1.2 KiB), 25 % Request (writes with a request object of 2–10 KiB), 20 %
/// RequestResponse (request and response objects of 4–28 KiB together).
fn mix_event(rng: &mut Rng, id: &str) -> Value {
    let roll = rng.below(100);
    let (level, verb, resource) = match roll {
        0..=54 => (
            "Metadata",
            ["get", "list", "watch", "update"][rng.below(4) as usize],
            ["leases", "pods", "nodes", "endpointslices"][rng.below(4) as usize],
        ),
        55..=79 => (
            "Request",
            ["update", "patch"][rng.below(2) as usize],
            "configmaps",
        ),
        _ => (
            "RequestResponse",
            ["create", "update", "patch"][rng.below(3) as usize],
            ["pods", "deployments", "secrets"][rng.below(3) as usize],
        ),
    };
    let name = format!("web-{id}");
    let mut event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/shop/{resource}/{name}?timeout=30s"),
        "verb": verb,
        "user": {"username": "system:serviceaccount:argocd:argocd-application-controller",
                 "uid": "0b9f6f3c-7f4e-4a51-8a3e-2e1d4c5b6a79",
                 "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"],
                 "extra": {"authentication.kubernetes.io/pod-name": ["argocd-application-controller-0"]}},
        "sourceIPs": ["20.61.10.4"],
        "userAgent": "argocd-application-controller/v2.13.1 (linux/amd64) kubernetes/$Format",
        "objectRef": {"resource": resource, "namespace": "shop", "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
        "stageTimestamp": "2026-11-23T07:00:00.234567Z",
        "annotations": {"authorization.k8s.io/decision": "allow",
                        "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"argocd-application-controller\" of ClusterRole \"argocd-application-controller\" to ServiceAccount \"argocd-application-controller/argocd\""}
    });
    match level {
        "Request" => {
            let len = 2048 + rng.below(8 * 1024) as usize;
            event["requestObject"] = object("ConfigMap", &name, len);
        }
        "RequestResponse" => {
            let len = 2048 + rng.below(12 * 1024) as usize;
            event["requestObject"] = object("Object", &name, len);
            event["responseObject"] = object("Object", &name, len);
        }
        _ => {}
    }
    event
}

/// `events` Event Hub events of `records` records of the realistic mix (2,000 Events in
/// 100 × 20 make a request of about 15 MiB).
pub fn mix_bodies(tag: &str, events: usize, records: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ tag.len() as u64);
    (0..events)
        .map(|b| {
            envelope(
                (0..records)
                    .map(|r| record(&mix_event(&mut rng, &format!("{tag}-{b:04}-{r:04}"))))
                    .collect(),
            )
        })
        .collect()
}

/// `events` Event Hub events of `records` small Metadata Events (about 700 bytes each: the
/// reads, watches and lease renewals that most of a cluster's audit log is).
pub fn small_bodies(tag: &str, events: usize, records: usize) -> Vec<Vec<u8>> {
    (0..events)
        .map(|b| {
            envelope(
                (0..records)
                    .map(|r| {
                        record(&json!({
                            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                            "auditID": format!("{tag}-{b:04}-{r:04}-6c5b3f3e-8a4d"),
                            "stage": "ResponseComplete",
                            "requestURI": "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s",
                            "verb": "update",
                            "user": {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]},
                            "sourceIPs": ["10.224.0.4"], "userAgent": "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/leader-election",
                            "objectRef": {"resource": "leases", "namespace": "kube-system", "name": "kube-controller-manager",
                                          "apiGroup": "coordination.k8s.io", "apiVersion": "v1"},
                            "responseStatus": {"metadata": {}, "code": 200},
                            "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
                            "stageTimestamp": "2026-11-23T07:00:00.134567Z",
                            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
                        }))
                    })
                    .collect(),
            )
        })
        .collect()
}

/// A `Request`-level Event whose request object is padded to about `pad` bytes.
pub fn padded_event(id: &str, pad: usize) -> Value {
    json!({"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request",
        "auditID": id,"stage":"ResponseComplete",
        "requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"update",
        "user":{"username":"alice@contoso.com"},"objectRef":{"resource":"configmaps"},
        "requestObject":{"data":{"blob":"x".repeat(pad)}},
        "requestReceivedTimestamp":"2026-11-23T07:00:00.123456Z",
        "stageTimestamp":"2026-11-23T07:00:00.234567Z"})
}

/// `n` bodies of `per` records whose Events are padded to about `pad` bytes.
pub fn padded_bodies(prefix: &str, n: usize, per: usize, pad: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|b| {
            let records: Vec<_> = (0..per)
                .map(|r| {
                    let log = format!("{}\n", padded_event(&format!("{prefix}-{b}-{r}"), pad));
                    json!({"category":"kube-audit","resourceId":RESOURCE_ID,"properties":{"log":log}})
                })
                .collect();
            envelope(records)
        })
        .collect()
}

/// `n` bodies of about 1 MiB, each made of kube-audit records of about `record_len` bytes
/// whose log is a truncated Event: every record is malformed.
pub fn malformed_bodies(n: usize, record_len: usize) -> Vec<Vec<u8>> {
    let whole = padded_event("truncated", 4096).to_string();
    (0..n)
        .map(|b| {
            let mut records = Vec::new();
            let mut size = 0;
            let mut r = 0;
            while size < 1 << 20 {
                let shell = json!({"category":"kube-audit","properties":{"log":""}}).to_string();
                let keep = record_len.saturating_sub(shell.len() + 12).max(8);
                let log = format!("{}{b}-{r}", &whole[..keep.min(whole.len())]);
                let record = json!({"category":"kube-audit","properties":{"log":log}});
                size += record.to_string().len() + 1;
                records.push(record);
                r += 1;
            }
            envelope(records)
        })
        .collect()
}

/// `n` bodies of about 1 MiB of kube-audit records whose log is quotes and backslashes (not an
/// Event): every record is malformed, and JSON escaping inflates the body's text the most.
pub fn quote_heavy_bodies(n: usize) -> Vec<Vec<u8>> {
    let record = json!({"category":"kube-audit","properties":{"log":"\"\\\"".repeat(40)}});
    let per = (1 << 20) / (record.to_string().len() + 1);
    (0..n)
        .map(|_| envelope(vec![record.clone(); per]))
        .collect()
}

//! Table tests for the Policy checker, written from kube-apiserver's checker behaviour.

use super::*;
use serde_json::{json, Value};

/// A resource-request Event with the given overrides merged in.
fn event(overrides: Value) -> Value {
    let mut base = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "a-1", "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/pods/web?timeout=10s", "verb": "get",
        "user": {"username": "alice", "groups": ["dev", "system:authenticated"]},
        "objectRef": {"resource": "pods", "namespace": "shop", "name": "web", "apiVersion": "v1"},
        "requestObject": {"kind": "Pod", "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]}},
        "responseObject": {"kind": "Pod", "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]}},
        "stageTimestamp": "2026-11-23T07:00:00.000001Z"
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    // The URL kube-apiserver served, consistent with the overridden objectRef and verb.
    if overrides.get("requestURI").is_none() && base["objectRef"].is_object() {
        base["requestURI"] = json!(uri_for(&base["objectRef"], &base["verb"]));
    }
    base
}

/// The request URI of a request on `object_ref` with `verb`, as clients build it.
fn uri_for(object_ref: &Value, verb: &Value) -> String {
    let field = |k: &str| object_ref[k].as_str().unwrap_or("");
    let verb = verb.as_str().unwrap_or("get");
    let mut uri = match field("apiGroup") {
        "" => "/api/v1".to_string(),
        group => format!("/apis/{group}/v1"),
    };
    if !field("namespace").is_empty() {
        uri += &format!("/namespaces/{}", field("namespace"));
    }
    uri += &format!("/{}", field("resource"));
    let collection = ["create", "list", "watch", "deletecollection"].contains(&verb);
    if !collection && !field("name").is_empty() {
        uri += &format!("/{}", field("name"));
        if !field("subresource").is_empty() {
            uri += &format!("/{}", field("subresource"));
        }
    }
    if verb == "watch" {
        uri += "?watch=true";
    }
    uri
}

fn non_resource(path: &str) -> Value {
    event(
        json!({"objectRef": null, "requestURI": path, "requestObject": null, "responseObject": null}),
    )
}

fn attrs(v: &Value) -> String {
    v.to_string()
}

fn level_of(policy: &str, ev: &Value) -> Level {
    let p = Policy::parse(policy, "test").unwrap();
    let text = attrs(ev);
    let a: Attributes<'_> = serde_json::from_str(&text).unwrap();
    p.evaluate(&a).level
}

const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n";

/// One rule at `Metadata` with `selector`; returns whether it matched each Event.
fn matches(selector: &str, ev: &Value) -> bool {
    let selector = if selector == "{}" { "" } else { selector };
    let policy = format!("{HEAD}- level: Metadata\n{}", indent(selector));
    level_of(&policy, ev) == Level::Metadata
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

#[test]
fn selector_table() {
    let pod = event(json!({}));
    let pod_log = event(
        json!({"objectRef": {"resource": "pods", "subresource": "log", "namespace": "shop", "name": "web"}}),
    );
    let deploy_status = event(
        json!({"objectRef": {"resource": "deployments", "subresource": "status", "apiGroup": "apps", "namespace": "shop", "name": "api"}}),
    );
    let deploy = event(
        json!({"objectRef": {"resource": "deployments", "apiGroup": "apps", "namespace": "shop", "name": "api"}}),
    );
    let node = event(json!({"objectRef": {"resource": "nodes", "name": "n1"}}));
    let healthz = non_resource("/healthz?verbose=1");
    let api = non_resource("/apis/apps/v1");
    let anonymous = event(json!({"user": null}));

    let cases: &[(&str, &Value, bool)] = &[
        // No selectors: everything.
        ("{}", &pod, true),
        ("{}", &healthz, true),
        // users / userGroups
        ("users: [alice]", &pod, true),
        ("users: [bob]", &pod, false),
        ("users: [alice]", &anonymous, false),
        ("userGroups: [dev]", &pod, true),
        ("userGroups: [ops, system:authenticated]", &pod, true),
        ("userGroups: [ops]", &pod, false),
        ("userGroups: [dev]", &anonymous, false),
        // verbs
        ("verbs: [get, list]", &pod, true),
        ("verbs: [create]", &pod, false),
        // namespaces ("" = cluster-scoped)
        ("namespaces: [shop]", &pod, true),
        ("namespaces: [kube-system]", &pod, false),
        ("namespaces: [\"\"]", &node, true),
        ("namespaces: [\"\"]", &pod, false),
        ("namespaces: [shop]", &healthz, false),
        // resources
        ("resources: [{group: \"\", resources: [pods]}]", &pod, true),
        (
            "resources: [{group: \"\", resources: [pods]}]",
            &pod_log,
            false,
        ),
        (
            "resources: [{group: \"\", resources: [pods/log]}]",
            &pod_log,
            true,
        ),
        (
            "resources: [{group: \"\", resources: [\"pods/*\"]}]",
            &pod,
            true,
        ),
        (
            "resources: [{group: \"\", resources: [\"pods/*\"]}]",
            &pod_log,
            true,
        ),
        (
            "resources: [{group: apps, resources: [\"*/status\"]}]",
            &deploy_status,
            true,
        ),
        (
            "resources: [{group: apps, resources: [\"*/status\"]}]",
            &deploy,
            false,
        ),
        (
            "resources: [{group: apps, resources: [\"*\"]}]",
            &deploy_status,
            true,
        ),
        ("resources: [{group: apps}]", &deploy, true),
        ("resources: [{group: apps}]", &pod, false),
        (
            "resources: [{group: \"\", resources: [deployments]}]",
            &deploy,
            false,
        ),
        (
            "resources: [{group: \"\", resources: [pods], resourceNames: [web]}]",
            &pod,
            true,
        ),
        (
            "resources: [{group: \"\", resources: [pods], resourceNames: [db]}]",
            &pod,
            false,
        ),
        (
            "resources: [{group: \"\", resources: [pods]}]",
            &healthz,
            false,
        ),
        // nonResourceURLs (query string ignored; trailing * is a prefix)
        ("nonResourceURLs: [/healthz]", &healthz, true),
        ("nonResourceURLs: [\"/api*\"]", &api, true),
        ("nonResourceURLs: [\"/api*\"]", &healthz, false),
        ("nonResourceURLs: [\"*\"]", &healthz, true),
        ("nonResourceURLs: [\"*\"]", &pod, false),
        // every set selector must match
        (
            "users: [alice]\nverbs: [get]\nnamespaces: [shop]",
            &pod,
            true,
        ),
        (
            "users: [alice]\nverbs: [delete]\nnamespaces: [shop]",
            &pod,
            false,
        ),
    ];
    for (selector, ev, want) in cases {
        assert_eq!(
            matches(selector, ev),
            *want,
            "{selector} on {}",
            ev["objectRef"]
        );
    }
}

#[test]
fn first_match_wins_and_no_match_is_none() {
    let policy = format!(
        "{HEAD}- level: None\n  users: [alice]\n- level: RequestResponse\n- level: Metadata\n"
    );
    assert_eq!(level_of(&policy, &event(json!({}))), Level::None);
    assert_eq!(
        level_of(&policy, &event(json!({"user": {"username": "bob"}}))),
        Level::RequestResponse
    );
    let policy = format!("{HEAD}- level: Metadata\n  users: [bob]\n");
    assert_eq!(level_of(&policy, &event(json!({}))), Level::None);
}

fn apply(policy: &str, ev: &Value) -> Option<Value> {
    let p = Policy::parse(policy, "test").unwrap();
    let event = AuditEvent::parse(&ev.to_string()).unwrap();
    p.apply(&event)
        .unwrap()
        .map(|e| serde_json::from_str(e.json()).unwrap())
}

#[test]
fn levels_strip_bodies_and_never_raise() {
    let ev = event(json!({}));
    let at = |level: &str| format!("{HEAD}- level: {level}\n");
    assert_eq!(apply(&at("None"), &ev), None);

    let m = apply(&at("Metadata"), &ev).unwrap();
    assert_eq!(m["level"], "Metadata");
    assert!(m.get("requestObject").is_none() && m.get("responseObject").is_none());

    let r = apply(&at("Request"), &ev).unwrap();
    assert_eq!(r["level"], "Request");
    assert!(r.get("requestObject").is_some() && r.get("responseObject").is_none());

    let rr = apply(&at("RequestResponse"), &ev).unwrap();
    assert_eq!(rr, ev);

    // Recorded at Metadata: a RequestResponse rule cannot add what was never recorded.
    let recorded =
        event(json!({"level": "Metadata", "requestObject": null, "responseObject": null}));
    let kept = apply(&at("RequestResponse"), &recorded).unwrap();
    assert_eq!(kept["level"], "Metadata");
    assert_eq!(kept, recorded);
}

#[test]
fn untouched_events_keep_their_exact_text() {
    let text = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x","stage":"ResponseComplete","verb":"get","requestURI":"/healthz","requestObject":{"n":2.50},"stageTimestamp":"2026-11-23T07:00:00Z","responseObject":{"a":1}}"#;
    let p = Policy::parse(&format!("{HEAD}- level: Request\n"), "t").unwrap();
    let out = p.apply(&AuditEvent::parse(text).unwrap()).unwrap().unwrap();
    assert_eq!(
        out.json(),
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x","stage":"ResponseComplete","verb":"get","requestURI":"/healthz","requestObject":{"n":2.50},"stageTimestamp":"2026-11-23T07:00:00Z"}"#
    );
}

#[test]
fn omit_stages_are_unioned() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  omitStages: [ResponseStarted]\n";
    assert!(apply(policy, &event(json!({"stage": "RequestReceived"}))).is_none());
    assert!(apply(policy, &event(json!({"stage": "ResponseStarted"}))).is_none());
    assert!(apply(policy, &event(json!({"stage": "ResponseComplete"}))).is_some());
    // Policy-wide stages apply even when no rule matches (the Event is dropped either way).
    let p = Policy::parse(policy, "t").unwrap();
    let d = p.evaluate(&Attributes::default());
    assert_eq!(d.level, Level::Metadata);
}

#[test]
fn omit_managed_fields_rule_overrides_policy() {
    let list = event(json!({
        "verb": "list",
        "responseObject": {"kind": "PodList", "metadata": {"resourceVersion": "9"},
            "items": [{"metadata": {"name": "a", "managedFields": [{}]}}, {"metadata": {"name": "b"}}]}
    }));
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: RequestResponse\n  verbs: [list]\n- level: RequestResponse\n  omitManagedFields: false\n";
    let out = apply(policy, &list).unwrap();
    assert_eq!(
        out["responseObject"]["items"][0]["metadata"],
        json!({"name": "a"})
    );
    assert_eq!(
        out["responseObject"]["items"][1]["metadata"],
        json!({"name": "b"})
    );
    assert_eq!(out["requestObject"]["metadata"], json!({"name": "web"}));

    let get = event(json!({}));
    let out = apply(policy, &get).unwrap();
    assert_eq!(out, get, "the rule's omitManagedFields: false wins");

    // A placeholder string instead of an object is left alone.
    let big = event(json!({"verb": "list", "responseObject": "skipped-too-big-size-object"}));
    assert_eq!(
        apply(policy, &big).unwrap()["responseObject"],
        "skipped-too-big-size-object"
    );
}

#[test]
fn invalid_policies_name_the_problem() {
    let cases = [
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Verbose\n", "line 4"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Done]\n", "Done"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  user: [a]\n", "unknown field `user`"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources: [{group: \"\"}]\n  nonResourceURLs: [/x]\n", "rules[0]: rules cannot apply to both"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n- level: None\n  nonResourceURLs: [healthz]\n", "rules[1]: nonResourceURLs"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [\"/a*b\"]\n", "only at the end"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources: [{resourceNames: [x]}]\n", "resourceNames require resources"),
        ("apiVersion: v1\nkind: Policy\n", "apiVersion"),
        ("apiVersion: audit.k8s.io/v1\nkind: Config\n", "kind"),
        ("rules: [", "policy.yaml"),
    ];
    for (text, want) in cases {
        let err = Policy::parse(text, "policy.yaml").unwrap_err().to_string();
        assert!(err.contains(want), "{want:?} not in {err:?}");
        assert!(err.starts_with("policy.yaml: "), "{err}");
    }
    // JSON is YAML too.
    let json = r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata"}]}"#;
    assert!(Policy::parse(json, "p.json").is_ok());
}

const SYSDIG: &str = include_str!("../../../examples/policies/sysdig-general-purpose.yaml");
const METADATA_ONLY: &str = include_str!("../../../examples/policies/metadata-only.yaml");
const ADMIN: &str = include_str!("../../../examples/policies/kube-audit-admin.yaml");

/// The shipped example policies load and decide as kube-apiserver would.
#[test]
fn example_policies() {
    let exec_ws = event(json!({"verb": "get", "stage": "ResponseStarted",
        "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "shop", "name": "web"}}));
    let secret_get =
        event(json!({"objectRef": {"resource": "secrets", "namespace": "shop", "name": "db"}}));
    let proxy_watch = event(
        json!({"verb": "watch", "user": {"username": "system:kube-proxy"},
        "objectRef": {"resource": "endpoints"}}),
    );
    let healthz = non_resource("/healthz");
    let cm_update = event(
        json!({"verb": "update", "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "app"}}),
    );
    let crd = event(
        json!({"verb": "create", "objectRef": {"resource": "widgets", "apiGroup": "example.com", "namespace": "shop"}}),
    );
    let received = event(json!({"stage": "RequestReceived"}));

    let table: &[(&str, &Value, Level)] = &[
        (SYSDIG, &exec_ws, Level::RequestResponse),
        (SYSDIG, &secret_get, Level::RequestResponse),
        (SYSDIG, &proxy_watch, Level::None),
        (SYSDIG, &healthz, Level::None),
        (SYSDIG, &cm_update, Level::Request),
        (SYSDIG, &crd, Level::Metadata),
        (METADATA_ONLY, &secret_get, Level::Metadata),
        (ADMIN, &secret_get, Level::None),
        (ADMIN, &cm_update, Level::RequestResponse),
    ];
    for (policy, ev, want) in table {
        assert_eq!(level_of(policy, ev), *want, "{}", ev["objectRef"]);
    }
    // omitStages: RequestReceived never leaves.
    assert!(apply(SYSDIG, &received).is_none());
    assert!(apply(METADATA_ONLY, &received).is_none());
    // Metadata-only strips the bodies of a Secret read.
    let out = apply(METADATA_ONLY, &secret_get).unwrap();
    assert!(out.get("responseObject").is_none() && out["level"] == "Metadata");
}

/// A Policy sharing rule bodies through anchors and `<<` merge keys (as generated policies
/// do) loads and decides every Event exactly like its expanded form.
#[test]
fn merge_key_policy_decides_like_its_expanded_form() {
    let merged = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- &reads {level: Metadata, verbs: [get, list], resources: &core [{group: '', resources: [secrets, configmaps]}]}
- <<: *reads
  level: RequestResponse
  verbs: [update]
  omitStages: [ResponseStarted]
- &named {level: Request, users: [alice]}
- <<: [*named, *reads]
  users: [bob]
  level: None
- <<: {verbs: [create], resources: *core}
  level: Metadata
";
    let expanded = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [get, list]
  resources: [{group: '', resources: [secrets, configmaps]}]
- level: RequestResponse
  verbs: [update]
  resources: [{group: '', resources: [secrets, configmaps]}]
  omitStages: [ResponseStarted]
- level: Request
  users: [alice]
- level: None
  users: [bob]
  verbs: [get, list]
  resources: [{group: '', resources: [secrets, configmaps]}]
- level: Metadata
  verbs: [create]
  resources: [{group: '', resources: [secrets, configmaps]}]
";
    let mut decided = 0;
    for verb in ["get", "list", "update", "create"] {
        for resource in ["secrets", "configmaps", "pods"] {
            for user in ["alice", "bob", "carol"] {
                for stage in ["RequestReceived", "ResponseStarted", "ResponseComplete"] {
                    let ev = event(json!({"verb": verb, "stage": stage,
                        "user": {"username": user},
                        "objectRef": {"resource": resource, "namespace": "shop", "name": "x"}}));
                    let want = apply(expanded, &ev);
                    assert_eq!(apply(merged, &ev), want, "{verb} {resource} {user} {stage}");
                    decided += usize::from(want.is_some());
                }
            }
        }
    }
    // Decisions other than `None` are compared too, not only dropped Events.
    assert!(decided > 20, "{decided}");
}

/// The Policy file is read within the shared YAML budgets (CVE-2019-11253): an alias bomb and
/// deep nesting are refused quickly, naming the budget.
#[test]
fn policy_yaml_bombs_are_refused_quickly() {
    let users = vec!["a"; 5000].join(", ");
    let mut bomb = format!("{HEAD}- level: Metadata\n  users: &u0 [{users}]\n");
    for i in 1..5 {
        bomb.push_str(&format!(
            "- level: Metadata\n  users: &u{i} [{}]\n",
            vec![format!("*u{}", i - 1); 10].join(", ")
        ));
    }
    let deep = format!(
        "{HEAD}- level: Metadata\n  users: {}a{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (doc, want) in [(bomb, "nodes"), (deep, "levels deep")] {
        let started = std::time::Instant::now();
        let err = Policy::parse(&doc, "policy.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("policy.yaml: ") && err.contains(want),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}

//! The Policy decides as kube-apiserver does: on the request it saw, not on what the Event
//! recorded afterwards. Mirrors k8s.io/apiserver `pkg/audit/policy/checker_test.go`
//! (`TestChecker`/`testAuditLevel`, `TestOmitManagedFields`), `pkg/audit/policy/reader.go`
//! ("loaded illegal policy with 0 rules") and `pkg/apis/audit/validation/validation.go`
//! (`validateResources`).

use super::*;
use serde_json::{json, Value};

/// An Event of `verb` on `uri` by `user`, with an `objectRef` as AKS records it.
pub(crate) fn recorded(verb: &str, uri: &str, user: Value, object_ref: Value) -> Value {
    let mut ev = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "a-1", "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
        "user": user, "stageTimestamp": "2026-11-23T07:00:00.000001Z",
        "requestObject": {"kind": "ConfigMap", "metadata": {"name": "x"}},
    });
    if !object_ref.is_null() {
        ev["objectRef"] = object_ref;
    }
    ev
}

fn decide(policy: &str, ev: &Value) -> Level {
    let p = Policy::parse(policy, "test").unwrap();
    let text = ev.to_string();
    let a: Attributes<'_> = serde_json::from_str(&text).unwrap();
    p.evaluate(&a).level
}

fn applied(policy: &str, ev: &Value) -> Result<Option<Value>, Unreadable> {
    let p = Policy::parse(policy, "test").unwrap();
    let out = p.apply(&AuditEvent::parse(&ev.to_string()).unwrap())?;
    Ok(out.map(|e| serde_json::from_str(e.json()).unwrap()))
}

const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n";

/// The issue's example: a `create` names no object in its URL, so a `resourceNames` rule
/// does not match it, whatever `objectRef.name` AKS recorded from the body.
#[test]
fn create_is_not_matched_by_resource_names_rules() {
    let policy = format!(
        "{HEAD}- level: None\n  resources: [{{group: \"\", resources: [configmaps], resourceNames: [app-config]}}]\n- level: Metadata\n"
    );
    let alice = json!({"username": "alice", "groups": ["dev"]});
    let cm = json!({"resource": "configmaps", "namespace": "default", "name": "app-config", "apiVersion": "v1"});
    let create = recorded(
        "create",
        "/api/v1/namespaces/default/configmaps",
        alice.clone(),
        cm.clone(),
    );
    let out = applied(&policy, &create).unwrap().expect("delivered");
    assert_eq!(out["level"], "Metadata");
    assert!(out.get("requestObject").is_none());
    // The same object by name in the URL: the resourceNames rule matches.
    let update = recorded(
        "update",
        "/api/v1/namespaces/default/configmaps/app-config",
        alice,
        cm,
    );
    assert_eq!(applied(&policy, &update).unwrap(), None);
}

/// The request-URI table: (recorded verb, requestURI, recorded objectRef, rule selectors as
/// YAML lines, whether they match). Shared with the alert rules' parity test.
pub(crate) fn uri_cases() -> Vec<(&'static str, &'static str, Value, &'static str, bool)> {
    vec![
        // DELETE on a collection is `deletecollection`, even if recorded as `delete`.
        ("delete", "/api/v1/namespaces/shop/pods", json!({"resource": "pods", "namespace": "shop"}), "verbs: [deletecollection]", true),
        ("delete", "/api/v1/namespaces/shop/pods/web", json!({"resource": "pods", "namespace": "shop", "name": "web"}), "verbs: [deletecollection]", false),
        // A watch of one object by field selector names it.
        ("watch", "/api/v1/namespaces/shop/configmaps?watch=true&fieldSelector=metadata.name%3Dapp", json!({"resource": "configmaps", "namespace": "shop"}), "resources: [{group: \"\", resources: [configmaps], resourceNames: [app]}]", true),
        ("watch", "/api/v1/namespaces/shop/configmaps?watch=true", json!({"resource": "configmaps", "namespace": "shop", "name": "app"}), "resources: [{group: \"\", resources: [configmaps], resourceNames: [app]}]", false),
        ("watch", "/api/v1/watch/namespaces/shop/pods", json!({"resource": "pods", "namespace": "shop"}), "verbs: [watch]\n  namespaces: [shop]", true),
        // kubectl exec over WebSocket: get on pods/exec.
        ("get", "/api/v1/namespaces/shop/pods/web/exec?command=sh", json!({"resource": "pods", "namespace": "shop", "name": "web"}), "resources: [{group: \"\", resources: [pods/exec]}]", true),
        ("get", "/api/v1/namespaces/shop/pods/web/exec?command=sh", json!({"resource": "pods", "namespace": "shop", "name": "web"}), "resources: [{group: \"\", resources: [pods]}]", false),
        // proxy: the special verb, no subresource.
        ("proxy", "/api/v1/proxy/namespaces/shop/pods/web/metrics", json!({"resource": "pods", "namespace": "shop", "name": "web"}), "verbs: [proxy]\n  resources: [{group: \"\", resources: [pods]}]", true),
        // Cluster-scoped: namespace "" (a namespace recorded on the object does not count).
        ("get", "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit", json!({"resource": "clusterroles", "apiGroup": "rbac.authorization.k8s.io", "name": "edit", "namespace": "shop"}), "namespaces: [\"\"]\n  resources: [{group: rbac.authorization.k8s.io, resources: [clusterroles]}]", true),
        // The group comes from the URL.
        ("create", "/apis/apps/v1/namespaces/shop/deployments", json!({"resource": "deployments", "namespace": "shop"}), "resources: [{group: apps}]", true),
        // Non-resource URLs: path without the query.
        ("get", "/healthz?verbose=1", Value::Null, "nonResourceURLs: [/healthz]", true),
        ("get", "/apis/apps/v1", Value::Null, "nonResourceURLs: [\"/apis/*\"]", true),
        ("get", "/apis/apps/v1", Value::Null, "resources: [{group: apps}]", false),
    ]
}

/// The user of [`uri_cases`].
pub(crate) fn uri_user() -> Value {
    json!({"username": "alice", "groups": ["dev"]})
}

/// The URL decides namespace, resource, subresource, name and verb, as the request-info
/// resolver derives them: `deletecollection`, `?watch=true` (with a `metadata.name` field
/// selector), `pods/exec`, cluster-scoped objects and non-resource URLs.
#[test]
fn policy_decides_on_the_request_uri_not_on_recorded_fields() {
    let cases = uri_cases();
    for (verb, uri, object_ref, selector, want) in &cases {
        let policy = format!("{HEAD}- level: Metadata\n  {selector}\n");
        let ev = recorded(verb, uri, uri_user(), object_ref.clone());
        assert_eq!(
            decide(&policy, &ev) == Level::Metadata,
            *want,
            "{verb} {uri} / {selector}"
        );
    }
    // Without a requestURI the recorded objectRef is all there is.
    let mut no_uri = recorded(
        "get",
        "",
        uri_user(),
        json!({"resource": "secrets", "namespace": "shop", "name": "db"}),
    );
    no_uri.as_object_mut().unwrap().remove("requestURI");
    let p = format!("{HEAD}- level: Metadata\n  resources: [{{group: \"\", resources: [secrets], resourceNames: [db]}}]\n");
    assert_eq!(decide(&p, &no_uri), Level::Metadata);
}

/// `TestChecker`'s requests, as the Events kube-apiserver writes for them. Shared with the
/// alert rules' parity test.
pub(crate) fn checker_requests() -> Vec<(&'static str, Value)> {
    let tim = json!({"username": "tim@k8s.io", "groups": ["humans", "developers"]});
    vec![
        (
            "namespaced",
            recorded(
                "get",
                "/api/v1/namespaces/default/pods/busybox",
                tim.clone(),
                Value::Null,
            ),
        ),
        (
            "cluster",
            recorded(
                "get",
                "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit",
                tim.clone(),
                Value::Null,
            ),
        ),
        (
            "nonResource",
            recorded("get", "/logs/kubelet.log", tim.clone(), Value::Null),
        ),
        // Upstream's record names the subresource directly; the URL carries it here.
        (
            "subresource",
            recorded(
                "get",
                "/api/v1/namespaces/default/pods/busybox/log",
                tim,
                Value::Null,
            ),
        ),
        (
            "ClusterRoleUpdate",
            recorded(
                "update",
                "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/somerole/status",
                json!({"username": "tim@k8s.io", "groups": ["humans", "developers"]}),
                Value::Null,
            ),
        ),
        (
            "Unauthorized",
            recorded(
                "get",
                "/api/v1/namespaces/default/pods/busybox",
                Value::Null,
                Value::Null,
            ),
        ),
    ]
}

/// `TestChecker`'s rules, by name.
pub(crate) const CHECKER_RULES: &[(&str, &str)] = &[
        ("default", "level: Metadata"),
        ("create", "level: Request\n  verbs: [create]"),
        ("tims", "level: Metadata\n  users: [tim@k8s.io]"),
        ("humans", "level: Metadata\n  userGroups: [humans]"),
        ("serviceAccounts", "level: Request\n  userGroups: [\"system:serviceaccounts\"]"),
        ("getPods", "level: RequestResponse\n  verbs: [get]\n  resources: [{resources: [pods]}]"),
        ("getPodLogs", "level: Request\n  verbs: [get]\n  resources: [{resources: [pods/log]}]"),
        ("getPodWildcardMatching", "level: Request\n  verbs: [get]\n  resources: [{resources: [\"*\"]}]"),
        ("getPodResourceWildcardMatching", "level: Request\n  verbs: [get]\n  resources: [{resources: [\"*/log\"]}]"),
        ("getPodSubResourceWildcardMatching", "level: Request\n  verbs: [get]\n  resources: [{resources: [\"pods/*\"]}]"),
        ("getClusterRoles", "level: RequestResponse\n  verbs: [get]\n  resources: [{group: rbac.authorization.k8s.io, resources: [clusterroles]}]\n  namespaces: [\"\"]"),
        ("getLogs", "level: RequestResponse\n  verbs: [get]\n  nonResourceURLs: [\"/logs*\"]"),
        ("getMetrics", "level: Request\n  verbs: [get]\n  nonResourceURLs: [/metrics]"),
        ("clusterRoleEdit", "level: Request\n  resources: [{group: rbac.authorization.k8s.io, resources: [clusterroles], resourceNames: [edit]}]"),
        ("getGroupWildCardMatchingWithSubresourceWildcardMatching", "level: RequestResponse\n  verbs: [update]\n  resources: [{group: \"*\", resources: [\"*/status\"]}]"),
    ];

/// `TestChecker`'s table: (request, expected level, the rules of the Policy in order).
pub(crate) fn checker_table() -> Vec<(&'static str, Level, &'static [&'static str])> {
    use Level::{Metadata as M, None as N, Request as R, RequestResponse as RR};
    vec![
        ("namespaced", M, &["default"]),
        ("namespaced", N, &["create"]),
        ("namespaced", M, &["tims"]),
        ("namespaced", M, &["humans"]),
        ("namespaced", N, &["serviceAccounts"]),
        ("namespaced", RR, &["getPods"]),
        ("namespaced", N, &["getClusterRoles"]),
        ("namespaced", N, &["getLogs"]),
        ("namespaced", N, &["getMetrics"]),
        (
            "namespaced",
            M,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        ("namespaced", RR, &["getMetrics", "getPods", "default"]),
        ("namespaced", RR, &["getPodLogs", "getPods"]),
        ("cluster", M, &["default"]),
        ("cluster", N, &["create"]),
        ("cluster", M, &["tims"]),
        ("cluster", M, &["humans"]),
        ("cluster", N, &["serviceAccounts"]),
        ("cluster", N, &["getPods"]),
        ("cluster", RR, &["getClusterRoles"]),
        ("cluster", R, &["clusterRoleEdit", "getClusterRoles"]),
        ("cluster", N, &["getLogs"]),
        ("cluster", N, &["getMetrics"]),
        ("cluster", M, &["getMetrics", "serviceAccounts", "default"]),
        ("cluster", RR, &["getMetrics", "getClusterRoles", "default"]),
        ("cluster", N, &["getPodLogs", "getPods"]),
        ("nonResource", M, &["default"]),
        ("nonResource", N, &["create"]),
        ("nonResource", M, &["tims"]),
        ("nonResource", M, &["humans"]),
        ("nonResource", N, &["serviceAccounts"]),
        ("nonResource", N, &["getPods"]),
        ("nonResource", N, &["getClusterRoles"]),
        ("nonResource", RR, &["getLogs"]),
        ("nonResource", N, &["getMetrics"]),
        (
            "nonResource",
            M,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "nonResource",
            RR,
            &["getLogs", "getClusterRoles", "default"],
        ),
        ("nonResource", N, &["getPodLogs", "getPods"]),
        ("subresource", R, &["getPodLogs", "getPods"]),
        ("subresource", R, &["getPodWildcardMatching"]),
        ("subresource", R, &["getPodResourceWildcardMatching"]),
        ("subresource", R, &["getPodSubResourceWildcardMatching"]),
        // kube-apiserver 1.36+: group `*` matches every API group.
        (
            "ClusterRoleUpdate",
            RR,
            &["getGroupWildCardMatchingWithSubresourceWildcardMatching"],
        ),
        (
            "namespaced",
            N,
            &["getGroupWildCardMatchingWithSubresourceWildcardMatching"],
        ),
        ("ClusterRoleUpdate", N, &["getClusterRoles"]),
        ("Unauthorized", N, &["tims"]),
        ("Unauthorized", M, &["tims", "default"]),
        ("Unauthorized", N, &["humans"]),
        ("Unauthorized", M, &["humans", "default"]),
    ]
}

/// `TestChecker` / `testAuditLevel` (no policy-wide stages): the same requests, rules and
/// expected levels, the requests given as the Events kube-apiserver writes for them.
#[test]
fn checker_levels_like_test_checker() {
    let requests = checker_requests();
    let rules = CHECKER_RULES;
    let table = checker_table();
    for (request, want, names) in &table {
        let ev = &requests.iter().find(|(n, _)| n == request).unwrap().1;
        let mut policy = HEAD.to_string();
        for name in *names {
            let rule = rules.iter().find(|(n, _)| n == name).unwrap().1;
            policy += &format!("- {rule}\n");
        }
        assert_eq!(
            decide(&policy, ev),
            *want,
            "request {request} rules {names:?}"
        );
    }
}

/// With `omitManagedFields`, managed fields go from the objects of a `Table` response's rows
/// too (`kubectl get` asks for Tables), as kube-apiserver's `removeManagedFields` does.
#[test]
fn omit_managed_fields_strips_table_rows() {
    let mut ev = recorded(
        "list",
        "/api/v1/namespaces/shop/pods",
        json!({"username": "a"}),
        Value::Null,
    );
    ev["responseObject"] = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
    "columnDefinitions": [{"name": "Name"}],
    "rows": [
        {"cells": ["web"], "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]}}},
        {"cells": ["db"], "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "db"}}}
    ]});
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: RequestResponse\n";
    let out = applied(policy, &ev).unwrap().unwrap();
    let rows = &out["responseObject"]["rows"];
    assert_eq!(rows[0]["object"]["metadata"], json!({"name": "web"}));
    assert_eq!(rows[0]["cells"], json!(["web"]));
    assert_eq!(rows[1], ev["responseObject"]["rows"][1]);
}

/// Events the Policy cannot read as kube-apiserver types are reported, never dropped (the
/// pipeline dead-letters them); `user.groups: null` reads as no groups, as in Go.
#[test]
fn events_the_policy_cannot_read_are_reported_not_dropped() {
    let policy = format!("{HEAD}- level: None\n  userGroups: [dev]\n- level: Metadata\n");
    let base = recorded(
        "get",
        "/api/v1/namespaces/shop/pods/web",
        json!({"username": "a", "groups": null}),
        Value::Null,
    );
    assert_eq!(
        applied(&policy, &base).unwrap().unwrap()["level"],
        "Metadata"
    );

    let level_5 = base
        .to_string()
        .replace(r#""level":"RequestResponse""#, r#""level":5"#);
    let numeric_ns = base.to_string().replace(
        r#""verb":"get""#,
        r#""verb":"get","objectRef":{"namespace":7}"#,
    );
    let duplicate = base
        .to_string()
        .replace(r#""verb":"get""#, r#""verb":"get","verb":"delete""#);
    let unknown_level = base
        .to_string()
        .replace(r#""level":"RequestResponse""#, r#""level":"Verbose""#);
    let p = Policy::parse(&policy, "t").unwrap();
    for text in [level_5, numeric_ns, duplicate, unknown_level] {
        let event = AuditEvent::parse(&text).expect("a valid Event for receivers");
        assert!(p.apply(&event).is_err(), "{text}");
    }
}

/// kube-apiserver's loader: no rules is illegal; API groups are DNS subdomains or `""`; a
/// key in the wrong place (here `verbs` indented into a `resources` item) is refused with
/// its field path and line rather than silently widening the rule to every verb.
#[test]
fn loader_refuses_what_kube_apiserver_refuses() {
    let head = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";
    let cases = [
        (format!("{head}rules: []\n"), "0 rules"),
        (format!("{head}omitStages: [RequestReceived]\n"), "0 rules"),
        (format!("{head}rules:\n- level: None\n  resources: [{{group: rbac.authorization.k8s.io/v1}}]\n"), "resources[0].group"),
        (format!("{head}rules:\n- level: None\n  resources: [{{group: Apps}}]\n"), "not a valid API group"),
        (format!("{head}rules:\n- level: None\n  nonResourceURLs: [\"/logs**\"]\n"), "only at the end"),
        (format!("{head}rules:\n- level: None\n  nonResourceURLs: [\"/*é\"]\n"), "only at the end"),
        (format!("{head}rules:\n- level: None\n  resources: [{{group: \"*.k8s.io\"}}]\n"), "not a valid API group"),
        (format!("{head}rules:\n- level: None\n  resources:\n  - group: \"\"\n    resources: [secrets]\n    verbs: [get]\n"), "unknown field `verbs`"),
    ];
    for (text, want) in &cases {
        let err = Policy::parse(text, "AUDIT_POLICY").unwrap_err().to_string();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
    let misplaced = Policy::parse(&cases[7].0, "AUDIT_POLICY")
        .unwrap_err()
        .to_string();
    assert!(misplaced.contains("line 8"), "{misplaced}");
    assert!(misplaced.contains("rules[0].resources[0]"), "{misplaced}");
    for url in ["/é", "/logs*", "*", "/"] {
        let text = format!("{head}rules:\n- level: None\n  nonResourceURLs: [\"{url}\"]\n");
        assert!(Policy::parse(&text, "p").is_ok(), "{url}");
    }
    for group in ["", "apps", "rbac.authorization.k8s.io", "example-1.io", "*"] {
        let text = format!("{head}rules:\n- level: None\n  resources: [{{group: \"{group}\"}}]\n");
        assert!(Policy::parse(&text, "p").is_ok(), "{group}");
    }
}

/// A patch's request body is recorded as sent (k8s.io/apiserver `pkg/audit/request.go`
/// `LogRequestPatch`, unlike `LogRequestObject`, removes no managed fields): a patch that
/// resets `metadata.managedFields` keeps showing it; the response object is still stripped.
#[test]
fn omit_managed_fields_keeps_patch_bodies_like_log_request_patch() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: RequestResponse\n";
    let mut ev = recorded(
        "patch",
        "/api/v1/namespaces/shop/configmaps/app",
        json!({"username": "a"}),
        Value::Null,
    );
    ev["requestObject"] = json!({"metadata": {"managedFields": [{}]}});
    ev["responseObject"] = json!({"kind": "ConfigMap", "metadata": {"name": "app", "managedFields": [{"manager": "kubectl"}]}});
    let out = applied(policy, &ev).unwrap().unwrap();
    assert_eq!(out["requestObject"], ev["requestObject"]);
    assert_eq!(out["responseObject"]["metadata"], json!({"name": "app"}));
    // An update's body is the decoded object: stripped.
    ev["verb"] = json!("update");
    let out = applied(policy, &ev).unwrap().unwrap();
    assert_eq!(out["requestObject"]["metadata"], json!({}));
}

/// Hostile Policy text is refused with a reason, never a crash: nesting deep enough to
/// exhaust a recursive parser, and a non-resource URL of multi-byte characters.
#[test]
fn hostile_policies_are_refused_not_crashed_on() {
    let deep = format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nmetadata: {}{}\nrules:\n- level: None\n",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    assert!(Policy::parse(&deep, "p").is_err());
    let deep_json = format!(
        r#"{{"apiVersion":"audit.k8s.io/v1","kind":"Policy","metadata":{}{},"rules":[{{"level":"None"}}]}}"#,
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    assert!(Policy::parse(&deep_json, "p").is_err());
}

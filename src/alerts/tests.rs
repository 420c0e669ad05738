//! Unit tests of the alert rules: the Policy parity tables through `match`, the document's
//! checks, the cards and the grouping.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::group::{Admit, Grouper};
use super::rules::AlertRules;
use super::*;
use crate::audit::policy::parity_tests::{
    checker_requests, checker_table, recorded, uri_cases, uri_user, CHECKER_RULES,
};
use crate::audit::policy::Level;

const NOTIFIERS: &str = "notifiers:\n- {name: secops, type: teams, url: \"https://example.invalid/workflows/s3cr3t-path?sig=s3cr3t-sig\"}\n";

fn rules(match_lines: &[&str]) -> AlertRules {
    let mut doc = format!("{NOTIFIERS}rules:\n");
    for (i, m) in match_lines.iter().enumerate() {
        doc += &format!("- name: r{i}\n  notify: [secops]\n  match:\n    {m}\n");
    }
    AlertRules::parse(&doc, &|_| None).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

fn view_matches(rule: &AlertRule, event: &Value) -> bool {
    let text = event.to_string();
    let view: EventView<'_> = serde_json::from_str(&text).unwrap();
    rule.matcher.matches(&view)
}

/// The Policy's request-URI table, through `match`: the same selectors decide the same way.
#[test]
fn match_agrees_with_the_policy_on_the_request_uri_table() {
    for (verb, uri, object_ref, selector, want) in uri_cases() {
        let selector = selector.replace("\n  ", "\n    ");
        let r = rules(&[&selector]);
        let ev = recorded(verb, uri, uri_user(), object_ref);
        assert_eq!(
            view_matches(&r.rules[0], &ev),
            want,
            "{verb} {uri} / {selector}"
        );
    }
}

/// kube-apiserver's `TestChecker` table, through `match`: the first matching alert rule (in
/// the Policy's order) has the level the Policy decides.
#[test]
fn match_agrees_with_the_policy_on_the_checker_table() {
    let requests = checker_requests();
    let mut checked = 0;
    for (request, want, names) in checker_table() {
        let ev = &requests.iter().find(|(n, _)| *n == request).unwrap().1;
        let mut first = Level::None;
        for name in names {
            let rule = CHECKER_RULES.iter().find(|(n, _)| n == name).unwrap().1;
            let (level, selectors) = rule.split_once('\n').unwrap_or((rule, ""));
            let level = match level.trim_start_matches("level: ") {
                "Metadata" => Level::Metadata,
                "Request" => Level::Request,
                "RequestResponse" => Level::RequestResponse,
                other => panic!("{other}"),
            };
            // A rule with no selector (`default`) matches every request, as in the Policy;
            // an alert rule must say something, so it is written as "any verb".
            let selectors = selectors.trim();
            let alert = if selectors.is_empty() {
                rules(&["userAgents: [\"*\"]"])
            } else {
                rules(&[&selectors.replace("\n  ", "\n    ")])
            };
            let mut ev = ev.clone();
            ev["userAgent"] = json!("kubectl");
            if view_matches(&alert.rules[0], &ev) {
                first = level;
                break;
            }
        }
        assert_eq!(first, want, "request {request} rules {names:?}");
        checked += 1;
    }
    assert!(checked > 40, "{checked}");
}

fn event(extra: Value) -> Value {
    let mut ev = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "a-1", "stage": "ResponseComplete",
        "requestURI": "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
        "verb": "patch",
        "user": {"username": "alice@contoso.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["20.61.10.4"], "userAgent": "kubectl/v1.31.2",
        "objectRef": {"resource": "deployments", "namespace": "kube-system", "name": "coredns",
                      "apiGroup": "apps", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "stageTimestamp": "2026-11-23T07:00:00.234567Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    });
    if let (Some(ev), Some(extra)) = (ev.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            ev.insert(k.clone(), v.clone());
        }
    }
    ev
}

/// The extra fields: response codes and ranges, client addresses outside CIDRs, user-agent
/// globs and the authorization decision.
#[test]
fn extra_fields_match_as_documented() {
    let cases: &[(&str, Value, bool)] = &[
        (
            "responseCodes: [403]",
            json!({"responseStatus": {"code": 403}}),
            true,
        ),
        ("responseCodes: [403]", json!({}), false),
        (
            "responseCodes: [\"400-499\"]",
            json!({"responseStatus": {"code": 422}}),
            true,
        ),
        (
            "responseCodes: [\"400-499\"]",
            json!({"responseStatus": {"code": 500}}),
            false,
        ),
        (
            "sourceIPsOutside: [10.0.0.0/8, 20.61.10.0/24]",
            json!({}),
            false,
        ),
        ("sourceIPsOutside: [10.0.0.0/8]", json!({}), true),
        (
            "sourceIPsOutside: [10.0.0.0/8]",
            json!({"sourceIPs": ["10.1.2.3", "8.8.8.8"]}),
            false,
        ),
        (
            "sourceIPsOutside: [10.0.0.0/8]",
            json!({"sourceIPs": ["::ffff:10.1.2.3"]}),
            false,
        ),
        (
            "sourceIPsOutside: [10.0.0.0/8]",
            json!({"sourceIPs": []}),
            false,
        ),
        ("userAgents: [\"kubectl/*\"]", json!({}), true),
        (
            "userAgents: [\"kubectl/*\"]",
            json!({"userAgent": "curl/8.0"}),
            false,
        ),
        ("decisions: [forbid]", json!({}), false),
        (
            "decisions: [forbid]",
            json!({"annotations": {"authorization.k8s.io/decision": "forbid"}}),
            true,
        ),
        // Policy selectors and extras together: every field set must match.
        ("verbs: [patch]\n    responseCodes: [403]", json!({}), false),
        ("verbs: [patch]\n    responseCodes: [200]", json!({}), true),
    ];
    for (m, extra, want) in cases {
        let r = rules(&[m]);
        assert_eq!(
            view_matches(&r.rules[0], &event(extra.clone())),
            *want,
            "{m} / {extra}"
        );
    }
}

/// The example rule: a patch of the coredns deployment matches, other objects and
/// `get`s do not; a `create` names no object in its URL, so `resourceNames` does not see it
/// (as in the Policy).
#[test]
fn the_coredns_rule_matches_changes_of_coredns_only() {
    let r = rules(&["verbs: [create, update, patch, delete]\n    namespaces: [kube-system]\n    resources: [{group: apps, resources: [deployments], resourceNames: [coredns]}]"]);
    let rule = &r.rules[0];
    assert!(view_matches(rule, &event(json!({}))));
    assert!(!view_matches(rule, &event(json!({"verb": "get"}))));
    assert!(!view_matches(
        rule,
        &event(json!({
        "requestURI": "/apis/apps/v1/namespaces/kube-system/deployments/metrics-server"}))
    ));
    assert!(!view_matches(
        rule,
        &event(json!({
        "verb": "create", "requestURI": "/apis/apps/v1/namespaces/kube-system/deployments"}))
    ));
}

/// Start-up refuses what cannot work, naming the rule and the line, never a URL.
#[test]
fn bad_documents_are_refused_naming_rule_and_line() {
    let base = format!("{NOTIFIERS}rules:\n- name: coredns-changed\n  notify: [secops]\n  match:\n    verbs: [patch]\n");
    assert!(AlertRules::parse(&base, &|_| None).is_ok());
    let cases: &[(String, &str)] = &[
        (base.replace("[secops]", "[secop]"), "rules[0] (coredns-changed), line 4: notify: unknown notifier \"secop\" (notifiers: secops)"),
        (base.replace("verbs: [patch]", "verbz: [patch]"), "unknown field `verbz`"),
        (base.replace("verbs: [patch]", "responseCodes: [\"4xx\"]"), "responseCodes"),
        (base.replace("verbs: [patch]", "sourceIPsOutside: [10.0.0.0/33]"), "sourceIPsOutside"),
        (base.replace("verbs: [patch]", "decisions: [deny]"), "decisions: \"deny\""),
        (base.replace("verbs: [patch]", "resources: [{group: apps/v1}]"), "not a valid API group"),
        (base.replace("verbs: [patch]", "{}"), "match is empty"),
        (base.replace("type: teams", "type: email"), "type must be teams, slack or webhook"),
        (base.replace("https://", "http://"), "url must be https"),
        (format!("{base}  severity: urgent\n"), "unknown variant `…`, expected one of `info`"),
        (format!("{base}grouping: {{window: 2h}}\n"), "grouping.window"),
        (format!("{base}- name: coredns-changed\n  notify: [secops]\n  match: {{verbs: [get]}}\n"), "rules[1] (coredns-changed), line 8: the name is used twice"),
    ];
    for (doc, want) in cases {
        let err = AlertRules::parse(doc, &|_| None).unwrap_err();
        assert!(err.contains(want), "{err}\nwanted {want}\n{doc}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}

/// A URL may come from an app setting (`urlSetting`, a Key Vault reference in Azure); the
/// rules' `Debug` never shows it.
#[test]
fn notifier_urls_come_from_settings_and_never_show() {
    let doc = "notifiers:\n- {name: chat, type: slack, urlSetting: SLACK_URL}\nrules:\n- {name: r, notify: [chat], match: {verbs: [delete]}}\n";
    let err = AlertRules::parse(doc, &|_| None).unwrap_err();
    assert!(
        err.contains("app setting SLACK_URL (urlSetting) is not set"),
        "{err}"
    );
    let r = AlertRules::parse(doc, &|k| {
        (k == "SLACK_URL").then(|| "https://hooks.slack.invalid/services/T0/B0/s3cr3t".into())
    })
    .unwrap();
    assert_eq!(
        r.notifiers[0].url.expose(),
        "https://hooks.slack.invalid/services/T0/B0/s3cr3t"
    );
    let shown = format!("{r:?}");
    assert!(
        !shown.contains("s3cr3t") && shown.contains("***"),
        "{shown}"
    );
}

fn hit(id: &str) -> Hit {
    let ev = event(json!({"auditID": id}));
    let text = ev.to_string();
    let event = AuditEvent::parse(&text).unwrap();
    let view: EventView<'_> = serde_json::from_str(&text).unwrap();
    Hit {
        rule: 0,
        facts: Facts::of(&event, &view),
        event,
    }
}

/// Every card names the rule, user, verb, resource, name, namespace, source IP and audit ID,
/// in the shape its notifier expects; a card lists a bounded number and counts the rest.
#[test]
fn cards_answer_who_what_when_where() {
    let hits: Vec<Hit> = (0..13).map(|i| hit(&format!("id-{i}"))).collect();
    let facts: Vec<Facts> = hits.iter().map(|h| h.facts.clone()).collect();
    let events: Vec<AuditEvent> = hits.iter().map(|h| h.event.clone()).collect();
    let card = Card {
        rule: "coredns-changed",
        severity: Severity::High,
        facts: &facts,
        events: &events,
        listed: 10,
        uncounted: 2,
    };
    let teams = card.body(NotifierKind::Teams);
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    let body = attachment["content"]["body"].as_array().unwrap();
    assert_eq!(body.iter().filter(|b| b["type"] == "FactSet").count(), 10);
    let slack = card.body(NotifierKind::Slack);
    assert!(slack["text"]
        .as_str()
        .unwrap()
        .contains("coredns-changed (high): 15 audit Events"));
    assert!(slack["blocks"].as_array().unwrap().len() <= 50);
    for text in [teams.to_string(), slack.to_string()] {
        for want in [
            "coredns-changed",
            "alice@contoso.com",
            "patch",
            "deployments.apps",
            "coredns",
            "kube-system",
            "20.61.10.4",
            "id-0",
            "2026-11-23T07:00:00.234567Z",
            "kubectl/v1.31.2",
            "and 5 more",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
    }
    let webhook = card.body(NotifierKind::Webhook);
    assert_eq!(webhook["rule"], "coredns-changed");
    assert_eq!(webhook["severity"], "high");
    assert_eq!(webhook["count"], 15);
    assert_eq!(webhook["events"].as_array().unwrap().len(), 13);
    assert_eq!(
        webhook["events"][0],
        serde_json::from_str::<Value>(hits[0].event.json()).unwrap()
    );
}

/// The first matches go out at once; matches within the window are held for one card at its
/// end; an Event is alerted once; a failed card's Events may be alerted again.
#[test]
fn grouping_sends_one_card_per_window() {
    let mut g = Grouper::new(Duration::from_secs(60));
    let t0 = Instant::now();
    let key = (0, 0);
    assert!(matches!(g.admit(key, vec![hit("a"), hit("b")], t0), Admit::Now(h) if h.len() == 2));
    assert!(matches!(g.admit(key, vec![hit("a")], t0), Admit::Seen));
    let at = t0 + Duration::from_secs(60);
    assert!(
        matches!(g.admit(key, vec![hit("c")], t0 + Duration::from_secs(1)), Admit::Held(Some(t)) if t == at)
    );
    assert!(matches!(
        g.admit(key, vec![hit("d")], t0 + Duration::from_secs(2)),
        Admit::Held(None)
    ));
    // Another notifier or rule has its own window.
    assert!(matches!(g.admit((0, 1), vec![hit("c")], t0), Admit::Now(_)));
    let (held, uncounted) = g.take_held(key, at);
    assert_eq!((held.len(), uncounted), (2, 0));
    assert!(matches!(
        g.admit(key, vec![hit("e")], at + Duration::from_secs(1)),
        Admit::Held(Some(_))
    ));
    g.forget((0, 1), &[hit("c")]);
    assert!(matches!(
        g.admit((0, 1), vec![hit("c")], t0 + Duration::from_secs(120)),
        Admit::Now(_)
    ));
    // No window: every invocation's matches go out.
    let mut g = Grouper::new(Duration::ZERO);
    assert!(matches!(g.admit(key, vec![hit("a")], t0), Admit::Now(_)));
    assert!(matches!(g.admit(key, vec![hit("b")], t0), Admit::Now(_)));
}

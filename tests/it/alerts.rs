//! Alerts end to end: the real binary with `AUDIT_ALERTS`, local stand-ins for Teams, Slack
//! and a webhook on 127.0.0.1, and the audit receiver. Cards go out beside delivery, never at
//! its cost; what cannot be sent is an `alert` dead letter; the URLs never show.

use std::time::Duration;

use aks_audit_forwarder::deadletter::DeadLetter;
use aks_audit_forwarder::tools::notified::Notified;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::hostile::dead_letters;

/// A secret in every notifier URL: path and query, as Teams and Slack URLs carry them.
const SECRET: &str = "Zx9SecretSig";

/// An Event on the coredns deployment by `user` from `ip`, as AKS records it.
fn coredns_event(id: &str, verb: &str, user: &str, ip: &str) -> String {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": [ip], "userAgent": "kubectl/v1.31.2",
        "objectRef": {"resource": "deployments", "namespace": "kube-system", "name": "coredns",
                      "apiGroup": "apps", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
        "stageTimestamp": "2026-11-23T07:00:00.234567Z"
    })
    .to_string()
}

/// The rule, to each notifier given as (name, type, stand-in).
fn rules(notifiers: &[(&str, &str, &Notified)], window: &str) -> String {
    let mut doc = String::from("notifiers:\n");
    for (name, kind, n) in notifiers {
        let url = n.url(&format!("/workflows/{SECRET}/invoke?sig={SECRET}"));
        doc += &format!("  - name: {name}\n    type: {kind}\n    url: \"{url}\"\n");
    }
    let names: Vec<&str> = notifiers.iter().map(|n| n.0).collect();
    doc += &format!(
        "rules:\n  - name: coredns-changed\n    notify: [{}]\n    severity: high\n    match:\n      verbs: [create, update, patch, delete]\n      namespaces: [kube-system]\n      resources:\n        - group: apps\n          resources: [deployments]\n          resourceNames: [coredns]\ngrouping:\n  window: {window}\n",
        names.join(", ")
    );
    doc
}

/// Bodies carrying `events` from cluster AKS1, `per_body` records each.
fn bodies_of(events: &[String], per_body: usize) -> Vec<Vec<u8>> {
    events
        .chunks(per_body)
        .map(|chunk| envelope(chunk.iter().map(|e| record("kube-audit", e)).collect()))
        .collect()
}

/// Waits until `n` has at least `count` POSTs (or 5 s), then returns them.
async fn posts_after(
    n: &Notified,
    count: usize,
) -> Vec<aks_audit_forwarder::tools::notified::Post> {
    for _ in 0..100 {
        if n.posts().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n.posts()
}

/// One matching Event among others: exactly one card to each of Teams, Slack and the webhook,
/// each naming the rule, user, verb, resource, name, namespace, cluster and source IP; the
/// audit webhook receives every Event unchanged.
#[tokio::test]
async fn a_matching_event_sends_exactly_one_card_to_each_notifier() {
    let receiver = start_receiver().await;
    let (teams, slack, soar) = (
        Notified::start(202).await.unwrap(),
        Notified::start(200).await.unwrap(),
        Notified::start(200).await.unwrap(),
    );
    let alerts = rules(
        &[
            ("secops", "teams", &teams),
            ("chat", "slack", &slack),
            ("soar", "webhook", &soar),
        ],
        "60s",
    );
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_ALERTS", &alerts),
    ])
    .await;
    let (_, mut events) = audit_bodies("other", 1, 5, 0);
    events.insert(
        2,
        coredns_event("hit-1", "patch", "mallory@contoso.com", "203.0.113.7"),
    );
    let answer = handler.invoke_bodies(&bodies_of(&events, 3), "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(dead_letters(&answer).is_empty(), "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &events);

    for (n, kind) in [(&teams, "teams"), (&slack, "slack"), (&soar, "webhook")] {
        let posts = posts_after(n, 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(n.posts().len(), 1, "{kind}: exactly one card");
        let post = &posts[0];
        assert_eq!(post.content_type, "application/json", "{kind}");
        let text = String::from_utf8_lossy(&post.body).into_owned();
        for want in [
            "coredns-changed",
            "mallory@contoso.com",
            "patch",
            "deployments",
            "coredns",
            "kube-system",
            "aks1",
            "203.0.113.7",
        ] {
            assert!(text.contains(want), "{kind}: {want} missing from {text}");
        }
        let body = post.json();
        match kind {
            "teams" => {
                assert_eq!(body["type"], "message");
                assert_eq!(
                    body["attachments"][0]["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
                assert_eq!(body["attachments"][0]["content"]["type"], "AdaptiveCard");
            }
            "slack" => assert!(
                body["text"].is_string() && body["blocks"].is_array(),
                "{body}"
            ),
            _ => {
                assert_eq!(body["severity"], "high");
                let sent: Value = serde_json::from_str(&events[2]).unwrap();
                assert_eq!(body["events"][0], sent, "the Event itself");
            }
        }
    }
}

/// Events no rule matches (a `get` of coredns, other objects) produce no card at all.
#[tokio::test]
async fn non_matching_events_produce_no_card() {
    let receiver = start_receiver().await;
    let teams = Notified::start(202).await.unwrap();
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        (
            "AUDIT_ALERTS",
            &rules(&[("secops", "teams", &teams)], "60s"),
        ),
    ])
    .await;
    let (_, mut events) = audit_bodies("other", 1, 20, 0);
    events.push(coredns_event(
        "read-1",
        "get",
        "alice@contoso.com",
        "10.0.0.4",
    ));
    let answer = handler.invoke_bodies(&bodies_of(&events, 7), "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &events);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(teams.posts().is_empty(), "{:?}", teams.posts());
}

/// A notifier answering 503: the card is retried, then its Event becomes a dead letter of
/// kind `alert` naming the rule and the notifier (never its URL); the audit Events are
/// delivered and the invocation answers 200. `resend` sends it once the notifier is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_answering_503_leaves_the_invocation_at_200_with_an_alert_dead_letter() {
    let receiver = start_receiver().await;
    let teams = Notified::start(503).await.unwrap();
    let alerts = rules(&[("secops", "teams", &teams)], "60s");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_ALERTS", &alerts),
    ])
    .await;
    let events = vec![coredns_event(
        "hit-503",
        "delete",
        "mallory@contoso.com",
        "203.0.113.7",
    )];
    let answer = handler.invoke_bodies(&bodies_of(&events, 1), "4").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &events);
    assert!(
        teams.posts().len() >= 2,
        "retried: {} POSTs",
        teams.posts().len()
    );
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{}", answer.body);
    let item: &DeadLetter = &dead[0];
    assert_eq!(item.kind, "alert");
    assert_eq!(item.rule.as_deref(), Some("coredns-changed"));
    assert_eq!(item.notifier.as_deref(), Some("secops"));
    assert!(item.reason.contains("503"), "{}", item.reason);
    let event: Value = serde_json::from_str(item.event.as_ref().unwrap().get()).unwrap();
    assert_eq!(event["auditID"], "hit-503");
    assert!(!answer.body.contains(SECRET), "{}", answer.body);
    assert!(!handler.log().contains(SECRET), "{}", handler.log());

    // Back up: `resend` sends the card to its notifier, not to the audit webhook.
    teams.answer(202);
    let before = teams.posts().len();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("deadletter.jsonl");
    std::fs::write(
        &input,
        aks_audit_forwarder::deadletter::to_json_lines(&dead),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["resend", "--input", input.to_str().unwrap(), "--out"])
        .arg(dir.path().join("left.jsonl"))
        .env("AUDIT_WEBHOOK_URL", receiver.url("/k8s_audit"))
        .env("AUDIT_ALERTS", &alerts)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 delivered"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let posts = teams.posts();
    assert_eq!(posts.len(), before + 1);
    assert!(String::from_utf8_lossy(&posts[before].body).contains("hit-503"));
    assert_eq!(
        receiver.receiver.events().len(),
        1,
        "not sent to the audit webhook again"
    );
}

/// `kubectl delete namespace` of 500 objects: one invocation of 500 matching Events yields
/// one grouped message listing a few and counting the rest. More matches within the window
/// are held and sent as one more card when it ends.
#[tokio::test]
async fn a_burst_of_500_matching_events_yields_one_grouped_message() {
    let receiver = start_receiver().await;
    let slack = Notified::start(200).await.unwrap();
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_ALERTS", &rules(&[("chat", "slack", &slack)], "2s")),
    ])
    .await;
    let events: Vec<String> = (0..500)
        .map(|i| {
            coredns_event(
                &format!("burst-{i}"),
                "delete",
                "mallory@contoso.com",
                "203.0.113.7",
            )
        })
        .collect();
    let answer = handler.invoke_bodies(&bodies_of(&events, 50), "1").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(receiver.receiver.events().len(), 500);
    let posts = posts_after(&slack, 1).await;
    assert_eq!(posts.len(), 1, "one message for the burst");
    let text = posts[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("500 audit Events"), "{text}");
    assert!(String::from_utf8_lossy(&posts[0].body).contains("and 490 more"));

    // Within the window: held, then one card at its end.
    let more: Vec<String> = (0..30)
        .map(|i| {
            coredns_event(
                &format!("later-{i}"),
                "delete",
                "mallory@contoso.com",
                "203.0.113.7",
            )
        })
        .collect();
    for chunk in more.chunks(10) {
        let answer = handler.invoke_bodies(&bodies_of(chunk, 10), "1").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(slack.posts().len(), 1, "held within the window");
    let posts = posts_after(&slack, 2).await;
    assert_eq!(posts.len(), 2, "one card at the end of the window");
    assert!(posts[1].json()["text"]
        .as_str()
        .unwrap()
        .contains("30 audit Events"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.posts().len(), 2);
}

/// A rule naming an unknown notifier stops start-up, naming `AUDIT_ALERTS`, the rule and
/// its line, and never the URLs of the document.
#[tokio::test]
async fn a_rule_naming_an_unknown_notifier_stops_start_up() {
    let teams = Notified::start(202).await.unwrap();
    let alerts = rules(&[("secops", "teams", &teams)], "60s")
        .replace("notify: [secops]", "notify: [sec-ops]");
    let out = std::process::Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit")
        .env("AUDIT_ALERTS", &alerts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("AUDIT_ALERTS"), "{stderr}");
    assert!(
        stderr.contains("rules[0] (coredns-changed), line 6: notify: unknown notifier \"sec-ops\""),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

/// The notifier URL's secret appears in no output: the handler's log, its answers and dead
/// letters, `check-config` (with and without `--probe`), a failing probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_url_secret_appears_in_no_output() {
    let receiver = start_receiver().await;
    let (teams, slack) = (
        Notified::start(503).await.unwrap(),
        Notified::start(200).await.unwrap(),
    );
    let alerts = rules(
        &[("secops", "teams", &teams), ("chat", "slack", &slack)],
        "60s",
    );
    let settings = [
        ("AUDIT_WEBHOOK_URL", receiver.url("/k8s_audit")),
        ("AUDIT_ALERTS", alerts.clone()),
        ("RUST_LOG", "debug".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let handler = spawn_handler(&pairs).await;
    let events = vec![coredns_event(
        "hit-s",
        "patch",
        "mallory@contoso.com",
        "203.0.113.7",
    )];
    let answer = handler.invoke_bodies(&bodies_of(&events, 1), "2").await;
    assert_eq!(answer.status, 200);
    assert_eq!(dead_letters(&answer).len(), 1, "the Teams card failed");
    let mut outputs = vec![answer.body.clone(), handler.log()];
    for args in [
        &["check-config"][..],
        &["check-config", "--probe", "--probe-timeout", "2s"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        outputs.push(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(outputs[2].contains("secops (teams)"), "{}", outputs[2]);
    assert!(outputs[3].contains("probe alert secops"), "{}", outputs[3]);
    for (i, text) in outputs.iter().enumerate() {
        assert!(
            !text.contains(SECRET),
            "output {i} shows the secret: {text}"
        );
    }
}

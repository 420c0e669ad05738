//! Loss with a 200 and partitions blocked for good: one test per row of the second
//! adversarial review's first section (issue rows 1–8), each against real sockets: the hostile
//! receiver of `rogue.rs`, and the real binary or the pipeline itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aks_audit_forwarder::delivery::{Destination, Matcher, RouteConfig};
use aks_audit_forwarder::pipeline::{Bodies, Invocation, InvocationMeta};
use aks_audit_forwarder::tools::hostsim::{build_request, Answer, Shape, SimPartition};
use aks_audit_forwarder::{Config, Forwarder};

use crate::helpers::*;
use crate::hostile::dead_letters;
use crate::rogue::{ok, status, Act, Rogue};

/// Sends `bodies` from partition `partition` as the host's try `count` of the invocation
/// (same sequence numbers each time), with `RetryContext.MaxRetryCount` = `max`.
async fn try_as(handler: &Handler, bodies: &[Vec<u8>], count: i64, max: i64) -> Answer {
    let mut partition = SimPartition::new("7");
    let request = build_request(Shape::ManyBinary, bodies, &mut partition, Some(count)).unwrap();
    let mut request: serde_json::Value = serde_json::from_slice(&request).unwrap();
    request["Metadata"]["RetryContext"]["MaxRetryCount"] = max.into();
    handler
        .host
        .invoke("EventHubForwarder", serde_json::to_vec(&request).unwrap())
        .await
        .unwrap()
}

/// Row 1: two routes with the same name (clusters A and B, one Event per POST). Try 1: the
/// first receiver takes a0, a1 and answers 401 to a2, a3; the second answers 503 to b0, b1
/// and takes b2, b3. What each route learned is its own, whatever its name: try 2 sends a2,
/// a3 and b0, b1, and every Event is delivered.
#[tokio::test]
async fn r18_1_routes_sharing_a_name_keep_what_each_learned() {
    let second_try = Arc::new(AtomicBool::new(false));
    let flag = second_try.clone();
    let first = Rogue::start(move |r, _| {
        let refused = r
            .ids
            .iter()
            .any(|id| id.ends_with("-2") || id.ends_with("-3"));
        if refused && !flag.load(Ordering::SeqCst) {
            status(401)
        } else {
            ok()
        }
    })
    .await;
    let flag = second_try.clone();
    let second = Rogue::start(move |r, _| {
        let failing = r
            .ids
            .iter()
            .any(|id| id.ends_with("-0") || id.ends_with("-1"));
        if failing && !flag.load(Ordering::SeqCst) {
            status(503)
        } else {
            ok()
        }
    })
    .await;
    let mut settings = Config::from_lookup(|k| match k {
        "AUDIT_WEBHOOK_URL" => Some(first.url("/k8s_audit")),
        "AUDIT_BATCH_MAX_EVENTS" => Some("1".into()),
        "AUDIT_DELIVERY_DEADLINE" => Some("1s".into()),
        "AUDIT_RETRY_INITIAL_BACKOFF" => Some("50ms".into()),
        "AUDIT_RETRY_MAX_BACKOFF" => Some("100ms".into()),
        "AUDIT_CLUSTER_ANNOTATIONS" => Some("off".into()),
        _ => None,
    })
    .unwrap()
    .forwarder;
    let template = settings.routes[0].destination.clone().unwrap();
    let route = |cluster: &str, url: String| RouteConfig {
        name: "x".into(),
        matcher: Matcher::new(&[], &[], &[], &[cluster.to_string()]),
        destination: Some(Destination {
            url: url.parse().unwrap(),
            ..template.clone()
        }),
    };
    settings.routes = vec![
        route("a", first.url("/k8s_audit")),
        route("b", second.url("/k8s_audit")),
    ];
    let forwarder = Forwarder::new(settings).unwrap();
    let records: Vec<serde_json::Value> = ["a", "b"]
        .iter()
        .flat_map(|c| {
            (0..4).map(move |i| {
                record_from(
                    &cluster_id(c),
                    "kube-audit",
                    &audit_event(&format!("{c}-{i}"), 0),
                )
            })
        })
        .collect();
    let invocation = || Invocation {
        bodies: Bodies::from_vecs(vec![envelope(records.clone())]),
        meta: InvocationMeta {
            partition_id: Some("1".into()),
            sequence_numbers: vec![40],
            retry_count: Some(0),
            max_retry_count: Some(-1),
            ..InvocationMeta::default()
        },
    };
    let now = tokio::time::Instant::now;
    let one = forwarder.forward(invocation(), None, now()).await.unwrap();
    assert!(one.needs_retry(), "{}", one.summary);
    second_try.store(true, Ordering::SeqCst);
    let two = forwarder.forward(invocation(), None, now()).await.unwrap();
    assert!(!two.needs_retry(), "{}", two.summary);
    assert!(two.dead_letters.is_empty(), "{:?}", two.dead_letters);
    assert_eq!(first.kept_unique(), ["a-0", "a-1", "a-2", "a-3"]);
    assert_eq!(second.kept_unique(), ["b-0", "b-1", "b-2", "b-3"]);
}

/// Row 2: the only Event of an invocation gets 502 every time. Before
/// `AUDIT_ISOLATE_AFTER_RETRIES` the invocation fails; then the route is probed with an empty
/// `EventList`, which it takes, so the Event is dead-lettered and the partition moves on.
#[tokio::test]
async fn r18_2_an_event_alone_that_keeps_failing_is_set_aside_once_the_route_is_healthy() {
    let rogue = Rogue::start(|r, _| {
        if r.ids.is_empty() {
            ok()
        } else {
            Act::Answer(502, Vec::new(), "bad gateway".into())
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "3s"),
    ])
    .await;
    let (bodies, _) = audit_bodies("alone", 1, 1, 0);
    for count in [0, 1] {
        let answer = try_as(&handler, &bodies, count, -1).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert!(dead_letters(&answer).is_empty());
    }
    let answer = try_as(&handler, &bodies, 2, -1).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].kind, "poison");
    assert!(dead[0].reason.contains("502"), "{}", dead[0].reason);
    assert!(rogue.kept_unique().is_empty());
}

/// Row 4: a WAF answers 403 to one payload and 200 to the others. Once retried, the 403 is a
/// refusal of that content: the two innocent Events are delivered and the refused one
/// dead-lettered. A route that answers 403 to everything still fails and dead-letters nothing.
#[tokio::test]
async fn r18_4_a_status_given_to_one_payload_only_is_a_refusal_of_it() {
    let waf = Rogue::start(|r, _| {
        if r.ids.iter().any(|id| id == "waf-0-1") {
            status(403)
        } else {
            ok()
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &waf.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "3s"),
    ])
    .await;
    let (bodies, _) = audit_bodies("waf", 1, 3, 0);
    let answer = try_as(&handler, &bodies, 0, -1).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    let answer = try_as(&handler, &bodies, 2, -1).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.contains("403"), "{}", dead[0].reason);
    assert_eq!(waf.kept_unique(), ["waf-0-0", "waf-0-2"]);

    let wall = Rogue::start(|_, _| status(403)).await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &wall.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "3s"),
    ])
    .await;
    for count in [2, 5] {
        let answer = try_as(&handler, &bodies, count, -1).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert!(dead_letters(&answer).is_empty(), "{}", answer.body);
    }
}

/// Row 5: two different Events from one cluster share an `auditID` and a stage (a client set
/// `Audit-ID`), and the cluster streams both categories. Only the byte-equal copy is dropped:
/// the destructive request is delivered next to the harmless one.
#[tokio::test]
async fn r18_5_a_reused_audit_id_never_hides_a_different_event() {
    let rogue = Rogue::start(|_, _| ok()).await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit"))]).await;
    let harmless = audit_event("reused", 0);
    let destructive = harmless.replace(r#""verb":"update""#, r#""verb":"delete""#);
    assert_ne!(harmless, destructive);
    let body = envelope(vec![
        record("kube-audit", &harmless),
        record("kube-audit-admin", &harmless),
        record("kube-audit", &destructive),
        record("kube-audit-admin", &destructive),
    ]);
    let answer = handler.invoke_bodies(&[body], "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("duplicates=2"), "{}", answer.body);
    let kept = rogue.kept.lock().unwrap().clone();
    assert_eq!(
        kept,
        ["reused", "reused"],
        "both different Events, once each"
    );
}

/// Row 6: a receiver failing half the requests at random, 400 Events in batches of 5, from the
/// host's second retry on. Chance never singles out an Event: tries go on until all are
/// delivered, and nothing is dead-lettered.
#[tokio::test]
async fn r18_6_a_flaky_receiver_never_makes_a_healthy_event_poison() {
    let rogue = Rogue::start(|_, n| {
        // A fixed pseudo-random half of the requests fail.
        let x = (n as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        if (x >> 31) & 1 == 1 {
            status(503)
        } else {
            ok()
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_BATCH_MAX_EVENTS", "5"),
        ("AUDIT_DELIVERY_DEADLINE", "5s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("flaky", 4, 100, 0);
    let mut delivered = false;
    for count in 2..12 {
        let answer = try_as(&handler, &bodies, count, -1).await;
        assert!(dead_letters(&answer).is_empty(), "{}", answer.body);
        if answer.status == 200 {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the invocation never succeeded");
    assert_eq!(rogue.kept_unique().len(), events.len());
}

/// Row 7: 410, 426 and 431 to every request are about the URL, the protocol or our headers:
/// the invocation fails like a 404, and nothing is dead-lettered, however often retried.
#[tokio::test]
async fn r18_7_statuses_about_the_request_fail_and_dead_letter_nothing() {
    for code in [410u16, 426, 431] {
        let rogue = Rogue::start(move |_, _| status(code)).await;
        let handler = spawn_handler(&[
            ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
            ("AUDIT_DELIVERY_DEADLINE", "2s"),
        ])
        .await;
        let (bodies, _) = audit_bodies("gone", 2, 10, 0);
        for count in [0, 3] {
            let answer = try_as(&handler, &bodies, count, -1).await;
            assert_eq!(answer.status, 500, "{code}: {}", answer.body);
            assert!(dead_letters(&answer).is_empty(), "{code}: {}", answer.body);
            assert!(
                answer.body.contains(&format!("HTTP {code}")),
                "{}",
                answer.body
            );
        }
    }
}

/// Row 4's rule for a 400: a receiver answering 400 to every POST (nginx's "plain HTTP
/// request was sent to HTTPS port") gives that status to every payload, an empty `EventList`
/// included. It is a route problem: the invocation fails and nothing is dead-lettered, on the
/// first try as on a retried one, with six Events as with one Event alone.
#[tokio::test]
async fn a_route_refusing_every_payload_with_400_fails_and_dead_letters_nothing() {
    let rogue = Rogue::start(|_, _| {
        Act::Answer(
            400,
            Vec::new(),
            "The plain HTTP request was sent to HTTPS port".into(),
        )
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "3s"),
    ])
    .await;
    for events in [6, 1] {
        let (bodies, _) = audit_bodies("plain", 1, events, 0);
        for count in [0, 3] {
            let answer = try_as(&handler, &bodies, count, -1).await;
            assert_eq!(
                answer.status, 500,
                "{events} Events, try {count}: {}",
                answer.body
            );
            assert!(dead_letters(&answer).is_empty(), "{}", answer.body);
            assert!(answer.body.contains("HTTP 400"), "{}", answer.body);
        }
    }
    assert!(rogue.kept_unique().is_empty());
}

/// A receiver answering 400 to half the requests at random: each refused Event is sent alone
/// again, and chance never makes one look refused for good. Tries go on until every Event is
/// delivered, and nothing is dead-lettered.
#[tokio::test]
async fn a_receiver_refusing_at_random_never_dead_letters_a_healthy_event() {
    let rogue = Rogue::start(|_, n| {
        // A fixed pseudo-random half of the requests are refused.
        let x = (n as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        if (x >> 31) & 1 == 1 {
            status(400)
        } else {
            ok()
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_BATCH_MAX_EVENTS", "5"),
        ("AUDIT_DELIVERY_DEADLINE", "5s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("coin", 4, 50, 0);
    let mut delivered = false;
    for count in 0..10 {
        let answer = try_as(&handler, &bodies, count, -1).await;
        assert!(dead_letters(&answer).is_empty(), "{}", answer.body);
        if answer.status == 200 {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the invocation never succeeded");
    assert_eq!(rogue.kept_unique().len(), events.len());
}

/// Row 8: on the last try of a finite retry policy (`RetryCount` = `MaxRetryCount`), with the
/// receiver down, every undelivered Event is dead-lettered and the answer is 200: the host
/// checkpoints past the batch next, so a 500 would lose them. The try before still fails.
#[tokio::test]
async fn r18_8_the_last_try_of_a_finite_policy_dead_letters_what_is_undelivered() {
    let rogue = Rogue::start(|_, _| status(500)).await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "2s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("last", 2, 5, 0);
    let answer = try_as(&handler, &bodies, 2, 3).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(dead_letters(&answer).is_empty());
    let answer = try_as(&handler, &bodies, 3, 3).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), events.len(), "{dead:?}");
    assert!(dead.iter().all(|d| d.kind == "undelivered"), "{dead:?}");
    assert!(dead[0].reason.contains("last try"), "{}", dead[0].reason);
}

/// Row 3: one Event makes the receiver reset and stay down for 3 s (an agent that crashes and
/// restarts) among 401. Resets that follow that Event each time are evidence against it: it is
/// isolated after a bounded number of host retries and the 400 others are delivered.
#[tokio::test]
async fn r18_3_an_event_that_crashes_its_receiver_is_isolated() {
    let down_until = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let state = down_until.clone();
    let rogue = Rogue::start(move |r, _| {
        let mut down = state.lock().unwrap();
        if down.is_some_and(|t| std::time::Instant::now() < t) {
            return Act::Reset;
        }
        if r.ids.iter().any(|id| id == "crash-0-200") {
            *down = Some(std::time::Instant::now() + std::time::Duration::from_secs(3));
            return Act::Reset;
        }
        ok()
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "5s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("crash", 1, 401, 0);
    let mut done = None;
    for count in 0..12 {
        let answer = try_as(&handler, &bodies, count, -1).await;
        if answer.status == 200 {
            done = Some(answer);
            break;
        }
    }
    let answer = done.expect("the partition stays blocked");
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let event: serde_json::Value =
        serde_json::from_str(dead[0].event.as_ref().unwrap().get()).unwrap();
    assert_eq!(event["auditID"], "crash-0-200");
    assert_eq!(rogue.kept_unique().len(), events.len() - 1);
}

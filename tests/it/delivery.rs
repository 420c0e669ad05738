//! Delivery to a real receiver that fails on cue: retries, deadlines, redelivery, load.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use aks_audit_forwarder::tools::receiver::{Receiver, Scripted};

use crate::helpers::*;
use crate::rogue::{Act, Rogue};

/// A flaky receiver (503, 503, then 200): the batch is retried and delivered, the host gets 200.
#[tokio::test]
async fn flaky_sink_is_retried_until_delivered() {
    let receiver = start_receiver().await;
    receiver
        .receiver
        .push_script([Scripted::Status(503), Scripted::Status(503)]);
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (bodies, expected) = audit_bodies("flaky", 2, 5, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let stats = receiver.receiver.stats();
    assert_eq!(stats.scripted_failures, 2);
    assert_eq!(stats.batches, 1);
    assert_same_events(receiver.receiver.events(), &expected);
    assert!(answer.body.contains("attempts=3"), "{}", answer.body);
}

/// The receiver is down: the handler answers 500 once the delivery deadline passes (not
/// later), and the host's retry, sent with a `RetryContext` once the receiver is up,
/// delivers everything.
#[tokio::test]
async fn sink_down_fails_within_deadline_then_redelivery_succeeds() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/k8s_audit");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &url),
        ("AUDIT_DELIVERY_DEADLINE", "2s"),
        ("AUDIT_WEBHOOK_TIMEOUT", "1s"),
    ])
    .await;
    let (bodies, expected) = audit_bodies("down", 3, 2, 0);
    let mut partition = SimPartition::new("3");

    let started = Instant::now();
    let answer = handler.invoke_as(&bodies, &mut partition, Some(0)).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert!(answer.body.contains("failed=6"), "{}", answer.body);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    let receiver = Receiver::new()
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .expect("receiver on the same port");
    partition.next_sequence = 0;
    let answer = handler.invoke_as(&bodies, &mut partition, Some(1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("retry=1"), "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &expected);
}

/// A 429 with `Retry-After: 1` is honoured: the next attempt waits at least a second.
#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let receiver = start_receiver().await;
    receiver
        .receiver
        .push_script([Scripted::RetryAfter(429, 1)]);
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (bodies, expected) = audit_bodies("busy", 1, 3, 0);
    let started = Instant::now();
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The configured backoff is 50 ms; only Retry-After explains a wait of a second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_same_events(receiver.receiver.events(), &expected);
}

/// Poison: the receiver refuses (400) any payload holding two particular Events. The batch is
/// bisected until they stand alone; every other Event is delivered, the two are returned as
/// dead letters through the `deadletter` output, and the host gets 200 so the partition moves
/// on.
#[tokio::test]
async fn poison_events_are_isolated_and_dead_lettered() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (bodies, events) = audit_bodies("poison", 4, 10, 0);
    let bad = ["poison-1-3".to_string(), "poison-3-9".to_string()];
    receiver.receiver.refuse_audit_ids(bad.clone());
    let answer = handler.invoke_bodies(&bodies, "6").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("delivered=38"), "{}", answer.body);
    assert!(answer.body.contains("rejected=2"), "{}", answer.body);
    assert!(answer.body.contains("dead_lettered=2"), "{}", answer.body);

    let good: Vec<String> = events
        .iter()
        .filter(|e| !bad.iter().any(|b| e.contains(&format!("\"{b}\""))))
        .cloned()
        .collect();
    assert_same_events(receiver.receiver.events(), &good);

    let result = answer.result.unwrap();
    let lines = result.outputs["deadletter"].as_str().unwrap();
    let items = aks_audit_forwarder::deadletter::from_json_lines(lines).unwrap();
    assert_eq!(items.len(), 2);
    for (item, id) in items.iter().zip(&bad) {
        assert_eq!(item.kind, "poison");
        assert_eq!(item.status, Some(400));
        assert_eq!(item.partition.as_deref(), Some("6"));
        assert!(item.sequence_number.is_some());
        assert!(item.invocation_id.is_some());
        let event: serde_json::Value =
            serde_json::from_str(item.event.as_ref().unwrap().get()).unwrap();
        assert_eq!(&event["auditID"], id.as_str());
    }
    assert!(handler.log().contains("dead-lettered"));

    // Once the cause is fixed, `resend` delivers the dead-lettered Events; a malformed item
    // (nothing to send) stays in the remaining file.
    let fixed = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("deadletter.jsonl");
    let malformed =
        r#"{"reason":"properties.log is not JSON","kind":"malformed-record","raw":"{}"}"#;
    std::fs::write(&input, format!("{lines}{malformed}\n")).unwrap();
    let remaining = dir.path().join("remaining.jsonl");
    let out = tokio::process::Command::new(BIN)
        .arg("resend")
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&remaining)
        .env("AUDIT_WEBHOOK_URL", fixed.url("/k8s_audit"))
        .env("AUDIT_CLUSTER_ANNOTATIONS", "off")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 item(s) read, 2 delivered, 0 dropped by Policy or route, 1 without an Event kept, 1 remaining"),
        "{stdout}"
    );
    assert!(
        !out.status.success(),
        "a remaining item must show in the exit status"
    );
    let bad_events: Vec<String> = events
        .iter()
        .filter(|e| bad.iter().any(|b| e.contains(&format!("\"{b}\""))))
        .cloned()
        .collect();
    assert_same_events(fixed.receiver.events(), &bad_events);
    let left = std::fs::read_to_string(&remaining).unwrap();
    assert_eq!(left.lines().count(), 1);
    assert!(left.contains("malformed-record"));
}

/// A 413: the batch is split and the byte bound lowered for the rest of the invocation; an
/// Event still too large alone is dead-lettered.
#[tokio::test]
async fn payload_too_large_splits_and_lowers_the_bound() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    // 30 Events of ~3 KiB, one of ~40 KiB; the receiver takes at most 16 KiB.
    let (mut bodies, mut events) = audit_bodies("size", 3, 10, 3 * 1024);
    let (big_body, big) = audit_bodies("huge", 1, 1, 40 * 1024);
    bodies.extend(big_body);
    events.extend(big.clone());
    receiver.receiver.max_body(16 * 1024);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("delivered=30"), "{}", answer.body);
    assert!(answer.body.contains("dead_lettered=1"), "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &events[..30]);
    let refused = receiver.receiver.stats().refused;
    // Without the lowered bound every later batch would be refused once before splitting.
    assert!(refused <= 4, "{refused} refusals");
    let result = answer.result.unwrap();
    let items = aks_audit_forwarder::deadletter::from_json_lines(
        result.outputs["deadletter"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(items[0].status, Some(413));
}

/// A misconfigured receiver (401): not poison — the invocation fails at once so the host
/// retries it later, and nothing is dead-lettered.
#[tokio::test]
async fn unauthorized_fails_the_invocation_instead_of_dead_lettering() {
    let receiver = start_receiver().await;
    receiver.receiver.push_script([Scripted::Status(401)]);
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (bodies, _) = audit_bodies("auth", 1, 2, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(answer.body.contains("attempts=1"), "{}", answer.body);
    assert!(answer.body.contains("401"), "{}", answer.body);
}

/// A receiver slower than `AUDIT_WEBHOOK_TIMEOUT`: the attempt is cut and retried.
#[tokio::test]
async fn slow_sink_hits_the_attempt_timeout_and_is_retried() {
    let receiver = start_receiver().await;
    receiver
        .receiver
        .push_script([Scripted::Delay(Duration::from_secs(3))]);
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_TIMEOUT", "500ms"),
    ])
    .await;
    let (bodies, expected) = audit_bodies("slow", 1, 2, 0);
    let started = Instant::now();
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The cut attempt may still land once the receiver wakes: at-least-once, same Events.
    let mut events = receiver.receiver.events();
    tokio::time::sleep(Duration::from_secs(3)).await;
    events = if receiver.receiver.events().len() > events.len() {
        let all = receiver.receiver.events();
        assert_eq!(receiver.receiver.stats().duplicates, 2);
        all[..2].to_vec()
    } else {
        events
    };
    assert_same_events(events, &expected);
}

/// `AUDIT_WEBHOOK_FORMAT=event`: one bare Event per POST; batching by count and bytes
/// otherwise.
#[tokio::test]
async fn event_format_and_batch_bounds() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_FORMAT", "event"),
    ])
    .await;
    let (bodies, expected) = audit_bodies("single", 2, 3, 0);
    assert_eq!(handler.invoke_bodies(&bodies, "0").await.status, 200);
    let batches = receiver.receiver.batches();
    assert_eq!(batches.len(), 6);
    assert!(batches
        .iter()
        .all(|b| b.shape == "Event" && b.events.len() == 1));
    assert_same_events(receiver.receiver.events(), &expected);
    drop(handler);

    let receiver = start_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_BATCH_MAX_EVENTS", "4"),
    ])
    .await;
    let (bodies, expected) = audit_bodies("four", 3, 3, 0);
    assert_eq!(handler.invoke_bodies(&bodies, "0").await.status, 200);
    let mut sizes: Vec<usize> = receiver
        .receiver
        .batches()
        .iter()
        .map(|b| b.events.len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 4, 4]);
    assert_same_events(receiver.receiver.events(), &expected);
}

/// The largest batch the host sends: 100 Event Hub events of about 1 MiB each (≈140 MiB
/// once base64-encoded), all delivered once in batches under the byte bound. Attempts and
/// the deadline are long, so that a loaded test machine does not cut an attempt the
/// receiver then takes (a duplicate, which at-least-once allows, but not this count).
#[tokio::test]
async fn hundred_one_mib_events() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_TIMEOUT", "60s"),
        ("AUDIT_DELIVERY_DEADLINE", "120s"),
    ])
    .await;
    // 10 records of ~100 KiB per event: ~1 MiB per event.
    let (bodies, expected) = audit_bodies("mib", 100, 10, 100 * 1024);
    let total: usize = bodies.iter().map(Vec::len).sum();
    assert!(total > 100 * 1000 * 1024, "{total}");
    let request = build_request(
        Shape::ManyBinary,
        &bodies,
        &mut SimPartition::new("0"),
        None,
    )
    .unwrap();
    drop(bodies);
    assert!(request.len() > 130 * 1024 * 1024, "{}", request.len());
    let answer = handler
        .host
        .invoke("EventHubForwarder", request)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(receiver.receiver.stats().events, 1000, "{}", answer.body);
    assert!(receiver.receiver.stats().batches >= 10);
    assert_same_events(receiver.receiver.events(), &expected);
}

/// Eight partitions post at once, as a host owning eight partitions does.
#[tokio::test]
async fn eight_partitions_at_once() {
    let receiver = start_receiver().await;
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let mut expected = Vec::new();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let (bodies, events) = audit_bodies(&format!("p{p}"), 20, 10, 200);
        expected.extend(events);
        let host = handler.host.clone();
        tasks.push(tokio::spawn(async move {
            let mut partition = SimPartition::new(p.to_string());
            let mut statuses = Vec::new();
            for chunk in bodies.chunks(10) {
                let request =
                    build_request(Shape::ManyBinary, chunk, &mut partition, None).unwrap();
                statuses.push(
                    host.invoke("EventHubForwarder", request)
                        .await
                        .unwrap()
                        .status,
                );
            }
            statuses
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().iter().all(|s| *s == 200));
    }
    assert_eq!(receiver.receiver.stats().duplicates, 0);
    assert_same_events(receiver.receiver.events(), &expected);
}

/// With `AUDIT_WEBHOOK_CONCURRENCY=1` the batches of an invocation are sent one at a time, in
/// the order of their Events: a receiver that answers the first batches slowest still keeps
/// every Event in input order.
#[tokio::test]
async fn batches_are_sent_in_order_one_at_a_time() {
    let rogue = Rogue::start(|_, n| {
        Act::Slow(
            Duration::from_millis(80u64.saturating_sub(10 * n as u64)),
            200,
        )
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_CONCURRENCY", "1"),
        ("AUDIT_BATCH_MAX_EVENTS", "5"),
    ])
    .await;
    let (bodies, events) = audit_bodies("order", 3, 10, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(rogue.requests().len(), 6, "batches of 5");
    let want: Vec<String> = events.iter().map(|e| audit_id(e).unwrap()).collect();
    assert_eq!(*rogue.kept.lock().unwrap(), want, "kept in input order");
}

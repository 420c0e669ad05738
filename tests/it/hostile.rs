//! A hostile receiver (redirects, poison that answers 5xx, slow refusals, `Retry-After`
//! nonsense, echoed credentials, a 200 that stalls) against the real binary: nothing is lost,
//! nothing goes to another origin, no partition stalls, no secret leaks. One test per row of
//! the adversarial review.

use std::time::{Duration, Instant};

use aks_audit_forwarder::deadletter::{from_json_lines, DeadLetter};
use aks_audit_forwarder::tools::hostsim::{Answer, SimPartition};

use crate::helpers::*;
use crate::rogue::{ok, status, Act, Rogue};

/// The dead letters an answer carries.
pub fn dead_letters(answer: &Answer) -> Vec<DeadLetter> {
    answer
        .result
        .as_ref()
        .and_then(|r| r.outputs.get("deadletter"))
        .and_then(|v| v.as_str())
        .map(|t| from_json_lines(t).unwrap())
        .unwrap_or_default()
}

/// Sends the same invocation again, as the host does on a retry.
async fn retry(
    handler: &Handler,
    bodies: &[Vec<u8>],
    partition: &mut SimPartition,
    count: i64,
) -> Answer {
    partition.next_sequence = 0;
    handler.invoke_as(bodies, partition, Some(count)).await
}

fn ids(events: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e).unwrap()["auditID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// 301/302/303 to another origin or the same one (a trailing slash): nothing is followed, the
/// invocation fails with 500, and the log names the status, the redacted Location and the
/// setting to fix. No receiver gets a body-less GET counted as delivered.
#[tokio::test]
async fn redirects_are_not_followed_and_fail_the_invocation() {
    let elsewhere = Rogue::start(|_, _| ok()).await;
    for code in [301u16, 302, 303] {
        for target in [
            elsewhere.url("/k8s_audit?sig=l0cation-s3cret"),
            "/k8s_audit/".to_string(),
        ] {
            let location = target.clone();
            let rogue = Rogue::start(move |r, _| {
                if r.line.contains("/k8s_audit/") {
                    ok()
                } else {
                    Act::Answer(
                        code,
                        vec![("Location".into(), location.clone())],
                        String::new(),
                    )
                }
            })
            .await;
            let handler = spawn_handler(&[
                ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
                ("AUDIT_DELIVERY_DEADLINE", "3s"),
            ])
            .await;
            let (bodies, _) = audit_bodies("redir", 1, 2, 0);
            let answer = handler.invoke_bodies(&bodies, "0").await;
            assert_eq!(answer.status, 500, "{code} {target}: {}", answer.body);
            let log = handler.log();
            assert!(log.contains(&format!("HTTP {code}")), "{log}");
            assert!(log.contains("AUDIT_WEBHOOK_URL"), "{log}");
            assert!(!log.contains("l0cation-s3cret"), "{log}");
            assert_eq!(rogue.requests().len(), 1, "one POST, no redirect followed");
            assert!(rogue.kept_unique().is_empty());
        }
    }
    assert!(
        elsewhere.requests().is_empty(),
        "nothing reached the other origin"
    );
}

/// 307/308 would resend the Events, the custom headers and a `Referer` with the URL's query to
/// another origin: nothing goes there, and no request ever carries a `Referer`.
#[tokio::test]
async fn temporary_redirects_send_nothing_to_another_origin() {
    let elsewhere = Rogue::start(|_, _| ok()).await;
    for code in [307u16, 308] {
        let location = elsewhere.url("/stolen");
        let rogue = Rogue::start(move |_, _| {
            Act::Answer(
                code,
                vec![("Location".into(), location.clone())],
                String::new(),
            )
        })
        .await;
        let handler = spawn_handler(&[
            (
                "AUDIT_WEBHOOK_URL",
                &rogue.url("/k8s_audit?sig=qu3ry-s3cret"),
            ),
            ("AUDIT_WEBHOOK_HEADERS", r#"{"X-Api-Key":"h3ader-s3cret"}"#),
            ("AUDIT_DELIVERY_DEADLINE", "3s"),
        ])
        .await;
        let (bodies, _) = audit_bodies("temp", 1, 2, 0);
        let answer = handler.invoke_bodies(&bodies, "0").await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        for request in rogue.requests() {
            assert!(request.header("referer").is_none(), "{request:?}");
        }
        assert!(!handler.log().contains("s3cret"));
    }
    assert!(
        elsewhere.requests().is_empty(),
        "nothing reached the other origin"
    );
}

/// An Event that makes the receiver answer 500 while the others go through: on the first
/// tries the invocation fails (500, and the summary counts nothing dead-lettered: a 500
/// carries no outputs, so only the summary can tell); from `AUDIT_ISOLATE_AFTER_RETRIES` on
/// it is isolated, dead-lettered with its reason, and the rest delivered: the partition
/// moves.
#[tokio::test]
async fn an_event_failing_transiently_alone_is_isolated_after_host_retries() {
    let rogue = Rogue::start(|r, _| {
        if r.ids.iter().any(|id| id == "iso-0-13") {
            Act::Answer(500, Vec::new(), "upstream choked".into())
        } else {
            ok()
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_DELIVERY_DEADLINE", "2s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("iso", 1, 40, 0);
    let mut partition = SimPartition::new("2");
    for count in [0, 1] {
        let answer = retry(&handler, &bodies, &mut partition, count).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert_eq!(
            summary_count(&answer, "dead_lettered"),
            0,
            "{}",
            answer.body
        );
    }
    let answer = retry(&handler, &bodies, &mut partition, 2).await;
    assert_eq!(
        summary_count(&answer, "dead_lettered"),
        1,
        "{}",
        answer.body
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].kind, "poison");
    assert!(
        dead[0].reason.contains("failed alone"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[0].reason.contains("upstream choked"),
        "{}",
        dead[0].reason
    );
    let event: serde_json::Value =
        serde_json::from_str(dead[0].event.as_ref().unwrap().get()).unwrap();
    assert_eq!(event["auditID"], "iso-0-13");
    let mut want = ids(&events);
    want.retain(|id| id != "iso-0-13");
    assert_eq!(rogue.kept_unique(), want);
}

/// A receiver that is simply down (always 500, or resetting) never causes dead-lettering,
/// however often the host has retried: the invocation keeps failing with 500.
#[tokio::test]
async fn a_receiver_that_is_down_never_causes_dead_letters() {
    for act in [status(500), Act::Reset] {
        let rogue = Rogue::start(move |_, _| act.clone()).await;
        let handler = spawn_handler(&[
            ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
            ("AUDIT_DELIVERY_DEADLINE", "2s"),
        ])
        .await;
        let (bodies, _) = audit_bodies("down", 2, 20, 0);
        let mut partition = SimPartition::new("1");
        for count in [0, 2, 5, 50] {
            let answer = retry(&handler, &bodies, &mut partition, count).await;
            assert_eq!(answer.status, 500, "{}", answer.body);
            assert!(answer.body.contains("dead_lettered=0"), "{}", answer.body);
        }
        // No retry policy at all (no RetryContext): isolation applies at once, still no loss.
        let answer = handler.invoke_bodies(&bodies, "9").await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert!(answer.body.contains("dead_lettered=0"), "{}", answer.body);
    }
}

/// A receiver that takes 150 ms to refuse, one refused Event among 400: isolation runs its
/// halves concurrently and fits the deadline; a failed try's delivered batches are remembered,
/// so the next try of the same invocation does not send them again.
#[tokio::test]
async fn slow_isolation_fits_the_deadline_and_is_remembered_across_retries() {
    let rogue = Rogue::start(|r, _| {
        if r.ids.iter().any(|id| id == "slow-0-321") {
            Act::Slow(Duration::from_millis(150), 503)
        } else {
            Act::Slow(Duration::from_millis(20), 200)
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_BATCH_MAX_EVENTS", "50"),
        ("AUDIT_DELIVERY_DEADLINE", "6s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("slow", 1, 400, 0);
    let mut partition = SimPartition::new("5");
    let first = retry(&handler, &bodies, &mut partition, 0).await;
    assert_eq!(first.status, 500, "{}", first.body);
    assert!(first.body.contains("delivered=350"), "{}", first.body);
    let posts_before = rogue.requests().len();

    let started = Instant::now();
    let answer = retry(&handler, &bodies, &mut partition, 2).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(dead_letters(&answer).len(), 1);
    // Only the failing batch of 50 was worked on again: nothing delivered twice.
    let kept = rogue.kept.lock().unwrap().clone();
    let mut want = ids(&events);
    want.retain(|id| id != "slow-0-321");
    assert!(
        kept.len() <= want.len() + 2,
        "{} kept: probes only",
        kept.len()
    );
    assert_eq!(rogue.kept_unique(), want);
    let isolation_posts = rogue.requests().len() - posts_before;
    assert!(isolation_posts < 40, "{isolation_posts} POSTs");
}

/// `Retry-After: 0`, a past date, `-5`, 2^64 and a far-future date: clamped into
/// `[initial backoff, maximum]`, never a tight loop, never a panic.
#[tokio::test]
async fn retry_after_values_are_clamped_and_never_panic() {
    for value in ["0", "Sun, 06 Nov 1994 08:49:37 GMT", "-5"] {
        let value = value.to_string();
        let rogue = Rogue::start(move |_, _| {
            Act::Answer(
                429,
                vec![("Retry-After".into(), value.clone())],
                String::new(),
            )
        })
        .await;
        let handler = spawn_handler(&[
            ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
            ("AUDIT_RETRY_INITIAL_BACKOFF", "100ms"),
            ("AUDIT_DELIVERY_DEADLINE", "2s"),
        ])
        .await;
        let (bodies, _) = audit_bodies("ra", 1, 2, 0);
        let answer = retry(&handler, &bodies, &mut SimPartition::new("0"), 0).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        // One batch, retried no sooner than every 100 ms for 2 s (it was 2,300 POSTs in 3 s).
        let posts = rogue.requests().len();
        assert!(posts <= 22, "{posts} POSTs in 2 s");
    }
    for value in [
        "18446744073709551616",
        "9223372036854775808",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let value = value.to_string();
        let rogue = Rogue::start(move |_, n| {
            if n == 0 {
                Act::Answer(
                    429,
                    vec![("Retry-After".into(), value.clone())],
                    String::new(),
                )
            } else {
                ok()
            }
        })
        .await;
        let handler = spawn_handler(&[
            ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
            ("AUDIT_DELIVERY_DEADLINE", "2s"),
        ])
        .await;
        let (bodies, _) = audit_bodies("huge", 1, 2, 0);
        let mut partition = SimPartition::new("0");
        let answer = retry(&handler, &bodies, &mut partition, 0).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert!(!handler.log().contains("panicked"), "{}", handler.log());
        let again = retry(&handler, &bodies, &mut partition, 1).await;
        assert_eq!(again.status, 200, "{}", again.body);
    }
}

/// A receiver whose error answer echoes the request headers: the quote in the logs and the
/// dead letter is bounded and holds no credential.
#[tokio::test]
async fn echoed_credentials_are_masked_in_logs_and_dead_letters() {
    let rogue = Rogue::start(|r, _| {
        if r.ids.iter().any(|id| id == "echo-0-1") {
            let echoed: String = r
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}\n"))
                .collect();
            Act::Answer(400, Vec::new(), format!("{echoed}{}", "x".repeat(100_000)))
        } else {
            ok()
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_BEARER_TOKEN", "b3arer-t0ken-value"),
        (
            "AUDIT_WEBHOOK_HEADERS",
            r#"{"X-Api-Key":"h3ader-k3y-value"}"#,
        ),
    ])
    .await;
    let (bodies, _) = audit_bodies("echo", 1, 4, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dead = dead_letters(&answer);
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("x-api-key: ***"),
        "{}",
        dead[0].reason
    );
    assert!(dead[0].reason.len() < 1024, "{}", dead[0].reason.len());
    let everything = format!("{}{}", answer.body, handler.log());
    for secret in ["b3arer-t0ken-value", "h3ader-k3y-value"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

/// A 200 whose body then stalls: the status line decides, the Events count as delivered once,
/// and reading the rest is bounded in time.
#[tokio::test]
async fn a_200_whose_body_stalls_counts_as_delivered() {
    let rogue = Rogue::start(|_, _| Act::StallAfterOk).await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_TIMEOUT", "5s"),
    ])
    .await;
    let (bodies, events) = audit_bodies("stall", 1, 10, 0);
    let started = Instant::now();
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("attempts=1"), "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(rogue.requests().len(), 1);
    assert_eq!(rogue.kept_unique(), ids(&events));
}

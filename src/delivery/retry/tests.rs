//! The retry rules and loop, on a paused clock: classification, `Retry-After`, backoff,
//! deadlines, attempt timeouts and attempt limits.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[test]
fn status_table() {
    let retry = [408, 429, 500, 502, 503, 504, 599];
    let content = [400, 409, 413, 415, 422];
    let config = [401, 403, 404, 405, 407, 501, 302];
    for code in retry {
        let s = StatusCode::from_u16(code).unwrap();
        assert!(
            matches!(classify_status(s, None, ""), RetryAction::Retry { .. }),
            "{code}"
        );
    }
    for code in content {
        let s = StatusCode::from_u16(code).unwrap();
        assert_eq!(
            classify_status(s, None, ""),
            RetryAction::DontRetry {
                reason: format!("HTTP {s}").into(),
                status: Some(code)
            }
        );
    }
    for code in config {
        let s = StatusCode::from_u16(code).unwrap();
        assert!(
            matches!(classify_status(s, None, ""), RetryAction::Halt { .. }),
            "{code}"
        );
    }
    for code in [200, 201, 202, 204] {
        let s = StatusCode::from_u16(code).unwrap();
        assert_eq!(classify_status(s, None, ""), RetryAction::Successful);
    }
    let after = Some(Duration::from_secs(3));
    assert_eq!(
        classify_status(StatusCode::TOO_MANY_REQUESTS, after, "slow down"),
        RetryAction::Retry {
            reason: "HTTP 429 Too Many Requests: slow down".into(),
            after,
            throttled: true,
        }
    );
}

#[test]
fn retry_after_forms() {
    let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
    assert_eq!(
        parse_retry_after("18446744073709551616", now),
        Some(Duration::from_secs(u64::MAX))
    );
}

/// `0`, a past date and absurd values are clamped into `[initial backoff, maximum]`.
#[test]
fn retry_after_is_clamped() {
    let s = settings(1000);
    assert_eq!(s.clamp_retry_after(Duration::ZERO), s.initial_backoff);
    assert_eq!(
        s.clamp_retry_after(Duration::from_secs(u64::MAX)),
        MAX_RETRY_AFTER
    );
    assert_eq!(
        s.clamp_retry_after(Duration::from_secs(7)),
        Duration::from_secs(7)
    );
}

/// A huge `Retry-After` ends the loop (past the deadline) without a panic.
#[tokio::test(start_paused = true)]
async fn huge_retry_after_does_not_panic() {
    let (_, f) = scripted(vec![RetryAction::Retry {
        reason: "HTTP 429".into(),
        after: Some(Duration::from_secs(1 << 63)),
        throttled: true,
    }]);
    let got = run(&settings(1000), Instant::now() + Duration::from_secs(60), f).await;
    assert!(matches!(got, Delivery::Failed { .. }), "{got:?}");
}

/// Delays double from the initial value to the cap, each jittered within [d/2, d].
#[test]
fn backoff_is_capped_and_jittered_within_bounds() {
    let initial = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    for _ in 0..200 {
        let mut b = Backoff::new(initial, max);
        let mut ceiling = initial;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(max);
        }
    }
}

fn settings(timeout_ms: u64) -> RetrySettings {
    RetrySettings {
        attempt_timeout: Duration::from_millis(timeout_ms),
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(4),
    }
}

/// Replays a script of results, one per attempt, counting attempts.
fn scripted(
    script: Vec<RetryAction>,
) -> (
    Arc<AtomicU32>,
    impl FnMut() -> std::future::Ready<RetryAction>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let f = move || {
        let i = counter.fetch_add(1, Ordering::SeqCst) as usize;
        std::future::ready(script.get(i).cloned().unwrap_or(RetryAction::Successful))
    };
    (calls, f)
}

fn transient() -> RetryAction {
    RetryAction::Retry {
        reason: "HTTP 503".into(),
        after: None,
        throttled: false,
    }
}

#[tokio::test(start_paused = true)]
async fn transient_then_success() {
    let (calls, f) = scripted(vec![transient(), transient()]);
    let start = Instant::now();
    let got = run(&settings(1000), start + Duration::from_secs(60), f).await;
    assert_eq!(got, Delivery::Delivered { attempts: 3 });
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Two backoffs: [250, 500] ms then [500, 1000] ms.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(750) && waited <= Duration::from_millis(1500),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_is_not_retried() {
    let (calls, f) = scripted(vec![RetryAction::DontRetry {
        reason: "HTTP 400".into(),
        status: Some(400),
    }]);
    let got = run(&settings(1000), Instant::now() + Duration::from_secs(60), f).await;
    assert_eq!(
        got,
        Delivery::Rejected {
            reason: "HTTP 400".into(),
            status: Some(400),
            attempts: 1
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A misconfiguration fails at once: the host's retry policy takes over.
    let (calls, f) = scripted(vec![RetryAction::Halt {
        reason: "HTTP 401".into(),
    }]);
    let got = run(&settings(1000), Instant::now() + Duration::from_secs(60), f).await;
    assert!(
        matches!(got, Delivery::Halted { attempts: 1, .. }),
        "{got:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A limited run stops after the failures allowed; 429s do not count.
#[tokio::test(start_paused = true)]
async fn limited_run_stops_after_its_failures() {
    let busy = RetryAction::Retry {
        reason: "HTTP 429".into(),
        after: None,
        throttled: true,
    };
    let (calls, f) = scripted(vec![busy, transient(), transient(), transient()]);
    let got = run_limited(
        &settings(1000),
        Instant::now() + Duration::from_secs(60),
        2,
        f,
    )
    .await;
    assert!(
        matches!(got, Delivery::Failed { attempts: 3, .. }),
        "{got:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Always failing: gives up before the deadline, never after it.
#[tokio::test(start_paused = true)]
async fn deadline_bounds_the_loop() {
    let (calls, f) = scripted(vec![transient(); 1000]);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(20);
    let got = run(&settings(1000), deadline, f).await;
    assert!(matches!(got, Delivery::Failed { .. }), "{got:?}");
    assert!(Instant::now() <= deadline);
    let n = calls.load(Ordering::SeqCst);
    // 0.5 + 1 + 2 + 4 + 4 … seconds (jittered down to half): between 5 and 12 attempts fit.
    assert!((5..=12).contains(&n), "{n} attempts");
}

/// A hanging receiver: each attempt is cut at the per-attempt timeout.
#[tokio::test(start_paused = true)]
async fn attempt_timeout_applies() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let start = Instant::now();
    let got = run(&settings(2000), start + Duration::from_secs(7), move || {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<RetryAction>()
    })
    .await;
    match got {
        Delivery::Failed { reason, attempts } => {
            // The last attempt may be cut shorter, by the deadline.
            assert!(reason.contains("no answer within"), "{reason}");
            assert_eq!(attempts, calls.load(Ordering::SeqCst));
            // 2 s + backoff + 2 s + backoff + what is left of 7 s.
            assert_eq!(attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() <= Duration::from_secs(7));
}

/// `Retry-After` is honoured instead of the backoff, and a wait past the deadline ends
/// the loop at once.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let slow = RetryAction::Retry {
        reason: "HTTP 429".into(),
        after: Some(Duration::from_secs(3)),
        throttled: true,
    };
    let (_, f) = scripted(vec![slow.clone()]);
    let start = Instant::now();
    let got = run(&settings(1000), start + Duration::from_secs(60), f).await;
    assert_eq!(got, Delivery::Delivered { attempts: 2 });
    assert_eq!(start.elapsed(), Duration::from_secs(3));

    let (_, f) = scripted(vec![RetryAction::Retry {
        reason: "HTTP 429".into(),
        after: Some(Duration::from_secs(120)),
        throttled: true,
    }]);
    let start = Instant::now();
    let got = run(&settings(1000), start + Duration::from_secs(60), f).await;
    assert!(
        matches!(got, Delivery::Failed { attempts: 1, .. }),
        "{got:?}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

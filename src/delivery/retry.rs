//! When to retry a webhook POST, how long to wait, and the bounded retry loop.
//!
//! Classification is kept apart from the mechanism, as in Vector's HTTP sink: 408, 429 and
//! 5xx (but 501) and transport errors are worth another try; other statuses are final. The loop
//! retries with capped exponential backoff and jitter, honours `Retry-After`, gives each attempt
//! its own timeout and never runs past the invocation's deadline.

use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use tokio::time::Instant;

/// Retry timing for one webhook (`AUDIT_WEBHOOK_TIMEOUT`, `AUDIT_RETRY_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Time limit of one attempt.
    pub attempt_timeout: Duration,
    /// First delay before jitter.
    pub initial_backoff: Duration,
    /// Delay cap before jitter.
    pub max_backoff: Duration,
}

/// The longest `Retry-After` honoured: a receiver asking for more is retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl RetrySettings {
    /// A receiver's `Retry-After` clamped to `[initial_backoff, MAX_RETRY_AFTER]`: `0` or a
    /// past date never means "retry at once" (that would hammer the receiver), and a huge value
    /// never overflows a timer.
    pub fn clamp_retry_after(&self, after: Duration) -> Duration {
        after.clamp(
            self.initial_backoff,
            MAX_RETRY_AFTER.max(self.initial_backoff),
        )
    }
}

/// What one attempt's result calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// Delivered.
    Successful,
    /// A failure that a later attempt may not repeat.
    Retry {
        /// Why, for the logs.
        reason: Cow<'static, str>,
        /// The receiver's `Retry-After`, if it sent one.
        after: Option<Duration>,
        /// A 429: the receiver is busy, which says nothing about this payload.
        throttled: bool,
    },
    /// The receiver refused this payload for good (400, 413, 422…): the same request will
    /// always meet it. The batch is split to isolate the offending Events.
    DontRetry {
        /// Why, for the logs.
        reason: Cow<'static, str>,
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// The receiver is misconfigured for us (401, 403, 404, 501…): no payload can succeed
    /// until an operator acts, so the invocation fails and the host retries it later.
    Halt {
        /// Why, for the logs.
        reason: Cow<'static, str>,
    },
}

/// The final result of delivering one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// The receiver refused the batch for good (a content error such as 400, 413, 422).
    Rejected {
        /// Why.
        reason: Cow<'static, str>,
        /// The HTTP status.
        status: Option<u16>,
        /// Attempts made.
        attempts: u32,
    },
    /// The receiver is misconfigured for us (401, 403, 404, a redirect…): no payload can pass
    /// until an operator acts.
    Halted {
        /// Why.
        reason: Cow<'static, str>,
        /// Attempts made.
        attempts: u32,
    },
    /// Still failing after the attempts allowed or when the deadline came: the invocation
    /// must be retried, or the batch split to isolate the failing Event.
    Failed {
        /// The last failure.
        reason: Cow<'static, str>,
        /// Attempts made.
        attempts: u32,
    },
}

/// Classifies an HTTP status. `detail` (e.g. a body excerpt) is appended to the reason.
pub fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: &str,
) -> RetryAction {
    if status.is_success() {
        return RetryAction::Successful;
    }
    let reason: Cow<'static, str> = if detail.is_empty() {
        format!("HTTP {status}").into()
    } else {
        format!("HTTP {status}: {detail}").into()
    };
    match status.as_u16() {
        408 | 429 => RetryAction::Retry {
            reason,
            after: retry_after,
            throttled: status.as_u16() == 429,
        },
        // Wrong credentials, wrong path, wrong method: no payload can pass.
        401 | 403 | 404 | 405 | 407 | 421 | 501 => RetryAction::Halt { reason },
        s if (500..600).contains(&s) => RetryAction::Retry {
            reason,
            after: retry_after,
            throttled: false,
        },
        s if (400..500).contains(&s) => RetryAction::DontRetry {
            reason,
            status: Some(s),
        },
        // 1xx or an unfollowed 3xx: not an answer to an audit POST.
        _ => RetryAction::Halt { reason },
    }
}

/// Classifies a transport error. The URL is stripped from the message: it may hold
/// credentials.
pub fn classify_error(error: reqwest::Error) -> RetryAction {
    let builder = error.is_builder();
    let reason: Cow<'static, str> = format!("{:#}", anyhow::Error::new(error.without_url())).into();
    if builder {
        RetryAction::Halt { reason }
    } else {
        RetryAction::Retry {
            reason,
            after: None,
            throttled: false,
        }
    }
}

/// Reads `Retry-After`: delay-seconds (RFC 9110 §10.2.3; too large a number saturates) or
/// an HTTP date. Anything else (`-5`, text) is `None`: the usual backoff applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff from `initial`, doubling to `max`, with "equal jitter": each delay is
/// drawn from `[d/2, d]`, so retries spread out but never collapse to zero.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next.min(self.max);
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(fastrand::u64(0..=spread))
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` would pass before the next
/// try. Each attempt is cut off after `settings.attempt_timeout` or at the deadline, whichever
/// is sooner.
pub async fn run<F, Fut>(settings: &RetrySettings, deadline: Instant, attempt: F) -> Delivery
where
    F: FnMut() -> Fut,
    Fut: Future<Output = RetryAction>,
{
    run_limited(settings, deadline, u32::MAX, attempt).await
}

/// [`run`], giving up with [`Delivery::Failed`] after `max_failures` failed attempts. Answers
/// `429` do not count: a busy receiver says nothing about the payload, its `Retry-After` is
/// honoured until the deadline.
pub async fn run_limited<F, Fut>(
    settings: &RetrySettings,
    deadline: Instant,
    max_failures: u32,
    mut attempt: F,
) -> Delivery
where
    F: FnMut() -> Fut,
    Fut: Future<Output = RetryAction>,
{
    let mut backoff = Backoff::new(settings.initial_backoff, settings.max_backoff);
    let mut attempts = 0;
    let mut failures = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Delivery::Failed {
                reason: "the delivery deadline passed before the batch could be sent".into(),
                attempts,
            };
        }
        let limit = settings.attempt_timeout.min(deadline - now);
        attempts += 1;
        let (reason, after) = match tokio::time::timeout(limit, attempt()).await {
            Ok(RetryAction::Successful) => return Delivery::Delivered { attempts },
            Ok(RetryAction::DontRetry { reason, status }) => {
                return Delivery::Rejected {
                    reason,
                    status,
                    attempts,
                }
            }
            Ok(RetryAction::Halt { reason }) => return Delivery::Halted { reason, attempts },
            Ok(RetryAction::Retry {
                reason,
                after,
                throttled,
            }) => {
                failures += u32::from(!throttled);
                (reason, after)
            }
            Err(_) => {
                failures += 1;
                (
                    format!("no answer within {}", humantime::format_duration(limit)).into(),
                    None,
                )
            }
        };
        if failures >= max_failures {
            return Delivery::Failed { reason, attempts };
        }
        let delay = after
            .map(|d| settings.clamp_retry_after(d))
            .unwrap_or_else(|| backoff.next_delay());
        if delay >= deadline.saturating_duration_since(Instant::now()) {
            return Delivery::Failed { reason, attempts };
        }
        tracing::warn!(
            attempt = attempts,
            %reason,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "Webhook delivery failed; retrying."
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
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
}

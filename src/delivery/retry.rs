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

impl Delivery {
    /// Attempts made, whatever the result.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Delivered { attempts }
            | Self::Rejected { attempts, .. }
            | Self::Halted { attempts, .. }
            | Self::Failed { attempts, .. } => *attempts,
        }
    }
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
        // Wrong credentials, wrong path, wrong method: no payload can pass. 410 (the URL is
        // gone, RFC 9110 §15.5.11), 426 (another protocol, §15.5.22) and 431 (our header
        // fields, RFC 6585 §5) are about the request, not the Events in it.
        401 | 403 | 404 | 405 | 407 | 410 | 421 | 426 | 431 | 501 => RetryAction::Halt { reason },
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
mod tests;

//! The audit webhook client: one shared connection pool, one POST per batch, retried.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use tokio::time::Instant;
use url::Url;

use crate::delivery::client::{header_names, ClientOptions};
use crate::delivery::connections::{ConnectionBudget, IdleClaim};
use crate::delivery::retry::RetrySettings;
use crate::delivery::retry::{
    self, classify_error, classify_status, parse_retry_after, Delivery, RetryAction,
};
use crate::redact::{echoed_forms, excerpt, mask, redact_url, url_secret_values};

/// Characters of an error response quoted in the logs and dead letters (Vector quotes 1 KiB).
const ERROR_BODY_CHARS: usize = 256;
/// Response bytes read to keep the connection reusable; larger answers are dropped.
const DRAIN_LIMIT: usize = 64 * 1024;
/// Longest wait for the rest of an answer once its status line has arrived. The status
/// decides the outcome; a body that stalls after it changes nothing.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Sends encoded batches to one audit webhook.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: Url,
    retry: RetrySettings,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The credential and header values this client sends, masked in quoted answers.
    secrets: Vec<String>,
    /// The kept-alive connections this client may hold ([`ConnectionBudget`]).
    _idle: Arc<IdleClaim>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &redact_url(&self.url))
            .field("retry", &self.retry)
            .field("headers", &header_names(&self.headers))
            .finish()
    }
}

impl Webhook {
    /// A client for `url`.
    ///
    /// # Errors
    /// When the TLS backend cannot start.
    pub fn new(url: Url, retry: RetrySettings, options: &ClientOptions) -> anyhow::Result<Self> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("aks-audit-forwarder/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(retry.attempt_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect would turn the POST into a GET (301-303) or send the Events and the
            // credentials to another origin (307/308): none is followed, a 3xx fails loudly.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false);
        // Idle connections count against the process's descriptors: each client keeps only
        // what it could claim from the shared allowance.
        let idle = ConnectionBudget::global().claim_idle();
        let builder = builder.pool_max_idle_per_host(idle.connections());
        let client = options
            .apply_tls(builder)
            .map_err(anyhow::Error::msg)?
            .build()?;
        let headers = options.request_headers();
        let mut secrets = options.secret_values();
        secrets.extend(url_secret_values(&url));
        secrets.retain(|s| s.len() >= 3);
        let mut secrets: Vec<String> = secrets.iter().flat_map(|s| echoed_forms(s)).collect();
        // Longest first, so a value that holds another is masked whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Ok(Self {
            client,
            url,
            retry,
            headers,
            secrets,
            _idle: Arc::new(idle),
        })
    }

    /// The webhook URL, redacted for display.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    /// POSTs `body` until it is delivered, refused for good, or `deadline` comes.
    pub async fn deliver(&self, body: Bytes, deadline: Instant) -> Delivery {
        let Some(_turn) = turn(deadline).await else {
            return no_turn();
        };
        retry::run(&self.retry, deadline, || self.attempt(body.clone())).await
    }

    /// [`Self::deliver`], giving up after `max_failures` failed attempts (429s aside).
    pub async fn deliver_limited(
        &self,
        body: Bytes,
        deadline: Instant,
        max_failures: u32,
    ) -> Delivery {
        let Some(_turn) = turn(deadline).await else {
            return no_turn();
        };
        retry::run_limited(&self.retry, deadline, max_failures, || {
            self.attempt(body.clone())
        })
        .await
    }

    async fn attempt(&self, body: Bytes) -> RetryAction {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            request = request.header(name, value.clone());
        }
        let response = request.body(body).send().await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return classify_error(e),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
            .map(|d| self.retry.clamp_retry_after(d));
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| shown_location(&self.url, l));
        // The status decides the outcome. After a 2xx the rest of the answer is drained in
        // the background, bounded, only to keep the connection reusable: a body that stalls
        // changes nothing. An error answer is read, bounded in time and size, to quote it.
        if status.is_success() {
            tokio::spawn(async move {
                let drain = async {
                    let mut read = 0;
                    while read < DRAIN_LIMIT {
                        match response.chunk().await {
                            Ok(Some(chunk)) => read += chunk.len(),
                            Ok(None) | Err(_) => break,
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            });
            return RetryAction::Successful;
        }
        let mut head = Vec::new();
        let drain = async {
            while head.len() < DRAIN_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME.min(self.retry.attempt_timeout / 4), drain).await;
        if status.is_redirection() {
            let reason = format!(
                "HTTP {status} redirect to {}: redirects are not followed; set AUDIT_WEBHOOK_URL (or the route's webhook.url) to the receiver's final URL",
                location.as_deref().unwrap_or("(no Location)")
            );
            return RetryAction::Halt {
                reason: reason.into(),
            };
        }
        // Masked before cutting, so no part of a secret survives at the cut.
        let masked = mask(&String::from_utf8_lossy(&head), &self.secrets);
        let detail = excerpt(masked.as_bytes(), ERROR_BODY_CHARS);
        classify_status(status, retry_after, &detail)
    }
}

/// Waits, until `deadline` at most, for a delivery's turn in the process-wide connection
/// budget; held for the whole delivery, retries included, so waiting for it never counts as
/// an attempt that failed.
async fn turn(deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::time::timeout_at(deadline, ConnectionBudget::global().delivery())
        .await
        .ok()
        .flatten()
}

fn no_turn() -> Delivery {
    Delivery::Failed {
        reason: format!(
            "no webhook connection was free before the delivery deadline (at most {} at once, from the open-files limit)",
            ConnectionBudget::global().deliveries()
        )
        .into(),
        attempts: 0,
    }
}

/// A redirect target as it may be logged: resolved against the webhook URL, credentials and
/// query values hidden, bounded.
fn shown_location(base: &Url, location: &str) -> String {
    match base.join(location) {
        Ok(url) => excerpt(redact_url(&url).as_bytes(), 200),
        Err(_) => "(an unparsable Location)".into(),
    }
}

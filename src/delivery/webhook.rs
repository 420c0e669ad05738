//! The audit webhook client: one shared connection pool, one POST per batch, retried.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use tokio::time::Instant;
use url::Url;

use crate::delivery::client::{header_names, ClientOptions};
use crate::delivery::retry::RetrySettings;
use crate::delivery::retry::{
    self, classify_error, classify_status, parse_retry_after, Delivery, RetryAction,
};
use crate::redact::{excerpt, redact_url};

/// Bytes of an error response quoted in the logs (Vector quotes 1 KiB).
const ERROR_BODY_CHARS: usize = 256;
/// Response bytes read to keep the connection reusable; larger answers are dropped.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Sends encoded batches to one audit webhook.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: Url,
    retry: RetrySettings,
    headers: Vec<(HeaderName, HeaderValue)>,
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
            .pool_idle_timeout(Duration::from_secs(60));
        let client = options
            .apply_tls(builder)
            .map_err(anyhow::Error::msg)?
            .build()?;
        Ok(Self {
            client,
            url,
            retry,
            headers: options.request_headers(),
        })
    }

    /// The webhook URL, redacted for display.
    pub fn shown_url(&self) -> String {
        redact_url(&self.url)
    }

    /// POSTs `body` until it is delivered, refused for good, or `deadline` comes.
    pub async fn deliver(&self, body: Bytes, deadline: Instant) -> Delivery {
        retry::run(&self.retry, deadline, || self.attempt(body.clone())).await
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
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut head = Vec::new();
        while head.len() < DRAIN_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status already tells the outcome; a broken body after it changes nothing
                // for a success, and for a failure the status is what gets classified.
                Err(_) => break,
            }
        }
        let detail = if status.is_success() {
            String::new()
        } else {
            excerpt(&head, ERROR_BODY_CHARS)
        };
        classify_status(status, retry_after, &detail)
    }
}

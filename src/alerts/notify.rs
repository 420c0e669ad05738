//! Sending a card to a notifier: one POST of JSON, retried with backoff (408, 429 and 5xx,
//! transport errors) at most [`MAX_FAILURES`] times and never past the deadline. Logs, errors
//! and dead letters name the notifier; its URL, a secret, is never shown.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use url::Url;

use super::rules::{NotifierConfig, NotifierKind};
use crate::delivery::{ClientOptions, Delivery, RetrySettings, Webhook};
use crate::redact::mask;

/// Failed attempts after which a card is given up (429s aside, which wait for `Retry-After`
/// within the deadline).
pub const MAX_FAILURES: u32 = 4;
/// Time limit of one attempt: Teams and Slack answer in well under a second.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A notifier with its HTTP client.
#[derive(Clone)]
pub struct Notifier {
    /// Its name.
    pub name: String,
    /// What it speaks.
    pub kind: NotifierKind,
    client: Webhook,
    /// The URL and its parts, masked out of any answer quoted in a reason.
    secrets: Vec<String>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A card that could not be sent: why (URL never included) and how many attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    /// Why, from the last attempt.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

impl Notifier {
    /// A client for `config`, retrying on the forwarder's backoff.
    ///
    /// # Errors
    /// When the URL does not parse or the TLS backend cannot start.
    pub fn new(config: &NotifierConfig, retry: RetrySettings) -> anyhow::Result<Self> {
        let url = Url::parse(config.url.expose())
            .map_err(|_| anyhow::anyhow!("notifier {}: the url does not parse", config.name))?;
        let retry = RetrySettings {
            attempt_timeout: retry.attempt_timeout.min(ATTEMPT_TIMEOUT),
            ..retry
        };
        let client = Webhook::new(url.clone(), retry, &ClientOptions::default())?;
        let mut secrets: Vec<String> = vec![config.url.expose().to_string(), url.to_string()];
        secrets.extend(
            url.path_segments()
                .into_iter()
                .flatten()
                .filter(|s| s.len() >= 6)
                .map(str::to_string),
        );
        secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        secrets.extend(url.password().map(str::to_string));
        secrets.retain(|s| s.len() >= 3);
        // Longest first, so a part never leaves the rest of a longer secret behind.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Self {
            name: config.name.clone(),
            kind: config.kind,
            client,
            secrets,
        })
    }

    /// POSTs `body` until the notifier takes it (2xx), refuses it, [`MAX_FAILURES`] attempts
    /// fail, or `deadline` comes.
    ///
    /// # Errors
    /// [`NotSent`] with the last reason, the URL masked.
    pub async fn send(&self, body: Bytes, deadline: Instant) -> Result<u32, NotSent> {
        let result = self
            .client
            .deliver_limited(body, deadline, MAX_FAILURES)
            .await;
        let (reason, attempts) = match result {
            Delivery::Delivered { attempts } => return Ok(attempts),
            Delivery::Rejected {
                reason, attempts, ..
            }
            | Delivery::Halted { reason, attempts }
            | Delivery::Failed { reason, attempts } => (reason, attempts),
        };
        Err(NotSent {
            reason: mask(&reason, &self.secrets),
            attempts,
        })
    }
}

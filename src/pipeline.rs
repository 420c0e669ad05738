//! One invocation end to end: decode → convert → batch → deliver → summary. No HTTP server
//! types here; `app` calls this and turns the summary into the host's answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;

use crate::audit::{encode, AuditEvent};
use crate::batch::{plan, BatchLimits};
use crate::config::Config;
use crate::diagnostics::{convert_body, BodyOrigin, ConvertTally};
use crate::host::{Invocation, InvocationMeta};
use crate::retry::Delivery;
use crate::webhook::Webhook;

/// Everything one invocation needs, shared by all invocations.
#[derive(Debug)]
pub struct Forwarder {
    config: Config,
    webhook: Webhook,
}

/// Events converted from one invocation, ready for delivery.
#[derive(Debug)]
pub struct Converted {
    /// The Events, in partition order.
    pub events: Vec<AuditEvent>,
    /// What conversion saw.
    pub tally: ConvertTally,
    /// Where they came from.
    pub meta: InvocationMeta,
}

/// Delivery counts of one invocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryTally {
    /// Batches the webhook accepted.
    pub delivered_batches: u64,
    /// Events in them.
    pub delivered_events: u64,
    /// Batches the webhook refused for good.
    pub rejected_batches: u64,
    /// Events in them.
    pub rejected_events: u64,
    /// Batches still failing at the deadline.
    pub failed_batches: u64,
    /// Events in them.
    pub failed_events: u64,
    /// POSTs made, retries included.
    pub attempts: u64,
    /// The last transient failure, when there was one.
    pub last_failure: Option<String>,
}

/// The one-line account of an invocation, logged and returned to the host.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `X-Azure-Functions-InvocationId`.
    pub invocation_id: Option<String>,
    /// Where the events came from.
    pub meta: InvocationMeta,
    /// Conversion counts.
    pub convert: ConvertTally,
    /// Delivery counts.
    pub delivery: DeliveryTally,
    /// Wall time of the invocation.
    pub duration: Duration,
}

impl Summary {
    /// True when a batch is still undelivered and the invocation must be retried.
    pub fn needs_retry(&self) -> bool {
        self.delivery.failed_batches > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.convert;
        let d = &self.delivery;
        let m = &self.meta;
        let outcome = if self.needs_retry() {
            "failed, will be retried"
        } else if d.rejected_batches > 0 {
            "done with rejected batches"
        } else {
            "delivered"
        };
        write!(f, "Invocation {outcome}:")?;
        if let Some(id) = &self.invocation_id {
            write!(f, " invocation={id}")?;
        }
        if let Some(p) = &m.partition_id {
            write!(f, " partition={p}")?;
        }
        if let (Some(first), Some(last)) = (m.sequence_numbers.first(), m.sequence_numbers.last()) {
            write!(f, " seq={first}..{last}")?;
        }
        if let Some(t) = &m.enqueued_first {
            write!(f, " enqueued={t}")?;
        }
        if let Some(r) = m.retry_count {
            write!(f, " retry={r}")?;
        }
        write!(
            f,
            " events={} records={} converted={} skipped={}",
            c.bodies,
            c.records,
            c.converted,
            c.skipped_total()
        )?;
        if !c.skipped.is_empty() {
            let parts: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            write!(f, " ({})", parts.join(","))?;
        }
        write!(
            f,
            " malformed={} (events={} records={}) delivered={} batches={} rejected={} failed={} attempts={} duration_ms={}",
            c.malformed_bodies + c.malformed_records,
            c.malformed_bodies,
            c.malformed_records,
            d.delivered_events,
            d.delivered_batches,
            d.rejected_events,
            d.failed_events,
            d.attempts,
            self.duration.as_millis()
        )?;
        if let Some(reason) = &d.last_failure {
            write!(f, " last_failure={reason:?}")?;
        }
        Ok(())
    }
}

impl Forwarder {
    /// Builds the shared state.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let webhook = Webhook::new(config.webhook_url.clone(), config.retry)?;
        Ok(Arc::new(Self { config, webhook }))
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The webhook client.
    pub fn webhook(&self) -> &Webhook {
        &self.webhook
    }

    /// Converts every event body of an invocation. CPU-bound: run it off the async workers.
    pub fn convert(&self, invocation: Invocation) -> Converted {
        let Invocation { bodies, meta } = invocation;
        let mut events = Vec::new();
        let mut tally = ConvertTally::default();
        for (index, body) in bodies.into_iter().enumerate() {
            let origin = BodyOrigin {
                index,
                sequence_number: meta.sequence_number(index),
            };
            convert_body(
                &body,
                origin,
                &self.config.categories,
                &mut events,
                &mut tally,
            );
        }
        Converted {
            events,
            tally,
            meta,
        }
    }

    /// Delivers `events` in bounded batches, at most `concurrency` at once, each retried until
    /// `deadline`. Returns only once every batch has a final result.
    pub async fn deliver(&self, events: &[AuditEvent], deadline: Instant) -> DeliveryTally {
        let limits = BatchLimits {
            format: self.config.format,
            max_events: self.config.batch_max_events,
            max_bytes: self.config.batch_max_bytes,
        };
        let format = self.config.format;
        let results: Vec<(usize, Delivery)> = stream::iter(plan(events, limits))
            .map(|range| async move {
                let batch = &events[range];
                let body = encode(format, batch);
                (batch.len(), self.webhook.deliver(body, deadline).await)
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;

        let mut tally = DeliveryTally::default();
        for (count, delivery) in results {
            let count = count as u64;
            match delivery {
                Delivery::Delivered { attempts } => {
                    tally.delivered_batches += 1;
                    tally.delivered_events += count;
                    tally.attempts += u64::from(attempts);
                }
                Delivery::Rejected { reason, attempts } => {
                    tally.rejected_batches += 1;
                    tally.rejected_events += count;
                    tally.attempts += u64::from(attempts);
                    tracing::error!(
                        events = count,
                        %reason,
                        webhook = %self.webhook.shown_url(),
                        "The webhook refused a batch for good; its events are not retried."
                    );
                }
                Delivery::Failed { reason, attempts } => {
                    tally.failed_batches += 1;
                    tally.failed_events += count;
                    tally.attempts += u64::from(attempts);
                    tracing::error!(
                        events = count,
                        %reason,
                        webhook = %self.webhook.shown_url(),
                        "A batch is still undelivered at the deadline; the invocation will fail so the host retries it."
                    );
                    tally.last_failure = Some(reason.into_owned());
                }
            }
        }
        tally
    }
}

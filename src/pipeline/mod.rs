//! One invocation end to end: convert → per-Event steps (route, Policy, annotations…) →
//! deliver → summary. No HTTP server types here: the host edge decodes the request, calls
//! [`Forwarder::forward`] and turns its [`Forwarded`] into the host's answer.
//!
//! - [`forward`](Forwarder::forward) and [`prepare`](Forwarder::prepare): one invocation,
//!   in order (`forward.rs`).
//! - [`steps`]: the per-Event steps and the chain that runs them.
//! - `routes.rs`: which audit webhook each Event goes to; `copies.rs`: destinations that only
//!   receive a copy.
//! - [`deliver`](Forwarder::deliver): the one delivery entry point; one route's delivery is a
//!   state machine (`route_delivery.rs`, `classify.rs`, `isolation.rs`).

mod alert_copies;
mod bodies;
mod body_pool;
mod classify;
pub mod copies;
mod deliver;
mod forward;
mod isolation;
mod route_delivery;
pub mod routes;
pub mod steps;
mod summary;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::alerts::AlertRules;
use crate::audit::Policy;
use crate::delivery::learned::Learned;
use crate::delivery::{RetrySettings, RouteConfig, TruncateOverrides};

pub use alert_copies::AlertCopies;
pub use bodies::Bodies;
pub use body_pool::{BodyPool, Loan};
pub use copies::{Copies, CopyDestination, CopyDestinations, InvocationCopies};
pub use deliver::{DeliveryOutcome, RouteTally};
pub use forward::{Forwarded, Panicked, Prepared};
pub use isolation::Isolation;
pub use routes::{Route, Routed};
pub use steps::StepTally;
pub use summary::{lag_since_enqueued, DeliveryTally, Summary};

/// What the pipeline needs to know, built once at start-up from the `AUDIT_*` settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where Events go: the routes from `AUDIT_ROUTES`, or one catch-all route to
    /// `AUDIT_WEBHOOK_URL`. `Debug` shows URLs redacted and tokens hidden.
    pub routes: Vec<RouteConfig>,
    /// Alert rules (`AUDIT_ALERTS`): cards to Teams, Slack or webhooks for matching Events.
    pub alerts: Option<Arc<AlertRules>>,
    /// The Policy applied to routes that have none of their own.
    pub policy: Option<Arc<Policy>>,
    /// Whether every Event gets its cluster's annotations.
    pub cluster_annotations: bool,
    /// Lower-cased categories whose records carry audit Events.
    pub categories: BTreeSet<String>,
    /// Maximum Events in one POST.
    pub batch_max_events: usize,
    /// Maximum bytes in one POST.
    pub batch_max_bytes: usize,
    /// Total delivery budget of one invocation.
    pub delivery_deadline: Duration,
    /// Batches of one invocation in flight at once.
    pub concurrency: usize,
    /// Retry timing.
    pub retry: RetrySettings,
    /// Most records one Event Hub event may hold; a larger event is dead-lettered.
    pub max_records_per_event: usize,
    /// Host retries (`RetryContext.RetryCount`) after which transient failures are isolated
    /// too (`AUDIT_ISOLATE_AFTER_RETRIES`).
    pub isolate_after_retries: u32,
    /// The `AUDIT_TRUNCATE_*` settings that were set; each route's receiver profile gives
    /// the rest.
    pub truncate: TruncateOverrides,
}

/// One decoded invocation: the Event Hub event bodies and what the host told us about them.
#[derive(Debug, Default)]
pub struct Invocation {
    /// The raw bytes of each Event Hub event, in partition order.
    pub bodies: Bodies,
    /// Where the events came from, for logs.
    pub meta: InvocationMeta,
}

/// The parts of `Metadata` the handler uses. Every member is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InvocationMeta {
    /// `PartitionContext.PartitionId`.
    pub partition_id: Option<String>,
    /// `PartitionContext.EventHubName`.
    pub event_hub: Option<String>,
    /// `PartitionContext.ConsumerGroup`.
    pub consumer_group: Option<String>,
    /// `SequenceNumberArray` (many) or `[SequenceNumber]` (one).
    pub sequence_numbers: Vec<i64>,
    /// First and last `EnqueuedTimeUtc[Array]` entries, as the host wrote them.
    pub enqueued_first: Option<String>,
    /// See `enqueued_first`.
    pub enqueued_last: Option<String>,
    /// `RetryContext.RetryCount`, present only when a retry policy is configured.
    pub retry_count: Option<i64>,
    /// `RetryContext.MaxRetryCount`.
    pub max_retry_count: Option<i64>,
}

impl InvocationMeta {
    /// A delivery that is not the host's (`resend`, `backfill`): no partition, no earlier
    /// try, and transient failures are not isolated.
    pub fn standalone() -> Self {
        Self {
            retry_count: Some(0),
            ..Self::default()
        }
    }

    /// Sequence number of the event at `index`, when the host sent them.
    pub fn sequence_number(&self, index: usize) -> Option<i64> {
        self.sequence_numbers.get(index).copied()
    }
}

/// Everything one invocation needs, shared by all invocations.
#[derive(Debug)]
pub struct Forwarder {
    settings: Settings,
    /// The routes, in the order they are matched.
    routes: Vec<Route>,
    /// Destinations fed with a copy of every Event the routes deliver.
    copies: CopyDestinations,
    /// Clusters already warned about for streaming both audit categories (once each).
    warned_both_categories: Mutex<BTreeSet<Arc<str>>>,
    /// What failed tries of an invocation learned, for the host's next try of it.
    learned: Learned,
}

impl Forwarder {
    /// Builds the shared state: one HTTP client per route, and the alert notifiers as a copy
    /// destination when `AUDIT_ALERTS` is set.
    ///
    /// # Errors
    /// When an HTTP client cannot be built.
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let mut copies = CopyDestinations::default();
        if let Some(rules) = &settings.alerts {
            copies.add(AlertCopies::destination(
                rules.clone(),
                settings.retry,
                settings.delivery_deadline,
            )?);
        }
        Self::with_copies(settings, copies)
    }

    /// [`Forwarder::new`], offering a copy of every Event the routes deliver to `copies`.
    ///
    /// # Errors
    /// When an HTTP client cannot be built.
    pub fn with_copies(settings: Settings, copies: CopyDestinations) -> anyhow::Result<Arc<Self>> {
        let routes = settings
            .routes
            .iter()
            .map(|route| Route::build(route, &settings))
            .collect::<anyhow::Result<_>>()?;
        Ok(Arc::new(Self {
            settings,
            routes,
            copies,
            warned_both_categories: Mutex::default(),
            learned: Learned::default(),
        }))
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `name -> webhook` for each delivering route, URLs redacted.
    pub fn describe_routes(&self) -> String {
        let parts: Vec<String> = self.routes.iter().map(Route::describe).collect();
        parts.join("; ")
    }

    /// The routes, in the order they are matched.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;

    fn forwarder(max_records: &str) -> Arc<Forwarder> {
        let settings = crate::config::Config::from_lookup(|k| match k {
            "AUDIT_WEBHOOK_URL" => Some("http://127.0.0.1:9/k8s_audit".into()),
            "AUDIT_CLUSTER_ANNOTATIONS" => Some("off".into()),
            "AUDIT_MAX_RECORDS_PER_EVENT" => Some(max_records.into()),
            _ => None,
        })
        .unwrap()
        .forwarder;
        Forwarder::new(settings).unwrap()
    }

    fn invocation(records: &[usize]) -> Invocation {
        let bodies = records
            .iter()
            .enumerate()
            .map(|(b, n)| {
                let records: Vec<_> = (0..*n)
                    .map(|r| {
                        serde_json::json!({"category": "kube-audit",
                        "properties": {"log": event_json(&format!("b{b}-r{r}"))}})
                    })
                    .collect();
                serde_json::json!({ "records": records })
                    .to_string()
                    .into_bytes()
            })
            .collect();
        Invocation {
            bodies: Bodies::from_vecs(bodies),
            meta: InvocationMeta::default(),
        }
    }

    /// Bodies are converted from the last to the first (each released once converted), yet
    /// Events and dead letters come out in partition order.
    #[test]
    fn convert_keeps_partition_order() {
        let converted = forwarder("10").prepare(invocation(&[2, 1, 3]));
        let ids: Vec<String> = converted
            .routed
            .events(0)
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(e.json()).unwrap()["auditID"].to_string()
            })
            .collect();
        assert_eq!(
            ids,
            ["b0-r0", "b0-r1", "b1-r0", "b2-r0", "b2-r1", "b2-r2"].map(|s| format!("\"{s}\""))
        );
        assert_eq!(converted.tally.converted, 6);
        // Events over the records limit are dead-lettered, in the order of the events.
        let converted = forwarder("2").prepare(invocation(&[1, 3, 1, 4]));
        assert_eq!(converted.tally.converted, 2);
        let reasons: Vec<&str> = converted
            .dead_letters
            .iter()
            .map(|d| d.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons[0].starts_with("event 1 holds 3 records"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("event 3 holds 4 records"),
            "{reasons:?}"
        );
    }
}

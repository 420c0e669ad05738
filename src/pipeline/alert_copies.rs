//! Alerts as a copy destination: each invocation's kept Events are matched against the alert
//! rules as they are offered, and the cards go out beside the invocation's delivery
//! ([`crate::alerts::Alerter::run`]); a card that cannot be sent comes back as `alert` dead
//! letters in the invocation's answer.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::copies::{CopyDestination, InvocationCopies};
use super::routes::Route;
use crate::alerts::{AlertRules, Alerter, Hit};
use crate::audit::AuditEvent;
use crate::deadletter::DeadLetter;
use crate::delivery::RetrySettings;

/// The alert notifiers, fed a copy of every Event the routes deliver.
#[derive(Debug)]
pub struct AlertCopies {
    alerter: Arc<Alerter>,
}

impl AlertCopies {
    /// The destination for `rules`, with one client per notifier.
    ///
    /// # Errors
    /// When a notifier's client cannot be built.
    pub fn destination(
        rules: Arc<AlertRules>,
        retry: RetrySettings,
        held_budget: Duration,
    ) -> anyhow::Result<Arc<dyn CopyDestination>> {
        Ok(Arc::new(Self {
            alerter: Alerter::new(rules, retry, held_budget)?,
        }))
    }
}

impl CopyDestination for AlertCopies {
    fn name(&self) -> &str {
        "alerts"
    }

    fn begin(&self) -> Box<dyn InvocationCopies> {
        Box::new(InvocationAlerts {
            alerter: self.alerter.clone(),
            hits: Vec::new(),
        })
    }
}

/// One invocation's matches.
#[derive(Debug)]
struct InvocationAlerts {
    alerter: Arc<Alerter>,
    hits: Vec<Hit>,
}

impl InvocationCopies for InvocationAlerts {
    fn offer(&mut self, event: &AuditEvent, _route: &Route) {
        self.hits
            .extend(self.alerter.select(std::slice::from_ref(event)));
    }

    fn send(self: Box<Self>, deadline: Instant) -> BoxFuture<'static, Vec<DeadLetter>> {
        Box::pin(async move {
            let outcome = self.alerter.run(self.hits, deadline).await;
            if outcome.sent + outcome.held + outcome.failed > 0 {
                tracing::info!(
                    cards_sent = outcome.sent,
                    events_held = outcome.held,
                    cards_failed = outcome.failed,
                    "Alert cards of this invocation."
                );
            }
            outcome.dead_letters
        })
    }
}

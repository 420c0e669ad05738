//! Destinations that receive a copy: a route decides which audit webhook an Event goes to,
//! and each [`CopyDestination`] (an alert notifier, say) is offered a copy of every Event the
//! per-Event steps keep, without taking it from its route. The audit webhooks are the only
//! destinations that acknowledge delivery; a copy destination cannot fail an invocation.
//!
//! Copies belong to their invocation: [`CopyDestinations::begin`] starts one [`Copies`] per
//! invocation, the per-Event steps offer it each kept Event, and [`Copies::send`] runs beside
//! the invocation's delivery, before its deadline. What a destination cannot send comes back
//! as dead letters in that invocation's answer.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::routes::Route;
use crate::audit::AuditEvent;
use crate::deadletter::DeadLetter;

/// A destination fed with copies of the Events that routes deliver.
pub trait CopyDestination: Send + Sync + fmt::Debug {
    /// Name, for logs.
    fn name(&self) -> &str;

    /// Starts the copies of one invocation (or one run of Events).
    fn begin(&self) -> Box<dyn InvocationCopies>;
}

/// One destination's copies of one invocation's Events.
pub trait InvocationCopies: Send + fmt::Debug {
    /// Offered each Event the per-Event steps kept, with the route that delivers it. Called
    /// on the conversion thread, once per Event: keep it cheap and never block.
    fn offer(&mut self, event: &AuditEvent, route: &Route);

    /// Sends what was offered before `deadline`, while the invocation's Events are delivered;
    /// returns what could not be sent, as dead letters. Never fails the invocation.
    fn send(self: Box<Self>, deadline: Instant) -> BoxFuture<'static, Vec<DeadLetter>>;
}

/// The copy destinations of a forwarder (none by default).
#[derive(Debug, Default, Clone)]
pub struct CopyDestinations(Vec<Arc<dyn CopyDestination>>);

impl CopyDestinations {
    /// Adds a destination; each Event is offered to them in the order they were added.
    pub fn add(&mut self, destination: Arc<dyn CopyDestination>) {
        self.0.push(destination);
    }

    /// Starts one invocation's copies, one per destination.
    pub fn begin(&self) -> Copies {
        Copies(self.0.iter().map(|d| d.begin()).collect())
    }

    /// Their names, for the start-up log.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|d| d.name()).collect()
    }
}

/// One invocation's copies, for every destination.
#[derive(Debug, Default)]
pub struct Copies(Vec<Box<dyn InvocationCopies>>);

impl Copies {
    /// Offers `event`, bound for `route`, to every destination.
    pub fn offer(&mut self, event: &AuditEvent, route: &Route) {
        for copies in &mut self.0 {
            copies.offer(event, route);
        }
    }

    /// Sends every destination's copies, in parallel, before `deadline`; the dead letters of
    /// what could not be sent.
    pub async fn send(self, deadline: Instant) -> Vec<DeadLetter> {
        let sends = self.0.into_iter().map(|c| c.send(deadline));
        futures::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::audit::event::tests::event_json;
    use crate::pipeline::{Forwarder, Invocation, InvocationMeta};

    /// Records each copy it is offered: the Event's `auditID` and route.
    #[derive(Debug, Default)]
    struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

    impl CopyDestination for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }

        fn begin(&self) -> Box<dyn InvocationCopies> {
            Box::new(Recorder(self.0.clone()))
        }
    }

    impl InvocationCopies for Recorder {
        fn offer(&mut self, event: &AuditEvent, route: &Route) {
            let id: serde_json::Value = serde_json::from_str(event.json()).unwrap();
            let id = id["auditID"].as_str().unwrap().to_string();
            self.0.lock().unwrap().push((id, route.name.clone()));
        }

        fn send(self: Box<Self>, _: Instant) -> BoxFuture<'static, Vec<DeadLetter>> {
            Box::pin(async { Vec::new() })
        }
    }

    /// A copy destination gets a copy of every Event a route keeps, and the route still gets
    /// every one of them: a copy never takes an Event from its route.
    #[test]
    fn copies_do_not_take_events_from_their_route() {
        let settings = crate::config::Config::from_lookup(|k| match k {
            "AUDIT_WEBHOOK_URL" => Some("http://127.0.0.1:9/k8s_audit".into()),
            _ => None,
        })
        .unwrap()
        .forwarder;
        let recorder = Arc::new(Recorder::default());
        let mut copies = CopyDestinations::default();
        copies.add(recorder.clone());
        let forwarder = Forwarder::with_copies(settings, copies).unwrap();
        let records: Vec<_> = ["a", "b"]
            .iter()
            .map(|id| {
                serde_json::json!({"category": "kube-audit", "properties": {"log": event_json(id)}})
            })
            .collect();
        let body = serde_json::json!({ "records": records }).to_string();
        let prepared = forwarder.prepare(Invocation {
            bodies: crate::pipeline::Bodies::from_vecs(vec![body.into_bytes()]),
            meta: InvocationMeta::default(),
        });
        assert_eq!(prepared.routed.events(0).len(), 2);
        let route = forwarder.routes()[0].name.clone();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [("a".to_string(), route.clone()), ("b".to_string(), route)]
        );
        assert_eq!(forwarder.copies.names(), ["recorder"]);
    }
}

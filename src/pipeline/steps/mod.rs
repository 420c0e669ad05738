//! The per-Event steps: what happens to each converted Event between conversion and delivery,
//! in order, behind one small interface ([`Step`]) and run in one place ([`Chain`]).
//!
//! Each step gets an Event and its [`Place`] (the route that takes it, its cluster) and gives
//! a [`Verdict`]: keep it (possibly edited), drop it for a counted [`DropReason`], or set it
//! aside as a dead letter. The first step that does not keep an Event ends its run. The
//! handler, `backfill` and `resend` run [`handler_steps`]; `convert` runs the Policy step
//! alone.
//!
//! Adding a step: one file in this folder (a type implementing [`Step`], its tests beside it)
//! and one line in [`handler_steps`] (plus its `mod` line).

mod annotations;
mod dedup;
mod policy;
mod receiver;
mod routed;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use annotations::ClusterAnnotationsStep;
pub use dedup::CategoryDuplicates;
pub use policy::PolicyStep;
pub use receiver::ReceiverLimits;
pub use routed::RouteTaken;

use super::routes::Route;
use crate::audit::AuditEvent;
use crate::azure::{CategoriesSeen, ClusterId};
use crate::deadletter::{DeadLetter, DeadLetterKind};

/// The steps the handler runs on every Event, in order. De-duplication comes first so that
/// the second copy of an Event is counted once, as a duplicate, whatever the later steps make
/// of the first; the route's Policy then decides the level, the annotations are added to
/// what is kept, and last the route's receiver limits measure the Event as it will be sent.
pub fn handler_steps(seen: &CategoriesSeen, cluster_annotations: bool) -> Chain {
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(CategoryDuplicates::new(seen)),
        Box::new(RouteTaken),
        Box::new(PolicyStep),
    ];
    if cluster_annotations {
        steps.push(Box::new(ClusterAnnotationsStep::default()));
    }
    steps.push(Box::new(ReceiverLimits::default()));
    Chain::new(steps)
}

/// One per-Event step. A chain is built for one run over a list of Events (one invocation,
/// one `backfill` batch), so a step may remember what it saw earlier in the run.
pub trait Step: Send {
    /// What becomes of `event`, bound for `place`.
    fn apply(&mut self, event: AuditEvent, place: &Place<'_>) -> Verdict;

    /// At the end of the run: adds what the step counted beyond its verdicts (Events it
    /// kept but edited) to `tally`, and warns once about it. Most steps count nothing.
    fn finish(&mut self, _tally: &mut StepTally) {}
}

/// Where an Event is bound: what a route-dependent step (the Policy, size limits) reads.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The route that takes the Event; `None` when no route matches its cluster.
    pub route: Option<&'a Route>,
    /// The Event's cluster, read from its record's `resourceId` (empty when it had none).
    pub cluster: &'a Arc<ClusterId>,
}

/// What a step does with one Event.
#[derive(Debug)]
pub enum Verdict {
    /// Pass it on, edited or not.
    Keep(AuditEvent),
    /// Drop it, counted under its reason in the summary.
    Drop(DropReason),
    /// Set it aside: it is neither delivered nor lost (`resend` can send it later).
    DeadLetter(DeadLetter),
}

impl Verdict {
    /// The dead letter of `event`, of `kind`, for `reason`.
    pub fn dead_letter(
        event: &AuditEvent,
        kind: DeadLetterKind,
        reason: impl Into<String>,
    ) -> Self {
        Self::DeadLetter(DeadLetter::for_event(event, kind, reason))
    }
}

/// Why an Event was dropped: the name it is counted under in the invocation summary
/// (`policy_dropped=3`). A new step names its own reason with [`DropReason::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropReason(&'static str);

impl DropReason {
    /// A second copy of an Event sent under both `kube-audit` and `kube-audit-admin`.
    pub const DUPLICATE: Self = Self("duplicates");
    /// The audit Policy's level is `None` or its stage is omitted.
    pub const POLICY: Self = Self("policy_dropped");
    /// The route that takes the Event drops its Events.
    pub const ROUTE: Self = Self("route_dropped");

    /// A reason counted under `name` (lower case, words joined by `_`).
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The name it is counted under.
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// What the steps did, counted by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepTally {
    /// Second copies dropped ([`DropReason::DUPLICATE`]).
    pub duplicates: u64,
    /// Dropped by the audit Policy ([`DropReason::POLICY`]).
    pub policy_dropped: u64,
    /// Taken by a route that drops ([`DropReason::ROUTE`]).
    pub route_dropped: u64,
    /// Dropped for any other reason, by reason.
    pub dropped_other: BTreeMap<DropReason, u64>,
    /// Matched by no route (dead-lettered, `unrouted`).
    pub unrouted: u64,
    /// Dead-lettered because the Policy could not read them (`level: 5`, a key given twice):
    /// neither forwarded past the Policy nor dropped.
    pub policy_unreadable: u64,
    /// Sent without `requestObject` and `responseObject`: over their route's per-Event limit.
    pub truncated: u64,
    /// Dead-lettered as too large for their route's receiver, even truncated (`too-large`).
    pub too_large: u64,
    /// Dead-lettered because their route's receiver cannot read them (`receiver-invalid`).
    pub receiver_invalid: u64,
}

impl StepTally {
    /// Counts one Event dropped for `reason`.
    pub fn count_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::DUPLICATE => self.duplicates += 1,
            DropReason::POLICY => self.policy_dropped += 1,
            DropReason::ROUTE => self.route_dropped += 1,
            other => *self.dropped_other.entry(other).or_default() += 1,
        }
    }

    /// Counts one Event set aside as a dead letter of `kind`.
    pub fn count_dead_letter(&mut self, kind: DeadLetterKind) {
        match kind {
            DeadLetterKind::Unrouted => self.unrouted += 1,
            DeadLetterKind::PolicyUnreadable => self.policy_unreadable += 1,
            DeadLetterKind::TooLarge => self.too_large += 1,
            DeadLetterKind::ReceiverInvalid => self.receiver_invalid += 1,
            _ => {}
        }
    }
}

/// Steps run in order over the Events of one run.
pub struct Chain {
    steps: Vec<Box<dyn Step>>,
}

impl Chain {
    /// The steps, in the order they run.
    pub fn new(steps: Vec<Box<dyn Step>>) -> Self {
        Self { steps }
    }

    /// Runs `event` through every step until one does not keep it.
    pub fn run(&mut self, mut event: AuditEvent, place: &Place<'_>) -> Verdict {
        for step in &mut self.steps {
            match step.apply(event, place) {
                Verdict::Keep(kept) => event = kept,
                other => return other,
            }
        }
        Verdict::Keep(event)
    }

    /// Ends the run: each step adds what it counted to `tally` ([`Step::finish`]).
    pub fn finish(&mut self, tally: &mut StepTally) {
        for step in &mut self.steps {
            step.finish(tally);
        }
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("steps", &self.steps.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;

    /// Drops every Event, counted under its own reason.
    struct DropAll;

    impl Step for DropAll {
        fn apply(&mut self, _: AuditEvent, _: &Place<'_>) -> Verdict {
            Verdict::Drop(DropReason::new("all_dropped"))
        }
    }

    /// Counts the Events it sees.
    struct Count(&'static std::sync::atomic::AtomicUsize);

    impl Step for Count {
        fn apply(&mut self, event: AuditEvent, _: &Place<'_>) -> Verdict {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Verdict::Keep(event)
        }
    }

    /// The first step that does not keep an Event ends its run; a new reason is counted
    /// under its own name, the known ones in their fields.
    #[test]
    fn the_chain_stops_at_the_first_step_that_does_not_keep() {
        static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut chain = Chain::new(vec![
            Box::new(Count(&SEEN)),
            Box::new(DropAll),
            Box::new(Count(&SEEN)),
        ]);
        let cluster = Arc::new(ClusterId::default());
        let place = Place {
            route: None,
            cluster: &cluster,
        };
        let event = AuditEvent::parse(&event_json("a")).unwrap();
        let Verdict::Drop(reason) = chain.run(event, &place) else {
            panic!("not dropped")
        };
        assert_eq!(SEEN.load(std::sync::atomic::Ordering::SeqCst), 1);
        let mut tally = StepTally::default();
        tally.count_drop(reason);
        tally.count_drop(DropReason::POLICY);
        tally.count_dead_letter(DeadLetterKind::Unrouted);
        assert_eq!(tally.dropped_other[&DropReason::new("all_dropped")], 1);
        assert_eq!((tally.policy_dropped, tally.unrouted), (1, 1));
    }
}

//! Alerts on critical audit Events: rules (`AUDIT_ALERTS`) matched on every converted Event,
//! cards posted to Microsoft Teams, Slack or a webhook while the invocation runs.
//!
//! An alert destination receives a copy of the Events; audit delivery never waits for it and
//! never fails because of it. Cards go out in parallel with delivery, with their own retries
//! ([`notify`]) within the invocation's deadline; a card that cannot be sent becomes one
//! dead letter of kind `alert` per Event (rule, notifier, the Event), returned with the
//! invocation's other dead letters, and `resend` sends them to their notifier again.
//!
//! - [`rules`]: the document, checked at start-up;
//! - [`matcher`]: a rule's `match`, decided by the Policy checker's code;
//! - [`card`]: what a card says, per notifier kind;
//! - [`group`]: one card per rule, notifier and grouping window;
//! - [`notify`]: the POST and its retries.

pub mod card;
pub mod group;
pub mod matcher;
pub mod notify;
pub mod rules;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::audit::AuditEvent;
use crate::deadletter::{DeadLetter, DeadLetterKind};
use crate::delivery::RetrySettings;
pub use card::{Card, Facts};
use group::{Admit, Grouper, Key};
pub use matcher::{AlertMatch, EventView};
pub use notify::{NotSent, Notifier};
pub use rules::{AlertRule, AlertRules, NotifierKind, Severity};

/// The dead-letter kind of an alert that could not be sent.
pub const DEAD_LETTER_KIND: DeadLetterKind = DeadLetterKind::Alert;
/// Dead letters of held cards that failed, kept until an invocation returns them.
pub const MAX_UNRETURNED: usize = 10_000;

/// One Event matched by one rule.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The rule's index in [`AlertRules::rules`].
    pub rule: usize,
    /// The Event, as converted.
    pub event: AuditEvent,
    /// What its card says.
    pub facts: Facts,
}

impl Hit {
    /// `auditID/stage`: what makes an Event unique.
    pub fn identity(&self) -> String {
        if self.facts.audit_id.is_empty() {
            return String::new();
        }
        format!("{}/{}", self.facts.audit_id, self.facts.stage)
    }
}

impl AlertRules {
    /// The Events each rule matches, in Event order, each Event's rules in document order. An
    /// Event whose fields cannot be read as an audit Event's matches nothing. CPU-bound, like
    /// conversion.
    pub fn select(&self, events: &[AuditEvent]) -> Vec<Hit> {
        let mut hits = Vec::new();
        for event in events {
            let Ok(view) = serde_json::from_str::<EventView<'_>>(event.json()) else {
                continue;
            };
            for (rule, r) in self.rules.iter().enumerate() {
                if r.matcher.matches(&view) {
                    hits.push(Hit {
                        rule,
                        event: event.clone(),
                        facts: Facts::of(event, &view),
                    });
                }
            }
        }
        hits
    }

    /// The card of matches of rule `rule` (facts and Events in the same order).
    pub fn card<'a>(
        &'a self,
        rule: usize,
        facts: &'a [Facts],
        events: &'a [AuditEvent],
    ) -> Card<'a> {
        let r = &self.rules[rule];
        Card {
            rule: &r.name,
            severity: r.severity,
            facts,
            events,
            listed: self.listed,
            uncounted: 0,
        }
    }
}

/// The rules with their notifiers' clients and the grouping state, shared by all invocations.
#[derive(Debug)]
pub struct Alerter {
    rules: Arc<AlertRules>,
    notifiers: Vec<Notifier>,
    grouper: Mutex<Grouper>,
    /// How long a held card may take to send, retries included.
    held_budget: Duration,
    /// Dead letters of held cards that could not be sent, for the next invocation's answer.
    unreturned: Mutex<Vec<DeadLetter>>,
}

/// Rules matching Events of one invocation, and how each card went.
#[derive(Debug, Default)]
pub struct AlertOutcome {
    /// Cards sent.
    pub sent: u64,
    /// Events held for the card at the end of their grouping window.
    pub held: u64,
    /// Cards that could not be sent (their Events are dead letters).
    pub failed: u64,
    /// `alert` dead letters, this invocation's and those of failed held cards.
    pub dead_letters: Vec<DeadLetter>,
}

impl Alerter {
    /// Builds one client per notifier. `retry` gives the backoff; `held_budget` bounds the
    /// sending of a held card.
    ///
    /// # Errors
    /// When a client cannot be built.
    pub fn new(
        rules: Arc<AlertRules>,
        retry: RetrySettings,
        held_budget: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let notifiers = rules
            .notifiers
            .iter()
            .map(|n| Notifier::new(n, retry))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(Self {
            grouper: Mutex::new(Grouper::new(rules.window)),
            rules,
            notifiers,
            held_budget,
            unreturned: Mutex::default(),
        }))
    }

    /// The rules.
    pub fn rules(&self) -> &AlertRules {
        &self.rules
    }

    /// The notifiers, in document order.
    pub fn notifiers(&self) -> &[Notifier] {
        &self.notifiers
    }

    /// The Events each rule matches ([`AlertRules::select`]).
    pub fn select(&self, events: &[AuditEvent]) -> Vec<Hit> {
        self.rules.select(events)
    }

    /// The card of one rule's matches ([`AlertRules::card`]).
    pub fn card<'a>(
        &'a self,
        rule: usize,
        facts: &'a [Facts],
        events: &'a [AuditEvent],
    ) -> Card<'a> {
        self.rules.card(rule, facts, events)
    }

    /// Sends one card of `hits` (one rule) to notifier `notifier`; on failure, the dead
    /// letters of its Events.
    pub async fn send_card(
        &self,
        notifier: usize,
        hits: &[Hit],
        uncounted: usize,
        deadline: Instant,
    ) -> Result<(), Vec<DeadLetter>> {
        let Some(first) = hits.first() else {
            return Ok(());
        };
        let facts: Vec<Facts> = hits.iter().map(|h| h.facts.clone()).collect();
        let events: Vec<AuditEvent> = hits.iter().map(|h| h.event.clone()).collect();
        let mut card = self.card(first.rule, &facts, &events);
        card.uncounted = uncounted;
        let n = &self.notifiers[notifier];
        let body = Bytes::from(card.body(n.kind).to_string());
        match n.send(body, deadline).await {
            Ok(_) => Ok(()),
            Err(NotSent { reason, attempts }) => {
                let rule = &self.rules.rules[first.rule].name;
                tracing::error!(
                    rule = %rule,
                    notifier = %n.name,
                    events = hits.len(),
                    attempts,
                    %reason,
                    "An alert card could not be sent; its Events are dead-lettered (kind alert)."
                );
                Err(hits
                    .iter()
                    .map(|h| {
                        let mut d = DeadLetter::for_event(
                            &h.event,
                            DEAD_LETTER_KIND,
                            format!("notifier {}: {reason} ({attempts} attempts)", n.name),
                        );
                        d.rule = Some(rule.clone());
                        d.notifier = Some(n.name.clone());
                        d
                    })
                    .collect())
            }
        }
    }

    /// Sends the cards of one invocation's matches before `deadline`: one card per rule and
    /// notifier, or held for the card at the end of the grouping window. Returns when every
    /// card of this invocation has a result.
    pub async fn run(self: &Arc<Self>, hits: Vec<Hit>, deadline: Instant) -> AlertOutcome {
        let mut by_key: BTreeMap<Key, Vec<Hit>> = BTreeMap::new();
        for hit in hits {
            for &notifier in &self.rules.rules[hit.rule].notify {
                by_key
                    .entry((hit.rule, notifier))
                    .or_default()
                    .push(hit.clone());
            }
        }
        let mut outcome = AlertOutcome::default();
        let mut now_cards = Vec::new();
        let now = Instant::now();
        for (key, hits) in by_key {
            let count = hits.len() as u64;
            let admitted = match self.grouper.lock() {
                Ok(mut g) => g.admit(key, hits, now),
                Err(poisoned) => poisoned.into_inner().admit(key, hits, now),
            };
            match admitted {
                Admit::Now(hits) => now_cards.push((key, hits)),
                Admit::Held(at) => {
                    outcome.held += count;
                    if let Some(at) = at {
                        self.schedule_held(key, at);
                    }
                }
                Admit::Seen => {}
            }
        }
        let sends = now_cards.iter().map(|(key, hits)| async move {
            let result = self.send_card(key.1, hits, 0, deadline).await;
            if result.is_err() {
                self.with_grouper(|g| g.forget(*key, hits));
            }
            result
        });
        for result in futures::future::join_all(sends).await {
            match result {
                Ok(()) => outcome.sent += 1,
                Err(letters) => {
                    outcome.failed += 1;
                    outcome.dead_letters.extend(letters);
                }
            }
        }
        if let Ok(mut kept) = self.unreturned.lock() {
            outcome.dead_letters.append(&mut kept);
        }
        outcome
    }

    /// Sends `alert` dead letters to their notifier again, one card per rule and notifier
    /// (no grouping window: an operator asked for it). Returns how many Events were sent and
    /// the items still not sent (an unknown rule or notifier, no Event, or a failed card).
    pub async fn resend(
        &self,
        items: Vec<DeadLetter>,
        deadline: Instant,
    ) -> (u64, Vec<DeadLetter>) {
        let mut left = Vec::new();
        let mut groups: BTreeMap<Key, (Vec<Hit>, Vec<DeadLetter>)> = BTreeMap::new();
        for item in items {
            let rule = self
                .rules
                .rules
                .iter()
                .position(|r| Some(&r.name) == item.rule.as_ref());
            let notifier = self
                .notifiers
                .iter()
                .position(|n| Some(&n.name) == item.notifier.as_ref());
            let event = item
                .event
                .as_ref()
                .and_then(|raw| AuditEvent::parse(raw.get()).ok());
            let (Some(rule), Some(notifier), Some(event)) = (rule, notifier, event) else {
                let mut item = item;
                item.reason = "resend: its rule or notifier is no longer in AUDIT_ALERTS, or it holds no Event".into();
                left.push(item);
                continue;
            };
            let event =
                event.with_source(std::sync::Arc::from(item.cluster.as_deref().unwrap_or("")));
            let text = event.json().to_string();
            let view: EventView<'_> = serde_json::from_str(&text).unwrap_or_default();
            let facts = Facts::of(&event, &view);
            let group = groups.entry((rule, notifier)).or_default();
            group.0.push(Hit { rule, event, facts });
            group.1.push(item);
        }
        let mut sent = 0;
        for ((_, notifier), (hits, items)) in groups {
            match self.send_card(notifier, &hits, 0, deadline).await {
                Ok(()) => sent += hits.len() as u64,
                Err(letters) => {
                    left.extend(letters.into_iter().zip(items).map(|(new, mut old)| {
                        old.reason = format!("resend: {}", new.reason);
                        old
                    }))
                }
            }
        }
        (sent, left)
    }

    fn with_grouper<T>(&self, f: impl FnOnce(&mut Grouper) -> T) -> T {
        match self.grouper.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Sends the held card of `key` at `at`, in the background. If it fails, its dead
    /// letters wait for the next invocation's answer (at most [`MAX_UNRETURNED`]).
    fn schedule_held(self: &Arc<Self>, key: Key, at: Instant) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let now = Instant::now();
            let (hits, uncounted) = this.with_grouper(|g| g.take_held(key, now));
            let deadline = now + this.held_budget;
            if let Err(letters) = this.send_card(key.1, &hits, uncounted, deadline).await {
                if let Ok(mut kept) = this.unreturned.lock() {
                    let room = MAX_UNRETURNED.saturating_sub(kept.len());
                    if letters.len() > room {
                        tracing::error!(
                            lost = letters.len() - room,
                            "Alert dead letters over the limit kept between invocations are logged only."
                        );
                    }
                    kept.extend(letters.into_iter().take(room));
                }
            }
        });
    }
}

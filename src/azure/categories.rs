//! `kube-audit` and `kube-audit-admin` from one cluster: `kube-audit-admin` is `kube-audit`
//! without `get` and `list`, so a diagnostic setting streaming both sends every other Event
//! twice, and receivers such as Falco do not de-duplicate (their rules fire twice).
//!
//! Within an invocation the second copy (same cluster and the very same Event text, byte for
//! byte) is dropped. Never by `auditID` and `stage` alone: a client sets `auditID` with its
//! `Audit-ID` header (kube-apiserver takes it unvalidated), so two different requests can
//! share them, and dropping one would hide it.
//! Copies in different invocations or partitions cannot be seen together, so the lasting fix
//! is to stream one category; the forwarder names it in a warning, once per cluster.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::audit::AuditEvent;

/// The category of every audit Event.
pub const KUBE_AUDIT: &str = "kube-audit";
/// Every audit Event but `get` and `list`.
pub const KUBE_AUDIT_ADMIN: &str = "kube-audit-admin";

/// The category's canonical name when it is one of the two audit categories, else `""`.
pub fn canonical(category: &str) -> &'static str {
    if category.eq_ignore_ascii_case(KUBE_AUDIT) {
        KUBE_AUDIT
    } else if category.eq_ignore_ascii_case(KUBE_AUDIT_ADMIN) {
        KUBE_AUDIT_ADMIN
    } else {
        ""
    }
}

/// Which of the two audit categories each source (record `resourceId`, lower-cased; `""`
/// when none) sent in one invocation.
#[derive(Debug, Default, Clone)]
pub struct CategoriesSeen(BTreeMap<Arc<str>, u8>);

impl CategoriesSeen {
    /// Notes one record of `category` from `source`.
    pub fn note(&mut self, source: Option<&Arc<str>>, category: &str) {
        let bit = if category.eq_ignore_ascii_case(KUBE_AUDIT) {
            1
        } else if category.eq_ignore_ascii_case(KUBE_AUDIT_ADMIN) {
            2
        } else {
            return;
        };
        let source = source.cloned().unwrap_or_else(|| Arc::from(""));
        *self.0.entry(source).or_default() |= bit;
    }

    /// Sources that sent both categories.
    pub fn both(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().filter(|(_, b)| **b == 3).map(|(s, _)| s)
    }
}

/// Tells the later copies of an Event (same source, byte-equal Event text) from the sources
/// that sent both categories in one invocation, Event by Event.
#[derive(Debug, Default)]
pub struct CategoryCopies {
    /// Sources that sent both categories.
    both: HashSet<Arc<str>>,
    /// `(source, Event text)` of every Event of those sources seen so far.
    keys: HashSet<(Arc<str>, Box<str>)>,
}

impl CategoryCopies {
    /// Copies are looked for only among the sources `seen` sending both categories.
    pub fn new(seen: &CategoriesSeen) -> Self {
        Self {
            both: seen.both().cloned().collect(),
            keys: HashSet::new(),
        }
    }

    /// Whether `event` is a later copy of an Event seen before (the same source and the very
    /// same text); the first copy is remembered.
    pub fn is_later_copy(&mut self, event: &AuditEvent) -> bool {
        if self.both.is_empty() {
            return false;
        }
        let source = event.source().cloned().unwrap_or_else(|| Arc::from(""));
        if !self.both.contains(&source) {
            return false;
        }
        !self.keys.insert((source, Box::from(event.json())))
    }
}

/// Drops every later copy of an Event (same source, byte-equal text) from the sources
/// that sent both categories; returns how many were dropped. Order is kept.
pub fn drop_category_duplicates(events: &mut Vec<AuditEvent>, seen: &CategoriesSeen) -> u64 {
    let mut copies = CategoryCopies::new(seen);
    let before = events.len();
    events.retain(|event| !copies.is_later_copy(event));
    (before - events.len()) as u64
}

/// The warning, naming the fix, for a cluster seen streaming both categories.
pub fn both_categories_warning(source: &str) {
    tracing::warn!(
        cluster = %source,
        "This cluster streams both kube-audit and kube-audit-admin, so every Event but get and \
         list arrives twice. Copies within one invocation are delivered once; copies in \
         different invocations or partitions cannot be matched. Fix: stream one category in \
         the cluster's diagnostic setting (kube-audit-admin, or kube-audit to keep get and \
         list), or set AUDIT_CATEGORIES to the one to forward."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;

    fn from(source: &Arc<str>, id: &str) -> AuditEvent {
        AuditEvent::parse(&event_json(id))
            .unwrap()
            .with_source(source.clone())
    }

    #[test]
    fn only_sources_with_both_categories_are_deduplicated() {
        let a: Arc<str> = Arc::from("/subscriptions/1/x/managedclusters/a");
        let b: Arc<str> = Arc::from("/subscriptions/1/x/managedclusters/b");
        let mut seen = CategoriesSeen::default();
        seen.note(Some(&a), "kube-audit");
        seen.note(Some(&a), "KUBE-AUDIT-ADMIN");
        seen.note(Some(&b), "kube-audit");
        assert_eq!(seen.both().collect::<Vec<_>>(), [&a]);
        let mut events = vec![
            from(&a, "1"),
            from(&b, "1"),
            from(&a, "1"),
            from(&b, "1"),
            from(&a, "2"),
        ];
        assert_eq!(drop_category_duplicates(&mut events, &seen), 1);
        let ids: Vec<(&str, bool)> = events
            .iter()
            .map(|e| {
                (
                    &**e.source().unwrap(),
                    e.json().contains(r#""auditID":"1""#),
                )
            })
            .collect();
        assert_eq!(ids, [(&*a, true), (&*b, true), (&*b, true), (&*a, false)]);
    }

    /// Row 5 of the second adversarial review: two different Events sharing an `auditID` and
    /// a stage (a client chose the `Audit-ID` header) are both kept; only a byte-equal copy
    /// from the same source is dropped.
    #[test]
    fn r18_5_a_shared_audit_id_never_drops_a_different_event() {
        let a: Arc<str> = Arc::from("/subscriptions/1/x/managedclusters/a");
        let mut seen = CategoriesSeen::default();
        seen.note(Some(&a), "kube-audit");
        seen.note(Some(&a), "kube-audit-admin");
        let harmless = event_json("same");
        let destructive = harmless.replace(r#""verb":"create""#, r#""verb":"delete""#);
        assert_ne!(harmless, destructive, "the fixture must differ");
        let parse = |text: &str| AuditEvent::parse(text).unwrap().with_source(a.clone());
        let mut events = vec![parse(&harmless), parse(&destructive), parse(&harmless)];
        assert_eq!(drop_category_duplicates(&mut events, &seen), 1);
        let texts: Vec<&str> = events.iter().map(AuditEvent::json).collect();
        assert_eq!(texts, [harmless.as_str(), destructive.as_str()]);
    }
}

//! The demo's check: what the input holds, read with `serde_json` alone (not with the
//! handler's converter), against the exact text of every Event the receiver got.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The categories whose records are audit Events (`AUDIT_CATEGORIES`' default).
const AUDIT_CATEGORIES: [&str; 2] = ["kube-audit", "kube-audit-admin"];

/// What the input holds, read with `serde_json` alone, not with the handler's converter: the
/// exact text of each audit Event by `(auditID, stage)`, and the counts the picture shows.
#[derive(Debug, Default)]
pub(super) struct Expectation {
    /// `(auditID, stage)` → every text the input holds for it (copies in both categories).
    pub(super) events: BTreeMap<(String, String), BTreeSet<String>>,
    pub(super) bodies: usize,
    pub(super) records: usize,
    pub(super) other_categories: usize,
    pub(super) copies: usize,
    pub(super) malformed_records: usize,
    pub(super) malformed_bodies: usize,
}

impl Expectation {
    pub(super) fn of(bodies: &[Vec<u8>]) -> Self {
        let mut e = Self {
            bodies: bodies.len(),
            ..Self::default()
        };
        for body in bodies {
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            let Some(records) = parsed.as_ref().and_then(|v| v["records"].as_array()) else {
                e.malformed_bodies += 1;
                continue;
            };
            e.records += records.len();
            for record in records {
                e.record(record);
            }
        }
        e
    }

    fn record(&mut self, record: &Value) {
        let category = record["category"].as_str().unwrap_or_default();
        if !AUDIT_CATEGORIES.contains(&category) {
            self.other_categories += 1;
            return;
        }
        // The Event is the JSON object: the API server's line ends in a newline, which is
        // not part of it.
        let log = record["properties"]["log"]
            .as_str()
            .unwrap_or_default()
            .trim();
        let event: Option<Value> = serde_json::from_str(log).ok();
        let key = event.as_ref().and_then(|v| {
            let id = v["auditID"].as_str()?;
            let stage = v["stage"].as_str()?;
            (v["kind"] == "Event").then(|| (id.to_string(), stage.to_string()))
        });
        let Some(key) = key else {
            self.malformed_records += 1;
            return;
        };
        let texts = self.events.entry(key).or_default();
        if !texts.is_empty() {
            self.copies += 1;
        }
        texts.insert(log.to_string());
    }

    /// What differs between the Events received (their exact text) and the input.
    pub(super) fn compare(&self, received: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for text in received {
            let event: Value = serde_json::from_str(text).unwrap_or_default();
            let id = event["auditID"].as_str().unwrap_or("?").to_string();
            let stage = event["stage"].as_str().unwrap_or("?").to_string();
            let key = (id, stage);
            match self.events.get(&key) {
                None => problems.push(format!("an Event the input does not hold: {key:?}")),
                Some(texts) if !texts.contains(text) => {
                    problems.push(format!("{key:?} arrived with other bytes than the input's"));
                }
                Some(_) => {}
            }
            if !seen.insert(key.clone()) {
                problems.push(format!("{key:?} arrived more than once"));
            }
        }
        for key in self.events.keys().filter(|k| !seen.contains(*k)) {
            problems.push(format!("{key:?} never arrived"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::hostsim::load_bodies;
    use crate::tools::SAMPLES;

    /// The bundled samples hold every case the demo claims to show, read without the
    /// converter.
    #[test]
    fn samples_cover_each_case() {
        let bodies = load_bodies(SAMPLES, 50).unwrap();
        let e = Expectation::of(&bodies);
        assert_eq!((e.bodies, e.records), (3, 11));
        assert_eq!(e.events.len(), 8);
        assert_eq!(e.copies, 0);
        assert_eq!(e.other_categories, 2);
        assert_eq!((e.malformed_records, e.malformed_bodies), (1, 1));
    }

    /// The check fails on a lost, a repeated, a changed and a foreign Event, and passes on
    /// exactly the input's Events.
    #[test]
    fn the_check_catches_each_difference() {
        let bodies = load_bodies(SAMPLES, 50).unwrap();
        let e = Expectation::of(&bodies);
        let all: Vec<String> = e
            .events
            .values()
            .map(|t| t.iter().next().unwrap().clone())
            .collect();
        assert!(e.compare(&all).is_empty());
        let lost = &all[1..];
        assert!(e.compare(lost)[0].contains("never arrived"));
        let mut twice = all.clone();
        twice[0].clone_from(&all[1]);
        let found = e.compare(&twice).join("\n");
        assert!(
            found.contains("more than once") && found.contains("never arrived"),
            "{found}"
        );
        let mut changed = all.clone();
        changed[0] = changed[0].replacen("{\"kind\"", "{ \"kind\"", 1);
        assert!(e.compare(&changed)[0].contains("other bytes"));
        let mut foreign = all.clone();
        foreign.push(all[0].replace(&e.events.keys().next().unwrap().0, "foreign-id"));
        assert!(e.compare(&foreign)[0].contains("does not hold"));
    }
}

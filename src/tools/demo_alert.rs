//! The demo's alert: one rule (changes in `kube-system`, to a Teams channel) fired on the
//! demo's input, and the card it would send printed. With `AUDIT_ALERTS` set, the handler
//! posts that card while it delivers (docs/alerts.md).

use std::collections::BTreeSet;

use crate::alerts::{AlertRules, NotifierKind};
use crate::azure::{convert_body, BodyOrigin, Conversion, DEFAULT_CATEGORIES};

/// The demo's alert rule document.
const DEMO_ALERTS: &str = "notifiers:\n  - {name: secops, type: teams, url: \"https://example.invalid/teams-workflow\"}\nrules:\n  - name: kube-system-changed\n    notify: [secops]\n    severity: high\n    match:\n      verbs: [create, update, patch, delete]\n      namespaces: [kube-system]\n";

/// Fires the demo's alert rule on `bodies` and prints the Teams card it would send: its text
/// blocks and facts, read back from the Adaptive Card itself, within 100 columns.
///
/// # Errors
/// When the demo's rule does not parse (a bug).
pub fn print_alert_card(bodies: &[Vec<u8>]) -> anyhow::Result<()> {
    let (matched, card) = alert_card(bodies)?;
    outln!("demo: alert rule kube-system-changed (see docs/alerts.md) matches {matched} Event(s)");
    let Some(card) = card else { return Ok(()) };
    outln!(
        "demo: the Teams card it would send ({} bytes of Adaptive Card JSON):",
        card.to_string().len()
    );
    let empty = Vec::new();
    let blocks = card["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap_or(&empty);
    for block in blocks {
        if let Some(text) = block["text"].as_str() {
            outln!("  │ {}", clip(text, 94));
        }
        for fact in block["facts"].as_array().unwrap_or(&empty) {
            let title = fact["title"].as_str().unwrap_or("");
            let value = fact["value"].as_str().unwrap_or("");
            outln!("  │ {title:<14} {}", clip(value, 79));
        }
    }
    Ok(())
}

/// `text` cut to `max` characters, `…` marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// How many Events of `bodies` the demo's alert rule matches, and the Teams card of them.
fn alert_card(bodies: &[Vec<u8>]) -> anyhow::Result<(usize, Option<serde_json::Value>)> {
    let rules = AlertRules::parse(DEMO_ALERTS, &|_| None).map_err(anyhow::Error::msg)?;
    let categories: BTreeSet<String> = DEFAULT_CATEGORIES.split(',').map(str::to_owned).collect();
    let mut conversion = Conversion::default();
    // The handler already printed the converter's warnings about this input.
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    for (index, body) in bodies.iter().enumerate() {
        let origin = BodyOrigin {
            index,
            sequence_number: None,
        };
        convert_body(body, origin, &categories, &mut conversion);
    }
    let hits = rules.select(&conversion.events);
    if hits.is_empty() {
        return Ok((0, None));
    }
    let facts: Vec<_> = hits.iter().map(|h| h.facts.clone()).collect();
    let events: Vec<_> = hits.iter().map(|h| h.event.clone()).collect();
    let card = rules.card(0, &facts, &events).body(NotifierKind::Teams);
    Ok((hits.len(), Some(card)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::hostsim::load_bodies;
    use crate::tools::SAMPLES;

    /// The demo's alert rule fires on Bob's patch of the coredns-custom ConfigMap in
    /// kube-system, and only on it; its card is an Adaptive Card naming who, what and where.
    #[test]
    fn the_demo_alert_rule_fires_on_the_samples() {
        let bodies = load_bodies(SAMPLES, 50).unwrap();
        let (matched, card) = alert_card(&bodies).unwrap();
        assert_eq!(matched, 1);
        let card = card.unwrap();
        assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
        let text = card.to_string();
        for want in [
            "kube-system-changed",
            "bob@contoso.com",
            "patch",
            "coredns-custom",
            "kube-system",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }
}

//! What an alert says, and the bodies each notifier kind is sent.
//!
//! Each matched Event is summed up in [`Facts`], the answers to the questions a security team
//! asks of an audit record: what happened (verb, resource, subresource, name, namespace,
//! response code), when (`stageTimestamp`), who (user, groups, impersonated user), where
//! (cluster name and resource id), from where (source IPs, user agent), and the `auditID`.
//!
//! - `teams`: `{"type":"message","attachments":[{"contentType":
//!   "application/vnd.microsoft.card.adaptive","content":{AdaptiveCard 1.4}}]}`, which a Teams
//!   Workflows "post to a channel when a webhook request is received" flow and a classic
//!   incoming webhook both accept;
//! - `slack`: `text` (the notification line) and `blocks` (header, one section per Event);
//! - `webhook`: `{"rule","severity","cluster","resourceId","count","events":[…]}` with the
//!   Events themselves, for SOAR tools.
//!
//! A card lists at most `grouping.listed` Events and counts the rest ("and N more").

use serde_json::{json, Value};

use super::matcher::EventView;
use super::rules::{NotifierKind, Severity};
use crate::audit::AuditEvent;
use crate::azure::ClusterId;

/// Events carried in full by one `webhook` body; the rest are counted in `omitted`.
pub const WEBHOOK_MAX_EVENTS: usize = 100;

/// One matched Event, summed up for a card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `auditID`.
    pub audit_id: String,
    /// `stage`.
    pub stage: String,
    /// `stageTimestamp`.
    pub when: String,
    /// The authenticated user.
    pub user: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// The impersonated user, when there was one.
    pub impersonated_user: Option<String>,
    /// The verb as recorded.
    pub verb: String,
    /// `resource` (with its API group, `deployments.apps`), or the path of a non-resource request.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `responseStatus.code`.
    pub code: Option<i64>,
    /// The cluster name.
    pub cluster: String,
    /// The cluster's resource id, as Azure Monitor recorded it.
    pub resource_id: String,
    /// `sourceIPs`.
    pub source_ips: Vec<String>,
    /// `userAgent`.
    pub user_agent: String,
}

impl Facts {
    /// The facts of an Event read into `view`.
    pub fn of(event: &AuditEvent, view: &EventView<'_>) -> Self {
        let s = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().unwrap_or("").to_string();
        let o = view.object_ref.as_ref();
        let group = o.map(|o| s(&o.api_group)).unwrap_or_default();
        let resource = o.map(|o| s(&o.resource)).unwrap_or_default();
        let resource = match (resource.is_empty(), group.is_empty()) {
            (true, _) => s(&view.request_uri)
                .split('?')
                .next()
                .unwrap_or("")
                .to_string(),
            (false, true) => resource,
            (false, false) => format!("{resource}.{group}"),
        };
        let source = event.source().map(|s| s.to_string()).unwrap_or_default();
        Self {
            audit_id: s(&view.audit_id),
            stage: s(&view.stage),
            when: s(&view.stage_timestamp),
            user: view
                .user
                .as_ref()
                .map(|u| s(&u.username))
                .unwrap_or_default(),
            groups: view
                .user
                .as_ref()
                .map(|u| u.groups.iter().map(|g| g.to_string()).collect())
                .unwrap_or_default(),
            impersonated_user: view
                .impersonated_user
                .as_ref()
                .and_then(|u| u.username.as_deref().map(str::to_string)),
            verb: s(&view.verb),
            resource,
            subresource: o.map(|o| s(&o.subresource)).unwrap_or_default(),
            name: o.map(|o| s(&o.name)).unwrap_or_default(),
            namespace: o.map(|o| s(&o.namespace)).unwrap_or_default(),
            code: view.response_status.as_ref().and_then(|r| r.code),
            cluster: ClusterId::parse(&source).name,
            resource_id: source,
            source_ips: view
                .source_ips
                .as_ref()
                .map(|ips| ips.iter().map(|i| i.to_string()).collect())
                .unwrap_or_default(),
            user_agent: s(&view.user_agent),
        }
    }

    /// One line: `alice patch deployments.apps/coredns in kube-system (200) on aks-prod`.
    pub fn line(&self) -> String {
        let mut out = format!("{} {} {}", or_dash(&self.user), self.verb, self.resource);
        if !self.subresource.is_empty() {
            out = format!("{out}/{}", self.subresource);
        }
        if !self.name.is_empty() {
            out = format!("{out} {}", self.name);
        }
        if !self.namespace.is_empty() {
            out = format!("{out} in {}", self.namespace);
        }
        if let Some(code) = self.code {
            out = format!("{out} ({code})");
        }
        if !self.cluster.is_empty() {
            out = format!("{out} on {}", self.cluster);
        }
        out
    }

    /// (title, value) pairs, in the order a card shows them; empty values left out.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut who = or_dash(&self.user).to_string();
        if let Some(as_user) = &self.impersonated_user {
            who = format!("{who} as {as_user}");
        }
        let what = [
            self.verb.as_str(),
            self.resource.as_str(),
            self.subresource.as_str(),
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
        let all = [
            ("User", who),
            ("Groups", self.groups.join(", ")),
            ("Verb", what),
            ("Name", self.name.clone()),
            ("Namespace", self.namespace.clone()),
            (
                "Response code",
                self.code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("When", self.when.clone()),
            ("Cluster", self.cluster.clone()),
            ("Resource ID", self.resource_id.clone()),
            ("Source IPs", self.source_ips.join(", ")),
            ("User agent", self.user_agent.clone()),
            ("Audit ID", format!("{} ({})", self.audit_id, self.stage)),
        ];
        all.into_iter().filter(|(_, v)| !v.is_empty()).collect()
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// One card: a rule's matched Events for one notifier.
#[derive(Debug, Clone, Copy)]
pub struct Card<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// Its severity.
    pub severity: Severity,
    /// The Events' facts, all of them (the card lists the first `listed`).
    pub facts: &'a [Facts],
    /// The Events, for `webhook` bodies.
    pub events: &'a [AuditEvent],
    /// Events listed in the card.
    pub listed: usize,
    /// Events grouped into this card beyond `facts` (counted only).
    pub uncounted: usize,
}

impl Card<'_> {
    fn total(&self) -> usize {
        self.facts.len() + self.uncounted
    }

    fn more(&self) -> usize {
        self.total()
            .saturating_sub(self.listed.min(self.facts.len()))
    }

    /// `coredns-changed (high): alice patch deployments.apps coredns in kube-system …`.
    pub fn headline(&self) -> String {
        let first = self.facts.first().map(Facts::line).unwrap_or_default();
        match self.total() {
            0 | 1 => format!("{} ({}): {first}", self.rule, self.severity.name()),
            n => format!(
                "{} ({}): {n} audit Events, the first: {first}",
                self.rule,
                self.severity.name()
            ),
        }
    }

    /// The body for `kind`.
    pub fn body(&self, kind: NotifierKind) -> Value {
        match kind {
            NotifierKind::Teams => self.teams(),
            NotifierKind::Slack => self.slack(),
            NotifierKind::Webhook => self.webhook(),
        }
    }

    fn teams(&self) -> Value {
        let color = match self.severity {
            Severity::High | Severity::Critical => "Attention",
            Severity::Medium => "Warning",
            Severity::Info | Severity::Low => "Default",
        };
        let mut body = vec![
            json!({"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                   "color": color,
                   "text": format!("Audit alert: {} ({})", self.rule, self.severity.name())}),
            json!({"type": "TextBlock", "wrap": true, "text": self.headline()}),
        ];
        for f in self.facts.iter().take(self.listed) {
            let facts: Vec<Value> = f
                .pairs()
                .into_iter()
                .map(|(t, v)| json!({"title": t, "value": v}))
                .collect();
            body.push(json!({"type": "FactSet", "separator": true, "facts": facts}));
        }
        if self.more() > 0 {
            body.push(json!({"type": "TextBlock", "isSubtle": true, "wrap": true,
                             "text": format!("and {} more", self.more())}));
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": body
                }
            }]
        })
    }

    fn slack(&self) -> Value {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text",
            "text": format!("Audit alert: {} ({})", self.rule, self.severity.name())}})];
        for f in self.facts.iter().take(self.listed) {
            // A section holds at most 10 fields.
            for chunk in f.pairs().chunks(10) {
                let fields: Vec<Value> = chunk
                    .iter()
                    .map(|(t, v)| json!({"type": "mrkdwn", "text": format!("*{t}*\n{}", esc(v))}))
                    .collect();
                blocks.push(json!({"type": "section", "fields": fields}));
            }
            blocks.push(json!({"type": "divider"}));
        }
        if self.more() > 0 {
            blocks.push(json!({"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("and {} more", self.more())}]}));
        }
        json!({"text": esc(&self.headline()), "blocks": blocks})
    }

    fn webhook(&self) -> Value {
        let events: Vec<Value> = self
            .events
            .iter()
            .take(WEBHOOK_MAX_EVENTS)
            .filter_map(|e| serde_json::from_str(e.json()).ok())
            .collect();
        let first = self.facts.first().cloned().unwrap_or_default();
        json!({
            "rule": self.rule,
            "severity": self.severity.name(),
            "cluster": first.cluster,
            "resourceId": first.resource_id,
            "count": self.total(),
            "omitted": self.total().saturating_sub(events.len()),
            "events": events,
        })
    }
}

/// The test card `check-config --probe` sends: a card of the notifier's kind that says it is
/// a test and that no audit Event matched.
pub fn probe_body(kind: NotifierKind) -> Value {
    let facts = [Facts {
        audit_id: "probe".into(),
        stage: "test".into(),
        user: "check-config --probe".into(),
        verb: "test".into(),
        resource: "a test card from aks-audit-forwarder: no audit Event matched".into(),
        ..Facts::default()
    }];
    Card {
        rule: "check-config probe",
        severity: Severity::Info,
        facts: &facts,
        events: &[],
        listed: 1,
        uncounted: 0,
    }
    .body(kind)
}

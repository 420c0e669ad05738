//! The alert rules document (`AUDIT_ALERTS`, YAML or JSON): notifiers, rules and the grouping
//! window, read with the forwarder's one YAML loader (its budgets, merge keys resolved) and
//! checked once at start-up. Every error names the rule or notifier and, where the
//! text tells it, the line; a notifier's URL is never part of an error.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use url::Url;

use super::matcher::{AlertMatch, MatchDoc};

/// Most notifiers and rules one document may hold.
pub const MAX_NOTIFIERS: usize = 100;
/// See [`MAX_NOTIFIERS`].
pub const MAX_RULES: usize = 1000;
/// Alerts of one rule to one notifier within this time after a card are grouped into the next
/// card (the first one goes out at once).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Longest grouping window accepted.
pub const MAX_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Events listed in one card by default; the rest are counted ("and N more").
pub const DEFAULT_LISTED: usize = 10;
/// Most Events one card may list (Slack allows 50 blocks per message).
pub const MAX_LISTED: usize = 20;

/// Where alerts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierKind {
    /// A Microsoft Teams Workflows webhook or a classic incoming webhook: an Adaptive Card.
    Teams,
    /// A Slack incoming webhook: `text` and `blocks`.
    Slack,
    /// Any HTTP endpoint (SOAR tools): JSON with the rule, severity, cluster and the Events.
    Webhook,
}

impl NotifierKind {
    /// The name used in the document.
    pub fn name(self) -> &'static str {
        match self {
            Self::Teams => "teams",
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }
}

/// A notifier URL: a secret (Teams and Slack URLs carry their credential in the path or the
/// query). `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The URL, for the HTTP client only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One notifier.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Its name: what rules, logs and dead letters say.
    pub name: String,
    /// What it speaks.
    pub kind: NotifierKind,
    /// Where it is (secret).
    pub url: SecretUrl,
}

/// How urgent a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium (the default).
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The name used in the document and on cards.
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// Its name: on cards and in dead letters.
    pub name: String,
    /// Indices into [`AlertRules::notifiers`].
    pub notify: Vec<usize>,
    /// How urgent.
    pub severity: Severity,
    /// Which Events.
    pub matcher: AlertMatch,
}

/// The validated `AUDIT_ALERTS` document.
#[derive(Debug, Clone)]
pub struct AlertRules {
    /// Notifiers, in document order.
    pub notifiers: Vec<NotifierConfig>,
    /// Rules, in document order.
    pub rules: Vec<AlertRule>,
    /// The grouping window.
    pub window: Duration,
    /// Events listed per card.
    pub listed: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Doc {
    notifiers: Vec<NotifierDoc>,
    rules: Vec<RuleDoc>,
    #[serde(default)]
    grouping: Option<GroupingDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GroupingDoc {
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    listed: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NotifierDoc {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    /// The name of an app setting holding the URL (a Key Vault reference in Azure).
    #[serde(default)]
    url_setting: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleDoc {
    name: String,
    notify: Vec<String>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(rename = "match")]
    matcher: MatchDoc,
}

/// The line of the `nth` (from 0) entry named `name` in `text` (after the line opening
/// `section`), for errors found after parsing; `None` when it cannot be told.
fn line_of(text: &str, section: &str, name: &str, nth: usize) -> Option<usize> {
    let start = text
        .lines()
        .position(|l| l.trim_start().starts_with(section))
        .unwrap_or(0);
    text.lines()
        .enumerate()
        .skip(start)
        .filter(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            l.strip_prefix("name:")
                .is_some_and(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == name)
        })
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// A parser message without the values it quotes (a value may be a notifier URL); field
/// names, in backticks, stay, but not the value of an unknown variant.
fn scrub(message: &str) -> String {
    let message = match message.split_once("unknown variant `") {
        Some((head, rest)) => match rest.split_once('`') {
            Some((_, tail)) => format!("{head}unknown variant `…`{tail}"),
            None => head.to_string(),
        },
        None => message.to_string(),
    };
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            out.push_str(if quoted { "…\"" } else { "\"" });
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn notifier(
    n: NotifierDoc,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<NotifierConfig, String> {
    let kind = match n.kind.as_str() {
        "teams" => NotifierKind::Teams,
        "slack" => NotifierKind::Slack,
        "webhook" => NotifierKind::Webhook,
        // The value is not quoted: a URL pasted into the wrong field must not be shown.
        _ => return Err("type must be teams, slack or webhook (the value is not shown)".into()),
    };
    let text = match (n.url, n.url_setting) {
        (Some(url), None) => url,
        (None, Some(setting)) => lookup(&setting)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("app setting {setting} (urlSetting) is not set"))?,
        _ => return Err("set url or urlSetting (one of them)".into()),
    };
    let url = Url::parse(text.trim()).map_err(|_| "url is not a URL (not shown)".to_string())?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback || kind == NotifierKind::Webhook => {}
        _ => {
            return Err(format!(
                "url must be https (a {} URL always is; not shown)",
                kind.name()
            ))
        }
    }
    if url.host_str().is_none() {
        return Err("url has no host (not shown)".into());
    }
    Ok(NotifierConfig {
        name: n.name,
        kind,
        url: SecretUrl(SecretString::from(url.to_string())),
    })
}

/// `grouping`: the window and the Events listed per card, defaults filled in.
fn grouping(doc: Option<GroupingDoc>) -> Result<(Duration, usize), String> {
    let grouping = doc.unwrap_or(GroupingDoc {
        window: None,
        listed: None,
    });
    let window = match grouping.window {
        None => DEFAULT_WINDOW,
        Some(w) => humantime::parse_duration(w.trim())
            .ok()
            .filter(|d| *d <= MAX_WINDOW)
            .ok_or_else(|| {
                format!("grouping.window {w:?}: expected a duration from 0s to 1h, e.g. 60s")
            })?,
    };
    let listed = grouping.listed.unwrap_or(DEFAULT_LISTED);
    if !(1..=MAX_LISTED).contains(&listed) {
        return Err(format!(
            "grouping.listed {listed}: expected 1 to {MAX_LISTED}"
        ));
    }
    Ok((window, listed))
}

impl AlertRules {
    /// Parses and checks a rules document. `lookup` reads the app settings that `urlSetting`
    /// names.
    ///
    /// # Errors
    /// What is wrong, naming the notifier or rule (`rules[1] (coredns-changed), line 9: …`);
    /// never a URL.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let text = text.trim_start_matches('\u{feff}');
        let doc: Doc = crate::audit::yaml::from_str(text).map_err(|e| scrub(&e.0))?;
        if doc.notifiers.is_empty() || doc.notifiers.len() > MAX_NOTIFIERS {
            return Err(format!(
                "notifiers: between 1 and {MAX_NOTIFIERS} are needed"
            ));
        }
        if doc.rules.is_empty() || doc.rules.len() > MAX_RULES {
            return Err(format!("rules: between 1 and {MAX_RULES} are needed"));
        }
        let at = |section: &str, i: usize, name: &str, m: String| match line_of(
            text,
            section,
            name,
            usize::from(m.ends_with("used twice")),
        ) {
            Some(line) => format!("{section}[{i}] ({name}), line {line}: {m}"),
            None => format!("{section}[{i}] ({name}): {m}"),
        };
        let mut notifiers: Vec<NotifierConfig> = Vec::new();
        for (i, n) in doc.notifiers.into_iter().enumerate() {
            let name = n.name.clone();
            if !valid_name(&name) {
                return Err(at(
                    "notifiers",
                    i,
                    &name,
                    "a name is 1-64 letters, digits, - _ .".into(),
                ));
            }
            if notifiers.iter().any(|o| o.name == name) {
                return Err(at("notifiers", i, &name, "the name is used twice".into()));
            }
            notifiers.push(notifier(n, lookup).map_err(|m| at("notifiers", i, &name, m))?);
        }
        let mut rules: Vec<AlertRule> = Vec::new();
        for (i, r) in doc.rules.into_iter().enumerate() {
            let name = r.name.clone();
            let err = |m: String| at("rules", i, &name, m);
            if !valid_name(&name) {
                return Err(err("a name is 1-64 letters, digits, - _ .".into()));
            }
            if rules.iter().any(|o| o.name == name) {
                return Err(err("the name is used twice".into()));
            }
            if r.notify.is_empty() {
                return Err(err("notify: name at least one notifier".into()));
            }
            let mut notify = Vec::new();
            for target in &r.notify {
                let index = notifiers
                    .iter()
                    .position(|n| &n.name == target)
                    .ok_or_else(|| {
                        let known: Vec<&str> = notifiers.iter().map(|n| n.name.as_str()).collect();
                        err(format!(
                            "notify: unknown notifier {target:?} (notifiers: {})",
                            known.join(", ")
                        ))
                    })?;
                if !notify.contains(&index) {
                    notify.push(index);
                }
            }
            let matcher = r
                .matcher
                .compile()
                .map_err(|m| err(format!("match: {m}")))?;
            rules.push(AlertRule {
                name,
                notify,
                severity: r.severity.unwrap_or(Severity::Medium),
                matcher,
            });
        }
        let (window, listed) = grouping(doc.grouping)?;
        Ok(Self {
            notifiers,
            rules,
            window,
            listed,
        })
    }

    /// One line for start-up logs: rules and the notifiers they use, by name.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                let to: Vec<&str> = r
                    .notify
                    .iter()
                    .map(|i| self.notifiers[*i].name.as_str())
                    .collect();
                format!("{} ({}) -> {}", r.name, r.severity.name(), to.join(", "))
            })
            .collect();
        parts.join("; ")
    }
}

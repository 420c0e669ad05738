//! The `match` of an alert rule: the kube-apiserver Policy rule selectors (`users`,
//! `userGroups`, `verbs`, `resources`, `namespaces`, `nonResourceURLs`), decided by the Policy
//! checker's own code on the same [`RequestInfo`](crate::audit::policy::RequestInfo), plus
//! four fields a Policy cannot say and alerting needs:
//!
//! - `responseCodes`: `403`, `"400-499"` (inclusive): the recorded `responseStatus.code`
//!   (Falco's `ka.response.code`, denied or failed requests);
//! - `sourceIPsOutside`: CIDRs; matches when the client address (`sourceIPs[0]`, what
//!   kube-apiserver saw) is in none of them (Falco's "outside allowed networks");
//! - `userAgents`: globs (`*`, `?`) on `userAgent` (Falco's `ka.useragent`);
//! - `decisions`: `allow` or `forbid`, the `authorization.k8s.io/decision` annotation.
//!
//! Every field set must match; inside a field, any value. An empty `match` is refused: it
//! would alert on every Event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use wildmatch::WildMatch;

use crate::audit::policy::{request_info_of, GroupResources, ObjectRef, Selectors, User};

/// A response code or an inclusive range, as written (`403`, `"500-599"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum CodeSpec {
    Code(u16),
    Text(String),
}

/// `match` as written in `AUDIT_ALERTS`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchDoc {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    response_codes: Vec<CodeSpec>,
    #[serde(default, rename = "sourceIPsOutside")]
    source_ips_outside: Vec<String>,
    #[serde(default)]
    user_agents: Vec<String>,
    #[serde(default)]
    decisions: Vec<String>,
}

/// A validated `match`.
#[derive(Debug, Clone)]
pub struct AlertMatch {
    users: Vec<String>,
    user_groups: Vec<String>,
    verbs: Vec<String>,
    resources: Vec<GroupResources>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
    /// Inclusive ranges of `responseStatus.code`.
    response_codes: Vec<(u16, u16)>,
    /// Networks the client address must be outside of.
    source_ips_outside: Vec<IpNet>,
    user_agents: Vec<WildMatch>,
    decisions: Vec<String>,
}

impl MatchDoc {
    /// Checks the fields (the Policy selectors as kube-apiserver's loader does) and compiles
    /// them.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn compile(self) -> Result<AlertMatch, String> {
        let m = AlertMatch {
            users: self.users,
            user_groups: self.user_groups,
            verbs: self.verbs,
            resources: self.resources,
            namespaces: self.namespaces,
            non_resource_urls: self.non_resource_urls,
            response_codes: self
                .response_codes
                .iter()
                .map(code_range)
                .collect::<Result<_, _>>()?,
            source_ips_outside: self
                .source_ips_outside
                .iter()
                .map(|c| network(c))
                .collect::<Result<_, _>>()?,
            user_agents: self.user_agents.iter().map(|g| WildMatch::new(g)).collect(),
            decisions: self.decisions,
        };
        m.selectors().validate()?;
        for d in &m.decisions {
            if d != "allow" && d != "forbid" {
                return Err(format!("decisions: {d:?} is not allow or forbid"));
            }
        }
        let extras = m.response_codes.is_empty()
            && m.source_ips_outside.is_empty()
            && m.user_agents.is_empty()
            && m.decisions.is_empty();
        if m.selectors().is_empty() && extras {
            return Err("match is empty: it would alert on every Event".into());
        }
        Ok(m)
    }
}

fn code_range(spec: &CodeSpec) -> Result<(u16, u16), String> {
    let bad =
        |s: &str| format!("responseCodes: {s:?} is not a code (403) or a range (\"400-499\")");
    let (low, high) = match spec {
        CodeSpec::Code(c) => (*c, *c),
        CodeSpec::Text(t) => {
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let low = a.trim().parse::<u16>().map_err(|_| bad(t))?;
            let high = b.trim().parse::<u16>().map_err(|_| bad(t))?;
            (low, high)
        }
    };
    if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
        return Err(format!(
            "responseCodes: {low}-{high} is not a range of HTTP statuses (100-599, low first)"
        ));
    }
    Ok((low, high))
}

/// A CIDR (`10.0.0.0/8`) or a single address.
fn network(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("sourceIPsOutside: {text:?} is not a CIDR (10.0.0.0/8) or address"))
}

/// `responseStatus` of an Event.
#[derive(Debug, Default, Deserialize)]
pub struct Status {
    /// The HTTP status code.
    #[serde(default)]
    pub code: Option<i64>,
}

/// The Event fields an alert rule and its card read, borrowed from the Event's text.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView<'a> {
    /// `auditID`.
    #[serde(borrow, default, rename = "auditID")]
    pub audit_id: Option<Cow<'a, str>>,
    /// `stage`.
    #[serde(borrow, default)]
    pub stage: Option<Cow<'a, str>>,
    /// `stageTimestamp` (RFC 3339).
    #[serde(borrow, default)]
    pub stage_timestamp: Option<Cow<'a, str>>,
    /// `verb` as recorded.
    #[serde(borrow, default)]
    pub verb: Option<Cow<'a, str>>,
    /// `requestURI`.
    #[serde(borrow, default, rename = "requestURI")]
    pub request_uri: Option<Cow<'a, str>>,
    /// The authenticated user.
    #[serde(borrow, default)]
    pub user: Option<User<'a>>,
    /// The impersonated user, when there was one.
    #[serde(borrow, default)]
    pub impersonated_user: Option<User<'a>>,
    /// `objectRef`.
    #[serde(borrow, default)]
    pub object_ref: Option<ObjectRef<'a>>,
    /// `responseStatus`.
    #[serde(default)]
    pub response_status: Option<Status>,
    /// `sourceIPs`, the client first.
    #[serde(borrow, default, rename = "sourceIPs")]
    pub source_ips: Option<Vec<Cow<'a, str>>>,
    /// `userAgent`.
    #[serde(borrow, default)]
    pub user_agent: Option<Cow<'a, str>>,
    /// `annotations`.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, serde_json::Value>>,
}

/// The authorization decision annotation kube-apiserver writes.
pub const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";

impl EventView<'_> {
    /// `authorization.k8s.io/decision`, when recorded.
    pub fn decision(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(DECISION_ANNOTATION)?
            .as_str()
    }
}

impl AlertMatch {
    /// The Policy selectors of this `match`.
    pub fn selectors(&self) -> Selectors<'_> {
        Selectors {
            users: &self.users,
            user_groups: &self.user_groups,
            verbs: &self.verbs,
            resources: &self.resources,
            namespaces: &self.namespaces,
            non_resource_urls: &self.non_resource_urls,
        }
    }

    /// Whether the Event matches: the Policy selectors on the request kube-apiserver saw (the
    /// `RequestInfo` derived from `requestURI`, the authenticated user), then the extra fields.
    pub fn matches(&self, view: &EventView<'_>) -> bool {
        let info = request_info_of(
            view.verb.as_deref(),
            view.request_uri.as_deref(),
            view.object_ref.as_ref(),
        );
        if !self.selectors().matches(view.user.as_ref(), &info) {
            return false;
        }
        if !self.response_codes.is_empty() {
            let code = view.response_status.as_ref().and_then(|s| s.code);
            let hit = code.is_some_and(|c| {
                self.response_codes
                    .iter()
                    .any(|(low, high)| (i64::from(*low)..=i64::from(*high)).contains(&c))
            });
            if !hit {
                return false;
            }
        }
        if !self.source_ips_outside.is_empty() {
            let client = view
                .source_ips
                .as_ref()
                .and_then(|ips| ips.first())
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
            // An Event without a readable client address is not known to be outside.
            let outside = client.is_some_and(|ip| {
                let ip = ip.to_canonical();
                !self.source_ips_outside.iter().any(|n| n.contains(&ip))
            });
            if !outside {
                return false;
            }
        }
        if !self.user_agents.is_empty() {
            let agent = view.user_agent.as_deref().unwrap_or("");
            if !self.user_agents.iter().any(|g| g.matches(agent)) {
                return false;
            }
        }
        if !self.decisions.is_empty() {
            match view.decision() {
                Some(d) if self.decisions.iter().any(|x| x == d) => {}
                _ => return false,
            }
        }
        true
    }
}

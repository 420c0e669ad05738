//! The `audit.k8s.io/v1` Policy, evaluated as kube-apiserver's policy checker does, and applied
//! to Events AKS already recorded.
//!
//! Rules are checked in order and the first match sets the level; no match means `None`. A rule
//! matches when every selector it sets matches (users, userGroups, verbs, namespaces, resources,
//! nonResourceURLs). The level is then applied to the recorded Event: `None` drops it,
//! `Metadata` drops `requestObject` and `responseObject`, `Request` drops `responseObject`. An
//! Event is never raised above the level it was recorded at. `omitStages` (policy ∪ rule) drop
//! Events of those stages; `omitManagedFields` (rule overrides policy) strips
//! `metadata.managedFields` from the request and response objects, list items included.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::audit::jsonedit::{members, rewrite, Edit, Members};
use crate::audit::AuditEvent;

mod attributes;
pub use attributes::{Attributes, ObjectRef, User};

/// Audit levels, in increasing order of detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    /// Not logged.
    None,
    /// Request metadata only.
    Metadata,
    /// Metadata and request body.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Metadata => "Metadata",
            Self::Request => "Request",
            Self::RequestResponse => "RequestResponse",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::None,
            Self::Metadata,
            Self::Request,
            Self::RequestResponse,
        ]
        .into_iter()
        .find(|l| l.name() == s)
    }
}

/// Audit stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Stage {
    /// The request was received.
    RequestReceived,
    /// Response headers were sent (long-running requests).
    ResponseStarted,
    /// The response was completed.
    ResponseComplete,
    /// The handler panicked.
    Panic,
}

impl Stage {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "RequestReceived" => Some(Self::RequestReceived),
            "ResponseStarted" => Some(Self::ResponseStarted),
            "ResponseComplete" => Some(Self::ResponseComplete),
            "Panic" => Some(Self::Panic),
            _ => None,
        }
    }
}

/// `GroupResources`: resources of one API group.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupResources {
    /// API group; `""` is the core group.
    #[serde(default)]
    pub group: String,
    /// Resources, `*`, `pods/log`, `*/status` or `pods/*`; empty means all of the group.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty means any.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One `PolicyRule`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// The level of matching requests.
    pub level: Level,
    /// User names; empty means any.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups; a request matches when the user is in any of them.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs; empty means any.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources; a rule with resources or namespaces matches resource requests only.
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces; `""` matches cluster-scoped objects.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths; a trailing `*` is a prefix match.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages not to log, added to the policy's.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields` when set.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyDoc {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: bool,
}

/// A validated audit Policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: BTreeSet<Stage>,
    omit_managed_fields: bool,
}

/// Why a Policy was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}: {reason}")]
pub struct PolicyError {
    /// The file name, or the setting it came from.
    pub source_name: String,
    /// What is wrong, with the line where the format tells it.
    pub reason: String,
}

/// What a Policy decides for one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The level of the first matching rule (`None` when no rule matches).
    pub level: Level,
    /// Stages to drop.
    pub omit_stages: BTreeSet<Stage>,
    /// Whether to strip `metadata.managedFields`.
    pub omit_managed_fields: bool,
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|s| s == value)
}

fn s<'a>(v: &'a Option<Cow<'a, str>>) -> &'a str {
    v.as_deref().unwrap_or("")
}

impl Rule {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        let user = a.user.as_ref();
        if !self.users.is_empty() {
            match user.and_then(|u| u.username.as_deref()) {
                Some(name) if has(&self.users, name) => {}
                _ => return false,
            }
        }
        if !self.user_groups.is_empty() {
            let Some(user) = user else { return false };
            if !user.groups.iter().any(|g| has(&self.user_groups, g)) {
                return false;
            }
        }
        if !self.verbs.is_empty() && !has(&self.verbs, s(&a.verb)) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a);
        }
        if !self.non_resource_urls.is_empty() {
            return self.matches_non_resource(a);
        }
        true
    }

    fn matches_non_resource(&self, a: &Attributes<'_>) -> bool {
        if a.object_ref.is_some() {
            return false;
        }
        let uri = s(&a.request_uri);
        let path = uri.split('?').next().unwrap_or("");
        self.non_resource_urls.iter().any(|spec| {
            spec == "*"
                || spec == path
                || (spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*')))
        })
    }

    fn matches_resource(&self, a: &Attributes<'_>) -> bool {
        let Some(obj) = &a.object_ref else {
            return false;
        };
        if !self.namespaces.is_empty() && !has(&self.namespaces, s(&obj.namespace)) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let group = s(&obj.api_group);
        let resource = s(&obj.resource);
        let subresource = s(&obj.subresource);
        let combined: Cow<'_, str> = if subresource.is_empty() {
            Cow::Borrowed(resource)
        } else {
            Cow::Owned(format!("{resource}/{subresource}"))
        };
        let name = s(&obj.name);
        for gr in &self.resources {
            if gr.group != group {
                continue;
            }
            if gr.resources.is_empty() {
                return true;
            }
            for res in &gr.resources {
                if !gr.resource_names.is_empty() && !has(&gr.resource_names, name) {
                    continue;
                }
                if res == combined.as_ref() || res == "*" {
                    return true;
                }
                if !subresource.is_empty() && res.strip_prefix("*/") == Some(subresource) {
                    return true;
                }
                if res.strip_suffix("/*") == Some(resource) {
                    return true;
                }
            }
        }
        false
    }
}

impl Policy {
    /// Parses and validates a Policy in YAML or JSON. `source_name` names it in errors.
    ///
    /// # Errors
    /// [`PolicyError`] with the line (from the parser) or the rule index, and the reason.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        let err = |reason: String| PolicyError {
            source_name: source_name.to_string(),
            reason,
        };
        let doc: PolicyDoc = serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
        if doc.kind != "Policy" {
            return Err(err(format!("kind is {:?}, expected \"Policy\"", doc.kind)));
        }
        if doc.api_version != "audit.k8s.io/v1" {
            return Err(err(format!(
                "apiVersion is {:?}, expected \"audit.k8s.io/v1\"",
                doc.api_version
            )));
        }
        for (i, rule) in doc.rules.iter().enumerate() {
            validate_rule(rule).map_err(|reason| err(format!("rules[{i}]: {reason}")))?;
        }
        Ok(Self {
            rules: doc.rules,
            omit_stages: doc.omit_stages.into_iter().collect(),
            omit_managed_fields: doc.omit_managed_fields,
        })
    }

    /// Reads a Policy file.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid Policy.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source_name: name.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, &name)
    }

    /// The checker's decision for a request with these attributes.
    pub fn evaluate(&self, a: &Attributes<'_>) -> Decision {
        match self.rules.iter().find(|r| r.matches(a)) {
            Some(rule) => Decision {
                level: rule.level,
                omit_stages: self
                    .omit_stages
                    .iter()
                    .chain(rule.omit_stages.iter())
                    .copied()
                    .collect(),
                omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
            },
            None => Decision {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }

    /// Applies the Policy to a recorded Event: `None` when it is dropped, otherwise the Event
    /// at its effective level.
    pub fn apply(&self, event: &AuditEvent) -> Option<AuditEvent> {
        let attributes: Attributes<'_> = serde_json::from_str(event.json()).ok()?;
        let decision = self.evaluate(&attributes);
        let stage = attributes.stage.as_deref().and_then(Stage::parse);
        if stage.is_some_and(|s| decision.omit_stages.contains(&s)) {
            return None;
        }
        let recorded = attributes
            .level
            .as_deref()
            .and_then(Level::parse)
            .unwrap_or(Level::RequestResponse);
        let level = decision.level.min(recorded);
        if level == Level::None {
            return None;
        }
        let strip = decision.omit_managed_fields && level >= Level::Request;
        let drops_body = (level < Level::Request && attributes.request_object.is_some())
            || (level < Level::RequestResponse && attributes.response_object.is_some());
        if level == recorded && !strip && !drops_body {
            return Some(event.clone());
        }
        let level_json = format!("\"{}\"", level.name());
        let edited = rewrite(
            event.json(),
            |key, value| match key {
                "level" if level != recorded => Edit::Replace(level_json.clone()),
                "requestObject" if level < Level::Request => Edit::Drop,
                "responseObject" if level < Level::RequestResponse => Edit::Drop,
                "requestObject" | "responseObject" if strip => {
                    strip_managed_fields(value).map_or(Edit::Keep, Edit::Replace)
                }
                _ => Edit::Keep,
            },
            &[],
        )
        .ok()?;
        Some(event.with_json(edited))
    }
}

fn validate_rule(rule: &Rule) -> Result<(), String> {
    let resource_rule = !rule.resources.is_empty() || !rule.namespaces.is_empty();
    if resource_rule && !rule.non_resource_urls.is_empty() {
        return Err("rules cannot apply to both regular resources and non-resource URLs".into());
    }
    for url in &rule.non_resource_urls {
        if url != "*" && !url.starts_with('/') {
            return Err(format!(
                "nonResourceURLs: {url:?} must start with \"/\" or be \"*\""
            ));
        }
        if url.trim_end_matches('*').contains('*') {
            return Err(format!(
                "nonResourceURLs: {url:?} may have \"*\" only at the end"
            ));
        }
    }
    for (i, gr) in rule.resources.iter().enumerate() {
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            return Err(format!("resources[{i}]: resourceNames require resources"));
        }
        for res in &gr.resources {
            if res.is_empty() {
                return Err(format!("resources[{i}]: empty resource name"));
            }
        }
    }
    Ok(())
}

/// `metadata.managedFields` removed from an object, or from each item of a list. `None` when
/// there is nothing to remove (or the value is not an object, e.g. AKS's size placeholder).
fn strip_managed_fields(value: &RawValue) -> Option<String> {
    let Members(entries) = members(value.get()).ok()?;
    let mut changed = false;
    let mut replacements: Vec<(usize, String)> = Vec::new();
    for (i, (key, raw)) in entries.iter().enumerate() {
        match key.as_ref() {
            "metadata" => {
                if let Some(new) = drop_member(raw, "managedFields") {
                    replacements.push((i, new));
                    changed = true;
                }
            }
            "items" => {
                if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                    let mut any = false;
                    let texts: Vec<String> = items
                        .iter()
                        .map(|item| match strip_managed_fields(item) {
                            Some(new) => {
                                any = true;
                                new
                            }
                            None => item.get().to_string(),
                        })
                        .collect();
                    if any {
                        replacements.push((i, format!("[{}]", texts.join(","))));
                        changed = true;
                    }
                }
            }
            _ => {}
        }
    }
    if !changed {
        return None;
    }
    let mut index = 0;
    rewrite(
        value.get(),
        |_, _| {
            let here = index;
            index += 1;
            match replacements.iter().find(|(i, _)| *i == here) {
                Some((_, new)) => Edit::Replace(new.clone()),
                None => Edit::Keep,
            }
        },
        &[],
    )
    .ok()
}

fn drop_member(object: &RawValue, name: &str) -> Option<String> {
    let Members(entries) = members(object.get()).ok()?;
    if !entries.iter().any(|(k, _)| k == name) {
        return None;
    }
    rewrite(
        object.get(),
        |k, _| if k == name { Edit::Drop } else { Edit::Keep },
        &[],
    )
    .ok()
}

#[cfg(test)]
mod tests;

//! The `audit.k8s.io/v1` Policy, evaluated as kube-apiserver's policy checker does, and applied
//! to Events AKS already recorded.
//!
//! Rules are checked in order and the first match sets the level; no match means `None`. A rule
//! matches when every selector it sets matches (users, userGroups, verbs, namespaces, resources,
//! nonResourceURLs), on what kube-apiserver saw before the request ran: the authenticated user
//! and the `RequestInfo` its request-info resolver derives from the URL ([`RequestInfo`], from
//! `requestURI`), never fields recorded afterwards (the `objectRef.name` of a `create`). The level is then applied to the recorded Event: `None` drops it,
//! `Metadata` drops `requestObject` and `responseObject`, `Request` drops `responseObject`. An
//! Event is never raised above the level it was recorded at. `omitStages` (policy ∪ rule) drop
//! Events of those stages; `omitManagedFields` (rule overrides policy) strips
//! `metadata.managedFields` from the request and response objects, list items and Table rows
//! included. A Policy is loaded as kube-apiserver loads one: no rules, an invalid API group or
//! an unknown (misplaced) key is refused.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::audit::jsonedit::{rewrite, Edit};
use crate::audit::AuditEvent;

mod attributes;
mod checker;
mod edit;
mod list_options;
mod managed_fields;
mod requestinfo;
mod validation;
pub use attributes::{request_info_of, Attributes, ObjectRef, User};
pub use requestinfo::{resolve as resolve_request_info, RequestInfo};

use managed_fields::strip_managed_fields;
use validation::{validate_selectors, NO_RULES};

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
    /// API group; `""` is the core group, `*` every group (kube-apiserver 1.36+).
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

/// The request selectors of a `PolicyRule` (users, userGroups, verbs, resources, namespaces,
/// nonResourceURLs), borrowed: what the policy checker decides on. Alert rules match with
/// the same selectors, decided by the same code ([`Selectors::matches`]) and refused by the
/// same loader checks ([`Selectors::validate`]).
#[derive(Debug, Clone, Copy)]
pub struct Selectors<'r> {
    /// User names; empty means any.
    pub users: &'r [String],
    /// Groups; a request matches when the user is in any of them.
    pub user_groups: &'r [String],
    /// Verbs; empty means any.
    pub verbs: &'r [String],
    /// Resources; set (or `namespaces` set) means resource requests only.
    pub resources: &'r [GroupResources],
    /// Namespaces; `""` matches cluster-scoped objects.
    pub namespaces: &'r [String],
    /// Non-resource paths; a trailing `*` is a prefix match.
    pub non_resource_urls: &'r [String],
}

impl Selectors<'_> {
    /// Checks the selectors as kube-apiserver's loader checks a rule (`ValidatePolicy`).
    ///
    /// # Errors
    /// What is wrong, naming the field (`resources[0].group: …`).
    pub fn validate(&self) -> Result<(), String> {
        validate_selectors(self)
    }

    /// Whether no selector is set (such a rule matches every request).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.user_groups.is_empty()
            && self.verbs.is_empty()
            && self.resources.is_empty()
            && self.namespaces.is_empty()
            && self.non_resource_urls.is_empty()
    }
}

impl Rule {
    /// The rule's request selectors.
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

/// An Event whose request attributes the Policy cannot read; the text says which field.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the audit Policy cannot read this Event: {0}")]
pub struct Unreadable(pub String);

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
        // Within the loader's budgets (CVE-2019-11253), merge keys resolved as kube-apiserver
        // resolves them; a leading byte order mark is skipped.
        let doc: PolicyDoc = crate::audit::yaml::from_str(text).map_err(|e| err(e.0))?;
        if doc.kind != "Policy" {
            return Err(err(format!("kind is {:?}, expected \"Policy\"", doc.kind)));
        }
        if doc.api_version != "audit.k8s.io/v1" {
            return Err(err(format!(
                "apiVersion is {:?}, expected \"audit.k8s.io/v1\"",
                doc.api_version
            )));
        }
        if doc.rules.is_empty() {
            return Err(err(NO_RULES.to_string()));
        }
        for (i, rule) in doc.rules.iter().enumerate() {
            validate_selectors(&rule.selectors())
                .map_err(|reason| err(format!("rules[{i}]: {reason}")))?;
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
        // Refused before it is read: the loader's size budget holds for files too.
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size > crate::audit::yaml::MAX_DOCUMENT_BYTES as u64 {
            return Err(PolicyError {
                source_name: name,
                reason: format!(
                    "the file is {size} bytes, more than the {} allowed",
                    crate::audit::yaml::MAX_DOCUMENT_BYTES
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source_name: name.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, &name)
    }

    /// The checker's decision for a request with these attributes: the first rule matching
    /// the authenticated user and the [`RequestInfo`] derived from the request URI.
    pub fn evaluate(&self, a: &Attributes<'_>) -> Decision {
        let info = a.request_info();
        let user = a.user.as_ref();
        match self.rules.iter().find(|r| r.matches(user, &info)) {
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

    /// Applies the Policy to a recorded Event: `Ok(None)` when it is dropped, otherwise the
    /// Event at its effective level.
    ///
    /// # Errors
    /// [`Unreadable`] when the fields the checker reads cannot be read as kube-apiserver
    /// types (`level: 5`, a number for a namespace, a key given twice): the Policy cannot
    /// decide, and the caller must keep the Event rather than drop it.
    pub fn apply(&self, event: &AuditEvent) -> Result<Option<AuditEvent>, Unreadable> {
        Ok(match self.judge(event)? {
            Judged::Unchanged => Some(event.clone()),
            Judged::Edited(edited) => Some(edited),
            Judged::Dropped => None,
        })
    }

    /// [`Self::apply`] without copying an Event the Policy leaves as it is (the usual case):
    /// the caller keeps its own.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub fn judge(&self, event: &AuditEvent) -> Result<Judged, Unreadable> {
        let attributes: Attributes<'_> =
            serde_json::from_str(event.json()).map_err(|e| Unreadable(e.to_string()))?;
        let recorded = match attributes.level.as_deref() {
            None => Level::RequestResponse,
            Some(l) => Level::parse(l)
                .ok_or_else(|| Unreadable(format!("level {l:?} is not an audit level")))?,
        };
        Ok(self.apply_read(event, &attributes, recorded))
    }

    fn apply_read(
        &self,
        event: &AuditEvent,
        attributes: &Attributes<'_>,
        recorded: Level,
    ) -> Judged {
        let decision = self.evaluate(attributes);
        let stage = attributes.stage.as_deref().and_then(Stage::parse);
        if stage.is_some_and(|s| decision.omit_stages.contains(&s)) {
            return Judged::Dropped;
        }
        let level = decision.level.min(recorded);
        if level == Level::None {
            return Judged::Dropped;
        }
        let strip = decision.omit_managed_fields && level >= Level::Request;
        let drops_body = (level < Level::Request && attributes.request_object.is_some())
            || (level < Level::RequestResponse && attributes.response_object.is_some());
        if level == recorded && !strip && !drops_body {
            return Judged::Unchanged;
        }
        let level_json = format!("\"{}\"", level.name());
        // A patch body is recorded as sent (`LogRequestPatch` removes nothing).
        let strip_request = strip && attributes.verb.as_deref() != Some("patch");
        let strips = edit::StripManagedFields {
            request: strip_request,
            response: strip,
        };
        if let Some(edited) =
            edit::edit_in_place(event, level != recorded, &level_json, level, strips)
        {
            return Judged::Edited(edited);
        }
        let edited = rewrite(
            event.json(),
            |key, value| match key {
                "level" if level != recorded => Edit::Replace(level_json.clone()),
                "requestObject" if level < Level::Request => Edit::Drop,
                "responseObject" if level < Level::RequestResponse => Edit::Drop,
                // A patch body is recorded as sent (`LogRequestPatch` removes nothing).
                "requestObject" if strip && attributes.verb.as_deref() != Some("patch") => {
                    strip_managed_fields(value).map_or(Edit::Keep, Edit::Replace)
                }
                "responseObject" if strip => {
                    strip_managed_fields(value).map_or(Edit::Keep, Edit::Replace)
                }
                _ => Edit::Keep,
            },
            &[],
        );
        match edited {
            Ok(edited) => Judged::Edited(event.with_json(edited)),
            Err(_) => Judged::Dropped,
        }
    }
}

/// What the Policy makes of one Event ([`Policy::judge`]).
#[derive(Debug)]
pub enum Judged {
    /// Kept as it is.
    Unchanged,
    /// Kept at a lower level, or with `managedFields` stripped: the edited Event.
    Edited(AuditEvent),
    /// Dropped: level `None`, or an omitted stage.
    Dropped,
}

#[cfg(test)]
pub(crate) mod parity_tests;
#[cfg(test)]
mod requestinfo_tests;
#[cfg(test)]
mod tests;

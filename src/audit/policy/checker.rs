//! Whether a Policy rule matches a request: kube-apiserver's policy checker (k8s.io/apiserver
//! `pkg/audit/policy/checker.go`, `ruleMatches`), on the [`RequestInfo`] the request-info
//! resolver derives from the URL and the authenticated user.

use std::borrow::Cow;

use super::requestinfo::RequestInfo;
use super::{Rule, Selectors, User};

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|s| s == value)
}

impl Rule {
    /// Whether every selector the rule sets matches ([`Selectors::matches`]).
    pub(super) fn matches(&self, user: Option<&User<'_>>, info: &RequestInfo) -> bool {
        self.selectors().matches(user, info)
    }
}

impl Selectors<'_> {
    /// Whether every selector set matches: users, userGroups (any group), verbs, then
    /// namespaces/resources (resource requests only) or nonResourceURLs (non-resource
    /// requests only). An empty selector matches any request.
    pub fn matches(&self, user: Option<&User<'_>>, info: &RequestInfo) -> bool {
        if !self.users.is_empty() {
            match user.and_then(|u| u.username.as_deref()) {
                Some(name) if has(self.users, name) => {}
                _ => return false,
            }
        }
        if !self.user_groups.is_empty() {
            let Some(user) = user else { return false };
            if !user.groups.iter().any(|g| has(self.user_groups, g)) {
                return false;
            }
        }
        if !self.verbs.is_empty() && !has(self.verbs, &info.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(info);
        }
        if !self.non_resource_urls.is_empty() {
            return self.matches_non_resource(info);
        }
        true
    }

    /// `nonResourceURLs`: `*`, the exact path, or a prefix ending in `*`.
    fn matches_non_resource(&self, info: &RequestInfo) -> bool {
        if info.is_resource_request {
            return false;
        }
        let path = info.path.as_str();
        self.non_resource_urls.iter().any(|spec| {
            spec == "*"
                || spec == path
                || (spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*')))
        })
    }

    /// `namespaces` (`""` is cluster-scoped) and `resources` (group, `*` for every group as
    /// in kube-apiserver 1.36+, `resource`,
    /// `resource/subresource`, `*`, `*/subresource`, `resource/*`, `resourceNames`).
    fn matches_resource(&self, info: &RequestInfo) -> bool {
        if !info.is_resource_request {
            return false;
        }
        if !self.namespaces.is_empty() && !has(self.namespaces, &info.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let resource = info.resource.as_str();
        let subresource = info.subresource.as_str();
        let combined: Cow<'_, str> = if subresource.is_empty() {
            Cow::Borrowed(resource)
        } else {
            Cow::Owned(format!("{resource}/{subresource}"))
        };
        for gr in self.resources {
            if gr.group != info.api_group && gr.group != "*" {
                continue;
            }
            if gr.resources.is_empty() {
                return true;
            }
            for res in &gr.resources {
                if !gr.resource_names.is_empty() && !has(&gr.resource_names, &info.name) {
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

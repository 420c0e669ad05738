//! Policy validation as kube-apiserver's loader does it: k8s.io/apiserver
//! `pkg/apis/audit/validation/validation.go` (`ValidatePolicy`) for each rule, and
//! `pkg/audit/policy/reader.go`, which refuses a Policy with no rules ("loaded illegal policy
//! with 0 rules").

use super::Selectors;

/// The reason a Policy with no rules is refused: kube-apiserver refuses it too, and every
/// Event would be dropped (no rule matches means `None`).
pub(super) const NO_RULES: &str = "loaded illegal policy with 0 rules: no rule matches any \
     request, so every Event would be dropped; add rules (e.g. `- level: Metadata` last) or \
     unset the Policy setting";

/// Checks one rule: `nonResourceURLs` start with `/` (or are `*`) and have `*` only at the
/// end (`/logs**` is refused), not both resources and non-resource URLs, `resources[].group`
/// is `""`, `*` (every group, kube-apiserver 1.36+) or a DNS subdomain, `resourceNames` need
/// `resources`.
pub(super) fn validate_selectors(rule: &Selectors<'_>) -> Result<(), String> {
    let resource_rule = !rule.resources.is_empty() || !rule.namespaces.is_empty();
    if resource_rule && !rule.non_resource_urls.is_empty() {
        return Err("rules cannot apply to both regular resources and non-resource URLs".into());
    }
    for url in rule.non_resource_urls {
        if url != "*" && !url.starts_with('/') {
            return Err(format!(
                "nonResourceURLs: {url:?} must start with \"/\" or be \"*\""
            ));
        }
        if url.as_bytes()[..url.len() - 1].contains(&b'*') {
            return Err(format!(
                "nonResourceURLs: {url:?} may have \"*\" only at the end"
            ));
        }
    }
    for (i, gr) in rule.resources.iter().enumerate() {
        if !gr.group.is_empty() && gr.group != "*" {
            if let Err(why) = dns_subdomain(&gr.group) {
                return Err(format!(
                    "resources[{i}].group: {:?} is not a valid API group ({why}; the core \
                     group is \"\"; a group never has a version, e.g. \
                     rbac.authorization.k8s.io, not rbac.authorization.k8s.io/v1)",
                    gr.group
                ));
            }
        }
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

/// A DNS-1123 subdomain (apimachinery `IsDNS1123Subdomain`): at most 253 characters, dot
/// separated labels of lower-case letters, digits and `-`, each starting and ending with a
/// letter or digit.
pub(super) fn dns_subdomain(name: &str) -> Result<(), &'static str> {
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    for label in name.split('.') {
        let ok = label.chars().all(|c| alnum(c) || c == '-')
            && label.starts_with(alnum)
            && label.ends_with(alnum);
        if !ok {
            return Err(
                "a DNS subdomain is lower-case letters, digits, '-' and '.', each \
                 part starting and ending with a letter or digit",
            );
        }
    }
    Ok(())
}

//! The cluster identity of a diagnostic record: its `resourceId`, parsed, and the annotations
//! that carry it on every Event so receivers can tell clusters apart.
//!
//! Azure Monitor writes `resourceId` upper-cased
//! (`/SUBSCRIPTIONS/<s>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<name>`);
//! every comparison here is case-insensitive.

use crate::audit::jsonedit::{rewrite, Edit};
use crate::audit::AuditEvent;

/// Annotation holding the full resource id of the source cluster.
pub const CLUSTER_ID_ANNOTATION: &str = "aks.azure.com/cluster-resource-id";
/// Annotation holding the cluster's short name (Falco reads `ka.cluster.name` from it).
pub const CLUSTER_NAME_ANNOTATION: &str = "cluster_name";

/// The parts of an AKS resource id, lower-cased (Azure Monitor upper-cases them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterId {
    /// The whole id.
    pub resource_id: String,
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Cluster name.
    pub name: String,
}

impl ClusterId {
    /// Reads `/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>`
    /// in any case; parts that are missing stay empty.
    pub fn parse(resource_id: &str) -> Self {
        let lower = resource_id.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let after = |key: &str| {
            parts
                .iter()
                .position(|p| *p == key)
                .and_then(|i| parts.get(i + 1))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        Self {
            subscription: after("subscriptions"),
            resource_group: after("resourcegroups"),
            name: after("managedclusters"),
            resource_id: lower,
        }
    }
}

/// Adds (or replaces) the cluster annotations on an Event.
pub fn annotate(event: &AuditEvent, cluster: &ClusterId) -> AuditEvent {
    let ours = [
        (CLUSTER_ID_ANNOTATION, json_string(&cluster.resource_id)),
        (CLUSTER_NAME_ANNOTATION, json_string(&cluster.name)),
    ];
    // Used when the Event has no annotations object (absent, or null).
    let fresh = format!(
        "{{{}:{},{}:{}}}",
        json_string(CLUSTER_ID_ANNOTATION),
        ours[0].1,
        json_string(CLUSTER_NAME_ANNOTATION),
        ours[1].1
    );
    let edited = rewrite(
        event.json(),
        |key, value| {
            if key != "annotations" {
                return Edit::Keep;
            }
            if !value.get().trim_start().starts_with('{') {
                return Edit::Replace(fresh.clone());
            }
            let merged = rewrite(
                value.get(),
                |k, _| match ours.iter().find(|(o, _)| *o == k) {
                    Some((_, v)) => Edit::Replace(v.clone()),
                    None => Edit::Keep,
                },
                &ours,
            );
            merged.map_or(Edit::Keep, Edit::Replace)
        },
        &[("annotations", fresh.clone())],
    );
    match edited {
        Ok(text) => event.with_json(text),
        Err(_) => event.clone(),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;

    const ID: &str = "/SUBSCRIPTIONS/1111-2222/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-PROD-WEU";

    #[test]
    fn parses_resource_ids_in_any_case() {
        let id = ClusterId::parse(ID);
        assert_eq!(id.subscription, "1111-2222");
        assert_eq!(id.resource_group, "rg-prod");
        assert_eq!(id.name, "aks-prod-weu");
        assert_eq!(ClusterId::parse("garbage").name, "");
    }

    #[test]
    fn annotations_are_added_or_merged() {
        let id = ClusterId::parse(ID);
        let with = AuditEvent::parse(&event_json("a")).unwrap();
        let out: serde_json::Value = serde_json::from_str(annotate(&with, &id).json()).unwrap();
        assert_eq!(out["annotations"]["authorization.k8s.io/decision"], "allow");
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "aks-prod-weu");
        assert_eq!(out["annotations"][CLUSTER_ID_ANNOTATION], id.resource_id);

        let text = event_json("b").replace(
            r#","annotations":{"authorization.k8s.io/decision":"allow"}"#,
            "",
        );
        let without = AuditEvent::parse(&text).unwrap();
        let annotated = annotate(&without, &id);
        assert!(
            annotated.json().starts_with(&text[..text.len() - 1]),
            "the rest is untouched"
        );
        let out: serde_json::Value = serde_json::from_str(annotated.json()).unwrap();
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "aks-prod-weu");

        let null = AuditEvent::parse(&event_json("c").replace(
            r#""annotations":{"authorization.k8s.io/decision":"allow"}"#,
            r#""annotations":null"#,
        ))
        .unwrap();
        let out: serde_json::Value = serde_json::from_str(annotate(&null, &id).json()).unwrap();
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "aks-prod-weu");
    }
}

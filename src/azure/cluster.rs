//! The cluster identity of a diagnostic record: its `resourceId`, parsed, and the annotations
//! that carry it on every Event so receivers can tell clusters apart.
//!
//! Azure Monitor writes `resourceId` upper-cased
//! (`/SUBSCRIPTIONS/<s>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<name>`);
//! every comparison here is case-insensitive. Any resource type is read the same way (AKS
//! clusters are not the only resources that stream `kube-audit`): subscription, resource
//! group, provider, type and name.

use std::ops::Range;

use memchr::memmem;

use crate::audit::jsonedit::{rewrite, Edit};
use crate::audit::AuditEvent;

/// Annotation holding the full resource id of the source cluster.
pub const CLUSTER_ID_ANNOTATION: &str = "aks.azure.com/cluster-resource-id";
/// Annotation holding the cluster's short name (Falco reads `ka.cluster.name` from it).
pub const CLUSTER_NAME_ANNOTATION: &str = "cluster_name";

/// Annotation holding the resource type, added only when the source is not a managed
/// cluster (`microsoft.containerservice/managedclusters`), so receivers can tell, e.g., a
/// Fleet Manager hub from an AKS cluster of the same name.
pub const CLUSTER_TYPE_ANNOTATION: &str = "aks.azure.com/cluster-resource-type";

/// The resource type of AKS clusters, lower-cased.
pub const MANAGED_CLUSTER_TYPE: &str = "microsoft.containerservice/managedclusters";

/// Resource types known to emit the `kube-audit` categories, lower-cased, with what they
/// are. Any other type is parsed and routed the same way.
pub const KNOWN_TYPES: &[(&str, &str)] = &[
    (MANAGED_CLUSTER_TYPE, "AKS cluster"),
    (
        "microsoft.containerservice/fleets",
        "Azure Kubernetes Fleet Manager hub cluster",
    ),
];

/// The parts of an Azure resource id, lower-cased (Azure Monitor upper-cases them):
/// `/subscriptions/<s>/resourceGroups/<rg>/providers/<provider>/<type>/<name>[/…]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterId {
    /// The whole id.
    pub resource_id: String,
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Resource provider namespace, e.g. `microsoft.containerservice`.
    pub provider: String,
    /// Resource type with its provider, e.g. `microsoft.containerservice/managedclusters`.
    pub resource_type: String,
    /// The resource's name: the cluster name (for a nested id, the top-level resource's).
    pub name: String,
}

impl ClusterId {
    /// Reads any Azure resource id in any case; parts that are missing stay empty. Segment
    /// names (`subscriptions`, `resourceGroups`, `providers`) are matched by position, not by
    /// searching, so a resource named `providers` cannot confuse it.
    pub fn parse(resource_id: &str) -> Self {
        let lower = resource_id.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').filter(|p| !p.is_empty()).collect();
        let mut id = Self::default();
        let mut i = 0;
        while i + 1 < parts.len() {
            match parts[i] {
                "subscriptions" if id.subscription.is_empty() => {
                    id.subscription = parts[i + 1].to_string();
                    i += 2;
                }
                "resourcegroups" if id.resource_group.is_empty() => {
                    id.resource_group = parts[i + 1].to_string();
                    i += 2;
                }
                "providers" if id.provider.is_empty() => {
                    id.provider = parts[i + 1].to_string();
                    if let (Some(kind), Some(name)) = (parts.get(i + 2), parts.get(i + 3)) {
                        id.resource_type = format!("{}/{kind}", id.provider);
                        id.name = (*name).to_string();
                    }
                    break;
                }
                _ => i += 1,
            }
        }
        id.resource_id = lower;
        id
    }

    /// Whether the source is an AKS managed cluster (or its type is unknown).
    pub fn is_managed_cluster(&self) -> bool {
        self.resource_type.is_empty() || self.resource_type == MANAGED_CLUSTER_TYPE
    }
}

/// Adds (or replaces) the cluster annotations on an Event.
pub fn annotate(event: &AuditEvent, cluster: &ClusterId) -> AuditEvent {
    ClusterAnnotations::new(cluster).apply(event)
}

/// The annotations of one cluster, encoded once and spliced into each of its Events.
#[derive(Debug, Clone)]
pub struct ClusterAnnotations {
    ours: Vec<(&'static str, String)>,
    /// A searcher for each of `ours`' keys, built once rather than per Event.
    finders: Vec<memmem::Finder<'static>>,
    /// `"<id annotation>":"<id>","cluster_name":"<name>"[,"<type annotation>":"<type>"]`.
    members: String,
    /// The texts a splice inserts, built once: the members after a comma, as an object, and
    /// as an `annotations` member with and without a leading comma.
    after_comma: String,
    object: String,
    member: String,
    member_after_comma: String,
}

/// An edit of an Event's text (a range and its new text), and where its `annotations` value
/// lies after it when the edit adds the member.
type Splice<'a> = ((Range<usize>, &'a str), Option<Range<usize>>);

impl ClusterAnnotations {
    /// Encodes the annotations of `cluster`: its id and name, and its resource type when it
    /// is not a managed cluster.
    pub fn new(cluster: &ClusterId) -> Self {
        let mut ours = vec![
            (CLUSTER_ID_ANNOTATION, json_string(&cluster.resource_id)),
            (CLUSTER_NAME_ANNOTATION, json_string(&cluster.name)),
        ];
        if !cluster.is_managed_cluster() {
            ours.push((CLUSTER_TYPE_ANNOTATION, json_string(&cluster.resource_type)));
        }
        let members: Vec<String> = ours
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_string(k)))
            .collect();
        let members = members.join(",");
        let finders = ours
            .iter()
            .map(|(key, _)| memmem::Finder::new(key.as_bytes()).into_owned())
            .collect();
        let member = format!("\"annotations\":{{{members}}}");
        Self {
            ours,
            finders,
            after_comma: format!(",{members}"),
            object: format!("{{{members}}}"),
            member_after_comma: format!(",{member}"),
            member,
            members,
        }
    }

    /// `event` with the annotations added (or replaced). Where the Event's `annotations` were
    /// found while it was validated, this is one splice of the text: inserted into the
    /// object, or the object added or put in place of a `null`; otherwise (the object already
    /// names a cluster, a repeated member) the members are rewritten one by one.
    pub fn apply(&self, event: &AuditEvent) -> AuditEvent {
        let spliced = self.splice(event).and_then(|((range, text), value)| {
            let added = event.with_edits(vec![(range, text.to_string())])?;
            Some(match value {
                Some(span) => added.with_annotations_at(span),
                None => added,
            })
        });
        spliced.unwrap_or_else(|| self.rewrite(event))
    }

    /// [`Self::apply`] to an Event the caller gives up: the splice is made in its own text
    /// (the annotations are usually its last member, so only the bytes after them move).
    pub fn apply_owned(&self, mut event: AuditEvent) -> AuditEvent {
        let Some((edit, value)) = self.splice(&event) else {
            return self.rewrite(&event);
        };
        if !event.edit_in_place(&mut [edit]) {
            return self.rewrite(&event);
        }
        match value {
            Some(span) => event.with_annotations_at(span),
            None => event,
        }
    }

    /// The one edit that adds the annotations, and where the `annotations` value lies after
    /// it when the edit adds the member; `None` when the members must be rewritten.
    fn splice(&self, event: &AuditEvent) -> Option<Splice<'_>> {
        let layout = event.layout();
        if !layout.known {
            return None;
        }
        let text = event.json();
        let edit = match &layout.annotations {
            Some(span) if text[span.clone()].starts_with('{') => {
                let object = &text[span.clone()];
                if self
                    .finders
                    .iter()
                    .any(|f| f.find(object.as_bytes()).is_some())
                {
                    return None;
                }
                let empty = object[1..object.len() - 1].trim().is_empty();
                let at = span.end - 1;
                let members = if empty {
                    &self.members
                } else {
                    &self.after_comma
                };
                (at..at, members.as_str())
            }
            Some(span) => (span.clone(), self.object.as_str()),
            None => {
                let at = text.len() - 1;
                let member = if text[1..at].trim().is_empty() {
                    &self.member
                } else {
                    &self.member_after_comma
                };
                let value = at + member.len() - self.object.len()..at + member.len();
                return Some(((at..at, member.as_str()), Some(value)));
            }
        };
        Some((edit, None))
    }

    fn rewrite(&self, event: &AuditEvent) -> AuditEvent {
        let ours = &self.ours;
        // Used when the Event has no annotations object (absent, or null).
        let fresh = self.object.clone();
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
                    ours,
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
        assert_eq!(id.provider, "microsoft.containerservice");
        assert_eq!(id.resource_type, MANAGED_CLUSTER_TYPE);
        assert!(id.is_managed_cluster());
        assert_eq!(ClusterId::parse("garbage").name, "");
    }

    /// Any resource type that streams `kube-audit` yields its name, type and parts, in any
    /// casing; a nested id names the top-level resource.
    #[test]
    fn parses_resource_ids_of_any_type() {
        let fleet = ClusterId::parse(
            "/SUBSCRIPTIONS/1111/RESOURCEGROUPS/RG-FLEET/PROVIDERS/MICROSOFT.CONTAINERSERVICE/FLEETS/HUB-WEU",
        );
        assert_eq!(
            (fleet.subscription.as_str(), fleet.resource_group.as_str()),
            ("1111", "rg-fleet")
        );
        assert_eq!(fleet.resource_type, "microsoft.containerservice/fleets");
        assert_eq!(fleet.name, "hub-weu");
        assert!(!fleet.is_managed_cluster());

        let arc = ClusterId::parse("/subscriptions/2222/resourceGroups/rg-edge/providers/Microsoft.Kubernetes/connectedClusters/edge-1/providers/Microsoft.HybridContainerService/provisionedClusterInstances/default");
        assert_eq!(arc.provider, "microsoft.kubernetes");
        assert_eq!(arc.resource_type, "microsoft.kubernetes/connectedclusters");
        assert_eq!(arc.name, "edge-1");

        // A resource group named like a segment does not confuse the reader.
        let odd = ClusterId::parse("/subscriptions/3/resourceGroups/providers/providers/Microsoft.ContainerService/managedClusters/x");
        assert_eq!(
            (odd.resource_group.as_str(), odd.name.as_str()),
            ("providers", "x")
        );
    }

    /// The one-splice path writes exactly what the member-by-member rewrite writes, for
    /// every shape of `annotations` and with the type annotation too; an object already
    /// naming a cluster takes the rewrite.
    #[test]
    fn splice_matches_rewrite() {
        let fleet =
            "/subscriptions/1/resourceGroups/rg/providers/Microsoft.ContainerService/fleets/hub";
        for id in [ID, fleet] {
            let annotations = ClusterAnnotations::new(&ClusterId::parse(id));
            let base = event_json("s");
            let with = r#""annotations":{"authorization.k8s.io/decision":"allow"}"#;
            let texts = [
                base.clone(),
                base.replace(&format!(",{with}"), ""),
                base.replace(with, r#""annotations":null"#),
                base.replace(with, r#""annotations":{}"#),
                base.replace(with, r#""annotations":"text""#),
                base.replace(with, r#""annotations":{"cluster_name":"old","x":"y"}"#),
            ];
            for text in texts {
                let event = AuditEvent::parse(&text).unwrap();
                let spliced = annotations.apply(&event);
                assert_eq!(spliced.json(), annotations.rewrite(&event).json(), "{text}");
                let again = AuditEvent::parse(spliced.json()).unwrap();
                assert_eq!(spliced.layout(), again.layout(), "{text}");
            }
            let named =
                AuditEvent::parse(&base.replace(with, r#""annotations":{"cluster_name":"old"}"#))
                    .unwrap();
            assert!(annotations.splice(&named).is_none());
        }
    }

    #[test]
    fn the_type_is_annotated_only_when_not_a_managed_cluster() {
        let event = AuditEvent::parse(&event_json("t")).unwrap();
        let aks: serde_json::Value =
            serde_json::from_str(annotate(&event, &ClusterId::parse(ID)).json()).unwrap();
        assert!(aks["annotations"].get(CLUSTER_TYPE_ANNOTATION).is_none());
        let fleet = ClusterId::parse(
            "/subscriptions/1/resourceGroups/rg/providers/Microsoft.ContainerService/fleets/hub",
        );
        let out: serde_json::Value = serde_json::from_str(annotate(&event, &fleet).json()).unwrap();
        assert_eq!(out["annotations"][CLUSTER_NAME_ANNOTATION], "hub");
        assert_eq!(
            out["annotations"][CLUSTER_TYPE_ANNOTATION],
            "microsoft.containerservice/fleets"
        );
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

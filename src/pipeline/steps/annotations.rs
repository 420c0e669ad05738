//! The cluster annotations (`AUDIT_CLUSTER_ANNOTATIONS`): the cluster's resource id, name
//! and type added to each Event's `annotations`, encoded once per cluster.

use std::sync::Arc;

use super::{Place, Step, Verdict};
use crate::audit::AuditEvent;
use crate::azure::{ClusterAnnotations, ClusterId};

/// Adds the annotations of the Event's cluster; Events without a `resourceId` are kept as
/// they are.
#[derive(Debug, Default)]
pub struct ClusterAnnotationsStep {
    /// The last cluster seen and its encoded annotations: consecutive Events of one envelope
    /// share their cluster.
    last: Option<(Arc<ClusterId>, Arc<ClusterAnnotations>)>,
}

impl Step for ClusterAnnotationsStep {
    fn apply(&mut self, event: AuditEvent, place: &Place<'_>) -> Verdict {
        if place.cluster.resource_id.is_empty() {
            return Verdict::Keep(event);
        }
        let annotations = match &self.last {
            Some((cluster, annotations)) if Arc::ptr_eq(cluster, place.cluster) => {
                annotations.clone()
            }
            _ => {
                let annotations = Arc::new(ClusterAnnotations::new(place.cluster));
                self.last = Some((place.cluster.clone(), annotations.clone()));
                annotations
            }
        };
        Verdict::Keep(annotations.apply_owned(event))
    }
}

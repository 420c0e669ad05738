//! Category de-duplication: a diagnostic setting streaming both `kube-audit` and
//! `kube-audit-admin` sends every Event but `get` and `list` twice; within a run the second
//! copy is dropped ([`crate::azure::categories`] explains why, and what fixes it for good).

use super::{DropReason, Place, Step, Verdict};
use crate::audit::AuditEvent;
use crate::azure::{CategoriesSeen, CategoryCopies};

/// Drops the later copies of an Event from a source that sent both audit categories.
#[derive(Debug)]
pub struct CategoryDuplicates(CategoryCopies);

impl CategoryDuplicates {
    /// Looks for copies among the sources `seen` sending both categories in this run.
    pub fn new(seen: &CategoriesSeen) -> Self {
        Self(CategoryCopies::new(seen))
    }
}

impl Step for CategoryDuplicates {
    fn apply(&mut self, event: AuditEvent, _: &Place<'_>) -> Verdict {
        if self.0.is_later_copy(&event) {
            Verdict::Drop(DropReason::DUPLICATE)
        } else {
            Verdict::Keep(event)
        }
    }
}

//! What Azure sends: diagnostic-settings envelopes of AKS records, turned into audit Events,
//! and the identity of the cluster each record names.

mod bad_input;
pub mod categories;
pub mod cluster;
pub mod diagnostics;
#[cfg(test)]
mod diagnostics_tests;
#[cfg(test)]
mod input_tests;
mod onepass;
mod scan;

pub use categories::{
    both_categories_warning, drop_category_duplicates, CategoriesSeen, CategoryCopies,
};
pub use cluster::{
    annotate, ClusterAnnotations, ClusterId, CLUSTER_ID_ANNOTATION, CLUSTER_NAME_ANNOTATION,
    CLUSTER_TYPE_ANNOTATION, KNOWN_TYPES, MANAGED_CLUSTER_TYPE,
};
pub use diagnostics::{
    convert_body, BodyOrigin, Conversion, ConvertTally, TooManyRecords, NOT_AN_ENVELOPE, UTF8_BOM,
};

/// Default diagnostic categories that carry audit Events (`AUDIT_CATEGORIES`).
pub const DEFAULT_CATEGORIES: &str = "kube-audit,kube-audit-admin";

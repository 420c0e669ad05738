//! The `audit.k8s.io` domain: the validated [`AuditEvent`], the webhook encodings, the audit
//! [`Policy`] and the byte-preserving edits both rely on. Nothing here knows about Azure, HTTP
//! or the environment.

pub mod encoding;
pub mod event;
pub mod jsonedit;
pub mod measure;
pub mod policy;
pub mod text;
pub mod truncate;
pub mod yaml;

pub use encoding::{encode, encoded_len, WebhookFormat, EVENT_LIST_PREFIX, EVENT_LIST_SUFFIX};
pub use event::{AuditEvent, EventError, API_VERSION};
pub use policy::{Policy, PolicyError};

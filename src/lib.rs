//! aks-audit-forwarder: an Azure Functions custom handler that turns AKS control-plane audit
//! logs, streamed by a diagnostic setting to an Event Hub, into `audit.k8s.io/v1` Events and
//! delivers them to a Kubernetes audit webhook (Sysdig, Falco, any `audit.k8s.io` receiver),
//! with nothing lost.
//!
//! # Layout
//!
//! The folders follow the data, one representation per layer:
//! host request → event bodies → diagnostic records → audit Events → webhook batches.
//! Dependencies point one way: the edge ([`host`], the binary, [`tools`]) → [`pipeline`] →
//! [`alerts`] → [`delivery`] → [`azure`] → [`deadletter`] → [`audit`]. Only the binary and its tools read
//! [`config`]. `scripts/check_layout.py` checks the direction.
//!
//! - [`config`]: environment → the typed settings each part owns ([`pipeline::Settings`],
//!   [`host::HostSettings`]); the only module that reads `AUDIT_*` variables; every error
//!   names its variable.
//! - [`host`]: the Functions host edge: the wire format (every `Data` encoding, `Metadata`,
//!   the [`InvocationResult`] answer), the HTTP routes the host calls, and the one place
//!   statuses are chosen.
//! - [`pipeline`]: one invocation end to end ([`Forwarder::forward`] → [`Forwarded`]):
//!   convert, run each Event through the per-Event steps ([`pipeline::steps`]: category
//!   de-duplication, route, Policy, annotations) at its [`pipeline::Route`], offer copies to
//!   [`pipeline::CopyDestination`]s, deliver (one route's delivery is a state machine that
//!   isolates what a receiver refuses); its [`Summary`].
//! - [`alerts`]: alert rules (`AUDIT_ALERTS`) matched on each Event with the Policy's own
//!   decision code, cards for Teams, Slack or a webhook, grouped per window, sent with
//!   retries beside delivery (a copy destination); cards that cannot be sent become `alert`
//!   dead letters.
//! - [`delivery`]: route configuration per cluster, batches bounded by count and bytes, the
//!   webhook client (TLS, credentials, headers), the retry loop and what a failed try taught.
//! - [`azure`]: diagnostic-settings envelopes → audit Events, by category (one copy of an
//!   Event sent under both audit categories); the cluster identity read from each record's
//!   `resourceId` and the annotations that carry it.
//! - [`deadletter`]: what could not be delivered, kept as JSON lines for `resend`.
//! - [`audit`]: the `audit.k8s.io` domain: the validated [`AuditEvent`] (kept as its
//!   original text), the `EventList`/`Event` encodings, the audit Policy and the
//!   byte-preserving edits it makes.
//! - [`redact`] and [`telemetry`]: keeping credentials out of logs; log setup for the host.
//! - [`tools`]: the demo, a local receiver, the host stand-in, `replay`, `resend`,
//!   `backfill`, `check-config`, `convert` and the benchmark baselines; never used by the
//!   code above.

pub mod alerts;
pub mod audit;
pub mod azure;
pub mod config;
pub mod deadletter;
pub mod delivery;
pub mod host;
pub mod pipeline;
pub mod redact;
pub mod telemetry;
pub mod tools;

pub use audit::AuditEvent;
pub use config::Config;
pub use host::InvocationResult;
pub use pipeline::{Forwarded, Forwarder, Summary};

//! aks-audit-forwarder: an Azure Functions custom handler that turns AKS control-plane audit
//! logs, streamed by a diagnostic setting to an Event Hub, into `audit.k8s.io/v1` Events and
//! delivers them to a Kubernetes audit webhook (Sysdig, Falco, any `audit.k8s.io` receiver),
//! with nothing lost.
//!
//! # Layout
//!
//! The data moves through one representation per module:
//! host request → event bodies → diagnostic records → audit Events → webhook batches.
//!
//! - [`config`]: environment → validated [`Config`]; every error names its variable.
//! - [`host`]: the Functions host's wire format; decodes every `Data` encoding and the
//!   `Metadata` the logs use; the [`InvocationResult`] answer.
//! - [`diagnostics`]: diagnostic-settings envelopes → audit Events, by category; counts and
//!   skips anything malformed.
//! - [`audit`]: the validated [`AuditEvent`] (kept as its original JSON text) and the
//!   `EventList` / `Event` encodings.
//! - [`policy`]: the `audit.k8s.io/v1` Policy, evaluated as kube-apiserver does and applied
//!   to recorded Events.
//! - [`routes`]: routes from clusters (`resourceId`) to webhooks; cluster annotations.
//! - [`jsonedit`]: byte-preserving edits of Event JSON for the two modules above.
//! - [`deadletter`]: what could not be delivered, kept as JSON lines for replay.
//! - [`batch`]: splits Events into batches bounded by count and bytes.
//! - [`retry`]: retry classification, backoff and the deadline-bounded retry loop.
//! - [`webhook`]: the HTTP client for one audit webhook.
//! - [`client`]: TLS trust, client certificates, credentials and headers of that client.
//! - [`pipeline`]: one invocation end to end, and its [`Summary`].
//! - [`app`]: the HTTP routes the host calls; the only place statuses are chosen.
//! - [`telemetry`]: log setup for the host's stdout/stderr capture.
//! - [`redact`]: keeps credentials out of logs and errors.
//! - [`receiver`]: a local audit webhook receiver (demo, tests, checking a deployment).
//! - [`hostsim`]: a stand-in for the Functions host that builds and sends invocations.
//! - [`demo`]: the `demo` and `replay` commands.

pub mod app;
pub mod audit;
pub mod batch;
pub mod client;
pub mod config;
pub mod deadletter;
pub mod demo;
pub mod diagnostics;
pub mod host;
pub mod hostsim;
pub mod jsonedit;
pub mod pipeline;
pub mod policy;
pub mod receiver;
pub mod redact;
pub mod retry;
pub mod routes;
pub mod telemetry;
pub mod webhook;

pub use audit::AuditEvent;
pub use config::Config;
pub use host::InvocationResult;
pub use pipeline::{Forwarder, Summary};

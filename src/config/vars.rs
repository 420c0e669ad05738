//! The names of the settings the forwarder reads, with their defaults, in the order the
//! configuration reference documents them.

use std::time::Duration;

/// Where Events are delivered (required in handler mode).
pub const WEBHOOK_URL: &str = "AUDIT_WEBHOOK_URL";
/// `eventlist` (default) or `event`.
pub const WEBHOOK_FORMAT: &str = "AUDIT_WEBHOOK_FORMAT";
/// Comma-separated diagnostic categories that carry audit Events.
pub const CATEGORIES: &str = "AUDIT_CATEGORIES";
/// Maximum Events in one POST.
pub const BATCH_MAX_EVENTS: &str = "AUDIT_BATCH_MAX_EVENTS";
/// Maximum bytes in one POST (a single larger Event is still sent alone).
pub const BATCH_MAX_BYTES: &str = "AUDIT_BATCH_MAX_BYTES";
/// Time limit of one HTTP attempt.
pub const WEBHOOK_TIMEOUT: &str = "AUDIT_WEBHOOK_TIMEOUT";
/// Total delivery budget of one invocation, retries included.
pub const DELIVERY_DEADLINE: &str = "AUDIT_DELIVERY_DEADLINE";
/// How many batches of one invocation are in flight at once.
pub const WEBHOOK_CONCURRENCY: &str = "AUDIT_WEBHOOK_CONCURRENCY";
/// First retry delay (before jitter).
pub const RETRY_INITIAL_BACKOFF: &str = "AUDIT_RETRY_INITIAL_BACKOFF";
/// Largest retry delay (before jitter).
pub const RETRY_MAX_BACKOFF: &str = "AUDIT_RETRY_MAX_BACKOFF";
/// Largest invocation body the handler accepts.
pub const MAX_BODY_BYTES: &str = "AUDIT_MAX_BODY_BYTES";
/// Most records one Event Hub event may hold.
pub const MAX_RECORDS_PER_EVENT: &str = "AUDIT_MAX_RECORDS_PER_EVENT";
/// Bearer token sent to `AUDIT_WEBHOOK_URL` (may be a Key Vault reference).
pub const WEBHOOK_BEARER_TOKEN: &str = "AUDIT_WEBHOOK_BEARER_TOKEN";
/// An audit Policy file (YAML or JSON), relative to the app root allowed.
pub const POLICY_FILE: &str = "AUDIT_POLICY_FILE";
/// An audit Policy inline (YAML or JSON).
pub const POLICY: &str = "AUDIT_POLICY";
/// Routes (YAML or JSON) mapping clusters to webhooks: a file name, or the document inline.
pub const ROUTES: &str = "AUDIT_ROUTES";
/// `on` (default) or `off`: cluster annotations on every Event.
pub const CLUSTER_ANNOTATIONS: &str = "AUDIT_CLUSTER_ANNOTATIONS";
/// Extra trusted CA certificates for the webhook: a PEM file or inline PEM.
pub const WEBHOOK_CA: &str = "AUDIT_WEBHOOK_CA";
/// Client certificate chain for mTLS: a PEM file or inline PEM.
pub const WEBHOOK_CLIENT_CERT: &str = "AUDIT_WEBHOOK_CLIENT_CERT";
/// The client certificate's private key: a PEM file or inline PEM.
pub const WEBHOOK_CLIENT_KEY: &str = "AUDIT_WEBHOOK_CLIENT_KEY";
/// `true` skips TLS verification (never in production).
pub const WEBHOOK_INSECURE_SKIP_VERIFY: &str = "AUDIT_WEBHOOK_INSECURE_SKIP_VERIFY";
/// Basic auth user name.
pub const WEBHOOK_USERNAME: &str = "AUDIT_WEBHOOK_USERNAME";
/// Basic auth password.
pub const WEBHOOK_PASSWORD: &str = "AUDIT_WEBHOOK_PASSWORD";
/// Extra headers, as a JSON object.
pub const WEBHOOK_HEADERS: &str = "AUDIT_WEBHOOK_HEADERS";
/// The blob output binding dead letters are returned through, or `off`.
pub const DEADLETTER_BINDING: &str = "AUDIT_DEADLETTER_BINDING";

/// kube-apiserver's webhook batch size.
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 400;
/// kube-apiserver splits webhook batches at 10 MiB; Falco refuses bodies over 12 MiB.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 10 * 1024 * 1024;
/// kube-apiserver's per-request webhook timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Well below the shipped `functionTimeout` (10 minutes) so the handler always answers first.
pub const DEFAULT_DELIVERY_DEADLINE: Duration = Duration::from_secs(120);
/// Batches of one invocation in flight at once.
pub const DEFAULT_WEBHOOK_CONCURRENCY: usize = 4;
/// First retry delay.
pub const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Retry delay cap.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Azure Monitor packs records into events of at most 1 MB: a few thousand at most.
pub const DEFAULT_MAX_RECORDS_PER_EVENT: usize = 50_000;
/// A batch of 100 events of 1 MiB is about 140 MiB once base64-encoded; leave room above it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

//! The names of the settings the forwarder reads, with their defaults, in the order the
//! configuration reference documents them.
//!
//! [`ALL`] is the one list of settings: start-up refuses any other `AUDIT_*` variable (a
//! misspelled setting is otherwise silently ignored). Add a setting with one entry in
//! `settings!` below; it defines the constant and lists it.

use std::time::Duration;

/// Defines each setting's name constant and [`ALL`], the list of every one of them.
macro_rules! settings {
    ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = $value;)*
        /// Every `AUDIT_*` setting the forwarder knows, in documentation order.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

settings! {
    /// Where Events are delivered (required in handler mode).
    WEBHOOK_URL = "AUDIT_WEBHOOK_URL";
    /// `eventlist` (default) or `event`.
    WEBHOOK_FORMAT = "AUDIT_WEBHOOK_FORMAT";
    /// Comma-separated diagnostic categories that carry audit Events.
    CATEGORIES = "AUDIT_CATEGORIES";
    /// Maximum Events in one POST.
    BATCH_MAX_EVENTS = "AUDIT_BATCH_MAX_EVENTS";
    /// Maximum bytes in one POST (a single larger Event is still sent alone).
    BATCH_MAX_BYTES = "AUDIT_BATCH_MAX_BYTES";
    /// Time limit of one HTTP attempt.
    WEBHOOK_TIMEOUT = "AUDIT_WEBHOOK_TIMEOUT";
    /// Total delivery budget of one invocation, retries included.
    DELIVERY_DEADLINE = "AUDIT_DELIVERY_DEADLINE";
    /// How many batches of one invocation are in flight at once.
    WEBHOOK_CONCURRENCY = "AUDIT_WEBHOOK_CONCURRENCY";
    /// First retry delay (before jitter).
    RETRY_INITIAL_BACKOFF = "AUDIT_RETRY_INITIAL_BACKOFF";
    /// Largest retry delay (before jitter).
    RETRY_MAX_BACKOFF = "AUDIT_RETRY_MAX_BACKOFF";
    /// Largest invocation body the handler accepts.
    MAX_BODY_BYTES = "AUDIT_MAX_BODY_BYTES";
    /// Most records one Event Hub event may hold.
    MAX_RECORDS_PER_EVENT = "AUDIT_MAX_RECORDS_PER_EVENT";
    /// Bearer token sent to `AUDIT_WEBHOOK_URL` (may be a Key Vault reference).
    WEBHOOK_BEARER_TOKEN = "AUDIT_WEBHOOK_BEARER_TOKEN";
    /// An audit Policy file (YAML or JSON), relative to the app root allowed.
    POLICY_FILE = "AUDIT_POLICY_FILE";
    /// An audit Policy inline (YAML or JSON).
    POLICY = "AUDIT_POLICY";
    /// Routes (YAML or JSON) mapping clusters to webhooks: a file name, or the document inline.
    ROUTES = "AUDIT_ROUTES";
    /// `on` (default) or `off`: cluster annotations on every Event.
    CLUSTER_ANNOTATIONS = "AUDIT_CLUSTER_ANNOTATIONS";
    /// Extra trusted CA certificates for the webhook: a PEM file or inline PEM.
    WEBHOOK_CA = "AUDIT_WEBHOOK_CA";
    /// Client certificate chain for mTLS: a PEM file or inline PEM.
    WEBHOOK_CLIENT_CERT = "AUDIT_WEBHOOK_CLIENT_CERT";
    /// The client certificate's private key: a PEM file or inline PEM.
    WEBHOOK_CLIENT_KEY = "AUDIT_WEBHOOK_CLIENT_KEY";
    /// `true` skips TLS verification (never in production).
    WEBHOOK_INSECURE_SKIP_VERIFY = "AUDIT_WEBHOOK_INSECURE_SKIP_VERIFY";
    /// Basic auth user name.
    WEBHOOK_USERNAME = "AUDIT_WEBHOOK_USERNAME";
    /// Basic auth password.
    WEBHOOK_PASSWORD = "AUDIT_WEBHOOK_PASSWORD";
    /// Extra headers, as a JSON object.
    WEBHOOK_HEADERS = "AUDIT_WEBHOOK_HEADERS";
    /// The blob output binding dead letters are returned through, or `off`.
    DEADLETTER_BINDING = "AUDIT_DEADLETTER_BINDING";
}

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
/// The function timeout assumed when the app root has no `host.json` or it sets no
/// `functionTimeout`: the value the shipped `host.json` sets.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    /// Every setting constant is in [`super::ALL`]: a constant defined outside `settings!`
    /// would be refused at start-up as unknown.
    #[test]
    fn every_setting_constant_is_listed_in_all() {
        let source = include_str!("vars.rs");
        let mut seen = 0;
        for line in source.lines() {
            let line = line.trim();
            let Some(start) = line.find("\"AUDIT_") else {
                continue;
            };
            let name = &line[start + 1..];
            let Some(end) = name.find('"') else { continue };
            let name = &name[..end];
            if line.starts_with("pub const") || line.contains(" = \"AUDIT_") {
                seen += 1;
                assert!(super::ALL.contains(&name), "{name} is not in vars::ALL");
            }
        }
        assert_eq!(
            seen,
            super::ALL.len(),
            "every entry of ALL is a setting here"
        );
    }
}

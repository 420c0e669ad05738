//! The names of the settings the forwarder reads, with their defaults, in the order the
//! configuration reference documents them.
//!
//! [`ALL`] is the one list of settings: start-up refuses any other `AUDIT_*` variable (a
//! misspelled setting is otherwise silently ignored). Add a setting with one line (and its
//! doc comment) inside `settings!` below: it defines the constant and lists it. A setting
//! constant outside the block fails a test. `scripts/check_infra.py` reads the same lines.

use std::time::Duration;

/// Defines each setting's name constant and [`ALL`], the list of every one of them.
macro_rules! settings {
    ($($(#[$doc:meta])* pub const $name:ident: &str = $value:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = $value;)*
        /// Every `AUDIT_*` setting the forwarder knows, in documentation order.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

settings! {
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
    /// Host retries of an invocation after which transient failures are isolated Event by Event.
    pub const ISOLATE_AFTER_RETRIES: &str = "AUDIT_ISOLATE_AFTER_RETRIES";
    /// Longest time to receive one invocation body from the host.
    pub const BODY_READ_TIMEOUT: &str = "AUDIT_BODY_READ_TIMEOUT";
    /// Longest time in-flight invocations get to finish after SIGTERM.
    pub const SHUTDOWN_GRACE: &str = "AUDIT_SHUTDOWN_GRACE";
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
/// Isolate transient failures from the host's third try of an invocation on.
pub const DEFAULT_ISOLATE_AFTER_RETRIES: u32 = 2;
/// The host sends a whole invocation over loopback: a minute is ample for 256 MiB.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Below the 60 s a Linux container gets between SIGTERM and SIGKILL on App Service.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The upper bound of every time setting but the delivery deadline: the Functions host's
/// largest `functionTimeout` on the Consumption plan is 10 minutes; nothing waits longer.
pub const MAX_SETTING_DURATION: Duration = Duration::from_secs(10 * 60);
/// The upper bound of `AUDIT_DELIVERY_DEADLINE` when `functionTimeout` is unbounded (`-1`,
/// Premium and Dedicated plans); it must also end before a bounded `functionTimeout`.
pub const MAX_DELIVERY_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

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
            if line.starts_with("pub const") {
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

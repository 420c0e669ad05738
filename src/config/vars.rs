//! Every setting the forwarder reads, declared once: its name, what it does (its doc comment),
//! what it holds with its default and bounds, and why they are what they are.
//!
//! [`ALL`] is the one list of names: start-up refuses any other `AUDIT_*` variable (a
//! misspelled setting is otherwise silently ignored). [`SETTINGS`] is the same list as
//! descriptors: `check-config` prints each with its label, and a test holds the table in
//! `docs/configuration.md` to their defaults and bounds. Add a setting with one entry inside
//! `settings!` below; `scripts/check_infra.py` reads the `pub const` lines.

use std::time::Duration;

use super::values::{Choice, Count, Kind, Size, Span, Subset, Switch, Text};

/// One setting: its name, what it does, what it holds (default and bounds) and why.
pub struct Setting<K: 'static> {
    /// The variable's name, `AUDIT_*`.
    pub name: &'static str,
    /// What it does, in a sentence: its doc comment.
    pub help: &'static str,
    /// What it holds, with its default and bounds.
    pub kind: K,
    /// Why the default and the bounds are what they are, with the source.
    pub why: &'static str,
}

/// What every setting shows, whatever its kind: for the configuration reference and
/// `check-config`.
pub trait Describe: Sync {
    /// The variable's name.
    fn name(&self) -> &'static str;
    /// What it does.
    fn help(&self) -> &'static str;
    /// Why its default and bounds.
    fn why(&self) -> &'static str;
    /// The default as written in a setting.
    fn default_shown(&self) -> Option<String>;
    /// The allowed values (numbers, sizes and durations from–to; the words).
    fn bounds_shown(&self) -> Option<String>;
    /// Whether the value may be or hold a credential.
    fn carries_secret(&self) -> bool;
    /// Whether the default lies within the bounds.
    fn default_in_bounds(&self) -> bool;
    /// The name `check-config` prints it under: `AUDIT_BATCH_MAX_EVENTS` → `batch max events`.
    fn label(&self) -> String {
        let name = self.name();
        name.strip_prefix("AUDIT_")
            .unwrap_or(name)
            .to_ascii_lowercase()
            .replace('_', " ")
    }
}

impl<K: Kind> Describe for Setting<K> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn help(&self) -> &'static str {
        self.help.trim()
    }
    fn why(&self) -> &'static str {
        self.why
    }
    fn default_shown(&self) -> Option<String> {
        self.kind.default_shown()
    }
    fn bounds_shown(&self) -> Option<String> {
        self.kind.bounds_shown()
    }
    fn carries_secret(&self) -> bool {
        self.kind.carries_secret()
    }
    fn default_in_bounds(&self) -> bool {
        self.kind.default_in_bounds()
    }
}

/// Defines each setting's name constant, its descriptor in [`def`], [`ALL`] and [`SETTINGS`].
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        pub const $name:ident: &str = $value:literal;
        $kind:ident { $($field:ident: $v:expr),* $(,)? }
        because $why:literal;
    )*) => {
        $($(#[doc = $doc])* pub const $name: &str = $value;)*
        /// Every `AUDIT_*` setting the forwarder knows, in documentation order.
        pub const ALL: &[&str] = &[$($name),*];
        /// The descriptor of each setting, under the name of its constant.
        pub mod def {
            #[allow(clippy::wildcard_imports)]
            use super::*;
            $(
                $(#[doc = $doc])*
                pub const $name: Setting<$kind> = Setting {
                    name: super::$name,
                    help: concat!($($doc),*),
                    kind: $kind { $($field: $v),* },
                    why: $why,
                };
            )*
        }
        /// Every setting's descriptor, in documentation order.
        pub const SETTINGS: &[&dyn Describe] = &[$(&def::$name),*];
    };
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// The upper bound of every time setting but the delivery deadline: the Functions host's
/// largest `functionTimeout` on the Consumption plan is 10 minutes; nothing waits longer.
pub const MAX_SETTING_DURATION: Duration = secs(10 * 60);
/// The upper bound of `AUDIT_DELIVERY_DEADLINE` when `functionTimeout` is unbounded (`-1`,
/// Premium and Dedicated plans); it must also end before a bounded `functionTimeout`.
pub const MAX_DELIVERY_DEADLINE: Duration = secs(24 * 60 * 60);
/// The function timeout assumed when the app root has no `host.json` or it sets no
/// `functionTimeout`: the value the shipped `host.json` sets.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = secs(600);
/// The diagnostic categories of an AKS cluster that carry audit Events.
pub const AUDIT_CATEGORIES: &[&str] = &["kube-audit", "kube-audit-admin"];

settings! {
    /// Where Events are POSTed (required unless AUDIT_ROUTES is set).
    pub const WEBHOOK_URL: &str = "AUDIT_WEBHOOK_URL";
    Text { default: None, secret: true }
    because "no default: the receiver is the operator's; its user-info and query may hold credentials";
    /// How Events are wrapped: an EventList per POST, as kube-apiserver sends, or one Event.
    pub const WEBHOOK_FORMAT: &str = "AUDIT_WEBHOOK_FORMAT";
    Choice { default: "eventlist", choices: &["eventlist", "event"] }
    because "kube-apiserver's audit webhook backend POSTs an audit.k8s.io/v1 EventList";
    /// Diagnostic categories whose records are audit Events.
    pub const CATEGORIES: &str = "AUDIT_CATEGORIES";
    Subset { default: "kube-audit,kube-audit-admin", choices: AUDIT_CATEGORIES }
    because "AKS writes audit Events in these two categories only; a misspelled one would match nothing";
    /// Most Events in one POST.
    pub const BATCH_MAX_EVENTS: &str = "AUDIT_BATCH_MAX_EVENTS";
    Count { default: 400, min: 1, max: 100_000 }
    because "400 is kube-apiserver's webhook batch size (--audit-webhook-batch-max-size)";
    /// Most bytes in one POST (a single larger Event is still sent alone).
    pub const BATCH_MAX_BYTES: &str = "AUDIT_BATCH_MAX_BYTES";
    Size { default: 10 * MIB, min: KIB, max: GIB }
    because "kube-apiserver splits webhook batches at 10 MiB and Falco refuses bodies over 12 MiB; \
             a batch is held in memory, so not more than 1 GiB";
    /// Time limit of one POST attempt.
    pub const WEBHOOK_TIMEOUT: &str = "AUDIT_WEBHOOK_TIMEOUT";
    Span { default: secs(30), min: ms(100), max: MAX_SETTING_DURATION }
    because "30s is kube-apiserver's webhook request timeout; a connection, TLS handshake and \
             answer take tens of milliseconds even nearby, so a shorter limit fails every attempt";
    /// Total delivery budget of one invocation, retries included.
    pub const DELIVERY_DEADLINE: &str = "AUDIT_DELIVERY_DEADLINE";
    Span { default: secs(120), min: secs(1), max: MAX_DELIVERY_DEADLINE }
    because "well below the shipped functionTimeout (10 minutes) so the handler answers first; \
             under a second there is no room for one attempt and a retry";
    /// POSTs of one route in flight at once.
    pub const WEBHOOK_CONCURRENCY: &str = "AUDIT_WEBHOOK_CONCURRENCY";
    Count { default: 4, min: 1, max: 64 }
    because "a few POSTs at once keep a receiver busy without flooding it";
    /// First retry delay (before jitter), and the shortest Retry-After honoured.
    pub const RETRY_INITIAL_BACKOFF: &str = "AUDIT_RETRY_INITIAL_BACKOFF";
    Span { default: ms(500), min: ms(50), max: MAX_SETTING_DURATION }
    because "at least 50ms so a failing receiver gets at most about twenty tries a second \
             from each batch";
    /// Largest retry delay (before jitter).
    pub const RETRY_MAX_BACKOFF: &str = "AUDIT_RETRY_MAX_BACKOFF";
    Span { default: secs(30), min: ms(50), max: MAX_SETTING_DURATION }
    because "30s keeps an outage's retries sparse; at least 50ms, as the first delay";
    /// From this host retry of an invocation on, transient failures are isolated Event by Event.
    pub const ISOLATE_AFTER_RETRIES: &str = "AUDIT_ISOLATE_AFTER_RETRIES";
    Count { default: 2, min: 0, max: 1000 }
    because "from the host's third try on, an Event that keeps failing is isolated rather than \
             blocking its partition";
    /// Longest time to receive one invocation body from the host.
    pub const BODY_READ_TIMEOUT: &str = "AUDIT_BODY_READ_TIMEOUT";
    Span { default: secs(60), min: secs(1), max: MAX_SETTING_DURATION }
    because "the host sends a whole invocation over loopback: a minute is ample for 256 MiB, \
             and under a second a busy instance would fail healthy invocations";
    /// Longest time in-flight invocations get to finish after SIGTERM.
    pub const SHUTDOWN_GRACE: &str = "AUDIT_SHUTDOWN_GRACE";
    Span { default: secs(30), min: secs(1), max: MAX_SETTING_DURATION }
    because "below the 60s a Linux container gets between SIGTERM and SIGKILL on App Service; \
             under a second no answer in flight can be finished";
    /// Largest invocation body the handler accepts.
    pub const MAX_BODY_BYTES: &str = "AUDIT_MAX_BODY_BYTES";
    Size { default: 256 * MIB, min: 64 * KIB, max: 2 * GIB }
    because "100 events of 1 MiB are about 140 MiB base64-encoded; a body is held in memory, \
             and Flex Consumption instances have at most 4 GB";
    /// Bytes of invocation bodies held at once, all invocations together.
    pub const MAX_BYTES_IN_FLIGHT: &str = "AUDIT_MAX_BYTES_IN_FLIGHT";
    Size { default: 512 * MIB, min: 64 * KIB, max: 64 * GIB }
    because "with the oldest invocation allowed one body past it, at most 768 MiB of bodies by \
             default: what the template's 2 GB instance holds with room for the rest";
    /// Most records one Event Hub event may hold.
    pub const MAX_RECORDS_PER_EVENT: &str = "AUDIT_MAX_RECORDS_PER_EVENT";
    Count { default: 50_000, min: 1, max: 10_000_000 }
    because "Azure Monitor packs records into events of at most 1 MB: a few thousand at most";
    /// Bearer token sent to AUDIT_WEBHOOK_URL (may be a Key Vault reference).
    pub const WEBHOOK_BEARER_TOKEN: &str = "AUDIT_WEBHOOK_BEARER_TOKEN";
    Text { default: None, secret: true }
    because "a credential: never shown";
    /// An audit Policy file (YAML or JSON), relative to the app root allowed.
    pub const POLICY_FILE: &str = "AUDIT_POLICY_FILE";
    Text { default: None, secret: false }
    because "no Policy: every Event is forwarded as written";
    /// An audit Policy inline (YAML or JSON).
    pub const POLICY: &str = "AUDIT_POLICY";
    Text { default: None, secret: false }
    because "no Policy: every Event is forwarded as written";
    /// Routes (YAML or JSON) mapping clusters to webhooks: a file name, or the document inline.
    pub const ROUTES: &str = "AUDIT_ROUTES";
    Text { default: None, secret: true }
    because "an inline document holds webhook URLs and header values, which may be credentials";
    /// Alert rules and notifiers (YAML or JSON): a file name, or the document inline.
    pub const ALERTS: &str = "AUDIT_ALERTS";
    Text { default: None, secret: true }
    because "no alerts; an inline document may hold notifier URLs, which carry their credential";
    /// Cluster annotations on every Event.
    pub const CLUSTER_ANNOTATIONS: &str = "AUDIT_CLUSTER_ANNOTATIONS";
    Switch { default: true }
    because "a receiver of several clusters needs to tell them apart";
    /// Extra trusted CA certificates for the webhook: a PEM file or inline PEM.
    pub const WEBHOOK_CA: &str = "AUDIT_WEBHOOK_CA";
    Text { default: None, secret: true }
    because "the system roots; a value that is not a file may be a secret pasted in the wrong place";
    /// Client certificate chain for mTLS: a PEM file or inline PEM.
    pub const WEBHOOK_CLIENT_CERT: &str = "AUDIT_WEBHOOK_CLIENT_CERT";
    Text { default: None, secret: true }
    because "no client certificate; a value that is not a file may be a key";
    /// The client certificate's private key: a PEM file or inline PEM.
    pub const WEBHOOK_CLIENT_KEY: &str = "AUDIT_WEBHOOK_CLIENT_KEY";
    Text { default: None, secret: true }
    because "a credential: never shown";
    /// Turns TLS verification off (never in production).
    pub const WEBHOOK_INSECURE_SKIP_VERIFY: &str = "AUDIT_WEBHOOK_INSECURE_SKIP_VERIFY";
    Switch { default: false }
    because "TLS is verified unless an operator says otherwise";
    /// Basic auth user name.
    pub const WEBHOOK_USERNAME: &str = "AUDIT_WEBHOOK_USERNAME";
    Text { default: None, secret: true }
    because "may hold a password pasted with it (`user:password`), which RFC 7617 §2 forbids";
    /// Basic auth password.
    pub const WEBHOOK_PASSWORD: &str = "AUDIT_WEBHOOK_PASSWORD";
    Text { default: None, secret: true }
    because "a credential: never shown";
    /// Extra headers, as a JSON object.
    pub const WEBHOOK_HEADERS: &str = "AUDIT_WEBHOOK_HEADERS";
    Text { default: None, secret: true }
    because "header values may be API keys: never shown";
    /// The blob output binding dead letters are returned through, or `off`.
    pub const DEADLETTER_BINDING: &str = "AUDIT_DEADLETTER_BINDING";
    Text { default: Some("deadletter"), secret: false }
    because "the binding the shipped function.json declares";
    /// The receiver the routes deliver to: generic, falco or sysdig; it sets the truncation
    /// limits and per-Event checks that receiver needs. A route can name its own (receiver:).
    pub const RECEIVER: &str = "AUDIT_RECEIVER";
    Choice { default: "generic", choices: &["generic", "falco", "sysdig"] }
    because "generic is any audit.k8s.io webhook, treated as kube-apiserver treats it; Falco's \
             k8saudit plugin and the Sysdig agent drop Events in silence unless kept within \
             their limits";
    /// Truncates an Event over the per-Event limit as kube-apiserver's truncate backend does;
    /// set, it overrides the receiver profile on every route.
    pub const TRUNCATE_ENABLED: &str = "AUDIT_TRUNCATE_ENABLED";
    Switch { default: false }
    because "off is kube-apiserver's default (--audit-webhook-truncate-enabled); unset, the \
             falco profile turns it on";
    /// The per-Event limit while truncation is on, bytes; set, it overrides the receiver profile.
    pub const TRUNCATE_MAX_EVENT_SIZE: &str = "AUDIT_TRUNCATE_MAX_EVENT_SIZE";
    Size { default: 100 * KIB, min: KIB, max: GIB }
    because "102400 is kube-apiserver's --audit-webhook-truncate-max-event-size; the falco \
             profile uses Falco's maxEventSize, 262144, as Falco measures an Event";
    /// The largest POST body while truncation is on, bytes; set, it overrides the receiver
    /// profile.
    pub const TRUNCATE_MAX_BATCH_SIZE: &str = "AUDIT_TRUNCATE_MAX_BATCH_SIZE";
    Size { default: 10 * MIB, min: KIB, max: GIB }
    because "10485760 is kube-apiserver's --audit-webhook-truncate-max-batch-size; the falco \
             profile uses Falco's webhookMaxBatchSize, 12582912";
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert!(ALL.contains(&name), "{name} is not in vars::ALL");
            }
        }
        assert_eq!(seen, ALL.len(), "every entry of ALL is a setting here");
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name()).collect();
        assert_eq!(names, ALL);
    }

    /// Each descriptor's default lies within its bounds, and every setting says what it does
    /// and why.
    #[test]
    fn defaults_lie_within_their_bounds() {
        for s in SETTINGS {
            assert!(s.default_in_bounds(), "{}", s.name());
            assert!(!s.help().is_empty() && !s.why().is_empty(), "{}", s.name());
        }
    }

    #[test]
    fn shows_sizes_and_durations_as_written() {
        use super::super::values::{show_duration, show_size};
        assert_eq!(show_size(10 * MIB), "10MiB");
        assert_eq!(show_size(64 * KIB), "64KiB");
        assert_eq!(show_size(1000), "1000");
        assert_eq!(show_duration(ms(500)), "500ms");
        assert_eq!(show_duration(secs(120)), "2m");
        assert_eq!(show_duration(MAX_DELIVERY_DEADLINE), "24h");
    }

    /// The table of docs/configuration.md agrees with the declarations: every setting has a
    /// row, every row names settings, and each row's Default and Allowed columns are the
    /// declared default and bounds. A setting added to the code but not to the docs, or a
    /// default or bound changed on one side only, fails here.
    #[test]
    fn the_configuration_reference_agrees_with_the_declarations() {
        let docs = include_str!("../../docs/configuration.md");
        let mut documented = Vec::new();
        for row in docs.lines().filter(|l| l.starts_with("| `AUDIT_")) {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 5, "{row}");
            let (names, default, allowed) = (cells[0], cells[2], cells[3]);
            for name in names.split(", ").map(|n| n.trim_matches('`')) {
                let setting = SETTINGS
                    .iter()
                    .find(|s| s.name() == name)
                    .unwrap_or_else(|| panic!("{name} is documented but no setting"));
                match setting.default_shown() {
                    Some(d) => assert!(
                        default.starts_with(&format!("`{d}`")),
                        "{name}: documented default {default:?}, declared `{d}`"
                    ),
                    None => assert!(default.starts_with('—'), "{name}: no declared default"),
                }
                if let Some(bounds) = setting.bounds_shown() {
                    assert_eq!(allowed, bounds, "{name}: documented bounds differ");
                }
                documented.push(name);
            }
        }
        for name in ALL {
            let rows = documented.iter().filter(|d| *d == name).count();
            assert_eq!(rows, 1, "{name} is documented in {rows} rows of the table");
        }
    }
}

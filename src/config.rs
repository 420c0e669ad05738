//! Handler configuration: read from the environment (Function app settings), validated once.
//!
//! Every setting is parsed and checked at startup, so a bad value stops the process with the
//! variable's name and the reason instead of failing the first invocation. The raw strings never
//! leave this module: [`Config`] holds typed, validated values only.

use std::collections::BTreeSet;
use std::time::Duration;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use crate::client::{load_pem, parse_headers, ClientOptions, SecretPem};
use crate::policy::Policy;
use crate::redact::redact_url;
use crate::routes::{parse_routes, Bearer, Destination, Matcher, RouteConfig};

/// The settings this module reads, with their defaults, in the order the README documents them.
pub mod vars {
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
}

/// Default diagnostic categories that carry audit Events.
pub const DEFAULT_CATEGORIES: &str = "kube-audit,kube-audit-admin";
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

/// How Events are wrapped for the webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"apiVersion":"audit.k8s.io/v1","kind":"EventList","items":[…]}`, as kube-apiserver sends.
    EventList,
    /// One bare Event per POST, for receivers that want that.
    Event,
}

impl WebhookFormat {
    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "eventlist" => Some(Self::EventList),
            "event" => Some(Self::Event),
            _ => None,
        }
    }
}

/// A configuration problem, naming the variable. Values of URL settings are shown redacted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{var} is required but not set")]
    Missing {
        /// The variable's name.
        var: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// The offending value (redacted where it could hold a credential).
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Retry timing for one webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Time limit of one attempt.
    pub attempt_timeout: Duration,
    /// First delay before jitter.
    pub initial_backoff: Duration,
    /// Delay cap before jitter.
    pub max_backoff: Duration,
}

/// The validated handler configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where Events go: the routes from `AUDIT_ROUTES`, or one catch-all route to
    /// `AUDIT_WEBHOOK_URL`. `Debug` shows URLs redacted and tokens hidden.
    pub routes: Vec<RouteConfig>,
    /// The Policy applied to routes that have none of their own.
    pub policy: Option<Arc<Policy>>,
    /// Whether every Event gets its cluster's annotations.
    pub cluster_annotations: bool,
    /// The output binding that receives dead letters; `None` logs them instead.
    pub deadletter_binding: Option<String>,
    /// Lower-cased categories whose records carry audit Events.
    pub categories: BTreeSet<String>,
    /// Maximum Events in one POST.
    pub batch_max_events: usize,
    /// Maximum bytes in one POST.
    pub batch_max_bytes: usize,
    /// Total delivery budget of one invocation.
    pub delivery_deadline: Duration,
    /// Batches of one invocation in flight at once.
    pub concurrency: usize,
    /// Retry timing.
    pub retry: RetrySettings,
    /// Largest invocation body accepted.
    pub max_body_bytes: usize,
    /// Most records one Event Hub event may hold.
    pub max_records_per_event: usize,
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// The first variable that is missing or invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    /// Empty values count as unset.
    ///
    /// # Errors
    /// The first variable that is missing or invalid.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let base = get("FUNCTIONS_APP_ROOT_PATH")
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();

        let format = match get(vars::WEBHOOK_FORMAT) {
            None => WebhookFormat::EventList,
            Some(v) => WebhookFormat::parse(&v).ok_or_else(|| ConfigError::Invalid {
                var: vars::WEBHOOK_FORMAT,
                value: v.clone(),
                reason: "expected `eventlist` or `event`".into(),
            })?,
        };
        let categories = parse_categories(
            get(vars::CATEGORIES)
                .as_deref()
                .unwrap_or(DEFAULT_CATEGORIES),
        )?;
        let batch_max_events = parse_count(
            vars::BATCH_MAX_EVENTS,
            get(vars::BATCH_MAX_EVENTS),
            DEFAULT_BATCH_MAX_EVENTS,
            1..=100_000,
        )?;
        let batch_max_bytes = parse_bytes(
            vars::BATCH_MAX_BYTES,
            get(vars::BATCH_MAX_BYTES),
            DEFAULT_BATCH_MAX_BYTES,
            1024,
        )?;
        let attempt_timeout = parse_duration(
            vars::WEBHOOK_TIMEOUT,
            get(vars::WEBHOOK_TIMEOUT),
            DEFAULT_WEBHOOK_TIMEOUT,
        )?;
        let delivery_deadline = parse_duration(
            vars::DELIVERY_DEADLINE,
            get(vars::DELIVERY_DEADLINE),
            DEFAULT_DELIVERY_DEADLINE,
        )?;
        let concurrency = parse_count(
            vars::WEBHOOK_CONCURRENCY,
            get(vars::WEBHOOK_CONCURRENCY),
            DEFAULT_WEBHOOK_CONCURRENCY,
            1..=64,
        )?;
        let initial_backoff = parse_duration(
            vars::RETRY_INITIAL_BACKOFF,
            get(vars::RETRY_INITIAL_BACKOFF),
            DEFAULT_RETRY_INITIAL_BACKOFF,
        )?;
        let max_backoff = parse_duration(
            vars::RETRY_MAX_BACKOFF,
            get(vars::RETRY_MAX_BACKOFF),
            DEFAULT_RETRY_MAX_BACKOFF,
        )?;
        if max_backoff < initial_backoff {
            return Err(ConfigError::Invalid {
                var: vars::RETRY_MAX_BACKOFF,
                value: humantime::format_duration(max_backoff).to_string(),
                reason: format!(
                    "must not be shorter than {} ({})",
                    vars::RETRY_INITIAL_BACKOFF,
                    humantime::format_duration(initial_backoff)
                ),
            });
        }
        let max_body_bytes = parse_bytes(
            vars::MAX_BODY_BYTES,
            get(vars::MAX_BODY_BYTES),
            DEFAULT_MAX_BODY_BYTES,
            64 * 1024,
        )?;

        let policy = match (get(vars::POLICY_FILE), get(vars::POLICY)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: vars::POLICY,
                    value: "<inline policy>".into(),
                    reason: format!("set {} or {}, not both", vars::POLICY_FILE, vars::POLICY),
                })
            }
            (Some(file), None) => Some(Arc::new(
                Policy::from_file(&base.join(file.trim())).map_err(|e| ConfigError::Invalid {
                    var: vars::POLICY_FILE,
                    value: file.clone(),
                    reason: e.to_string(),
                })?,
            )),
            (None, Some(text)) => Some(Arc::new(Policy::parse(&text, vars::POLICY).map_err(
                |e| ConfigError::Invalid {
                    var: vars::POLICY,
                    value: "<inline policy>".into(),
                    reason: e.to_string(),
                },
            )?)),
            (None, None) => None,
        };
        let cluster_annotations = parse_switch(
            vars::CLUSTER_ANNOTATIONS,
            get(vars::CLUSTER_ANNOTATIONS),
            true,
        )?;
        let routes = match get(vars::ROUTES) {
            Some(file) => {
                if get(vars::WEBHOOK_URL).is_some() {
                    return Err(ConfigError::Invalid {
                        var: vars::ROUTES,
                        value: file,
                        reason: format!(
                            "set {} or {}, not both: give the catch-all webhook a route of its own",
                            vars::WEBHOOK_URL,
                            vars::ROUTES
                        ),
                    });
                }
                let invalid = |reason: String| ConfigError::Invalid {
                    var: vars::ROUTES,
                    value: if is_inline(&file) {
                        "<inline routes>".into()
                    } else {
                        file.clone()
                    },
                    reason,
                };
                let (text, dir) = if is_inline(&file) {
                    (file.clone(), base.clone())
                } else {
                    let path = base.join(file.trim());
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
                    (
                        text,
                        path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    )
                };
                let dir = dir.as_path();
                parse_routes(&text, dir, &|name| get(name)).map_err(invalid)?
            }
            None => {
                let url = parse_webhook_url(get(vars::WEBHOOK_URL))?;
                let client = client_options(&get, &base)?;
                vec![RouteConfig {
                    name: "default".into(),
                    matcher: Matcher::default(),
                    destination: Some(Destination {
                        url,
                        format,
                        policy: None,
                        client,
                    }),
                }]
            }
        };

        let deadletter_binding = match get(vars::DEADLETTER_BINDING) {
            None => Some("deadletter".to_string()),
            Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
            Some(v)
                if v.trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Some(v.trim().to_string())
            }
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: vars::DEADLETTER_BINDING,
                    value: v,
                    reason:
                        "expected a binding name from function.json (letters, digits, _) or off"
                            .into(),
                })
            }
        };

        let max_records_per_event = parse_count(
            vars::MAX_RECORDS_PER_EVENT,
            get(vars::MAX_RECORDS_PER_EVENT),
            DEFAULT_MAX_RECORDS_PER_EVENT,
            1..=10_000_000,
        )?;

        Ok(Self {
            max_records_per_event,
            routes,
            policy,
            cluster_annotations,
            deadletter_binding,
            categories,
            batch_max_events,
            batch_max_bytes,
            delivery_deadline,
            concurrency,
            retry: RetrySettings {
                attempt_timeout,
                initial_backoff,
                max_backoff,
            },
            max_body_bytes,
        })
    }
}

/// The single webhook's TLS, credentials and headers, from the environment.
fn client_options(
    get: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<ClientOptions, ConfigError> {
    let invalid = |var: &'static str, value: &str, reason: String| ConfigError::Invalid {
        var,
        value: value.to_string(),
        reason,
    };
    let mut client = ClientOptions {
        bearer: get(vars::WEBHOOK_BEARER_TOKEN).map(|t| Bearer(SecretString::from(t))),
        ..Default::default()
    };
    match (get(vars::WEBHOOK_USERNAME), get(vars::WEBHOOK_PASSWORD)) {
        (Some(user), Some(password)) => {
            if client.bearer.is_some() {
                return Err(invalid(
                    vars::WEBHOOK_USERNAME,
                    &user,
                    format!("set {} or basic auth, not both", vars::WEBHOOK_BEARER_TOKEN),
                ));
            }
            client.basic = Some((user, SecretString::from(password)));
        }
        (None, None) => {}
        (Some(user), None) => {
            return Err(invalid(
                vars::WEBHOOK_USERNAME,
                &user,
                format!("{} is not set", vars::WEBHOOK_PASSWORD),
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: vars::WEBHOOK_USERNAME,
            })
        }
    }
    if let Some(ca) = get(vars::WEBHOOK_CA) {
        let pem = load_pem(&ca, base).map_err(|e| invalid(vars::WEBHOOK_CA, &shown_pem(&ca), e))?;
        client.ca_pem = Some(pem);
        let probe = ClientOptions {
            ca_pem: client.ca_pem.clone(),
            ..Default::default()
        };
        probe
            .validate()
            .map_err(|e| invalid(vars::WEBHOOK_CA, &shown_pem(&ca), e))?;
    }
    match (
        get(vars::WEBHOOK_CLIENT_CERT),
        get(vars::WEBHOOK_CLIENT_KEY),
    ) {
        (Some(cert), Some(key)) => {
            let cert_pem = load_pem(&cert, base)
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_CERT, &shown_pem(&cert), e))?;
            let key_pem = load_pem(&key, base)
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_KEY, "<not shown>", e))?;
            let mut both = String::from_utf8_lossy(&cert_pem).into_owned();
            both.push('\n');
            both.push_str(&String::from_utf8_lossy(&key_pem));
            let probe = ClientOptions {
                identity_pem: Some(SecretPem(SecretString::from(both.clone()))),
                ..Default::default()
            };
            probe
                .validate()
                .map_err(|e| invalid(vars::WEBHOOK_CLIENT_CERT, &shown_pem(&cert), e))?;
            client.identity_pem = Some(SecretPem(SecretString::from(both)));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: vars::WEBHOOK_CLIENT_KEY,
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: vars::WEBHOOK_CLIENT_CERT,
            })
        }
    }
    client.insecure_skip_verify = parse_switch(
        vars::WEBHOOK_INSECURE_SKIP_VERIFY,
        get(vars::WEBHOOK_INSECURE_SKIP_VERIFY),
        false,
    )?;
    if let Some(headers) = get(vars::WEBHOOK_HEADERS) {
        client.headers = parse_headers(&headers)
            .map_err(|e| invalid(vars::WEBHOOK_HEADERS, "<not shown>", e))?;
    }
    Ok(client)
}

/// A PEM setting as it may be shown: its file name, or a placeholder for inline PEM.
fn shown_pem(value: &str) -> String {
    if value.trim_start().starts_with("-----BEGIN") {
        "<inline PEM>".into()
    } else {
        value.to_string()
    }
}

/// An inline YAML or JSON document rather than a file name.
fn is_inline(value: &str) -> bool {
    let v = value.trim_start();
    v.starts_with('{') || v.starts_with("routes:") || v.contains('\n')
}

fn parse_webhook_url(value: Option<String>) -> Result<Url, ConfigError> {
    let var = vars::WEBHOOK_URL;
    let raw = value.ok_or(ConfigError::Missing { var })?;
    let invalid = |shown: String, reason: &str| ConfigError::Invalid {
        var,
        value: shown,
        reason: reason.to_string(),
    };
    // The raw text may hold a password: never echo it unparsed.
    let url = Url::parse(raw.trim()).map_err(|e| {
        invalid(
            "<unparsable URL, not shown>".into(),
            &format!("not an absolute URL ({e})"),
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            redact_url(&url),
            "the scheme must be http or https",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(redact_url(&url), "the URL has no host"));
    }
    Ok(url)
}

fn parse_categories(value: &str) -> Result<BTreeSet<String>, ConfigError> {
    let set: BTreeSet<String> = value
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if set.is_empty() {
        return Err(ConfigError::Invalid {
            var: vars::CATEGORIES,
            value: value.into(),
            reason: "name at least one category, e.g. kube-audit-admin".into(),
        });
    }
    Ok(set)
}

/// Parses an on/off setting: `on`/`true`/`1` or `off`/`false`/`0`, any case.
fn parse_switch(
    var: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: "expected on or off (true or false)".into(),
        }),
    }
}

fn parse_count(
    var: &'static str,
    value: Option<String>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// Parses a byte size: a plain number of bytes, or a number with a unit (`10MiB`, `512 KiB`).
fn parse_bytes(
    var: &'static str,
    value: Option<String>,
    default: usize,
    min: usize,
) -> Result<usize, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let trimmed = v.trim();
    let parsed = trimmed.parse::<u64>().ok().or_else(|| {
        trimmed
            .parse::<bytesize::ByteSize>()
            .ok()
            .map(|b| b.as_u64())
    });
    match parsed.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n >= min => Ok(n),
        Some(_) => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: format!("must be at least {min} bytes"),
        }),
        None => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: "expected a size in bytes, e.g. 10485760 or 10MiB".into(),
        }),
    }
}

/// Parses a duration written `500ms`, `10s`, `2m` (humantime syntax). Zero is refused.
fn parse_duration(
    var: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match humantime::parse_duration(v.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: "must be longer than zero".into(),
        }),
        Err(e) => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: format!("expected a duration such as 500ms, 10s or 2m ({e})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const URL: (&str, &str) = (vars::WEBHOOK_URL, "http://127.0.0.1:7765/k8s_audit");

    fn format_of(c: &Config) -> WebhookFormat {
        c.routes[0].destination.as_ref().unwrap().format
    }

    /// Only the webhook URL is required; everything else has the documented default.
    #[test]
    fn defaults() {
        let c = config(&[URL]).unwrap();
        assert_eq!(format_of(&c), WebhookFormat::EventList);
        assert_eq!(c.routes.len(), 1);
        assert!(c.policy.is_none());
        assert!(c.cluster_annotations);
        assert_eq!(
            c.categories.iter().collect::<Vec<_>>(),
            ["kube-audit", "kube-audit-admin"]
        );
        assert_eq!(c.batch_max_events, 400);
        assert_eq!(c.batch_max_bytes, 10 * 1024 * 1024);
        assert_eq!(c.retry.attempt_timeout, Duration::from_secs(30));
        assert_eq!(c.delivery_deadline, Duration::from_secs(120));
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.max_body_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn missing_url_names_the_variable() {
        let err = config(&[]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                var: "AUDIT_WEBHOOK_URL"
            }
        );
        assert_eq!(err.to_string(), "AUDIT_WEBHOOK_URL is required but not set");
    }

    #[test]
    fn blank_values_count_as_unset() {
        let c = config(&[URL, (vars::WEBHOOK_FORMAT, "  ")]).unwrap();
        assert_eq!(format_of(&c), WebhookFormat::EventList);
    }

    #[test]
    fn each_invalid_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            (vars::WEBHOOK_FORMAT, "xml"),
            (vars::CATEGORIES, " , "),
            (vars::BATCH_MAX_EVENTS, "0"),
            (vars::BATCH_MAX_EVENTS, "many"),
            (vars::BATCH_MAX_BYTES, "12"),
            (vars::BATCH_MAX_BYTES, "ten megs"),
            (vars::WEBHOOK_TIMEOUT, "30"),
            (vars::WEBHOOK_TIMEOUT, "0s"),
            (vars::DELIVERY_DEADLINE, "soon"),
            (vars::WEBHOOK_CONCURRENCY, "65"),
            (vars::RETRY_INITIAL_BACKOFF, "-1s"),
            (vars::MAX_BODY_BYTES, "1KiB"),
            (vars::CLUSTER_ANNOTATIONS, "maybe"),
            (vars::POLICY, "kind: Policy"),
            (vars::POLICY_FILE, "/nonexistent/policy.yaml"),
            (vars::ROUTES, "/nonexistent/routes.yaml"),
        ];
        for (var, value) in cases {
            let err = config(&[URL, (var, value)]).unwrap_err();
            match &err {
                ConfigError::Invalid { var: got, .. } => assert_eq!(got, var, "{value}"),
                other => panic!("{var}={value}: unexpected {other:?}"),
            }
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    /// A policy file is found relative to the app root, and a bad one names file and line.
    #[test]
    fn policy_file_relative_to_app_root() {
        let dir = std::env::temp_dir().join(format!("aaf-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("good.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("bad.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
        )
        .unwrap();
        let root = dir.to_str().unwrap();
        let c = config(&[
            URL,
            ("FUNCTIONS_APP_ROOT_PATH", root),
            (vars::POLICY_FILE, "good.yaml"),
        ])
        .unwrap();
        assert!(c.policy.is_some());
        let err = config(&[
            URL,
            ("FUNCTIONS_APP_ROOT_PATH", root),
            (vars::POLICY_FILE, "bad.yaml"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("AUDIT_POLICY_FILE=\"bad.yaml\" is invalid"),
            "{err}"
        );
        assert!(
            err.contains("bad.yaml: ") && err.contains("line 4"),
            "{err}"
        );
        let err = config(&[URL, (vars::POLICY_FILE, "a"), (vars::POLICY, "b")]).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn routes_replace_the_single_url() {
        let dir = std::env::temp_dir().join(format!("aaf-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("routes.yaml"),
            "routes:\n- name: all\n  webhook: {url: 'http://127.0.0.1:1/'}\n",
        )
        .unwrap();
        let root = dir.to_str().unwrap();
        let c = config(&[
            ("FUNCTIONS_APP_ROOT_PATH", root),
            (vars::ROUTES, "routes.yaml"),
        ])
        .unwrap();
        assert_eq!(c.routes[0].name, "all");
        let err = config(&[
            URL,
            ("FUNCTIONS_APP_ROOT_PATH", root),
            (vars::ROUTES, "routes.yaml"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_cap_must_not_be_below_initial() {
        let err = config(&[
            URL,
            (vars::RETRY_INITIAL_BACKOFF, "10s"),
            (vars::RETRY_MAX_BACKOFF, "1s"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("AUDIT_RETRY_MAX_BACKOFF"), "{err}");
    }

    #[test]
    fn parses_units() {
        let c = config(&[
            URL,
            (vars::WEBHOOK_FORMAT, "Event"),
            (vars::BATCH_MAX_BYTES, "512KiB"),
            (vars::WEBHOOK_TIMEOUT, "500ms"),
            (vars::DELIVERY_DEADLINE, "2m"),
            (vars::CATEGORIES, "Kube-Audit-Admin"),
        ])
        .unwrap();
        assert_eq!(format_of(&c), WebhookFormat::Event);
        assert_eq!(c.batch_max_bytes, 512 * 1024);
        assert_eq!(c.retry.attempt_timeout, Duration::from_millis(500));
        assert_eq!(c.delivery_deadline, Duration::from_secs(120));
        assert_eq!(
            c.categories.iter().collect::<Vec<_>>(),
            ["kube-audit-admin"]
        );
    }

    #[test]
    fn url_must_be_http_with_host() {
        for bad in ["ftp://x/y", "not a url", "http://"] {
            let err = config(&[(vars::WEBHOOK_URL, bad)]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        var: "AUDIT_WEBHOOK_URL",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
        }
    }

    /// A password in the webhook URL must not leak through errors or `Debug`.
    #[test]
    fn url_credentials_never_shown() {
        let secret = "s3cr3t-pa55";
        let c = config(&[(
            vars::WEBHOOK_URL,
            "https://user:s3cr3t-pa55@audit.example:8443/k8s_audit?token=s3cr3t-pa55",
        )])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("audit.example"), "{shown}");

        let c = config(&[URL, (vars::WEBHOOK_BEARER_TOKEN, secret)]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(secret), "{shown}");

        let err = config(&[(vars::WEBHOOK_URL, "ftp://user:s3cr3t-pa55@h/")]).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
        let err = config(&[(vars::WEBHOOK_URL, "http://user:s3cr3t-pa55@[::1")]).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
    }
}

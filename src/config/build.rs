//! The builders `Config::from_lookup` assembles: each reads the settings of one part (retries,
//! the delivery deadline, the host edge, the Policy, the routes) and checks the rules that
//! span several settings. Single settings read themselves through their descriptor
//! ([`super::vars::def`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::environment::function_timeout;
use super::routes::{is_inline, parse_routes};
use super::values::{show_duration, Lookup};
use super::vars::{self, def};
use super::webhook::{client_options, parse_webhook_url};
use super::{ConfigError, Purpose, NO_WEBHOOK};
use crate::audit::{Policy, WebhookFormat};
use crate::delivery::{
    Destination, Matcher, ReceiverProfile, RetrySettings, RouteConfig, Shaping, TruncateOverrides,
};
use crate::host::HostSettings;

/// The app root relative file settings are read from: `FUNCTIONS_APP_ROOT_PATH`, else the
/// working directory.
pub(super) fn app_root(get: Lookup<'_>) -> PathBuf {
    get("FUNCTIONS_APP_ROOT_PATH")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

/// `AUDIT_WEBHOOK_FORMAT`.
pub(super) fn webhook_format(get: Lookup<'_>) -> Result<WebhookFormat, ConfigError> {
    Ok(match def::WEBHOOK_FORMAT.read(get)? {
        "event" => WebhookFormat::Event,
        _ => WebhookFormat::EventList,
    })
}

/// The attempt timeout and the backoff bounds; the cap must not be below the first delay.
pub(super) fn retry(get: Lookup<'_>) -> Result<RetrySettings, ConfigError> {
    let attempt_timeout = def::WEBHOOK_TIMEOUT.read(get)?;
    let initial_backoff = def::RETRY_INITIAL_BACKOFF.read(get)?;
    let max_backoff = def::RETRY_MAX_BACKOFF.read(get)?;
    if max_backoff < initial_backoff {
        return Err(def::RETRY_MAX_BACKOFF.invalid(
            show_duration(max_backoff),
            format!(
                "must not be shorter than {} ({})",
                vars::RETRY_INITIAL_BACKOFF,
                show_duration(initial_backoff)
            ),
        ));
    }
    Ok(RetrySettings {
        attempt_timeout,
        initial_backoff,
        max_backoff,
    })
}

/// `AUDIT_DELIVERY_DEADLINE`, which must end before the host's `functionTimeout` (from
/// `host.json` in the app root), or the host cancels the invocation before it is answered.
pub(super) fn delivery_deadline(get: Lookup<'_>, base: &Path) -> Result<Duration, ConfigError> {
    let deadline = def::DELIVERY_DEADLINE.read(get)?;
    let shown = show_duration(deadline);
    let (limit, source) = function_timeout(base).map_err(|reason| {
        def::DELIVERY_DEADLINE.invalid(
            shown.clone(),
            format!("cannot tell the function timeout: {reason}"),
        )
    })?;
    if let Some(limit) = limit.filter(|t| deadline >= *t) {
        return Err(def::DELIVERY_DEADLINE.invalid(
            shown,
            format!(
                "must end well before the function timeout ({}, {source}), or the host cancels \
                 the invocation before the handler answers",
                show_duration(limit)
            ),
        ));
    }
    Ok(deadline)
}

/// `AUDIT_ISOLATE_AFTER_RETRIES`, as the host's `RetryCount` type.
pub(super) fn isolate_after_retries(get: Lookup<'_>) -> Result<u32, ConfigError> {
    let n = def::ISOLATE_AFTER_RETRIES.read(get)?;
    u32::try_from(n).map_err(|_| def::ISOLATE_AFTER_RETRIES.invalid(n.to_string(), "too large"))
}

/// The host edge: body limit and read timeout, shutdown grace, dead-letter binding.
pub(super) fn host(get: Lookup<'_>) -> Result<HostSettings, ConfigError> {
    Ok(HostSettings {
        body_read_timeout: def::BODY_READ_TIMEOUT.read(get)?,
        shutdown_grace: def::SHUTDOWN_GRACE.read(get)?,
        max_body_bytes: def::MAX_BODY_BYTES.read(get)?,
        max_bytes_in_flight: def::MAX_BYTES_IN_FLIGHT.read(get)?,
        deadletter_binding: deadletter_binding(get)?,
    })
}

/// `AUDIT_DEADLETTER_BINDING`: a binding name from `function.json`, or `off` (`None`).
fn deadletter_binding(get: Lookup<'_>) -> Result<Option<String>, ConfigError> {
    let value = def::DEADLETTER_BINDING.read(get).unwrap_or_default();
    let name = value.trim();
    if name.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(def::DEADLETTER_BINDING.invalid(
            value.clone(),
            "expected a binding name from function.json (letters, digits, _) or off",
        ));
    }
    Ok(Some(name.to_string()))
}

/// The shared Policy: `AUDIT_POLICY_FILE` or `AUDIT_POLICY` (not both), or none.
pub(super) fn policy(get: Lookup<'_>, base: &Path) -> Result<Option<Arc<Policy>>, ConfigError> {
    const INLINE: &str = "<inline policy>";
    match (def::POLICY_FILE.read(get), def::POLICY.read(get)) {
        (Some(_), Some(_)) => Err(def::POLICY.invalid(
            INLINE,
            format!("set {} or {}, not both", vars::POLICY_FILE, vars::POLICY),
        )),
        (Some(file), None) => Policy::from_file(&base.join(file.trim()))
            .map(|p| Some(Arc::new(p)))
            .map_err(|e| def::POLICY_FILE.invalid(file.clone(), e.to_string())),
        (None, Some(text)) => Policy::parse(&text, vars::POLICY)
            .map(|p| Some(Arc::new(p)))
            .map_err(|e| def::POLICY.invalid(INLINE, e.to_string())),
        (None, None) => Ok(None),
    }
}

/// The routes: from `AUDIT_ROUTES`, or one catch-all route to `AUDIT_WEBHOOK_URL` with the
/// `AUDIT_WEBHOOK_*` client settings. Under [`Purpose::Count`] with neither set, the
/// catch-all route goes to [`NO_WEBHOOK`].
pub(super) fn routes(
    get: Lookup<'_>,
    base: &Path,
    format: WebhookFormat,
    purpose: Purpose,
) -> Result<Vec<RouteConfig>, ConfigError> {
    let receiver = receiver(get)?;
    if let Some(value) = def::ROUTES.read(get) {
        return routes_document(get, base, &value, receiver);
    }
    let url = match (def::WEBHOOK_URL.read(get), purpose) {
        (None, Purpose::Count) => parse_webhook_url(Some(NO_WEBHOOK.into()))?,
        (value, _) => parse_webhook_url(value)?,
    };
    let client = client_options(get, base)?;
    // RFC 9110 §11.6.2: one `Authorization` field. With both, the client sends two and the
    // receiver picks one, or refuses every request (nginx answers 400).
    if (!url.username().is_empty() || url.password().is_some())
        && (client.bearer.is_some() || client.basic.is_some())
    {
        return Err(def::WEBHOOK_URL.invalid(
            format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or_default()),
            format!(
                "the URL carries user-info credentials and {} or {} is set too: two Authorization headers would be sent; keep one",
                vars::WEBHOOK_BEARER_TOKEN,
                vars::WEBHOOK_USERNAME
            ),
        ));
    }
    Ok(vec![RouteConfig {
        name: "default".into(),
        matcher: Matcher::default(),
        destination: Some(Destination {
            url,
            format,
            policy: None,
            client,
            receiver,
        }),
    }])
}

/// `AUDIT_RECEIVER`: the profile of routes that name none.
fn receiver(get: Lookup<'_>) -> Result<ReceiverProfile, ConfigError> {
    let name = def::RECEIVER.read(get)?;
    ReceiverProfile::parse(name).ok_or_else(|| {
        def::RECEIVER.invalid(
            name.to_string(),
            "expected generic, falco or sysdig".to_string(),
        )
    })
}

/// The `AUDIT_TRUNCATE_*` settings that are set (each overrides the routes' profiles), and
/// each route's per-Event limit checked against its largest body: an Event at the limit must
/// fit in a body, or every Event over the body limit would be dead-lettered as too large.
pub(super) fn truncation(
    get: Lookup<'_>,
    routes: &[RouteConfig],
    batch_max_bytes: usize,
) -> Result<TruncateOverrides, ConfigError> {
    let set = |name: &str| get(name).is_some();
    let overrides = TruncateOverrides {
        enabled: if set(vars::TRUNCATE_ENABLED) {
            Some(def::TRUNCATE_ENABLED.read(get)?)
        } else {
            None
        },
        max_event_size: if set(vars::TRUNCATE_MAX_EVENT_SIZE) {
            Some(def::TRUNCATE_MAX_EVENT_SIZE.read(get)?)
        } else {
            None
        },
        max_batch_size: if set(vars::TRUNCATE_MAX_BATCH_SIZE) {
            Some(def::TRUNCATE_MAX_BATCH_SIZE.read(get)?)
        } else {
            None
        },
    };
    for route in routes {
        let Some(d) = &route.destination else {
            continue;
        };
        let shaping = Shaping::new(d.receiver, d.format, overrides);
        let t = shaping.truncation;
        let bound = shaping.batch_max_bytes(batch_max_bytes);
        if t.enabled && t.max_event_size > bound {
            return Err(def::TRUNCATE_MAX_EVENT_SIZE.invalid(
                t.max_event_size.to_string(),
                format!(
                    "route {} ({} receiver) sends bodies of at most {bound} bytes ({}, {}): \
                     the per-Event limit must not be larger",
                    route.name,
                    d.receiver,
                    vars::TRUNCATE_MAX_BATCH_SIZE,
                    vars::BATCH_MAX_BYTES
                ),
            ));
        }
    }
    Ok(overrides)
}

/// `AUDIT_ROUTES`, a file name or the document inline. Its errors show the value only when it
/// is a plain file name: anything else may be a document holding credentials.
fn routes_document(
    get: Lookup<'_>,
    base: &Path,
    value: &str,
    receiver: ReceiverProfile,
) -> Result<Vec<RouteConfig>, ConfigError> {
    let invalid = |reason: String| def::ROUTES.invalid(shown_routes(value), reason);
    if get(vars::WEBHOOK_URL).is_some() {
        return Err(invalid(format!(
            "set {} or {}, not both: give the catch-all webhook a route of its own",
            vars::WEBHOOK_URL,
            vars::ROUTES
        )));
    }
    let (text, dir) = if is_inline(value) {
        (value.to_string(), base.to_path_buf())
    } else {
        let path = base.join(value.trim());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            invalid(format!(
                "cannot read the routes file it names ({})",
                e.kind()
            ))
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (text, dir)
    };
    parse_routes(&text, &dir, get, receiver).map_err(invalid)
}

/// What may be shown of an `AUDIT_ROUTES` value: a placeholder for an inline document, the
/// name of a file when it is one short line with nothing of a URL or a secret in it, else a
/// placeholder.
fn shown_routes(value: &str) -> String {
    let plain_name = value.len() <= 256
        && !value.contains([':', '@', '=', '?', '\n', '\r', '{'])
        && !value.starts_with('\u{feff}');
    if is_inline(value) {
        "<inline routes>".into()
    } else if plain_name {
        value.to_string()
    } else {
        "<not shown>".into()
    }
}

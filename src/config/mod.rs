//! Handler configuration: read from the environment (Function app settings), validated once.
//!
//! Every setting is parsed and checked at startup, so a bad value stops the process with the
//! variable's name and the reason instead of failing the first invocation. The raw strings never
//! leave this module: [`Config`] holds the typed, validated settings each part of the crate
//! owns, and no other module reads the environment.

mod environment;
mod routes;
mod values;
pub mod vars;
mod webhook;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{Policy, WebhookFormat};
use crate::azure::DEFAULT_CATEGORIES;
use crate::delivery::{Destination, Matcher, RetrySettings, RouteConfig};
use crate::host::HostSettings;
use crate::pipeline::Settings;
use environment::{check_unknown, function_timeout, is_key_vault_reference, PREFIX};
use routes::{is_inline, parse_routes};
use values::{parse_bytes, parse_categories, parse_count, parse_duration, parse_switch};

use webhook::{client_options, parse_webhook_url};

/// The validated configuration: the settings of each part, built from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The pipeline's settings: routes, Policy, categories, batching and retries.
    pub forwarder: Settings,
    /// The host edge's settings: body limit and the dead-letter binding.
    pub host: HostSettings,
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
    /// An `AUDIT_*` variable that is no setting (a misspelling would otherwise be ignored).
    #[error(
        "{name} is not a setting of this forwarder{}: unknown AUDIT_* variables are refused so \
         that a misspelled setting is not silently ignored; every setting is listed in \
         docs/configuration.md",
        suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    Unknown {
        /// The variable's name.
        name: String,
        /// The closest known setting, when one is close.
        suggestion: Option<&'static str>,
    },
    /// A value that is still a Key Vault reference: App Service could not resolve it.
    #[error(
        "{var} holds an unresolved Key Vault reference (@Microsoft.KeyVault(…)): the app's \
         identity cannot read the secret, or the secret does not exist; check the reference \
         status under the app's Environment variables and grant the identity \
         `Key Vault Secrets User`"
    )]
    UnresolvedKeyVaultReference {
        /// The variable's name (the value is never shown).
        var: String,
    },
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// The first variable that is missing or invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Reads settings from the whole environment as name/value pairs. Besides what
    /// [`Config::from_lookup`] checks, refuses any `AUDIT_*` name that is neither a setting
    /// ([`vars::ALL`]) nor a variable a setting names (a route's `bearerTokenSetting`), and any
    /// value the settings read that is still an unresolved `@Microsoft.KeyVault(` reference.
    ///
    /// # Errors
    /// An unresolved reference first, then an unknown name (or the first invalid setting, when
    /// it failed and the unknown name resembles no setting).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = vars.into_iter().collect();
        if let Some((name, _)) = env
            .iter()
            .find(|(n, v)| n.starts_with(PREFIX) && is_key_vault_reference(v))
        {
            return Err(ConfigError::UnresolvedKeyVaultReference { var: name.clone() });
        }
        let looked_up = RefCell::new(BTreeSet::new());
        let unresolved = RefCell::new(None);
        let result = Self::from_lookup(|name| {
            looked_up.borrow_mut().insert(name.to_string());
            let value = env.get(name).cloned();
            if value.as_deref().is_some_and(is_key_vault_reference) {
                unresolved
                    .borrow_mut()
                    .get_or_insert_with(|| name.to_string());
            }
            value
        });
        if let Some(var) = unresolved.into_inner() {
            return Err(ConfigError::UnresolvedKeyVaultReference { var });
        }
        let looked_up = looked_up.into_inner();
        let unknown = check_unknown(env.keys().map(String::as_str), &|n| looked_up.contains(n));
        match (result, unknown) {
            (Ok(config), Ok(())) => Ok(config),
            (Ok(_), Err(unknown)) => Err(unknown),
            (Err(invalid), Ok(())) => Err(invalid),
            (Err(invalid), Err(unknown)) => match unknown {
                ConfigError::Unknown {
                    suggestion: None, ..
                } => Err(invalid),
                likely_typo => Err(likely_typo),
            },
        }
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
            vars::DEFAULT_BATCH_MAX_EVENTS,
            1..=100_000,
        )?;
        let batch_max_bytes = parse_bytes(
            vars::BATCH_MAX_BYTES,
            get(vars::BATCH_MAX_BYTES),
            vars::DEFAULT_BATCH_MAX_BYTES,
            1024,
        )?;
        let attempt_timeout = parse_duration(
            vars::WEBHOOK_TIMEOUT,
            get(vars::WEBHOOK_TIMEOUT),
            vars::DEFAULT_WEBHOOK_TIMEOUT,
            vars::MAX_SETTING_DURATION,
        )?;
        let delivery_deadline = parse_duration(
            vars::DELIVERY_DEADLINE,
            get(vars::DELIVERY_DEADLINE),
            vars::DEFAULT_DELIVERY_DEADLINE,
            vars::MAX_DELIVERY_DEADLINE,
        )?;
        let (function_timeout, timeout_source) =
            function_timeout(&base).map_err(|reason| ConfigError::Invalid {
                var: vars::DELIVERY_DEADLINE,
                value: humantime::format_duration(delivery_deadline).to_string(),
                reason: format!("cannot tell the function timeout: {reason}"),
            })?;
        if let Some(limit) = function_timeout.filter(|t| delivery_deadline >= *t) {
            return Err(ConfigError::Invalid {
                var: vars::DELIVERY_DEADLINE,
                value: humantime::format_duration(delivery_deadline).to_string(),
                reason: format!(
                    "must end well before the function timeout ({}, {timeout_source}), or the \
                     host cancels the invocation before the handler answers",
                    humantime::format_duration(limit)
                ),
            });
        }
        let concurrency = parse_count(
            vars::WEBHOOK_CONCURRENCY,
            get(vars::WEBHOOK_CONCURRENCY),
            vars::DEFAULT_WEBHOOK_CONCURRENCY,
            1..=64,
        )?;
        let initial_backoff = parse_duration(
            vars::RETRY_INITIAL_BACKOFF,
            get(vars::RETRY_INITIAL_BACKOFF),
            vars::DEFAULT_RETRY_INITIAL_BACKOFF,
            vars::MAX_SETTING_DURATION,
        )?;
        let max_backoff = parse_duration(
            vars::RETRY_MAX_BACKOFF,
            get(vars::RETRY_MAX_BACKOFF),
            vars::DEFAULT_RETRY_MAX_BACKOFF,
            vars::MAX_SETTING_DURATION,
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
        let isolate_after_retries = parse_count(
            vars::ISOLATE_AFTER_RETRIES,
            get(vars::ISOLATE_AFTER_RETRIES),
            vars::DEFAULT_ISOLATE_AFTER_RETRIES as usize,
            0..=1000,
        )? as u32;
        let body_read_timeout = parse_duration(
            vars::BODY_READ_TIMEOUT,
            get(vars::BODY_READ_TIMEOUT),
            vars::DEFAULT_BODY_READ_TIMEOUT,
            vars::MAX_SETTING_DURATION,
        )?;
        let shutdown_grace = parse_duration(
            vars::SHUTDOWN_GRACE,
            get(vars::SHUTDOWN_GRACE),
            vars::DEFAULT_SHUTDOWN_GRACE,
            vars::MAX_SETTING_DURATION,
        )?;
        let max_body_bytes = parse_bytes(
            vars::MAX_BODY_BYTES,
            get(vars::MAX_BODY_BYTES),
            vars::DEFAULT_MAX_BODY_BYTES,
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
                // A file name is shown only when it is one short line with nothing of a URL
                // or a secret in it; anything else may be a document with credentials.
                let plain_name = file.len() <= 256
                    && !file.contains([':', '@', '=', '?', '\n', '\r', '{'])
                    && !file.starts_with('\u{feff}');
                let invalid = |reason: String| ConfigError::Invalid {
                    var: vars::ROUTES,
                    value: if is_inline(&file) {
                        "<inline routes>".into()
                    } else if plain_name {
                        file.clone()
                    } else {
                        "<not shown>".into()
                    },
                    reason,
                };
                let (text, dir) = if is_inline(&file) {
                    (file.clone(), base.clone())
                } else {
                    let path = base.join(file.trim());
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        invalid(format!(
                            "cannot read the routes file it names ({})",
                            e.kind()
                        ))
                    })?;
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
            vars::DEFAULT_MAX_RECORDS_PER_EVENT,
            1..=10_000_000,
        )?;

        Ok(Self {
            forwarder: Settings {
                max_records_per_event,
                isolate_after_retries,
                routes,
                policy,
                cluster_annotations,
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
            },
            host: HostSettings {
                max_body_bytes,
                deadletter_binding,
                body_read_timeout,
                shutdown_grace,
            },
        })
    }
}

//! Handler configuration: read from the environment (Function app settings), validated once.
//!
//! Every setting is parsed and checked at startup, so a bad value stops the process with the
//! variable's name and the reason instead of failing the first invocation. The raw strings never
//! leave this module: [`Config`] holds the typed, validated settings each part of the crate
//! owns, and no other module reads the environment.

mod alerts;
mod build;
mod environment;
mod routes;
pub mod values;
pub mod vars;
mod webhook;

#[cfg(test)]
mod refusals_tests;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::host::HostSettings;
use crate::pipeline::Settings;
use environment::{check_unknown, is_key_vault_reference, PREFIX};
pub use values::parse_duration_within;

/// The validated configuration: the settings of each part, built from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The pipeline's settings: routes, Policy, categories, batching and retries.
    pub forwarder: Settings,
    /// The host edge's settings: body limit and the dead-letter binding.
    pub host: HostSettings,
}

/// Whether the configuration must name a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Delivering Events (the handler, `resend`, `backfill`, `check-config`): one of
    /// `AUDIT_WEBHOOK_URL` and `AUDIT_ROUTES` is required.
    Deliver,
    /// Counting what would be delivered, sending nothing (`backfill --dry-run`): without a
    /// webhook, Events take one catch-all route to [`NO_WEBHOOK`], which nothing is sent to.
    Count,
}

/// The catch-all route's webhook under [`Purpose::Count`] when none is configured: a name
/// under `.invalid`, which never resolves (RFC 6761 §6.4), so nothing could reach anything.
pub const NO_WEBHOOK: &str = "http://no-webhook.invalid/";

/// A configuration problem, naming the variable. Values that may hold a credential are never
/// shown; others are quoted as set.
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
        Self::read(env_vars(), Purpose::Deliver)
    }

    /// Reads the process environment for `purpose`: [`Purpose::Count`] needs no webhook.
    ///
    /// # Errors
    /// The first variable that is missing or invalid.
    pub fn from_env_for(purpose: Purpose) -> Result<Self, ConfigError> {
        Self::read(env_vars(), purpose)
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
        Self::read(vars, Purpose::Deliver)
    }

    /// [`Config::from_vars`] for `purpose`.
    ///
    /// # Errors
    /// As [`Config::from_vars`].
    pub fn read(
        vars: impl IntoIterator<Item = (String, String)>,
        purpose: Purpose,
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
        let lookup = |name: &str| {
            looked_up.borrow_mut().insert(name.to_string());
            let value = env.get(name).cloned();
            if value.as_deref().is_some_and(is_key_vault_reference) {
                unresolved
                    .borrow_mut()
                    .get_or_insert_with(|| name.to_string());
            }
            value
        };
        let result = Self::build(&lookup, purpose);
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
        Self::build(&lookup, Purpose::Deliver)
    }

    /// Assembles the configuration from the builders of its parts, in the order of the
    /// configuration reference (so the first bad setting is the one reported).
    fn build(
        lookup: &dyn Fn(&str) -> Option<String>,
        purpose: Purpose,
    ) -> Result<Self, ConfigError> {
        use vars::def;
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let get: values::Lookup<'_> = &get;
        let base = build::app_root(get);
        let format = build::webhook_format(get)?;
        let categories = def::CATEGORIES.read(get)?;
        let batch_max_events = def::BATCH_MAX_EVENTS.read(get)?;
        let batch_max_bytes = def::BATCH_MAX_BYTES.read(get)?;
        let retry = build::retry(get)?;
        let delivery_deadline = build::delivery_deadline(get, &base)?;
        let concurrency = def::WEBHOOK_CONCURRENCY.read(get)?;
        let isolate_after_retries = build::isolate_after_retries(get)?;
        let host = build::host(get)?;
        let policy = build::policy(get, &base)?;
        let cluster_annotations = def::CLUSTER_ANNOTATIONS.read(get)?;
        let routes = build::routes(get, &base, format, purpose)?;
        let max_records_per_event = def::MAX_RECORDS_PER_EVENT.read(get)?;
        let truncate = build::truncation(get, &routes, batch_max_bytes)?;
        Ok(Self {
            forwarder: Settings {
                max_records_per_event,
                isolate_after_retries,
                routes,
                alerts: alerts::read_alerts(get, &base)?,
                policy,
                cluster_annotations,
                categories,
                batch_max_events,
                batch_max_bytes,
                delivery_deadline,
                concurrency,
                retry,
                truncate,
            },
            host,
        })
    }
}

/// The process environment as name/value pairs (names or values that are not Unicode left
/// out: no setting has one).
fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// Whether the process environment names a webhook (`AUDIT_WEBHOOK_URL` or `AUDIT_ROUTES`).
pub fn webhook_in_env() -> bool {
    [vars::WEBHOOK_URL, vars::ROUTES]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
}

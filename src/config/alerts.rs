//! `AUDIT_ALERTS`: the alert rules document, a file name or the document inline, as
//! `AUDIT_ROUTES` is given; [`AlertRules::parse`] reads it with the same YAML loader and
//! budgets (`crate::audit::yaml`) and checks the rules.

use std::path::Path;
use std::sync::Arc;

use super::values::Lookup;
use super::vars::def;
use super::ConfigError;
use crate::alerts::AlertRules;

/// Whether the value is the document itself rather than a file name.
fn is_inline(value: &str) -> bool {
    let v = value.trim_start_matches('\u{feff}').trim_start();
    v.starts_with('{')
        || v.starts_with("---")
        || v.starts_with("notifiers:")
        || v.starts_with("rules:")
        || v.contains(['\n', '\r'])
}

/// Reads and checks `AUDIT_ALERTS` (`None` when unset). A relative file name is read from
/// `base`; `get` reads the app settings that notifiers' `urlSetting` name.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `AUDIT_ALERTS`, the rule and the line; the value is shown
/// only when it is a plain file name.
pub(super) fn read_alerts(
    get: Lookup<'_>,
    base: &Path,
) -> Result<Option<Arc<AlertRules>>, ConfigError> {
    let Some(value) = def::ALERTS.read(get) else {
        return Ok(None);
    };
    let inline = is_inline(&value);
    let plain_name = !inline && value.len() <= 256 && !value.contains([':', '@', '=', '?', '{']);
    let shown = if inline {
        "<inline alert rules>".to_string()
    } else if plain_name {
        value.clone()
    } else {
        "<not shown>".to_string()
    };
    let invalid = |reason: String| def::ALERTS.invalid(shown.clone(), reason);
    let text = if inline {
        value.clone()
    } else {
        std::fs::read_to_string(base.join(value.trim())).map_err(|e| {
            invalid(format!(
                "cannot read the alert rules file it names ({})",
                e.kind()
            ))
        })?
    };
    let rules = AlertRules::parse(&text, get).map_err(invalid)?;
    Ok(Some(Arc::new(rules)))
}

//! Checks on the environment as a whole, before and after the settings are read: unknown
//! `AUDIT_*` variables (a misspelled setting would otherwise be ignored without a word),
//! unresolved Key Vault references, and the Functions host's `functionTimeout` that the
//! delivery deadline must stay under.

use std::path::Path;
use std::time::Duration;

use super::vars;
use super::ConfigError;

/// The prefix of every setting the forwarder owns.
pub(super) const PREFIX: &str = "AUDIT_";

/// App Service writes this in place of a Key Vault reference it could not resolve (the
/// identity lacks access, the secret is missing): the literal text reaches the process.
const KEY_VAULT_REFERENCE: &str = "@microsoft.keyvault(";

/// Whether a value is still an unresolved Key Vault reference.
pub(super) fn is_key_vault_reference(value: &str) -> bool {
    value
        .trim_start()
        .get(..KEY_VAULT_REFERENCE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(KEY_VAULT_REFERENCE))
}

/// The first `AUDIT_*` name that is neither a setting nor a variable the settings name
/// (`bearerTokenSetting` in routes), with the closest known setting.
///
/// # Errors
/// [`ConfigError::Unknown`] for the first unknown name, in name order.
pub(super) fn check_unknown<'a>(
    names: impl IntoIterator<Item = &'a str>,
    referenced: &dyn Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|n| n.starts_with(PREFIX) && !vars::ALL.contains(n) && !referenced(n))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(name) => Err(ConfigError::Unknown {
            name: (*name).to_string(),
            suggestion: closest(name),
        }),
    }
}

/// The known setting nearest to `name` (Damerau–Levenshtein), when it is near enough to be a
/// likely typo, or when one contains the other (`AUDIT_WEBHOOK_CA_FILE` → `AUDIT_WEBHOOK_CA`).
fn closest(name: &str) -> Option<&'static str> {
    let best = vars::ALL
        .iter()
        .map(|known| {
            let d = strsim::damerau_levenshtein(name, known);
            let contained = name.starts_with(known) || known.starts_with(name);
            (if contained { d.min(1) } else { d }, *known)
        })
        .min_by_key(|(d, known)| (*d, known.len()))?;
    let limit = (name.len() - PREFIX.len().min(name.len())).max(4) / 2;
    (best.0 <= limit).then_some(best.1)
}

/// The host's `functionTimeout` from `host.json` in the app root, or the default when the
/// file or the key is absent. `None` when it is unlimited (`-1`).
///
/// # Errors
/// When `host.json` exists but cannot be read, is not JSON, or the value is not a
/// `[d.]hh:mm:ss` time span.
pub(super) fn function_timeout(app_root: &Path) -> Result<(Option<Duration>, String), String> {
    let path = app_root.join("host.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((
                Some(vars::DEFAULT_FUNCTION_TIMEOUT),
                "the default; no host.json in the app root".into(),
            ))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let doc: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    match doc.get("functionTimeout").and_then(|v| v.as_str()) {
        None => Ok((
            Some(vars::DEFAULT_FUNCTION_TIMEOUT),
            format!("the default; {} sets no functionTimeout", path.display()),
        )),
        Some("-1") => Ok((None, format!("unlimited in {}", path.display()))),
        Some(span) => parse_time_span(span)
            .map(|d| (Some(d), format!("functionTimeout in {}", path.display())))
            .ok_or_else(|| {
                format!(
                    "functionTimeout {span:?} in {} is not a [d.]hh:mm:ss time span",
                    path.display()
                )
            }),
    }
}

/// A .NET `TimeSpan` as host.json writes it: `hh:mm:ss`, optionally `d.` before and
/// `.fff` after.
fn parse_time_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let parts: Vec<&str> = text.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let (days, hours) = match h.split_once('.') {
        Some((d, h)) => (d.parse::<u64>().ok()?, h.parse::<u64>().ok()?),
        None => (0, h.parse::<u64>().ok()?),
    };
    let minutes: u64 = m.parse().ok()?;
    let seconds: f64 = s.parse().ok()?;
    if minutes > 59 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let whole = days * 86_400 + hours * 3_600 + minutes * 60;
    Some(Duration::from_secs(whole) + Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_setting() {
        assert_eq!(closest("AUDIT_WEBHOOK_CA_FILE"), Some(vars::WEBHOOK_CA));
        assert_eq!(closest("AUDIT_WEBHOK_TIMEOUT"), Some(vars::WEBHOOK_TIMEOUT));
        assert_eq!(
            closest("AUDIT_BATCH_MAX_EVENT"),
            Some(vars::BATCH_MAX_EVENTS)
        );
        assert_eq!(closest("AUDIT_COMPLETELY_DIFFERENT_THING"), None);
    }

    #[test]
    fn reads_host_json_time_spans() {
        assert_eq!(parse_time_span("00:10:00"), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_time_span("1.02:00:30"),
            Some(Duration::from_secs(93_630))
        );
        assert_eq!(
            parse_time_span("00:00:01.5"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_time_span("10m"), None);
        assert_eq!(parse_time_span("00:61:00"), None);
    }

    #[test]
    fn recognises_key_vault_references_in_any_case() {
        assert!(is_key_vault_reference(
            "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/t/)"
        ));
        assert!(is_key_vault_reference(
            "  @microsoft.keyvault(VaultName=kv;SecretName=t)"
        ));
        assert!(!is_key_vault_reference("https://hooks.example/k8s_audit"));
    }
}

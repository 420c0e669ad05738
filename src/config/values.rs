//! Parsers for the kinds of value settings hold: counts, byte sizes, durations, switches and
//! category lists. Each error names the variable and says what is expected.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{vars, ConfigError};

pub(super) fn parse_categories(value: &str) -> Result<BTreeSet<String>, ConfigError> {
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
pub(super) fn parse_switch(
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

pub(super) fn parse_count(
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
pub(super) fn parse_bytes(
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

/// Parses a duration written `500ms`, `10s`, `2m` (humantime syntax). Zero and anything
/// longer than `max` are refused.
pub(super) fn parse_duration(
    var: &'static str,
    value: Option<String>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match humantime::parse_duration(v.trim()) {
        Ok(d) if d.is_zero() => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: "must be longer than zero".into(),
        }),
        Ok(d) if d > max => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: format!("must be at most {}", humantime::format_duration(max)),
        }),
        Ok(d) => Ok(d),
        Err(e) => Err(ConfigError::Invalid {
            var,
            value: v,
            reason: format!("expected a duration such as 500ms, 10s or 2m ({e})"),
        }),
    }
}

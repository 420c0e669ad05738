//! The kinds of value a setting holds (counts, byte sizes, durations, switches, words, sets of
//! words, free text), each with its default and bounds, how they are shown in the
//! configuration reference and by `check-config`, and how a value is read. Each error names
//! the variable and says what is expected.

use std::collections::BTreeSet;
use std::time::Duration;

use super::vars::Setting;
use super::ConfigError;

/// What the configuration reference and `check-config` show of a kind: the default and the
/// allowed values, as written in a setting (`10MiB`, `500ms`, `1`–`64`).
pub trait Kind: Sync {
    /// The default as a user writes it; `None` when the setting has none.
    fn default_shown(&self) -> Option<String>;
    /// The allowed values; `None` when the meaning says it (free text).
    fn bounds_shown(&self) -> Option<String>;
    /// Whether the value may be a credential or hold one (never echoed in an error).
    fn carries_secret(&self) -> bool {
        false
    }
    /// Whether the default lies within the bounds (a declaration mistake otherwise).
    fn default_in_bounds(&self) -> bool {
        true
    }
}

/// A whole number within bounds.
pub struct Count {
    /// Used when the setting is unset or blank.
    pub default: usize,
    /// The smallest value accepted.
    pub min: usize,
    /// The largest value accepted.
    pub max: usize,
}

/// A byte size within bounds: a plain number of bytes or a number with a unit.
pub struct Size {
    /// Used when the setting is unset or blank.
    pub default: usize,
    /// The smallest value accepted.
    pub min: usize,
    /// The largest value accepted.
    pub max: usize,
}

/// A duration within bounds, written `500ms`, `10s`, `2m` (humantime syntax).
pub struct Span {
    /// Used when the setting is unset or blank.
    pub default: Duration,
    /// The shortest value accepted.
    pub min: Duration,
    /// The longest value accepted.
    pub max: Duration,
}

/// On or off: `on`/`true`/`1` or `off`/`false`/`0`, any case.
pub struct Switch {
    /// Used when the setting is unset or blank.
    pub default: bool,
}

/// One word of a fixed list, any case.
pub struct Choice {
    /// Used when the setting is unset or blank.
    pub default: &'static str,
    /// Every word accepted, lower case.
    pub choices: &'static [&'static str],
}

/// A comma-separated, non-empty subset of a fixed list of words, any case.
pub struct Subset {
    /// Used when the setting is unset or blank, comma-separated.
    pub default: &'static str,
    /// Every word accepted, lower case.
    pub choices: &'static [&'static str],
}

/// Free text: a URL, a document, a file name or PEM, read by the setting's own builder.
pub struct Text {
    /// Used when the setting is unset or blank (`None`: no default).
    pub default: Option<&'static str>,
    /// Whether the value may be or hold a credential: it is never shown.
    pub secret: bool,
}

impl Kind for Count {
    fn default_in_bounds(&self) -> bool {
        (self.min..=self.max).contains(&self.default)
    }
    fn default_shown(&self) -> Option<String> {
        Some(self.default.to_string())
    }
    fn bounds_shown(&self) -> Option<String> {
        Some(format!("`{}`–`{}`", self.min, self.max))
    }
}

impl Kind for Size {
    fn default_in_bounds(&self) -> bool {
        (self.min..=self.max).contains(&self.default)
    }
    fn default_shown(&self) -> Option<String> {
        Some(show_size(self.default))
    }
    fn bounds_shown(&self) -> Option<String> {
        Some(format!(
            "`{}`–`{}`",
            show_size(self.min),
            show_size(self.max)
        ))
    }
}

impl Kind for Span {
    fn default_in_bounds(&self) -> bool {
        (self.min..=self.max).contains(&self.default)
    }
    fn default_shown(&self) -> Option<String> {
        Some(show_duration(self.default))
    }
    fn bounds_shown(&self) -> Option<String> {
        Some(format!(
            "`{}`–`{}`",
            show_duration(self.min),
            show_duration(self.max)
        ))
    }
}

impl Kind for Switch {
    fn default_shown(&self) -> Option<String> {
        Some(show_switch(self.default).into())
    }
    fn bounds_shown(&self) -> Option<String> {
        Some("`on` or `off`".into())
    }
}

impl Kind for Choice {
    fn default_shown(&self) -> Option<String> {
        Some(self.default.into())
    }
    fn bounds_shown(&self) -> Option<String> {
        Some(words(self.choices, " or "))
    }
}

impl Kind for Subset {
    fn default_shown(&self) -> Option<String> {
        Some(self.default.into())
    }
    fn bounds_shown(&self) -> Option<String> {
        Some(format!("one or more of {}", words(self.choices, ", ")))
    }
}

impl Kind for Text {
    fn default_shown(&self) -> Option<String> {
        self.default.map(str::to_string)
    }
    fn bounds_shown(&self) -> Option<String> {
        None
    }
    fn carries_secret(&self) -> bool {
        self.secret
    }
}

fn words(list: &[&str], separator: &str) -> String {
    let quoted: Vec<String> = list.iter().map(|w| format!("`{w}`")).collect();
    quoted.join(separator)
}

/// A size as a user writes it: whole GiB, MiB or KiB with the unit, else bytes.
pub fn show_size(bytes: usize) -> String {
    for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// A duration as a user writes it (`500ms`, `30s`, `2m`, `24h`): humantime's form, in hours
/// from a day on (humantime writes `1day`, which its parser reads but nobody writes).
pub fn show_duration(d: Duration) -> String {
    if d.as_secs() >= 86_400 && d.as_secs() % 3600 == 0 && d.subsec_nanos() == 0 {
        return format!("{}h", d.as_secs() / 3600);
    }
    humantime::format_duration(d).to_string()
}

/// `on` or `off`.
pub fn show_switch(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// Reads a duration written in humantime syntax and refuses one outside `min..=max`, so no
/// later arithmetic on it (a deadline, `Instant + d`) can overflow. For command-line options
/// as well as settings.
///
/// # Errors
/// What is expected, quoting the bounds (never the value).
pub fn parse_duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration such as 500ms, 10s or 2m ({e})"))?;
    if d < min || d > max {
        let longer = if min.is_zero() {
            String::new()
        } else {
            format!("at least {} and ", show_duration(min))
        };
        return Err(format!("must be {longer}at most {}", show_duration(max)));
    }
    Ok(d)
}

/// The value of a setting, with blank values counting as unset.
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl<K: Kind> Setting<K> {
    /// The error for a value of this setting: `value` is what may be shown of it.
    pub(super) fn invalid(
        &self,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            var: self.name,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl Setting<Count> {
    /// The count, or the default when unset.
    pub(super) fn read(&self, get: Lookup<'_>) -> Result<usize, ConfigError> {
        let Some(v) = get(self.name) else {
            return Ok(self.kind.default);
        };
        let (min, max) = (self.kind.min, self.kind.max);
        match v.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.invalid(v, format!("expected a whole number from {min} to {max}"))),
        }
    }
}

impl Setting<Size> {
    /// The size in bytes, or the default when unset.
    pub(super) fn read(&self, get: Lookup<'_>) -> Result<usize, ConfigError> {
        let Some(v) = get(self.name) else {
            return Ok(self.kind.default);
        };
        let trimmed = v.trim();
        let parsed = trimmed.parse::<u64>().ok().or_else(|| {
            trimmed
                .parse::<bytesize::ByteSize>()
                .ok()
                .map(|b| b.as_u64())
        });
        let (min, max) = (self.kind.min, self.kind.max);
        match parsed.map(|n| usize::try_from(n).unwrap_or(usize::MAX)) {
            Some(n) if n < min => Err(self.invalid(v, format!("must be at least {min} bytes"))),
            Some(n) if n > max => Err(self.invalid(
                v,
                format!("must be at most {} ({max} bytes)", show_size(max)),
            )),
            Some(n) => Ok(n),
            None => Err(self.invalid(v, "expected a size in bytes, e.g. 10485760 or 10MiB")),
        }
    }
}

impl Setting<Span> {
    /// The duration, or the default when unset.
    pub(super) fn read(&self, get: Lookup<'_>) -> Result<Duration, ConfigError> {
        let Some(v) = get(self.name) else {
            return Ok(self.kind.default);
        };
        match humantime::parse_duration(v.trim()) {
            Ok(d) if d.is_zero() => Err(self.invalid(v, "must be longer than zero")),
            Ok(d) if d < self.kind.min => Err(self.invalid(
                v,
                format!(
                    "must be at least {}: {}",
                    show_duration(self.kind.min),
                    self.why
                ),
            )),
            Ok(d) if d > self.kind.max => Err(self.invalid(
                v,
                format!("must be at most {}", show_duration(self.kind.max)),
            )),
            Ok(d) => Ok(d),
            Err(e) => Err(self.invalid(
                v,
                format!("expected a duration such as 500ms, 10s or 2m ({e})"),
            )),
        }
    }
}

impl Setting<Switch> {
    /// On or off, or the default when unset.
    pub(super) fn read(&self, get: Lookup<'_>) -> Result<bool, ConfigError> {
        let Some(v) = get(self.name) else {
            return Ok(self.kind.default);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Ok(true),
            "off" | "false" | "0" => Ok(false),
            _ => Err(self.invalid(v, "expected on or off (true or false)")),
        }
    }
}

impl Setting<Choice> {
    /// The word, lower case, or the default when unset.
    pub(super) fn read(&self, get: Lookup<'_>) -> Result<&'static str, ConfigError> {
        let Some(v) = get(self.name) else {
            return Ok(self.kind.default);
        };
        let word = v.trim().to_ascii_lowercase();
        match self.kind.choices.iter().find(|c| **c == word) {
            Some(c) => Ok(c),
            None => Err(self.invalid(v, format!("expected {}", list(self.kind.choices, " or ")))),
        }
    }
}

impl Setting<Subset> {
    /// The words, lower case, or the default's when unset. Every word must be one of the
    /// choices: a misspelled one would otherwise match nothing, in silence.
    pub(super) fn read(&self, get: Lookup<'_>) -> Result<BTreeSet<String>, ConfigError> {
        let value = get(self.name);
        let text = value.as_deref().unwrap_or(self.kind.default);
        let mut set = BTreeSet::new();
        for word in text.split(',').map(|c| c.trim().to_ascii_lowercase()) {
            if word.is_empty() {
                continue;
            }
            if !self.kind.choices.contains(&word.as_str()) {
                let hint = closest_word(&word, self.kind.choices)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(self.invalid(
                    text,
                    format!(
                        "`{}` is not one of {}{hint}; separate several with commas",
                        word.escape_debug(),
                        list(self.kind.choices, ", ")
                    ),
                ));
            }
            set.insert(word);
        }
        if set.is_empty() {
            return Err(self.invalid(
                text,
                format!("name at least one of {}", list(self.kind.choices, ", ")),
            ));
        }
        Ok(set)
    }
}

fn list(words: &[&str], separator: &str) -> String {
    words.join(separator)
}

/// The choice nearest to `word` when it is close enough to be a typo (a third of its
/// length), or when `word` holds a choice with something around it (`kube-audit;kube-audit-admin`).
fn closest_word(word: &str, choices: &[&'static str]) -> Option<&'static str> {
    let (distance, best) = choices
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .min_by_key(|(d, c)| (*d, c.len()))?;
    if distance <= (word.len() / 3).max(1) {
        return Some(best);
    }
    choices
        .iter()
        .filter(|c| word.contains(**c))
        .max_by_key(|c| c.len())
        .copied()
}

impl Setting<Text> {
    /// The value as set, or the default when unset (`None`: neither).
    pub(super) fn read(&self, get: Lookup<'_>) -> Option<String> {
        get(self.name).or_else(|| self.kind.default.map(str::to_string))
    }
}

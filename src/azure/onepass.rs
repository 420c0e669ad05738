//! One pass over a diagnostic-settings envelope: each record's fields are read while the
//! envelope is scanned, and an audit record's `properties.log` is unescaped and validated
//! straight from the envelope text, instead of parsing the envelope into raw records and
//! each record again.
//!
//! Only the usual shapes are read here. Anything else (a record that is not an object, a
//! field of another type, a repeated field, an escaped key, a log that is an object, a syntax
//! error, more records than the limit) makes [`read_records`] give up with `None`, and the
//! caller takes the exact path of `diagnostics`, so every outcome and message stays the same.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::categories::canonical;
use super::diagnostics::{
    convert_log, event_from_text, wanted, Malformed, NoEvent, RecordError, RecordEvent, Skip,
};
use crate::audit::AuditEvent;

/// What one record gave.
pub(super) type RecordOutcome<'a> = Result<RecordEvent<'a>, NoEvent<'a>>;

/// The outcome of every record of the envelope `text` (a JSON object, valid UTF-8 without
/// NUL), in order, or `None` when the envelope needs the exact path.
pub(super) fn read_records<'a>(
    text: &'a str,
    categories: &BTreeSet<String>,
    max: Option<usize>,
) -> Option<Vec<RecordOutcome<'a>>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = EnvelopeSeed { categories, max };
    let outcomes = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(outcomes)
}

/// Gives up on the one-pass read.
fn exact<E: de::Error>() -> E {
    E::custom("not a usual shape: read it on the exact path")
}

struct EnvelopeSeed<'c> {
    categories: &'c BTreeSet<String>,
    max: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Vec<RecordOutcome<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Vec<RecordOutcome<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a diagnostic-settings envelope")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut records = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            if key != "records" {
                map.next_value::<IgnoredAny>()?;
            } else if records.is_some() {
                return Err(exact());
            } else {
                records = Some(map.next_value_seed(RecordsSeed {
                    categories: self.categories,
                    max: self.max,
                })?);
            }
        }
        records.ok_or_else(exact)
    }
}

struct RecordsSeed<'c> {
    categories: &'c BTreeSet<String>,
    max: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = Vec<RecordOutcome<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = Vec<RecordOutcome<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        let record = || RecordSeed {
            categories: self.categories,
        };
        while let Some(outcome) = seq.next_element_seed(record())? {
            out.push(outcome);
            if self.max.is_some_and(|max| out.len() > max) {
                return Err(exact());
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct RecordSeed<'c> {
    categories: &'c BTreeSet<String>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = RecordOutcome<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// A record's `properties.log`, as far as it was read.
enum Log<'de> {
    /// No `properties`, `properties` null, or no (or a null) `log`.
    Absent,
    /// Read before the category was known: converted once the record ends.
    Raw(&'de RawValue),
    /// Converted as it was read (the category came first and is an audit one).
    Read(Result<AuditEvent, RecordError>),
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = RecordOutcome<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a diagnostic record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut category: Option<Option<Cow<'de, str>>> = None;
        let mut resource_id: Option<Option<Cow<'de, str>>> = None;
        let mut log: Option<Log<'de>> = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "category" if category.is_none() => category = Some(map.next_value_seed(OptStr)?),
                "resourceId" if resource_id.is_none() => {
                    resource_id = Some(map.next_value_seed(OptStr)?);
                }
                "properties" if log.is_none() => {
                    // The log is converted in place only once the category says it is wanted.
                    let known = category.as_ref().and_then(|c| c.as_deref()).map(str::trim);
                    let convert =
                        known.is_some_and(|c| !c.is_empty() && wanted(self.categories, c));
                    log = Some(map.next_value_seed(PropertiesSeed { convert })?);
                }
                "category" | "resourceId" | "properties" => return Err(exact()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let category = match category.flatten() {
            Some(c) if !c.trim().is_empty() => c,
            _ => return Ok(Err(Malformed(RecordError::NoCategory, None))),
        };
        let category = category.trim();
        if !wanted(self.categories, category) {
            return Ok(Err(Skip(category.to_ascii_lowercase())));
        }
        let event = match log.unwrap_or(Log::Absent) {
            Log::Absent => return Ok(Err(Malformed(RecordError::NoLog, None))),
            Log::Raw(raw) => match convert_log(raw) {
                Ok(event) => event,
                // A log that cannot be unescaped takes the exact path, for its message.
                Err(Malformed(RecordError::Event(e), _)) => {
                    return Ok(Err(Malformed(RecordError::Event(e), None)))
                }
                Err(Malformed(RecordError::LogType, _)) => {
                    return Ok(Err(Malformed(RecordError::LogType, None)))
                }
                Err(_) => return Err(exact()),
            },
            Log::Read(Ok(event)) => event,
            Log::Read(Err(error)) => return Ok(Err(Malformed(error, None))),
        };
        Ok(Ok(RecordEvent {
            event,
            resource_id: resource_id.flatten(),
            category: canonical(category),
        }))
    }
}

/// A string (borrowed when it holds no escape) or null; anything else gives up.
struct OptStr;

impl<'de> DeserializeSeed<'de> for OptStr {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OptStr {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct PropertiesSeed {
    convert: bool,
}

impl<'de> DeserializeSeed<'de> for PropertiesSeed {
    type Value = Log<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PropertiesSeed {
    type Value = Log<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("record properties")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Log::Absent)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut log = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            if key != "log" {
                map.next_value::<IgnoredAny>()?;
            } else if log.is_some() {
                return Err(exact());
            } else if self.convert {
                log = Some(map.next_value_seed(LogSeed)?);
            } else {
                let raw: &'de RawValue = map.next_value()?;
                log = Some(if raw.get() == "null" {
                    Log::Absent
                } else {
                    Log::Raw(raw)
                });
            }
        }
        Ok(log.unwrap_or(Log::Absent))
    }
}

/// An audit record's log, converted as it is read: a string is unescaped once and validated;
/// a scalar or an array is the wrong type; an object gives up (its text is kept exactly on
/// the exact path).
struct LogSeed;

impl<'de> DeserializeSeed<'de> for LogSeed {
    type Value = Log<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn wrong_type<'de, E>() -> Result<Log<'de>, E> {
    Ok(Log::Read(Err(RecordError::LogType)))
}

impl<'de> Visitor<'de> for LogSeed {
    type Value = Log<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an audit Event as a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let event = event_from_text(Cow::Owned(v.to_owned()));
        Ok(Log::Read(event.map_err(RecordError::from)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Log::Absent)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        wrong_type()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        wrong_type()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        wrong_type()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        wrong_type()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        wrong_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;
    use crate::azure::diagnostics::exact_outcomes;

    /// An outcome as text, to compare the two paths.
    fn shown(outcome: &RecordOutcome<'_>) -> String {
        match outcome {
            Ok(RecordEvent {
                event,
                resource_id: id,
                category,
            }) => format!("event {} {id:?} {category}", event.json()),
            Err(Skip(category)) => format!("skip {category}"),
            Err(Malformed(error, _)) => format!("malformed {error}"),
        }
    }

    /// Every record shape either reads in one pass exactly as the exact path reads it, or
    /// gives up; the usual shapes read in one pass.
    #[test]
    fn one_pass_matches_the_exact_path_or_gives_up() {
        let categories: BTreeSet<String> = ["kube-audit".into(), "kube-audit-admin".into()].into();
        let e = event_json("one");
        let log = serde_json::to_string(&e).unwrap();
        let bom = serde_json::to_string(&format!(" \u{feff}{e}\n")).unwrap();
        let usual = [
            format!(
                r#"{{"category":"kube-audit","resourceId":"/S/RG","properties":{{"log":{log}}}}}"#
            ),
            format!(
                r#"{{"properties":{{"stream":"x","log":{log}}},"category":" KUBE-AUDIT-ADMIN "}}"#
            ),
            format!(r#"{{"category":"kube-audit","properties":{{"log":{bom}}},"time":[1,{{}}]}}"#),
            format!(r#"{{"category":"guard","properties":{{"log":{log}}}}}"#),
            format!(r#"{{"properties":{{"log":{log}}}}}"#),
            format!(r#"{{"category":"","properties":{{"log":{log}}}}}"#),
            r#"{"category":null,"resourceId":null,"properties":null}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":"not an event"}}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":"{\"kind\":\"Event\""}}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":42}}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":[1,[2]]}}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":null}}"#.into(),
            r#"{"category":"kube-audit","properties":{"pod":"p"}}"#.into(),
            r#"{"category":"kube-audit"}"#.into(),
            r#"{"properties":{"log":true},"category":"kube-audit"}"#.into(),
            r#"{"properties":{"log":"x"},"category":"kube-audit"}"#.into(),
            format!(r#"{{"properties":{{"log":{e}}},"category":"kube-audit"}}"#),
            r#"{"category":"kube-audit","properties":{"log":"\u007b\"a\":1}"}}"#.into(),
        ];
        let unusual = [
            format!(r#"{{"category":"kube-audit","properties":{{"log":{e}}}}}"#),
            r#""a string""#.into(),
            r#"["kube-audit"]"#.into(),
            r#"{"category":5,"properties":{"log":"x"}}"#.into(),
            r#"{"category":"kube-audit","category":"guard"}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":"a","log":"b"}}"#.into(),
            r#"{"category":"kube-audit","properties":["x"]}"#.into(),
            r#"{"category":"kube-audit","properties":"x"}"#.into(),
            r#"{"cat\u0065gory":"kube-audit","properties":{"log":"x"}}"#.into(),
            r#"{"category":"kube-audit","properties":{"log":"\ud800"}}"#.into(),
        ];
        for record in &usual {
            let text = format!(r#"{{"records":[{record}]}}"#);
            let exact = exact_outcomes(&text, &categories).expect("an envelope");
            let fast = read_records(&text, &categories, None).expect("read in one pass");
            let shown_fast: Vec<_> = fast.iter().map(shown).collect();
            let shown_exact: Vec<_> = exact.iter().map(shown).collect();
            assert_eq!(shown_fast, shown_exact, "{record}");
        }
        for record in &unusual {
            let text = format!(r#"{{"records":[{record}]}}"#);
            assert!(read_records(&text, &categories, None).is_none(), "{record}");
        }
        // Envelopes the exact path judges, and the records limit.
        let one = &usual[0];
        for text in [
            format!(r#"{{"records":[{one}],"records":[]}}"#),
            r#"{"records":null}"#.into(),
            r#"{"other":1}"#.into(),
            format!(r#"{{"records":[{one}]}} x"#),
        ] {
            assert!(read_records(&text, &categories, None).is_none(), "{text}");
        }
        let two = format!(r#"{{"x":{{"records":1}},"records":[{one},{one}]}}"#);
        assert!(read_records(&two, &categories, Some(1)).is_none());
        assert_eq!(read_records(&two, &categories, Some(2)).unwrap().len(), 2);
    }
}

//! One pass over a diagnostic-settings envelope: each record's fields are read while the
//! envelope is scanned (with [`super::scan`]), and an audit record's `properties.log` is
//! unescaped in one pass and validated straight from the envelope text, instead of parsing
//! the envelope into raw records and each record again.
//!
//! Only the usual shapes are read here. Anything else (a record that is not an object, a
//! field of another type, a repeated field, an escaped key, a string the scanner leaves to
//! serde_json, nesting deeper than the scanner skips, a syntax error, more records than the
//! limit) makes [`read_records`] give up with `None`, and the caller takes the exact path of
//! `diagnostics`, so every outcome and message stays the same.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::categories::canonical;
use super::diagnostics::{
    event_from_text, wanted, Malformed, NoEvent, RecordError, RecordEvent, Skip,
};
use super::scan::{Cursor, MAX_DEPTH};
use crate::audit::event::ROOM_FOR_EDITS;
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
    let mut c = Cursor::new(text);
    c.ws();
    c.eat(b'{').then_some(())?;
    let mut records = None;
    let mut more = !c.empty(b'}');
    while more {
        let key = c.key()?;
        if key != "records" {
            c.skip_value(MAX_DEPTH)?;
        } else if records.is_some() {
            return None;
        } else {
            records = Some(read_array(&mut c, categories, max)?);
        }
        more = c.next_or(b'}')?;
    }
    c.at_end().then_some(())?;
    records
}

/// The records array, each record read as it comes.
fn read_array<'a>(
    c: &mut Cursor<'a>,
    categories: &BTreeSet<String>,
    max: Option<usize>,
) -> Option<Vec<RecordOutcome<'a>>> {
    c.eat(b'[').then_some(())?;
    let mut out = Vec::new();
    let mut more = !c.empty(b']');
    while more {
        out.push(read_record(c, categories)?);
        if max.is_some_and(|max| out.len() > max) {
            return None;
        }
        more = c.next_or(b']')?;
    }
    Some(out)
}

/// A record's `properties.log`, as far as it was read.
enum Log<'a> {
    /// No `properties`, `properties` null, or no (or a null) `log`.
    Absent,
    /// A log that is a string: its text, unescaped.
    Text(Cow<'a, str>),
    /// A log that is the Event object itself: its text.
    Object(&'a str),
    /// A log that is a number, a boolean or an array.
    WrongType,
}

/// One record (an object; anything else gives up), and what it gave.
fn read_record<'a>(c: &mut Cursor<'a>, categories: &BTreeSet<String>) -> Option<RecordOutcome<'a>> {
    c.eat(b'{').then_some(())?;
    let mut category: Option<Option<Cow<'a, str>>> = None;
    let mut resource_id: Option<Option<Cow<'a, str>>> = None;
    let mut log: Option<Log<'a>> = None;
    let mut more = !c.empty(b'}');
    while more {
        match c.key()? {
            "category" if category.is_none() => category = Some(c.opt_string()?),
            "resourceId" if resource_id.is_none() => resource_id = Some(c.opt_string()?),
            "properties" if log.is_none() => log = Some(read_properties(c)?),
            "category" | "resourceId" | "properties" => return None,
            _ => c.skip_value(MAX_DEPTH)?,
        }
        more = c.next_or(b'}')?;
    }
    let category = match category.flatten() {
        Some(c) if !c.trim().is_empty() => c,
        _ => return Some(Err(Malformed(RecordError::NoCategory, None))),
    };
    let category = category.trim();
    if !wanted(categories, category) {
        return Some(Err(Skip(category.to_ascii_lowercase())));
    }
    let event = match log.unwrap_or(Log::Absent) {
        Log::Absent => return Some(Err(Malformed(RecordError::NoLog, None))),
        Log::WrongType => return Some(Err(Malformed(RecordError::LogType, None))),
        Log::Text(text) => match event_from_text(text) {
            Ok(event) => event,
            Err(error) => return Some(Err(Malformed(error.into(), None))),
        },
        Log::Object(text) => match AuditEvent::parse(text) {
            Ok(event) => event,
            Err(error) => return Some(Err(Malformed(error.into(), None))),
        },
    };
    Some(Ok(RecordEvent {
        event,
        resource_id: resource_id.flatten(),
        category: canonical(category),
    }))
}

/// `properties`: null, or an object whose `log` is read.
fn read_properties<'a>(c: &mut Cursor<'a>) -> Option<Log<'a>> {
    if c.eat_literal("null") {
        return Some(Log::Absent);
    }
    c.eat(b'{').then_some(())?;
    let mut log = None;
    let mut more = !c.empty(b'}');
    while more {
        let key = c.key()?;
        if key != "log" {
            c.skip_value(MAX_DEPTH)?;
        } else if log.is_some() {
            return None;
        } else {
            log = Some(match c.peek()? {
                b'"' => Log::Text(c.string_with_room(ROOM_FOR_EDITS)?),
                b'n' => c.eat_literal("null").then_some(Log::Absent)?,
                b'{' => Log::Object(c.raw_value(MAX_DEPTH)?),
                _ => {
                    c.skip_value(MAX_DEPTH)?;
                    Log::WrongType
                }
            });
        }
        more = c.next_or(b'}')?;
    }
    Some(log.unwrap_or(Log::Absent))
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
            format!(r#"{{"category":"kube-audit","properties":{{"log":{e}}}}}"#),
            format!(r#"{{"category":"kube-audit","properties":{{"log":{e}}},"x":[[[[]]]]}}"#),
            r#"{ "category" : "kube-audit" , "properties" : { "log" : "x\t\/" } , "n" : -1.5e3 }"#
                .into(),
        ];
        let unusual: [String; 9] = [
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
            let fast = read_records(&text, &categories, None);
            let fast = fast.unwrap_or_else(|| panic!("not read in one pass: {record}"));
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

    /// Compares the two paths on one envelope: when the one pass reads it, the exact path
    /// reads it too and every outcome is the same. Returns whether the one pass read it.
    fn same_or_gave_up(text: &str, categories: &BTreeSet<String>) -> bool {
        let Some(fast) = read_records(text, categories, None) else {
            return false;
        };
        let exact = exact_outcomes(text, categories)
            .unwrap_or_else(|| panic!("read in one pass, refused by the exact path: {text}"));
        let shown_fast: Vec<_> = fast.iter().map(shown).collect();
        let shown_exact: Vec<_> = exact.iter().map(shown).collect();
        assert_eq!(shown_fast, shown_exact, "{text}");
        true
    }

    /// The shapes a shared hub brings (readable other categories whose `properties` is a
    /// string or junk, escaped, repeated or late category keys, records with no audit
    /// category at all), every member in every order: the one pass reads each record exactly
    /// as the exact path does, or gives up. Deterministic: every combination is tried.
    #[test]
    fn shared_hub_records_read_as_the_exact_path_reads_them_or_give_up() {
        let categories: BTreeSet<String> = ["kube-audit".into(), "kube-audit-admin".into()].into();
        let e = event_json("hub");
        let log = serde_json::to_string(&e).unwrap();
        let category = [
            r#""category":"kube-audit""#,
            r#""category":" Kube-Audit-Admin ""#,
            r#""category":"FunctionAppLogs""#,
            r#""category":"guard""#,
            r#""category":"kube\u002daudit""#,
            r#""category":"postgres\u0000logs""#,
            r#""cat\u0065gory":"guard""#,
            r#""category":null"#,
            r#""category":"""#,
            r#""category":5"#,
            r#""category":{"name":"kube-audit"}"#,
            r#""category":"\ud800""#,
        ];
        let properties = [
            format!(r#""properties":{{"log":{log}}}"#),
            format!(r#""properties":{{"log":{e}}}"#),
            r#""properties":"2026-12-06 LOG: {pseudo json: kube-audit""#.into(),
            r#""properties":"{\"log\":\"x\"}""#.into(),
            r#""properties":null"#.into(),
            r#""properties":[1,"kube-audit"]"#.into(),
            r#""properties":42"#.into(),
            r#""properties":{"log":"junk"}"#.into(),
            r#""properties":{"log":"\ud800"}"#.into(),
            r#""properties":{"log":"a\u0000b"}"#.into(),
            r#""properties":{"log":7,"log":8}"#.into(),
            r#""properties":{"l\u006fg":"x"}"#.into(),
            r#""properties":{"message":"kube-audit"}"#.into(),
        ];
        let other = [
            r#""resourceId":"/S/RG""#,
            r#""resourceId":7"#,
            r#""time":[{"a":[]}]"#,
        ];
        let mut read = 0;
        let mut tried = 0;
        for c in category {
            for p in &properties {
                for o in other {
                    let members: [&str; 3] = [c, p, o];
                    let orders = [
                        [0, 1, 2],
                        [1, 0, 2],
                        [2, 1, 0],
                        [1, 2, 0],
                        [0, 2, 1],
                        [2, 0, 1],
                    ];
                    for order in orders {
                        let body = order.map(|i| members[i]).join(",");
                        let dup = format!("{body},{c}");
                        for record in [body, dup, format!(r#"{c},{p}"#), p.clone()] {
                            let text = format!(r#"{{"records":[{{{record}}}]}}"#);
                            tried += 1;
                            read += usize::from(same_or_gave_up(&text, &categories));
                        }
                    }
                }
            }
        }
        // The usual shapes must still take the one pass, or the test proves nothing.
        assert!(read * 5 > tried, "{read} of {tried} read in one pass");
        // Envelopes without an audit category's bytes, and junk around the records.
        for text in [
            r#"{"records":[{"category":"guard","properties":"LOG: x"}]}"#,
            r#"{"records":[{"category":"guard"}],"x":"kube-audit"}"#,
            r#"{"records":[]}"#,
            r#"{"records":[{}]}"#,
            r#"{"records":[{"category":"guard","properties":{"log":"x"}},1]}"#,
            r#"{"records":[{"category":"guard"}],"records":[]}"#,
            r#"{"records":{"category":"guard"}}"#,
            r#"{"rec\u006frds":[{"category":"guard"}]}"#,
            r#"{"records":[{"category":"guard",}]}"#,
            r#"{"records":[{"category":"guard"}]"#,
            "{\"records\":[{\"category\":\"gu\tard\"}]}",
        ] {
            same_or_gave_up(text, &categories);
        }
    }
}

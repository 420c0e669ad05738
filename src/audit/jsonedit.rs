//! Surgical edits of JSON object text: drop, replace or add members while every untouched
//! member keeps its exact bytes (key order, number spelling, escapes). Used to apply audit
//! Policy levels and cluster annotations without re-serialising whole Events.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::text::JsonStr;

/// What to do with one member.
pub enum Edit {
    /// Keep it as it is.
    Keep,
    /// Leave it out.
    Drop,
    /// Replace its value with this JSON text.
    Replace(String),
}

/// The members of a JSON object, in order, values unparsed.
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(JsonStr(key)) = map.next_key::<JsonStr<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Members(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Parses `text` as an object's members.
///
/// # Errors
/// When `text` is not one JSON object.
pub fn members(text: &str) -> Result<Members<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Rewrites the object `text`: `edit` decides for each member, then `additions` (key, JSON
/// value text) are appended for keys the object did not have.
///
/// # Errors
/// When `text` is not one JSON object.
pub fn rewrite(
    text: &str,
    mut edit: impl FnMut(&str, &RawValue) -> Edit,
    additions: &[(&str, String)],
) -> Result<String, serde_json::Error> {
    let Members(entries) = members(text)?;
    let mut out = String::with_capacity(text.len() + 64);
    out.push('{');
    let mut first = true;
    let mut push = |out: &mut String, key: &str, value: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        // Keys are re-encoded; serde_json writes plain keys exactly as the API server does.
        out.push_str(&serde_json::Value::String(key.to_string()).to_string());
        out.push(':');
        out.push_str(value);
    };
    for (key, value) in &entries {
        match edit(key, value) {
            Edit::Keep => push(&mut out, key, value.get()),
            Edit::Drop => {}
            Edit::Replace(new) => push(&mut out, key, &new),
        }
    }
    for (key, value) in additions {
        if !entries.iter().any(|(k, _)| k == key) {
            push(&mut out, key, value);
        }
    }
    out.push('}');
    Ok(out)
}

/// The range to remove from the object `text` to drop the member whose key is `key` (plain
/// ASCII, written without escapes) and whose value lies at `value`: the member and the comma
/// that separates it from its neighbour. `None` when the text around the value is not that
/// key (an escaped key, say): callers then take the slower path through [`rewrite`].
pub fn member_range(text: &str, key: &str, value: &Range<usize>) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let before = text.get(..value.start)?.trim_end();
    let before = before.strip_suffix(':')?.trim_end();
    let quoted_len = key.len() + 2;
    let key_start = before.len().checked_sub(quoted_len)?;
    let quoted = before.get(key_start..)?;
    if !(quoted.starts_with('"') && quoted.ends_with('"') && quoted.get(1..quoted_len - 1)? == key)
    {
        return None;
    }
    let lead = text[..key_start].trim_end();
    match bytes.get(lead.len().checked_sub(1)?)? {
        b',' => Some(lead.len() - 1..value.end),
        b'{' => {
            let after = text.get(value.end..)?;
            let gap = after.len() - after.trim_start().len();
            match after.trim_start().as_bytes().first()? {
                b',' => {
                    let rest = &after[gap + 1..];
                    let next = rest.len() - rest.trim_start().len();
                    Some(key_start..value.end + gap + 1 + next)
                }
                b'}' => Some(key_start..value.end),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_members_keep_their_bytes() {
        let text = r#"{"b":2.50,"a":{"x":[1, 2]},"s":"é\u00e9","drop":true}"#;
        let out = rewrite(
            text,
            |k, _| match k {
                "drop" => Edit::Drop,
                "b" => Edit::Replace("3".into()),
                _ => Edit::Keep,
            },
            &[("new", r#"{"k":"v"}"#.into()), ("a", "null".into())],
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"b":3,"a":{"x":[1, 2]},"s":"é\u00e9","new":{"k":"v"}}"#
        );
    }

    #[test]
    fn member_ranges_drop_a_member_and_one_comma() {
        let cases = [
            (r#"{"a":1,"b":{"x":2},"c":3}"#, "b", r#"{"a":1,"c":3}"#),
            (r#"{"b":[1],"c":3}"#, "b", r#"{"c":3}"#),
            (r#"{"a":1,"b":"v"}"#, "b", r#"{"a":1}"#),
            (r#"{"b":true}"#, "b", "{}"),
            (r#"{ "b" : 1 , "c":3}"#, "b", r#"{ "c":3}"#),
            (r#"{"a":1 , "b" : 2 }"#, "b", r#"{"a":1  }"#),
        ];
        for (text, key, want) in cases {
            let Members(entries) = members(text).unwrap();
            let (_, raw) = entries.iter().find(|(k, _)| k == key).unwrap();
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            let range = member_range(text, key, &(start..start + raw.get().len())).unwrap();
            let out = format!("{}{}", &text[..range.start], &text[range.end..]);
            assert_eq!(out, want, "{text}");
        }
        // An escaped key is not recognised: the caller falls back to `rewrite`.
        let text = r#"{"a":1,"\u0062":2}"#;
        let at = text.rfind('2').unwrap();
        assert_eq!(member_range(text, "b", &(at..at + 1)), None);
    }

    #[test]
    fn empty_and_invalid() {
        assert_eq!(rewrite("{}", |_, _| Edit::Keep, &[]).unwrap(), "{}");
        assert_eq!(
            rewrite(" { } ", |_, _| Edit::Keep, &[("a", "1".into())]).unwrap(),
            r#"{"a":1}"#
        );
        assert!(rewrite("[]", |_, _| Edit::Keep, &[]).is_err());
        assert!(rewrite("{", |_, _| Edit::Keep, &[]).is_err());
    }
}

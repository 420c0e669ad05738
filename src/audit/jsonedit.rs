//! Surgical edits of JSON object text: drop, replace or add members while every untouched
//! member keeps its exact bytes (key order, number spelling, escapes). Used to apply audit
//! Policy levels and cluster annotations without re-serialising whole Events.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

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

#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

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
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
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

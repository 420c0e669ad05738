//! Strings read from JSON without a copy: borrowed from the input when the text holds no
//! escape, unescaped into a buffer of their own only when it does.
//!
//! serde's own `Deserialize` for `Cow<str>` always copies, and `#[serde(borrow)]` borrows only
//! a field that is exactly `Cow<str>` (not one inside an `Option` or a `Vec`), so reading an
//! Event's keys and members as `Cow` allocated for each of them: a dozen allocations per Event.

use std::borrow::Cow;

use serde::de::Deserializer;
use serde::Deserialize;

/// A JSON string, borrowed from the input where it can be: `#[serde(borrow)]` reaches a
/// `Cow` that is a field of its own, so this newtype borrows wherever it is put.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct JsonStr<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// For `#[serde(deserialize_with)]`: an optional string (`null` or absent: `None`), borrowed
/// where it can be.
///
/// # Errors
/// When the value is neither a string nor `null`.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<JsonStr<'de>>::deserialize(d)?.map(|s| s.0))
}

/// For `#[serde(deserialize_with)]`: a list of strings, `null` read as none (as Go's
/// `encoding/json` reads it), each borrowed where it can be.
///
/// # Errors
/// When the value is neither a list of strings nor `null`.
pub fn list_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cow<'de, str>>, D::Error> {
    let list = Option::<Vec<JsonStr<'de>>>::deserialize(d)?.unwrap_or_default();
    Ok(list.into_iter().map(|s| s.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample<'a> {
        #[serde(borrow, default, deserialize_with = "optional")]
        plain: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "optional")]
        escaped: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "optional")]
        null: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "optional")]
        absent: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "list_or_null")]
        list: Vec<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "list_or_null")]
        none: Vec<Cow<'a, str>>,
    }

    /// Plain text is borrowed, escaped text unescaped into its own buffer; `null` and absent
    /// members read as nothing, and a non-string is refused as serde's `String` refuses it.
    #[test]
    fn borrows_what_holds_no_escape() {
        let text = r#"{"plain":"alice","escaped":"a\"b\u00e9","null":null,"list":["x","y\n"],"none":null}"#;
        let s: Sample<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(s.plain, Some(Cow::Borrowed("alice"))));
        assert_eq!(s.escaped.as_deref(), Some("a\"bé"));
        assert!(matches!(s.escaped, Some(Cow::Owned(_))));
        assert!(s.null.is_none() && s.absent.is_none() && s.none.is_empty());
        assert!(matches!(s.list[0], Cow::Borrowed("x")));
        assert_eq!(s.list[1], "y\n");
        let refused = serde_json::from_str::<Sample<'_>>(r#"{"plain":5}"#).unwrap_err();
        let expected = serde_json::from_str::<Option<String>>("5").unwrap_err();
        assert_eq!(
            refused.to_string().split(" at ").next(),
            expected.to_string().split(" at ").next()
        );
    }
}

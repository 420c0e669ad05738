//! What the request-info resolver reads from the query of a `GET` without a name: whether it
//! is a watch, and the name a `metadata.name` field selector pins. The query is read as Go's
//! `url.ParseQuery` reads it, the options as apimachinery's parameter codec decodes
//! `ListOptions` (k8s.io/apiserver `pkg/endpoints/request/requestinfo.go`, `NewRequestInfo`).

use percent_encoding::percent_decode;

/// One query parameter, decoded.
type Pair = (String, String);

/// `url.ParseQuery`: pairs split on `&`; a pair containing `;` or a bad `%` escape is skipped;
/// `+` is a space; a key without `=` has the value `""`.
fn parse_query(query: &str) -> Vec<Pair> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((query_unescape(key)?, query_unescape(value)?))
        })
        .collect()
}

/// `url.QueryUnescape`: `None` for a `%` not followed by two hex digits.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
    }
    let plus_as_space = s.replace('+', " ");
    Some(
        percent_decode(plus_as_space.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The first value of `key`, as Go's `url.Values.Get` and the codec read it.
fn first<'a>(query: &'a [Pair], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean option (apimachinery `runtime.Convert_Slice_string_To_bool`): only `0` and
/// `false` in any case are false; anything else given, `""` included, is true.
fn truthy(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

/// What the resolver reads from the query of a `GET` without a name in its path.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ListQuery {
    /// `?watch=` given and true: the verb is `watch`, else `list`.
    pub watch: bool,
    /// The name a `fieldSelector` pins with `metadata.name=`/`==`, when every list option
    /// decodes and the name is a valid path segment; `None` otherwise.
    pub name: Option<String>,
}

impl ListQuery {
    /// Reads `raw_query` (without the `?`). When the codec cannot decode the options (an
    /// integer option that is not one, a field selector that does not parse) the resolver
    /// keeps only `watch`, read the same way, and names nothing.
    ///
    /// Label selectors are not parsed here: one kube-apiserver refuses (which also leaves the
    /// request unnamed) still lets its field selector name the object.
    pub fn parse(raw_query: &str) -> Self {
        let query = parse_query(raw_query);
        let watch = first(&query, "watch").is_some_and(truthy);
        let integers_ok = ["limit", "timeoutSeconds"]
            .iter()
            .all(|key| first(&query, key).is_none_or(|v| v.parse::<i64>().is_ok()));
        let selector = match first(&query, "fieldSelector") {
            Some(s) => parse_field_selector(s),
            None => Some(Vec::new()),
        };
        let name = match selector {
            Some(terms) if integers_ok => terms
                .into_iter()
                .find(|(field, _)| field == "metadata.name")
                .map(|(_, value)| value)
                .filter(|n| is_path_segment_name(n)),
            _ => None,
        };
        Self { watch, name }
    }
}

/// apimachinery `content.IsPathSegmentName`: not `.` or `..`, no `/` or `%`.
fn is_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// `fields.ParseSelector`: the equality terms (`field=value`, `field==value`), sorted as the
/// parser sorts them, so the first `metadata.name` is the one `RequiresExactMatch` returns.
/// `!=` terms are kept out (they pin nothing). `None` when the selector does not parse.
fn parse_field_selector(selector: &str) -> Option<Vec<(String, String)>> {
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut equal = Vec::new();
    for term in terms.into_iter().filter(|t| !t.is_empty()) {
        let (field, op, value) = split_term(term)?;
        let value = unescape_value(value)?;
        if op != "!=" {
            equal.push((field.to_string(), value));
        }
    }
    Some(equal)
}

/// `splitTerms`: split on `,` not escaped by a `\`.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in selector.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// `splitTerm`: at the first position where `!=`, `==` or `=` starts (in that order of
/// preference), nothing trimmed.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    term.char_indices().find_map(|(i, _)| {
        ["!=", "==", "="]
            .into_iter()
            .find(|op| term[i..].starts_with(op))
            .map(|op| (&term[..i], op, &term[i + op.len()..]))
    })
}

/// `fields.UnescapeValue`: `\\`, `\,` and `\=` unescaped; any other escape, a trailing `\`,
/// or an unescaped `,` or `=` is invalid.
fn unescape_value(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        match c {
            '\\' | ',' | '=' if escaped => {
                out.push(c);
                escaped = false;
            }
            _ if escaped => return None,
            '\\' => escaped = true,
            ',' | '=' => return None,
            _ => out.push(c),
        }
    }
    (!escaped).then_some(out)
}

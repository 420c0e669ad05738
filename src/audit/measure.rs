//! The size of an Event as a receiver measures it before deciding to drop it.
//!
//! Falco's k8saudit plugin (`plugins/k8saudit/pkg/k8saudit/source.go`,
//! `parseSingleAuditEventJSON`) parses each Event with `valyala/fastjson` (v1.6.3), reads its
//! `stageTimestamp`, re-marshals it with `Value.MarshalTo` and drops it when that is over
//! `maxEventSize` (262,144 bytes by default, `config.go`). What `MarshalTo` writes, compared
//! with the bytes we send:
//!
//! - white space between tokens is gone (fastjson's parser skips it, `MarshalTo` writes none);
//! - strings and object keys are written back **raw**, escapes as they were (`\u00e9` stays six
//!   bytes, `\/` two, `é` two), and numbers as their original text (`2.50` stays `2.50`);
//! - except the strings the plugin *read*: reading a value unescapes it and `MarshalTo` then
//!   re-quotes it (`escapeString`: as is, or Go's `strconv.Quote` when it holds `"`, `\` or a
//!   control character). The plugin reads `stageTimestamp` of every Event and `kind` of a bare
//!   Event;
//! - and an object's keys: looking up a key that no key matches *as written* unescapes every
//!   key of that object, and `MarshalTo` re-quotes them all. That happens to an Event whose
//!   `stageTimestamp` (or, bare, `kind`) key is written with escapes.
//!
//! [`falco_size`] computes that length without building the re-marshalled text. It is exact
//! for every Event kube-apiserver writes. Only one path needs Go's Unicode tables
//! (`unicode.IsPrint`): a re-quoted string that holds a quote, backslash or control character
//! and also non-ASCII characters other than letters and digits; those are counted as Go's
//! `\u` escapes, so the result may exceed Falco's count by a few bytes, never fall short.

use std::borrow::Cow;
use std::ops::Range;

/// How a route's receiver measures an Event against its per-Event limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The Event's bytes as sent.
    Bytes,
    /// Falco's re-marshalled size ([`falco_size`]).
    Falco,
}

impl Measure {
    /// The size of `json` (one Event) under this measure; `bare` when it is sent as a bare
    /// Event rather than inside an `EventList`.
    pub fn size(self, json: &str, bare: bool) -> usize {
        match self {
            Self::Bytes => json.len(),
            Self::Falco => falco_size(json, bare),
        }
    }

    /// The name shown in `check-config` and dead-letter reasons.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bytes => "bytes as sent",
            Self::Falco => "as Falco re-marshals it",
        }
    }
}

/// The length of `fastjson.Value.MarshalTo` of the Event `json` after Falco's k8saudit plugin
/// has read it (see the module documentation); `bare` when the POST body is the Event itself
/// (the plugin then also reads its `kind`). Text that is not one JSON object is measured as
/// its length without white space between tokens.
pub fn falco_size(json: &str, bare: bool) -> usize {
    let compact = compact_len(json.as_bytes());
    let Some(members) = top_members(json) else {
        return compact;
    };
    let mut size = compact;
    let mut keys_unescaped = false;
    let lookups: &[&str] = if bare {
        &["kind", "stageTimestamp"]
    } else {
        &["stageTimestamp"]
    };
    for name in lookups {
        // `Object.Get`: the keys as written first; on a miss, every key unescaped.
        let mut found = None;
        if !keys_unescaped {
            found = members.iter().position(|(k, _)| *k == *name);
        }
        if found.is_none() {
            keys_unescaped = true;
            found = members
                .iter()
                .position(|(k, _)| go_unescape(k).as_ref() == name.as_bytes());
        }
        let Some(index) = found else { continue };
        let value = &json[members[index].1.clone()];
        if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            size = size - value.len() + go_quoted_len(&go_unescape(inner));
        }
    }
    if keys_unescaped {
        for (key, _) in &members {
            size = size - (key.len() + 2) + go_quoted_len(&go_unescape(key));
        }
    }
    size
}

/// Bytes of `b` without the white space between tokens (space, tab, CR, LF outside strings).
fn compact_len(b: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if c == b'\\' && i + 1 < b.len() {
                n += 2;
                i += 2;
                continue;
            }
            in_string = c != b'"';
            n += 1;
        } else if !matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            in_string = c == b'"';
            n += 1;
        }
        i += 1;
    }
    n
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    {
        i += 1;
    }
    i
}

/// The index after the string that opens at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The index after the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The members of the object `s`: each key as written (without its quotes) and where its
/// value lies. `None` when `s` is not one object.
fn top_members(s: &str) -> Option<Vec<(&str, Range<usize>)>> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = string_end(b, i)?;
        let key = s.get(i + 1..end - 1)?;
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_to = value_end(b, i)?;
        out.push((key, i..value_to));
        i = skip_ws(b, value_to);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// Four hexadecimal digits at `s[at..]`, as Go's `strconv.ParseUint(xs, 16, 16)` reads them.
fn hex4(s: &[u8], at: usize) -> Option<u32> {
    let digits = s.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, d| Some(acc * 16 + char::from(*d).to_digit(16)?))
}

/// fastjson's `unescapeStringBestEffort`: JSON escapes decoded, anything it cannot decode
/// kept as written, a surrogate pair joined (U+FFFD when the pair is invalid).
fn go_unescape(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('\\') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let Some(&ch) = b.get(i + 1) else { break };
        i += 2;
        match ch {
            b'"' | b'\\' | b'/' => out.push(ch),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let Some(x) = hex4(b, i) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                let xs = &b[i..i + 4];
                i += 4;
                if !(0xD800..0xE000).contains(&x) {
                    push_char(&mut out, char::from_u32(x).unwrap_or('\u{FFFD}'));
                    continue;
                }
                let low = (b.get(i..i + 2) == Some(b"\\u".as_slice()))
                    .then(|| hex4(b, i + 2))
                    .flatten();
                let Some(low) = low else {
                    out.extend_from_slice(b"\\u");
                    out.extend_from_slice(xs);
                    continue;
                };
                let pair = ((0xD800..0xDC00).contains(&x) && (0xDC00..0xE000).contains(&low))
                    .then(|| char::from_u32(0x10000 + ((x - 0xD800) << 10) + (low - 0xDC00)))
                    .flatten();
                push_char(&mut out, pair.unwrap_or('\u{FFFD}'));
                i += 6;
            }
            other => out.extend_from_slice(&[b'\\', other]),
        }
    }
    Cow::Owned(out)
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// The length of fastjson's `escapeString` of `s`: `"s"` when `s` holds no `"`, `\` or
/// control character, else Go's `strconv.Quote(s)`.
fn go_quoted_len(s: &[u8]) -> usize {
    if !s.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20) {
        return s.len() + 2;
    }
    let text = String::from_utf8_lossy(s);
    2 + text
        .chars()
        .map(|c| match c {
            '"' | '\\' => 2,
            '\u{20}'..='\u{7e}' => 1,
            '\u{7}' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' | '\u{b}' => 2,
            '\0'..='\u{1f}' | '\u{7f}' => 4,
            // Go prints letters, marks, numbers, punctuation and symbols as they are. Without
            // Go's tables, anything but letters and digits counts as escaped (an upper bound).
            c if c.is_alphanumeric() || c == '\u{FFFD}' => c.len_utf8(),
            c if u32::from(c) < 0x10000 => 6,
            _ => 10,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: &str = r#""stageTimestamp":"2026-11-23T07:00:00.234567Z""#;

    /// Each input with the length fastjson's `MarshalTo` gives it after the plugin read it,
    /// worked out by hand from fastjson v1.6.3 and Go's `strconv.Quote`.
    #[test]
    fn falco_measures_as_fastjson_re_marshals() {
        let cases: &[(&str, bool, &str)] = &[
            // Compact text is its own length.
            (r#"{"kind":"Event","stageTimestamp":"2026-11-23T07:00:00.234567Z"}"#, false,
             r#"{"kind":"Event","stageTimestamp":"2026-11-23T07:00:00.234567Z"}"#),
            // White space between tokens goes; inside strings it stays.
            ("{ \"a\" : [ 1 , 2 ] ,\n\t\"s\":\"x y\",\r\n \"stageTimestamp\":\"2026-11-23T07:00:00Z\" }", false,
             r#"{"a":[1,2],"s":"x y","stageTimestamp":"2026-11-23T07:00:00Z"}"#),
            // Escapes in strings that are not read stay as written: \u00e9, \/, \n, \".
            (r#"{"s":"\u00e9\/\n\"","t":"é","stageTimestamp":"2026-11-23T07:00:00Z"}"#, false,
             r#"{"s":"\u00e9\/\n\"","t":"é","stageTimestamp":"2026-11-23T07:00:00Z"}"#),
            // Numbers keep their spelling.
            (r#"{"n":[2.50,1e3,-0,10000000000000000000001],"stageTimestamp":"2026-11-23T07:00:00Z"}"#, false,
             r#"{"n":[2.50,1e3,-0,10000000000000000000001],"stageTimestamp":"2026-11-23T07:00:00Z"}"#),
            // A read string is unescaped and written plain: the escaped timestamp shrinks.
            (r#"{"stageTimestamp":"2026-11-23T07:00:00\u002e5Z"}"#, false,
             r#"{"stageTimestamp":"2026-11-23T07:00:00.5Z"}"#),
            // A bare Event's kind is read too; inside an EventList it is not.
            (r#"{"kind":"\u0045vent","stageTimestamp":"2026-11-23T07:00:00Z"}"#, true,
             r#"{"kind":"Event","stageTimestamp":"2026-11-23T07:00:00Z"}"#),
            (r#"{"kind":"\u0045vent","stageTimestamp":"2026-11-23T07:00:00Z"}"#, false,
             r#"{"kind":"\u0045vent","stageTimestamp":"2026-11-23T07:00:00Z"}"#),
            // A key written with escapes makes the lookup miss: every top-level key is
            // unescaped and re-quoted (Go's Quote for one holding a quote: \" stays 2 bytes,
            // \u0001 becomes \x01), nested keys stay raw.
            (r#"{"stage\u0054imestamp":"2026-11-23T07:00:00Z","a\"\u0001b":1,"o":{"\u0041":2},"\/":3}"#, false,
             r#"{"stageTimestamp":"2026-11-23T07:00:00Z","a\"\x01b":1,"o":{"\u0041":2},"/":3}"#),
            // Surrogate pairs join into one character (4 bytes of UTF-8).
            (r#"{"stage\u0054imestamp":"2026-11-23T07:00:00Z","\ud83d\ude00":1}"#, false,
             r#"{"stageTimestamp":"2026-11-23T07:00:00Z","😀":1}"#),
        ];
        for (input, bare, marshalled) in cases {
            assert_eq!(
                falco_size(input, *bare),
                marshalled.len(),
                "{input} should measure as {marshalled}"
            );
        }
    }

    #[test]
    fn go_quote_lengths() {
        assert_eq!(go_quoted_len(b"plain"), 7);
        assert_eq!(go_quoted_len(b"a\"b"), 6); // "a\"b"
        assert_eq!(go_quoted_len(b"\\"), 4); // "\\"
        assert_eq!(go_quoted_len(b"\n\x01\x7f"), 2 + 2 + 4 + 4); // "\n\x01\x7f"
        assert_eq!(go_quoted_len("\"é".as_bytes()), 2 + 2 + 2);
        // Not a letter or digit: counted as Go's \u escape (at most what Go writes).
        assert_eq!(go_quoted_len("\"\u{200b}".as_bytes()), 2 + 2 + 6);
    }

    #[test]
    fn unescape_is_best_effort() {
        let cases: &[(&str, &[u8])] = &[
            ("a\\u00e9", "aé".as_bytes()),
            ("\\uZZZZ", b"\\uZZZZ"),
            ("\\u+123", b"\\u+123"),
            ("\\ud800x", b"\\ud800x"),
            ("\\ud800\\u0041", "\u{FFFD}".as_bytes()),
            ("\\q", b"\\q"),
        ];
        for (raw, want) in cases {
            assert_eq!(go_unescape(raw).as_ref(), *want, "{raw}");
        }
    }

    /// A kube-apiserver Event with a large body: Falco's size is its length, and a pretty
    /// printed copy measures the same as the compact one.
    #[test]
    fn pretty_printing_does_not_count() {
        let compact = format!(
            r#"{{"kind":"Event","requestObject":{{"data":{{"k":"{}"}}}},{STAMP}}}"#,
            "v".repeat(1000)
        );
        let value: serde_json::Value = serde_json::from_str(&compact).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert!(pretty.len() > compact.len());
        assert_eq!(falco_size(&compact, false), compact.len());
        assert_eq!(falco_size(&pretty, false), compact.len());
        assert_eq!(Measure::Bytes.size(&pretty, false), pretty.len());
    }
}

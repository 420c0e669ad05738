//! A JSON scanner for the usual shapes of diagnostic envelopes: strings unescaped in one pass,
//! scalars and shallow values skipped, over text that is already valid UTF-8.
//!
//! A record's `properties.log` is an Event escaped as a JSON string: a quote escaped every
//! few bytes. serde_json reads such strings (to unescape them, or even to skip them) at about
//! 200 MB/s, one escape at a time; here a string is read eight bytes at a time up to the next
//! quote, backslash or control character, and each run is copied once. The scanner reads a
//! subset of JSON (RFC 8259) and answers `None` for anything else: a control character in a
//! string, a lone surrogate, an escaped key, nesting deeper than [`MAX_DEPTH`], any syntax
//! error. The caller then takes serde_json's exact path, so what the scanner accepts it reads
//! exactly as serde_json does, and what it refuses is judged by serde_json.

use std::borrow::Cow;

/// Deepest nesting skipped here; deeper values are left to serde_json, whose own limit (128)
/// counts from the top of the envelope.
pub(super) const MAX_DEPTH: usize = 16;

/// A position in JSON text.
pub(super) struct Cursor<'a> {
    text: &'a str,
    at: usize,
    /// Where strings with escapes are unescaped, reused: each is then copied out once, at
    /// its exact length (plus the room asked for).
    scratch: Vec<u8>,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            at: 0,
            scratch: Vec::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips JSON white space (space, tab, line feed, carriage return).
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte, not consumed.
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    /// Consumes `byte` when it is next.
    pub(super) fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    /// Consumes `literal` when it is next.
    pub(super) fn eat_literal(&mut self, literal: &str) -> bool {
        let next = self.bytes()[self.at..].starts_with(literal.as_bytes());
        if next {
            self.at += literal.len();
        }
        next
    }

    /// Whether only white space is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.ws();
        self.at == self.text.len()
    }

    /// After a member or element: white space, then `,` (more follow: `Some(true)`) or
    /// `close` (`Some(false)`); anything else is `None`.
    pub(super) fn next_or(&mut self, close: u8) -> Option<bool> {
        self.ws();
        if self.eat(b',') {
            self.ws();
            Some(true)
        } else if self.eat(close) {
            Some(false)
        } else {
            None
        }
    }

    /// After an opening `{` or `[`: white space, and whether the container is empty (its
    /// `close` consumed).
    pub(super) fn empty(&mut self, close: u8) -> bool {
        self.ws();
        self.eat(close)
    }

    /// An object key without escapes, then `:` and white space.
    pub(super) fn key(&mut self) -> Option<&'a str> {
        let Cow::Borrowed(key) = self.string()? else {
            return None;
        };
        self.ws();
        self.eat(b':').then(|| self.ws())?;
        Some(key)
    }

    /// A string (at its opening quote): borrowed when it holds no escape, else unescaped.
    pub(super) fn string(&mut self) -> Option<Cow<'a, str>> {
        self.string_with_room(0)
    }

    /// [`Self::string`], an unescaped one given `room` bytes of spare capacity.
    pub(super) fn string_with_room(&mut self, room: usize) -> Option<Cow<'a, str>> {
        let bytes = self.bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut at = plain_run(bytes, start);
        match bytes.get(at)? {
            b'"' => {
                self.at = at + 1;
                return Some(Cow::Borrowed(self.text.get(start..at)?));
            }
            b'\\' => {}
            _ => return None,
        }
        let out = &mut self.scratch;
        out.clear();
        out.extend_from_slice(&bytes[start..at]);
        loop {
            at = unescape_one(bytes, at, out)?;
            at = copy_run(bytes, at, out);
            match bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    // Whole runs of valid UTF-8 and whole characters were copied: valid.
                    let text = std::str::from_utf8(out).ok()?;
                    let mut owned = String::with_capacity(text.len() + room);
                    owned.push_str(text);
                    return Some(Cow::Owned(owned));
                }
                b'\\' => {}
                _ => return None,
            }
        }
    }

    /// A string or `null`.
    pub(super) fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.eat_literal("null") {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// The text of the next value (nested at most `depth` deep), skipped.
    pub(super) fn raw_value(&mut self, depth: usize) -> Option<&'a str> {
        let start = self.at;
        self.skip_value(depth)?;
        self.text.get(start..self.at)
    }

    /// Skips one value, nested at most `depth` deep.
    pub(super) fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth == 0 => None,
            b'{' => {
                self.at += 1;
                if self.empty(b'}') {
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.ws();
                    self.eat(b':').then(|| self.ws())?;
                    self.skip_value(depth - 1)?;
                    if !self.next_or(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.empty(b']') {
                    return Some(());
                }
                loop {
                    self.skip_value(depth - 1)?;
                    if !self.next_or(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.eat_literal("true").then_some(()),
            b'f' => self.eat_literal("false").then_some(()),
            b'n' => self.eat_literal("null").then_some(()),
            _ => self.number(),
        }
    }

    /// A number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if !self.eat(b'0') {
            matches!(self.peek(), Some(b'1'..=b'9')).then_some(())?;
            self.digits();
        }
        if self.eat(b'.') {
            (self.digits() > 0).then_some(())?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }
}

/// Bit 7 set in each byte of `x` that is a quote, a backslash or a control character; bits
/// above a true match may be set too, so the lowest set bit always marks a true one.
fn special(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    (zero(x ^ (ONES * u64::from(b'"')))
        | zero(x ^ (ONES * u64::from(b'\\')))
        | (x.wrapping_sub(ONES * 0x20) & !x))
        & HIGH
}

fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Where the run of plain string bytes starting at `at` ends: the index of the next quote,
/// backslash or control character, or the end. Eight bytes at a time.
fn plain_run(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let found = special(u64::from_le_bytes(word));
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&b| !is_special(b)) {
        at += 1;
    }
    at
}

/// [`plain_run`], copying the run to `out` eight bytes at a time (a word that holds the end
/// of the run is copied whole, and the bytes past the end taken off again).
fn copy_run(bytes: &[u8], mut at: usize, out: &mut Vec<u8>) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        out.extend_from_slice(&word);
        let found = special(u64::from_le_bytes(word));
        if found != 0 {
            let kept = (found.trailing_zeros() / 8) as usize;
            out.truncate(out.len() - 8 + kept);
            return at + kept;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at).filter(|&&b| !is_special(b)) {
        out.push(b);
        at += 1;
    }
    at
}

/// Appends the character of the escape at `bytes[at]` (a backslash) to `out` as UTF-8;
/// returns where the escape ends. A lone surrogate, or an escape JSON does not allow, is
/// `None`.
fn unescape_one(bytes: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let byte = match bytes.get(at + 1)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 8,
        b'f' => 12,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let first = hex4(bytes.get(at + 2..at + 6)?)?;
            let (code, end) = if (0xD800..0xDC00).contains(&first) {
                if bytes.get(at + 6..at + 8)? != b"\\u" {
                    return None;
                }
                let low = hex4(bytes.get(at + 8..at + 12)?)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return None;
                }
                (0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00), at + 12)
            } else {
                (first, at + 6)
            };
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut utf8).as_bytes());
            return Some(end);
        }
        _ => return None,
    };
    out.push(byte);
    Some(at + 2)
}

/// Four hex digits, either case.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |code, &d| {
        Some(code << 4 | char::from(d).to_digit(16)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    /// Every string either reads as serde_json reads it, or is refused; the usual ones read.
    #[test]
    fn strings_read_as_serde_json_reads_them() {
        let usual = [
            r#""""#,
            r#""plain text, long enough to take the eight-byte steps""#,
            r#""{\"kind\":\"Event\",\"a\":\"b\\\\c\"}\n""#,
            r#""\/\b\f\n\r\t\"\\ \u00e9\u0041\u20AC\ud83d\ude00 é 日本""#,
            r#""\u0000 nul""#,
            "\"ends with an escape\\n\"",
            "\"1234567\\\"12345678\\\"\"",
        ];
        for literal in usual {
            let theirs: String = serde_json::from_str(literal).unwrap();
            let mut cursor = Cursor::new(literal);
            assert_eq!(
                cursor.string().as_deref(),
                Some(theirs.as_str()),
                "{literal}"
            );
            assert!(cursor.at_end(), "{literal}");
        }
        let refused = [
            "\"a\u{1}b\"",
            "\"tab\there\"",
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            r#""\x41""#,
            r#""\u00g0""#,
            r#""\u+0ab""#,
            r#""unterminated"#,
            r#""unterminated\""#,
            r#""ends in a backslash\"#,
        ];
        for literal in refused {
            assert_eq!(Cursor::new(literal).string(), None, "{literal}");
        }
    }

    proptest::proptest! {
        /// Any text, as serde_json escapes it, comes back unchanged.
        #[test]
        fn any_escaped_text_comes_back(text in "\\PC*") {
            let literal = serde_json::to_string(&text).unwrap();
            let mut cursor = Cursor::new(&literal);
            let read = cursor.string();
            proptest::prop_assert_eq!(read.as_deref(), Some(text.as_str()));
        }

        /// Whatever the scanner skips, serde_json accepts.
        #[test]
        fn skipped_values_are_valid_json(text in r#"[\[\]{}",:0-9eE+\-. tnrufals\\a-d]{0,24}"#) {
            let mut cursor = Cursor::new(&text);
            if cursor.skip_value(MAX_DEPTH).is_some() && cursor.at_end() {
                proptest::prop_assert!(serde_json::from_str::<IgnoredAny>(&text).is_ok(), "{}", text);
            }
        }
    }

    #[test]
    fn values_are_skipped_as_serde_json_reads_them() {
        let valid = [
            "0",
            "-0.5e+10",
            "12E3",
            "true",
            "false",
            "null",
            r#"{"a":[1,{"b":null}],"c":"d"}"#,
            "[ ]",
            "{ }",
            r#"[1, "x" ,{ "k" : [] }]"#,
        ];
        for text in valid {
            let mut cursor = Cursor::new(text);
            assert!(cursor.skip_value(MAX_DEPTH).is_some(), "{text}");
            assert!(cursor.at_end(), "{text}");
            assert!(serde_json::from_str::<IgnoredAny>(text).is_ok(), "{text}");
        }
        for text in [
            "01", "-", "1.", "1e", ".5", "[1,]", "{,}", r#"{"a"}"#, "tru", "[1 2]",
        ] {
            let mut cursor = Cursor::new(text);
            let read = cursor.skip_value(MAX_DEPTH).is_some() && cursor.at_end();
            assert!(!read, "{text}");
            assert!(serde_json::from_str::<IgnoredAny>(text).is_err(), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(Cursor::new(&deep).skip_value(MAX_DEPTH).is_none());
        let shallow = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Cursor::new(&shallow).skip_value(MAX_DEPTH).is_some());
    }
}

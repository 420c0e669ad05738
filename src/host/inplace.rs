//! Decoding an Event Hub batch inside the request's own buffer: the trigger value's string is
//! unescaped where it lies and each event body is written over its own base64 text, so a
//! batch of 100+ MiB is decoded without a second copy of it (see `host-contract` §1.2 for
//! the shapes).

use std::ops::Range;
use std::sync::LazyLock;

use base64::engine::general_purpose::PAD;
use base64::engine::simd::Simd;
use base64::Engine as _;
use serde_json::value::RawValue;

use super::metadata::first_byte;
use crate::pipeline::Bodies;

/// Standard base64 with padding, as the host writes `binary` event bodies
/// (`Convert.ToBase64String`): AVX2 or NEON where the CPU has it, the same acceptance as the
/// scalar engine (canonical padding and trailing bits) everywhere.
static BASE64: LazyLock<Simd> = LazyLock::new(|| Simd::standard(PAD));

/// The first byte of `bytes` that is not white space or a byte-order mark, as
/// [`first_byte`] reads text.
pub(super) fn lead(bytes: &[u8]) -> Option<u8> {
    let at = bytes
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || *b == 0x0b))?;
    if bytes[at] < 0x80 {
        return Some(bytes[at]);
    }
    // A non-ASCII lead: Unicode white space or a BOM may follow; read it as text.
    std::str::from_utf8(&bytes[at..]).ok().and_then(first_byte)
}

/// Where `inner` (a slice of `outer`) lies in `outer`.
pub(super) fn span_of(outer: &[u8], inner: &str) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start + inner.len();
    (end <= outer.len()).then_some(start..end)
}

/// Unescapes the JSON string literal at `buffer[span]` (quotes included, already validated as
/// JSON) within the span, and returns where the text now lies (a literal without escapes is
/// not moved), and whether an escape wrote a control character (`\n`, `\u0001`…). Never
/// longer than the literal, so it fits where the literal was.
///
/// # Errors
/// When the span is not a string literal or holds an escape JSON does not allow.
pub(super) fn unescape_in_place(
    buffer: &mut [u8],
    span: Range<usize>,
) -> Result<(Range<usize>, bool), String> {
    let literal = &buffer[span.clone()];
    let start = span.start
        + literal
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
    let end = span.end
        - literal
            .iter()
            .rev()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
    if end < start + 2 || buffer[start] != b'"' || buffer[end - 1] != b'"' {
        return Err("not a JSON string".into());
    }
    let (mut read, stop, mut write) = (start + 1, end - 1, start);
    let mut controls = false;
    if memchr::memchr(b'\\', &buffer[read..stop]).is_none() {
        return Ok((read..stop, false));
    }
    loop {
        let run = memchr::memchr(b'\\', &buffer[read..stop]).unwrap_or(stop - read);
        buffer.copy_within(read..read + run, write);
        write += run;
        read += run;
        if read == stop {
            return Ok((start..write, controls));
        }
        let escape = *buffer
            .get(read + 1)
            .filter(|_| read + 1 < stop)
            .ok_or("a string ends with a backslash")?;
        let simple = match escape {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            controls |= byte < 0x20;
            buffer[write] = byte;
            write += 1;
            read += 2;
            continue;
        }
        if escape != b'u' {
            let shown = String::from_utf8_lossy(&buffer[read + 1..(read + 5).min(stop)])
                .chars()
                .next()
                .unwrap_or('?');
            return Err(format!("an unknown escape \\{shown}"));
        }
        let hex = |at: usize| -> Option<u32> {
            let digits = buffer.get(at..at + 4).filter(|_| at + 4 <= stop)?;
            u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
        };
        let first = hex(read + 2).ok_or("a \\u escape without four hex digits")?;
        let mut used = 6;
        let mut code = first;
        if (0xD800..0xDC00).contains(&first) && buffer.get(read + 6..read + 8) == Some(b"\\u") {
            // A high surrogate: combine with the low one that should follow.
            if let Some(low) = hex(read + 8).filter(|l| (0xDC00..0xE000).contains(l)) {
                code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
                used = 12;
            }
        }
        controls |= code < 0x20;
        let mut utf8 = [0u8; 4];
        let text = char::from_u32(code)
            .unwrap_or('\u{fffd}')
            .encode_utf8(&mut utf8);
        buffer[write..write + text.len()].copy_from_slice(text.as_bytes());
        write += text.len();
        read += used;
    }
}

/// What an element of a batch is, where it lies.
enum Element {
    /// A string literal, quotes included: unescaped before use.
    Literal(Range<usize>),
    /// The contents of a string without escapes.
    Text(Range<usize>),
    /// Any other value (a parsed body, `dataType` unset).
    Value(Range<usize>),
}

/// Decodes, in place, a `many` batch: the JSON array text at `buffer[span]`, whose elements
/// are base64 strings (`binary`), body strings (`string`) or parsed bodies (dataType unset).
/// Each body is written where the batch began, in order; the rest of the buffer is let go.
/// `plain`: the text holds no control character inside a string (it was validated as JSON,
/// or unescaped without writing one), so an array of strings without escapes is split with
/// a byte search instead of a JSON parse.
///
/// # Errors
/// When the text is not a JSON array.
pub(super) fn decode_array_in_place(
    mut buffer: Vec<u8>,
    span: Range<usize>,
    plain: bool,
) -> Result<Bodies, String> {
    let split = plain
        .then(|| plain_strings(&buffer[span.clone()]))
        .flatten()
        .map(|texts| {
            let at = |r: Range<usize>| Element::Text(span.start + r.start..span.start + r.end);
            texts.into_iter().map(at).collect::<Vec<_>>()
        });
    let elements = match split {
        Some(elements) => elements,
        None => parse_elements(&buffer, span.clone())?,
    };
    let mut write = span.start;
    let mut spans = Vec::with_capacity(elements.len());
    let mut scratch = Vec::new();
    for element in elements {
        // Every body is at most as long as its element, and elements do not overlap: what is
        // written never reaches text not yet read.
        let (text, is_string) = match element {
            Element::Literal(literal) => (unescape_in_place(&mut buffer, literal)?.0, true),
            Element::Text(text) => (text, true),
            Element::Value(value) => (value, false),
        };
        let is_base64 = is_string && !matches!(lead(&buffer[text.clone()]), Some(b'{' | b'['));
        let decoded = is_base64
            .then(|| decode_base64(trim(&buffer[text.clone()]), &mut scratch))
            .flatten();
        let len = if let Some(len) = decoded {
            buffer[write..write + len].copy_from_slice(&scratch[..len]);
            len
        } else {
            // Not base64, or a body as text: passed on as it is, reported later if malformed.
            buffer.copy_within(text.clone(), write);
            text.len()
        };
        spans.push(write..write + len);
        write += len;
    }
    buffer.truncate(write);
    Bodies::in_buffer(buffer, spans).ok_or_else(|| "bodies out of order".to_string())
}

/// Decodes `input` into the front of `scratch` and returns the decoded length, or `None` when
/// it is not base64. `scratch` only grows (zeroed once as it does), so decoding a hundred
/// bodies does not clear a buffer for each.
fn decode_base64(input: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
    let room = base64::decoded_len_estimate(input.len());
    if scratch.len() < room {
        scratch.resize(room, 0);
    }
    BASE64.decode_slice(input, &mut scratch[..room]).ok()
}

/// The elements of the JSON array at `buffer[span]`, read with serde_json.
fn parse_elements(buffer: &[u8], span: Range<usize>) -> Result<Vec<Element>, String> {
    let items: Vec<&RawValue> = serde_json::from_slice(&buffer[span])
        .map_err(|e| format!("a batch that is not a JSON array: {e}"))?;
    items
        .iter()
        .map(|raw| {
            let span = span_of(buffer, raw.get()).ok_or("an element outside the batch")?;
            Ok(if first_byte(raw.get()) == Some(b'"') {
                Element::Literal(span)
            } else {
                Element::Value(span)
            })
        })
        .collect()
}

/// The contents of each string of `text` when it is a JSON array of strings without escapes
/// (`["…", "…"]`), found with a byte search; `None` for anything else. `text` must hold no
/// control character inside a string, so that every string found is valid JSON.
fn plain_strings(text: &[u8]) -> Option<Vec<Range<usize>>> {
    let ws = |at: &mut usize| {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(*at) {
            *at += 1;
        }
    };
    let mut at = 0;
    ws(&mut at);
    (text.get(at) == Some(&b'[')).then_some(())?;
    at += 1;
    ws(&mut at);
    let mut out = Vec::new();
    if text.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            (text.get(at) == Some(&b'"')).then_some(())?;
            let start = at + 1;
            let end = start + memchr::memchr2(b'"', b'\\', text.get(start..)?)?;
            (text[end] == b'"').then_some(())?;
            out.push(start..end);
            at = end + 1;
            ws(&mut at);
            match text.get(at) {
                Some(b',') => {
                    at += 1;
                    ws(&mut at);
                }
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    ws(&mut at);
    (at == text.len()).then_some(out)
}

/// `bytes` without surrounding white space, as `str::trim` reads UTF-8 text.
fn trim(bytes: &[u8]) -> &[u8] {
    // Printable ASCII at both ends (always, for base64): nothing to trim, no need to read the
    // text between as UTF-8.
    let printable = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x7f).contains(b));
    if printable(bytes.first()) && printable(bytes.last()) {
        return bytes;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.trim().as_bytes(),
        Err(_) => bytes.trim_ascii(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch decoded with the byte search and with serde_json gives the same bodies, or
    /// the byte search declines and serde_json decides.
    #[test]
    fn plain_strings_split_as_serde_json_parses() {
        let arrays = [
            r#"["eyJhIjoxfQ==","aGVsbG8="]"#,
            r#" [ "eyJhIjoxfQ==" ,  "not base64!" , "" ] "#,
            "[]",
            "[ ]",
            r#"["YQ=="] x"#,
            r#"["YQ==",]"#,
            r#"["YQ==" "Yg=="]"#,
            r#"["a"b"]"#,
            r#"["YQ==",{"records":[]}]"#,
            r#"["é 日本", "\/x"]"#,
            r#"["YQ=="#,
            r#"{"a":"YQ=="}"#,
        ];
        for text in arrays {
            let bytes = text.as_bytes().to_vec();
            let span = 0..bytes.len();
            let fast = decode_array_in_place(bytes.clone(), span.clone(), true);
            let exact = decode_array_in_place(bytes, span, false);
            assert_eq!(
                fast.map(|b| b.to_vecs()),
                exact.map(|b| b.to_vecs()),
                "{text}"
            );
        }
        assert!(plain_strings(br#"["YQ==", "Yg=="]"#).is_some());
        assert!(plain_strings(br#"["a"b"]"#).is_none());
    }

    proptest::proptest! {
        /// The SIMD engine accepts exactly what the scalar engine accepts, and decodes it to
        /// the same bytes: canonical base64 of any bytes, and near-misses of it (a symbol
        /// changed, padding or trailing bits off, a symbol outside the alphabet).
        #[test]
        fn simd_base64_matches_the_scalar_engine(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            at in 0usize..400,
            symbol in "[A-Za-z0-9+/=\\-_ .\n]",
        ) {
            let scalar = base64::engine::general_purpose::STANDARD;
            let canonical = scalar.encode(&bytes);
            let mut variants = vec![canonical.clone(), format!("{canonical}="), canonical.replace('=', "")];
            if !canonical.is_empty() {
                let at = at % canonical.len();
                let mut changed = canonical.clone();
                changed.replace_range(at..=at, &symbol);
                variants.push(changed);
            }
            for text in variants {
                let ours = BASE64.decode(text.as_bytes()).ok();
                proptest::prop_assert_eq!(ours, scalar.decode(text.as_bytes()).ok(), "{}", text);
            }
        }
    }
}

//! Decoding an Event Hub batch inside the request's own buffer: the trigger value's string is
//! unescaped where it lies and each event body is written over its own base64 text, so a
//! batch of 100+ MiB is decoded without a second copy of it (see `host-contract` §1.2 for
//! the shapes).

use std::ops::Range;

use base64::Engine as _;
use serde_json::value::RawValue;

use super::metadata::first_byte;
use crate::pipeline::Bodies;

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
/// JSON) into the front of the span, and returns where the text now lies. Never longer than
/// the literal, so it fits where the literal was.
///
/// # Errors
/// When the span is not a string literal or holds an escape JSON does not allow.
pub(super) fn unescape_in_place(
    buffer: &mut [u8],
    span: Range<usize>,
) -> Result<Range<usize>, String> {
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
    loop {
        let run = memchr::memchr(b'\\', &buffer[read..stop]).unwrap_or(stop - read);
        buffer.copy_within(read..read + run, write);
        write += run;
        read += run;
        if read == stop {
            return Ok(start..write);
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
        let mut utf8 = [0u8; 4];
        let text = char::from_u32(code)
            .unwrap_or('\u{fffd}')
            .encode_utf8(&mut utf8);
        buffer[write..write + text.len()].copy_from_slice(text.as_bytes());
        write += text.len();
        read += used;
    }
}

/// Decodes, in place, a `many` batch: the JSON array text at `buffer[span]`, whose elements
/// are base64 strings (`binary`), body strings (`string`) or parsed bodies (dataType unset).
/// Each body is written where the batch began, in order; the rest of the buffer is let go.
///
/// # Errors
/// When the text is not a JSON array.
pub(super) fn decode_array_in_place(
    mut buffer: Vec<u8>,
    span: Range<usize>,
) -> Result<Bodies, String> {
    let elements: Vec<(Range<usize>, bool)> = {
        let items: Vec<&RawValue> = serde_json::from_slice(&buffer[span.clone()])
            .map_err(|e| format!("a batch that is not a JSON array: {e}"))?;
        items
            .iter()
            .map(|raw| {
                let span = span_of(&buffer, raw.get()).ok_or("an element outside the batch")?;
                Ok((span, first_byte(raw.get()) == Some(b'"')))
            })
            .collect::<Result<_, String>>()?
    };
    let mut write = span.start;
    let mut spans = Vec::with_capacity(elements.len());
    let mut scratch = Vec::new();
    for (element, is_string) in elements {
        // Every body is at most as long as its element, and elements do not overlap: what is
        // written never reaches text not yet read.
        let text = if is_string {
            unescape_in_place(&mut buffer, element)?
        } else {
            element
        };
        let is_base64 = is_string && !matches!(lead(&buffer[text.clone()]), Some(b'{' | b'['));
        scratch.clear();
        let decoded = is_base64
            && base64::engine::general_purpose::STANDARD
                .decode_vec(trim(&buffer[text.clone()]), &mut scratch)
                .is_ok();
        let len = if decoded {
            buffer[write..write + scratch.len()].copy_from_slice(&scratch);
            scratch.len()
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

/// `bytes` without surrounding white space, as `str::trim` reads UTF-8 text.
fn trim(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.trim().as_bytes(),
        Err(_) => bytes.trim_ascii(),
    }
}

//! Log setup: plain one-line records the Functions host captures from the process streams.
//!
//! The host logs the handler's stdout at Information and its stderr at Error, so records of
//! level INFO and below go to stdout and WARN/ERROR go to stderr: each lands in Application
//! Insights at a matching severity. `RUST_LOG` sets the filter (default `info`).
//!
//! Every record is one line of at most [`MAX_LINE_BYTES`]: control characters in any field
//! (a record `category` holding a line break and a forged log line, an ANSI escape) are
//! written escaped, and a longer record is cut with the count of bytes left out.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing::Level;
use tracing_subscriber::fmt::writer::{MakeWriter, MakeWriterExt};
use tracing_subscriber::EnvFilter;

/// Longest log line written, in bytes, the line break included.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Installs the global subscriber. Calling it again is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = SafeLines(io::stderr)
        .with_max_level(Level::WARN)
        .or_else(SafeLines(io::stdout));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Makes writers that pass each record through [`safe_line`].
#[derive(Debug, Clone, Copy)]
pub struct SafeLines<F>(pub F);

/// A writer that escapes and bounds each record written to it in one call (the formatter
/// writes a whole record at once).
#[derive(Debug)]
pub struct SafeWriter<W>(W);

impl<'a, F, W> MakeWriter<'a> for SafeLines<F>
where
    F: Fn() -> W + 'a,
    W: Write,
{
    type Writer = SafeWriter<W>;
    fn make_writer(&'a self) -> Self::Writer {
        SafeWriter((self.0)())
    }
}

impl<W: Write> Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(safe_line(&text, MAX_LINE_BYTES).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `record` as one line: control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`…) but the
/// final line break, and cut to `max` bytes with the count of bytes left out.
pub fn safe_line(record: &str, max: usize) -> Cow<'_, str> {
    let body = record.strip_suffix('\n').unwrap_or(record);
    let clean = !body.chars().any(char::is_control);
    if clean && record.len() <= max {
        return Cow::Borrowed(record);
    }
    let mut out = String::with_capacity(body.len().min(max) + 64);
    let limit = max.saturating_sub(48);
    let mut cut = 0usize;
    for (i, c) in body.char_indices() {
        if out.len() >= limit {
            cut = body.len() - i;
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    if cut > 0 {
        out.push_str(&format!(" …[{cut} bytes cut]"));
    }
    out.push('\n');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_bounded() {
        assert_eq!(safe_line("plain line\n", 100), "plain line\n");
        assert_eq!(
            safe_line("category=kube-audit\n2026-11-30 ERROR forged\n", 100),
            "category=kube-audit\\n2026-11-30 ERROR forged\n"
        );
        assert_eq!(safe_line("a\u{1b}[31mb\n", 100), "a\\u{1b}[31mb\n");
        let long = "x".repeat(10_000) + "\n";
        let cut = safe_line(&long, 1000);
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.ends_with("bytes cut]\n"), "{cut}");
        assert_eq!(cut.matches('\n').count(), 1);
    }
}

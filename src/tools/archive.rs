//! Reading archive blobs (`PT1H.json`: JSON lines, one diagnostic record a line, appended
//! during the hour) as a stream of byte chunks: complete lines in batches, each with the
//! byte offset after it for the checkpoint; a last line without its newline that is not yet
//! valid JSON is the hour still being written and is left for a rerun.

use std::collections::VecDeque;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::checkpoint::BlobProgress;
use crate::deadletter::{DeadLetter, DeadLetterKind};

/// One line of a blob and where it ends.
struct Line {
    text: Vec<u8>,
    number: u64,
    /// Bytes it spans, its newline included.
    len: u64,
    end: u64,
}

/// Splits a blob's bytes, read from a checkpointed position, into lines.
pub struct LineSplitter {
    partial: Vec<u8>,
    ready: VecDeque<Line>,
    /// Offset and line number of the first byte of `partial`.
    next: BlobProgress,
    truncated: bool,
}

impl LineSplitter {
    /// Starts at `from` (bytes and lines already done).
    pub fn new(from: BlobProgress) -> Self {
        Self {
            partial: Vec::new(),
            ready: VecDeque::new(),
            next: from,
            truncated: false,
        }
    }

    /// Takes the next chunk of the blob.
    pub fn push(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let len = self.partial.len() as u64 + 1;
            self.emit(len);
        }
        self.partial.extend_from_slice(rest);
    }

    /// The blob ended: a last line without a newline is a record when it is valid JSON, and an
    /// incomplete line (left for a rerun) otherwise.
    pub fn finish(&mut self) {
        if self.partial.iter().all(u8::is_ascii_whitespace) {
            if !self.partial.is_empty() {
                let len = self.partial.len() as u64;
                self.emit(len);
            }
            return;
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&self.partial).is_ok() {
            let len = self.partial.len() as u64;
            self.emit(len);
        } else {
            self.truncated = true;
        }
    }

    fn emit(&mut self, len: u64) {
        let mut text = std::mem::take(&mut self.partial);
        if text.last() == Some(&b'\r') {
            text.pop();
        }
        self.next.bytes += len;
        self.next.lines += 1;
        self.ready.push_back(Line {
            text,
            number: self.next.lines,
            len,
            end: self.next.bytes,
        });
    }

    /// Whether the blob ended in an incomplete line.
    pub fn truncated_tail(&self) -> bool {
        self.truncated
    }

    /// `per` complete lines, or fewer once the blob has ended (`last`).
    pub fn next_batch(&mut self, per: usize, last: bool) -> Option<Batch> {
        if self.ready.is_empty() || (self.ready.len() < per && !last) {
            return None;
        }
        let take = per.min(self.ready.len());
        let lines: Vec<Line> = self.ready.drain(..take).collect();
        Some(Batch { lines })
    }
}

/// Complete lines of a blob, delivered together.
pub struct Batch {
    lines: Vec<Line>,
}

/// What [`Batch::body`] counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineCounts {
    /// The line number of each record in the body, in order: `records[i]` of the body is
    /// line `lines[i]` of the blob.
    pub lines: Vec<u64>,
    /// Non-blank lines.
    pub records: u64,
    /// Records outside the time window.
    pub outside_time: u64,
    /// Lines that are not a JSON object.
    pub malformed: u64,
}

#[derive(Deserialize)]
struct Timed<'a> {
    #[serde(borrow, default)]
    time: Option<&'a str>,
}

impl Batch {
    /// Where the checkpoint stands once this batch is done.
    pub fn end(&self) -> BlobProgress {
        self.lines
            .last()
            .map_or_else(BlobProgress::default, |l| BlobProgress {
                bytes: l.end,
                lines: l.number,
            })
    }

    /// Bytes the batch spans, newlines included.
    pub fn bytes(&self) -> u64 {
        self.lines.iter().map(|l| l.len).sum()
    }

    /// One Event Hub-shaped body, `{"records":[…]}`, of the records inside `since..until`,
    /// each record's exact bytes; lines that are not JSON objects become dead letters.
    pub fn body(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        blob: &str,
    ) -> (Option<Vec<u8>>, Vec<DeadLetter>, LineCounts) {
        let mut counts = LineCounts::default();
        let mut dead = Vec::new();
        let mut body = b"{\"records\":[".to_vec();
        let mut any = false;
        for line in &self.lines {
            if line.text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.records += 1;
            let parsed = std::str::from_utf8(&line.text)
                .ok()
                .filter(|t| t.trim_start().starts_with('{'))
                .and_then(|t| serde_json::from_str::<Timed<'_>>(t).ok());
            let Some(record) = parsed else {
                counts.malformed += 1;
                let mut item = DeadLetter::new(
                    DeadLetterKind::MalformedRecord,
                    format!("{blob} line {}: not a JSON record", line.number),
                );
                // Exact bytes: text, or base64 when not UTF-8 or when escaping would
                // inflate it (a line of control bytes would grow six-fold as JSON).
                item.keep_raw(&line.text);
                dead.push(item);
                continue;
            };
            if let Some(at) = record
                .time
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            {
                if since.is_some_and(|s| at < s) || until.is_some_and(|u| at >= u) {
                    counts.outside_time += 1;
                    continue;
                }
            }
            if any {
                body.push(b',');
            }
            body.extend_from_slice(&line.text);
            counts.lines.push(line.number);
            any = true;
        }
        body.extend_from_slice(b"]}");
        (any.then_some(body), dead, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: BlobProgress, chunks: &[&[u8]], per: usize) -> (Vec<Batch>, bool) {
        let mut s = LineSplitter::new(from);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some(b) = s.next_batch(per, false) {
                out.push(b);
            }
        }
        s.finish();
        while let Some(b) = s.next_batch(per, true) {
            out.push(b);
        }
        (out, s.truncated_tail())
    }

    #[test]
    fn lines_across_chunks_with_offsets() {
        let (batches, truncated) = lines(
            BlobProgress::default(),
            &[b"{\"a\":1}\n{\"b\"", b":2}\r\n{\"c\":3}"],
            2,
        );
        assert!(!truncated);
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[0].end(),
            BlobProgress {
                bytes: 17,
                lines: 2
            }
        );
        assert_eq!(
            batches[1].end(),
            BlobProgress {
                bytes: 24,
                lines: 3
            }
        );
        let (body, dead, counts) = batches[0].body(None, None, "b");
        assert_eq!(body.unwrap(), br#"{"records":[{"a":1},{"b":2}]}"#.to_vec());
        assert!(dead.is_empty());
        assert_eq!(counts.records, 2);
    }

    #[test]
    fn an_incomplete_last_line_is_left_for_a_rerun() {
        let from = BlobProgress {
            bytes: 100,
            lines: 9,
        };
        let (batches, truncated) = lines(from, &[b"{\"a\":1}\n{\"time\":\"2026-"], 10);
        assert!(truncated);
        assert_eq!(batches.len(), 1);
        assert_eq!(
            batches[0].end(),
            BlobProgress {
                bytes: 108,
                lines: 10
            }
        );
    }

    #[test]
    fn bad_lines_and_time_window() {
        let t = |s| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        let text = b"{\"time\":\"2026-11-23T07:10:00.1234567Z\",\"n\":1}\nnot json\n{\"time\":\"2026-11-23T08:00:00Z\",\"n\":2}\n[1]\n";
        let (batches, _) = lines(BlobProgress::default(), &[text], 10);
        let (body, dead, counts) = batches[0].body(
            Some(t("2026-11-23T07:00:00Z")),
            Some(t("2026-11-23T08:00:00Z")),
            "blob",
        );
        assert_eq!(
            String::from_utf8(body.unwrap()).unwrap(),
            r#"{"records":[{"time":"2026-11-23T07:10:00.1234567Z","n":1}]}"#
        );
        assert_eq!(
            counts,
            LineCounts {
                lines: vec![1],
                records: 4,
                outside_time: 1,
                malformed: 2
            }
        );
        assert_eq!(dead[0].reason, "blob line 2: not a JSON record");
        assert_eq!(dead[1].raw.as_deref(), Some("[1]"));
    }
}

//! The answer to one invocation: every status the host can get, chosen in one place
//! ([`Answer`]'s `IntoResponse`), and the 200 answer that carries the dead letters, streamed
//! as JSON lines into `Outputs.<binding>` one item at a time.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::wire::{HostError, InvocationResult};
use crate::deadletter::DeadLetter;
use crate::pipeline::Forwarded;

/// Everything an invocation (or a request that is not one) can be answered.
#[derive(Debug)]
pub(super) enum Answer {
    /// The invocation ran: 200, or 500 when Events are still undelivered. Dead letters go
    /// to the output binding when one is set, else to the log.
    Forwarded {
        /// What the pipeline did.
        outcome: Box<Forwarded>,
        /// `AUDIT_DEADLETTER_BINDING`.
        binding: Option<String>,
    },
    /// The body is over `AUDIT_MAX_BODY_BYTES` (the limit, in bytes).
    BodyTooLarge(usize),
    /// The body did not arrive within `AUDIT_BODY_READ_TIMEOUT`.
    BodyTimeout(Duration),
    /// Reading the body failed.
    BodyUnreadable(String),
    /// The request is not an invocation of the host's shape.
    Malformed(HostError),
    /// A bug on our side (a panic): retried by the host.
    Internal(&'static str),
    /// Neither `GET /` nor `POST /EventHubForwarder`.
    NotFound,
}

/// A status with the host's answer shape: `Logs` and, on failure, `Error`.
fn answer(status: StatusCode, logs: Vec<String>, error: Option<String>) -> Response {
    (status, Json(InvocationResult::new(logs, error))).into_response()
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let internal = StatusCode::INTERNAL_SERVER_ERROR;
        match self {
            Self::Forwarded { outcome, binding } => forwarded(*outcome, binding.as_deref()),
            // 500, not 413: a 4xx to a real invocation would block its partition for good
            // under an infinite retry policy; a 500 is retried and says loudly what to change.
            Self::BodyTooLarge(limit) => {
                let message = format!(
                    "the invocation body exceeds AUDIT_MAX_BODY_BYTES ({limit} bytes); raise it or lower maxEventBatchSize in host.json"
                );
                tracing::error!("{message}");
                answer(internal, vec![], Some(message))
            }
            Self::BodyTimeout(timeout) => {
                let message = format!(
                    "the invocation body did not arrive within AUDIT_BODY_READ_TIMEOUT ({}); the invocation will be retried",
                    humantime::format_duration(timeout)
                );
                tracing::error!("{message}");
                answer(internal, vec![], Some(message))
            }
            Self::BodyUnreadable(error) => {
                let message = format!("reading the invocation body failed: {error}");
                tracing::error!("{message}");
                answer(StatusCode::BAD_REQUEST, vec![], Some(message))
            }
            Self::Malformed(error) => {
                tracing::error!(%error, "Refusing a malformed invocation request.");
                answer(StatusCode::BAD_REQUEST, vec![], Some(error.to_string()))
            }
            Self::Internal(message) => answer(internal, vec![], Some(message.into())),
            Self::NotFound => {
                let error = format!(
                    "not found: the handler serves GET / and POST /{}",
                    super::FUNCTION_NAME
                );
                answer(StatusCode::NOT_FOUND, vec![], Some(error))
            }
        }
    }
}

/// 500 with the summary when Events are still undelivered; else 200 with the summary and
/// the dead letters.
fn forwarded(outcome: Forwarded, binding: Option<&str>) -> Response {
    let line = outcome.summary.to_string();
    if outcome.needs_retry() {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![line],
            Some("delivery to the audit webhook failed; the invocation will be retried".into()),
        );
    }
    let result = InvocationResult::new(vec![line], None);
    let dead_letters = outcome.dead_letters;
    match (binding, dead_letters.is_empty()) {
        (_, true) => (StatusCode::OK, Json(result)).into_response(),
        (Some(binding), false) => with_dead_letters(&result, binding, dead_letters),
        (None, false) => {
            log_unkept(&dead_letters);
            (StatusCode::OK, Json(result)).into_response()
        }
    }
}

/// Dead letters logged in full when dead-lettering is off; the rest are counted.
const UNKEPT_IN_FULL: usize = 20;

pub(super) fn log_unkept(items: &[DeadLetter]) {
    for item in items.iter().take(UNKEPT_IN_FULL) {
        tracing::error!(
            kind = %item.kind,
            reason = %item.reason,
            sequence_number = item.sequence_number,
            "Undeliverable item, not kept: dead-lettering is off."
        );
    }
    if items.len() > UNKEPT_IN_FULL {
        tracing::error!(
            more = items.len() - UNKEPT_IN_FULL,
            "More undeliverable items, not kept: dead-lettering is off."
        );
    }
}

/// The 200 answer with `items` as JSON lines in `Outputs.<binding>`, built one item at a time
/// and each item freed once written, so the dead letters are held about once, not three times
/// (items, JSON lines, answer). The body is the same JSON `Json(result)` would write.
pub(super) fn with_dead_letters(
    result: &InvocationResult,
    binding: &str,
    items: Vec<DeadLetter>,
) -> Response {
    let (Ok(rest), Ok(name)) = (
        serde_json::to_string(result),
        serde_json::to_string(binding),
    ) else {
        return Answer::Internal("internal error").into_response();
    };
    // `{"Outputs":{},"Logs":[…],…}`: everything after the empty outputs is kept as it is.
    let Some(rest) = rest.strip_prefix(r#"{"Outputs":{}"#) else {
        return Answer::Internal("internal error").into_response();
    };
    // Each line is written into the answer only when the connection takes it, so the answer
    // holds one line at a time next to the dead letters not yet written (building it whole
    // held twice the dead letters at the end). The length is counted first.
    let head = Bytes::from(format!(r#"{{"Outputs":{{{name}:""#));
    let tail = Bytes::from(format!("\"}}{rest}"));
    let lines: usize = items
        .iter()
        .map(|item| escaped_line(item, ByteCount(0)).0)
        .sum();
    let length = head.len() + lines + tail.len();
    let lines = items
        .into_iter()
        .map(|item| Bytes::from(escaped_line(&item, Vec::new())));
    let chunks = std::iter::once(head)
        .chain(lines)
        .chain(std::iter::once(tail));
    let stream = futures::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>));
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::CONTENT_LENGTH, length)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Answer::Internal("internal error").into_response())
}

/// The dead letter's JSON line (with its line break), escaped as the contents of a JSON
/// string exactly as `serde_json` escapes one, written to `out`; nothing when it cannot be
/// serialised.
fn escaped_line<W: Escaped>(item: &DeadLetter, out: W) -> W {
    let mut escaping = Escaping(out);
    if serde_json::to_writer(&mut escaping, item).is_err() {
        return W::default();
    }
    escaping.0.put(b"\\n");
    escaping.0
}

/// Where escaped bytes go: a buffer, or a counter of them.
trait Escaped: Default {
    fn put(&mut self, bytes: &[u8]);
}

impl Escaped for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes instead of keeping them.
#[derive(Default)]
struct ByteCount(usize);

impl Escaped for ByteCount {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Escapes what is written into it as JSON string contents (RFC 8259 §7, in `serde_json`'s
/// forms: the short escapes, else `\u00XX` in lowercase hex).
struct Escaping<W>(W);

impl<W: Escaped> std::io::Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut start = 0;
        for (i, &b) in buf.iter().enumerate() {
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f => b"",
                _ => continue,
            };
            self.0.put(&buf[start..i]);
            start = i + 1;
            if short.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let code = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ];
                self.0.put(&code);
            } else {
                self.0.put(short);
            }
        }
        self.0.put(&buf[start..]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadletter::DeadLetterKind;

    /// The answer built item by item is byte for byte what serialising the whole result gives.
    #[tokio::test]
    async fn dead_letters_answer_matches_the_plain_serialisation() {
        let mut a = DeadLetter::new(
            DeadLetterKind::Poison,
            "HTTP 400: \"quoted\"\nline \u{1}\u{1b}\u{8}\u{c}\t\r\u{1f}\u{7f}\\",
        );
        a.keep_raw(&[0xff, b'"', 0]);
        let b = DeadLetter::new(DeadLetterKind::Unrouted, "no route");
        let items = vec![a, b];
        let mut expected = InvocationResult::new(vec!["summary \"x\"".into()], None);
        expected.outputs.insert(
            "deadletter".into(),
            serde_json::Value::String(crate::deadletter::to_json_lines(&items)),
        );
        let want = serde_json::to_vec(&expected).unwrap();
        let result = InvocationResult::new(vec!["summary \"x\"".into()], None);
        let response = with_dead_letters(&result, "deadletter", items);
        assert_eq!(response.headers()["content-length"], want.len().to_string());
        let got = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(got.as_ref(), want.as_slice());
    }

    /// Any text comes out of the escaping writer as `serde_json` writes it inside a string.
    #[test]
    fn escaping_matches_serde_json() {
        use std::io::Write as _;
        let text: String = (0u8..=0x7f)
            .map(char::from)
            .chain("é\u{feff}".chars())
            .collect();
        let mut escaping = Escaping(Vec::new());
        escaping.write_all(text.as_bytes()).unwrap();
        let quoted = serde_json::to_string(&text).unwrap();
        assert_eq!(escaping.0, quoted.as_bytes()[1..quoted.len() - 1]);
        let mut counted = Escaping(ByteCount(0));
        counted.write_all(text.as_bytes()).unwrap();
        assert_eq!(counted.0 .0, quoted.len() - 2);
    }
}

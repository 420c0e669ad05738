//! The HTTP surface the Functions host talks to: `GET /` (readiness) and
//! `POST /EventHubForwarder` (one invocation). Statuses are chosen here and only here.

use std::error::Error as _;
use std::future::{Future, IntoFuture};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use super::wire::{decode_invocation, HostError, InvocationResult};
use super::HostSettings;
use crate::deadletter::DeadLetter;
use crate::pipeline::{Forwarder, Summary};

/// The function's folder name, which is also its route.
pub const FUNCTION_NAME: &str = "EventHubForwarder";
/// Header carrying the host's invocation id.
const INVOCATION_ID: &str = "x-azure-functions-invocationid";

/// What every invocation shares: the pipeline and the host-side settings.
#[derive(Debug)]
struct Handler {
    forwarder: Arc<Forwarder>,
    settings: HostSettings,
}

/// The router, ready to serve.
pub fn router(forwarder: Arc<Forwarder>, settings: HostSettings) -> Router {
    guarded(
        Router::new()
            .route("/", get(ready))
            .route(&format!("/{FUNCTION_NAME}"), post(invoke)),
    )
    .with_state(Arc::new(Handler {
        forwarder,
        settings,
    }))
}

/// JSON 404s for anything but the routes given, and a panic in one invocation answered 500
/// instead of taking the process down (the host would restart it and count the crash).
fn guarded<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(CatchPanicLayer::custom(panic_response))
}

/// Serves on `listener` until `shutdown` completes, then gives in-flight invocations
/// `settings.shutdown_grace` to finish and returns even if some have not (a stalled request
/// must not keep the process alive; the host retries whatever was not answered).
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    settings: HostSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = settings.shutdown_grace;
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(());
    };
    let server =
        axum::serve(listener, router(forwarder, settings)).with_graceful_shutdown(shutdown);
    let expired = async move {
        if on_signal.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server.into_future() => result,
        () = expired => {
            tracing::warn!(
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                "Invocations still in flight after the shutdown grace period; exiting, the host retries them."
            );
            Ok(())
        }
    }
}

fn json(status: StatusCode, logs: Vec<String>, error: Option<String>) -> Response {
    (status, Json(InvocationResult::new(logs, error))).into_response()
}

/// The host's readiness probe and ping: any answer means ready.
async fn ready() -> Response {
    (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
}

async fn not_found() -> Response {
    let error = format!("not found: the handler serves GET / and POST /{FUNCTION_NAME}");
    json(StatusCode::NOT_FOUND, vec![], Some(error))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("An invocation panicked; answering 500 so the host retries it.");
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        vec![],
        Some("internal error; the invocation will be retried".into()),
    )
}

async fn invoke(State(handler): State<Arc<Handler>>, headers: HeaderMap, body: Body) -> Response {
    let invocation_id = headers
        .get(INVOCATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let span = tracing::info_span!("invocation", id = invocation_id.as_deref().unwrap_or("-"));
    run_invocation(handler, invocation_id, body)
        .instrument(span)
        .await
}

async fn run_invocation(
    handler: Arc<Handler>,
    invocation_id: Option<String>,
    body: Body,
) -> Response {
    let forwarder = &handler.forwarder;
    let started = Instant::now();
    let deadline = started + forwarder.settings().delivery_deadline;
    let limit = handler.settings.max_body_bytes;

    let read =
        tokio::time::timeout(handler.settings.body_read_timeout, read_body(body, limit)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => return body_error(&error, limit),
        Err(_) => {
            let message = format!(
                "the invocation body did not arrive within AUDIT_BODY_READ_TIMEOUT ({}); the invocation will be retried",
                humantime::format_duration(handler.settings.body_read_timeout)
            );
            tracing::error!("{message}");
            return json(StatusCode::INTERNAL_SERVER_ERROR, vec![], Some(message));
        }
    };

    let worker = forwarder.clone();
    let converted = tokio::task::spawn_blocking(move || {
        decode_invocation(bytes).map(|invocation| worker.convert(invocation))
    })
    .await;
    let converted = match converted {
        Ok(Ok(converted)) => converted,
        Ok(Err(error)) => return host_error(&error),
        Err(join_error) => {
            tracing::error!(error = %join_error, "Decoding the invocation panicked.");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![],
                Some("internal error while decoding the invocation".into()),
            );
        }
    };

    let (delivery, per_route, poison) = forwarder
        .deliver_invocation(&converted.meta, &converted.routed, deadline)
        .await;
    let mut dead_letters = converted.dead_letters;
    dead_letters.extend(poison);
    for item in &mut dead_letters {
        item.invocation_id.clone_from(&invocation_id);
        item.partition.clone_from(&converted.meta.partition_id);
    }
    let summary = Summary {
        invocation_id,
        meta: converted.meta,
        convert: converted.tally,
        routing: converted.routing,
        dead_lettered: dead_letters.len() as u64,
        delivery,
        per_route,
        duration: started.elapsed(),
    };
    let line = summary.to_string();
    if summary.needs_retry() {
        tracing::error!("{line}");
        json(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![line],
            Some("delivery to the audit webhook failed; the invocation will be retried".into()),
        )
    } else {
        tracing::info!("{line}");
        let result = InvocationResult::new(vec![line], None);
        match (
            &handler.settings.deadletter_binding,
            dead_letters.is_empty(),
        ) {
            (_, true) => (StatusCode::OK, Json(result)).into_response(),
            (Some(binding), false) => with_dead_letters(&result, binding, dead_letters),
            (None, false) => {
                log_unkept(&dead_letters);
                (StatusCode::OK, Json(result)).into_response()
            }
        }
    }
}

/// Dead letters logged in full when dead-lettering is off; the rest are counted.
const UNKEPT_IN_FULL: usize = 20;

fn log_unkept(items: &[DeadLetter]) {
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
fn with_dead_letters(result: &InvocationResult, binding: &str, items: Vec<DeadLetter>) -> Response {
    let (Ok(rest), Ok(name)) = (
        serde_json::to_string(result),
        serde_json::to_string(binding),
    ) else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            Some("internal error".into()),
        );
    };
    // `{"Outputs":{},"Logs":[…],…}`: everything after the empty outputs is kept as it is.
    let Some(rest) = rest.strip_prefix(r#"{"Outputs":{}"#) else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            Some("internal error".into()),
        );
    };
    // Each line is written into the answer only when the connection takes it, so the answer
    // holds one line at a time next to the dead letters not yet written (building it whole
    // held twice the dead letters at the end). The length is counted first.
    let head = Bytes::from(format!(r#"{{"Outputs":{{{name}:""#));
    let tail = Bytes::from(format!("\"}}{rest}"));
    let lines: usize = items.iter().map(|item| escaped_line(item, Sink(0)).0).sum();
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
        .unwrap_or_else(|_| {
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![],
                Some("internal error".into()),
            )
        })
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
struct Sink(usize);

impl Escaped for Sink {
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

/// The request body, appended chunk by chunk to one buffer as it arrives, up to `limit` bytes.
/// (`axum::body::to_bytes` keeps every chunk until the end and then copies them into one
/// buffer: twice the request at its peak.)
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, axum::Error> {
    use http_body_util::BodyExt as _;
    let mut limited = http_body_util::Limited::new(body, limit);
    let mut buffer = Vec::new();
    while let Some(frame) = limited.frame().await {
        if let Ok(data) = frame.map_err(axum::Error::new)?.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer)
}

fn body_error(error: &axum::Error, limit: usize) -> Response {
    let mut source = error.source();
    let mut too_large = false;
    while let Some(cause) = source {
        too_large |= cause.is::<http_body_util::LengthLimitError>();
        source = cause.source();
    }
    if too_large {
        // 500, not 413: a 4xx to a real invocation would block its partition for good under
        // an infinite retry policy; a 500 is retried and says loudly what to change.
        let message = format!(
            "the invocation body exceeds AUDIT_MAX_BODY_BYTES ({limit} bytes); raise it or lower maxEventBatchSize in host.json"
        );
        tracing::error!("{message}");
        json(StatusCode::INTERNAL_SERVER_ERROR, vec![], Some(message))
    } else {
        let message = format!("reading the invocation body failed: {error}");
        tracing::error!("{message}");
        json(StatusCode::BAD_REQUEST, vec![], Some(message))
    }
}

fn host_error(error: &HostError) -> Response {
    tracing::error!(%error, "Refusing a malformed invocation request.");
    json(StatusCode::BAD_REQUEST, vec![], Some(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer built item by item is byte for byte what serialising the whole result gives.
    #[tokio::test]
    async fn dead_letters_answer_matches_the_plain_serialisation() {
        let mut a = DeadLetter::new(
            "poison",
            "HTTP 400: \"quoted\"\nline \u{1}\u{1b}\u{8}\u{c}\t\r\u{1f}\u{7f}\\",
        );
        a.keep_raw(&[0xff, b'"', 0]);
        let b = DeadLetter::new("unrouted", "no route");
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
        let mut counted = Escaping(Sink(0));
        counted.write_all(text.as_bytes()).unwrap();
        assert_eq!(counted.0 .0, quoted.len() - 2);
    }

    /// A panicking handler is answered with a JSON 500 and the server keeps serving.
    #[tokio::test]
    async fn panics_are_contained() {
        async fn boom() -> Response {
            panic!("invariant broken")
        }
        let app = guarded(
            Router::new()
                .route("/", get(ready))
                .route("/boom", post(boom)),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let answer = client
            .post(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 500);
        assert_eq!(answer.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert!(body["Error"].as_str().unwrap().contains("retried"));
        let again = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(again.status(), 200);
        let missing = client
            .get(format!("http://{addr}/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    }
}

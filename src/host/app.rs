//! The HTTP surface the Functions host talks to: `GET /` (readiness) and
//! `POST /EventHubForwarder` (one invocation): read the body, decode it, hand it to the
//! pipeline ([`Forwarder::forward`]); the status is chosen by [`Answer`] (`answer.rs`).

use std::error::Error as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use super::answer::Answer;
use super::limits::{BodyBudget, Reservation};
use super::wire::decode_invocation;
use super::HostSettings;
use crate::pipeline::{BodyPool, Forwarder, Loan};

/// The function's folder name, which is also its route.
pub const FUNCTION_NAME: &str = "EventHubForwarder";
/// Header carrying the host's invocation id.
const INVOCATION_ID: &str = "x-azure-functions-invocationid";

/// The most a body's buffer reserves before its bytes arrive (bytes). A larger body grows it
/// as it comes (a few remaps); a run of small bodies after one huge one reserves no more
/// address space each than this.
const MOST_RESERVED_AHEAD: usize = 32 * 1024 * 1024;

/// Request buffers kept whole between invocations, so the next body is written into memory
/// the process has instead of fresh pages (bytes): an eighth of `AUDIT_MAX_BYTES_IN_FLIGHT`,
/// at most 64 MiB (the pool, its bounds and why: [`BodyPool`]).
fn kept_buffers(max_bytes_in_flight: usize) -> usize {
    (max_bytes_in_flight / 8).min(64 * 1024 * 1024)
}

/// What every invocation shares: the pipeline and the host-side settings.
#[derive(Debug)]
struct Handler {
    forwarder: Arc<Forwarder>,
    settings: HostSettings,
    /// Bytes of bodies in flight, all invocations together.
    budget: Arc<BodyBudget>,
    /// Length of the last body read (bytes): the next body's buffer is sized from it, as
    /// the host sends chunked requests without a length and a partition's invocations are
    /// alike in size.
    last_body_len: AtomicUsize,
    /// Request buffers kept for the next invocations ([`kept_buffers`]).
    pool: Arc<BodyPool>,
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
        budget: BodyBudget::new(settings.max_bytes_in_flight),
        pool: kept_pool(settings.max_bytes_in_flight),
        settings,
        last_body_len: AtomicUsize::new(0),
    }))
}

fn kept_pool(max_bytes_in_flight: usize) -> Arc<BodyPool> {
    let pool = BodyPool::new(kept_buffers(max_bytes_in_flight));
    pool.give_back_idle_in_background();
    pool
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
/// must not keep the process alive; the host retries whatever was not answered). Request
/// heads must arrive within `settings.body_read_timeout` ([`super::server`]).
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    settings: HostSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (head_timeout, grace) = (settings.body_read_timeout, settings.shutdown_grace);
    let app = router(forwarder, settings);
    super::server::serve(listener, app, head_timeout, grace, shutdown).await
}

/// The host's readiness probe and ping: any answer means ready.
async fn ready() -> Response {
    (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
}

async fn not_found() -> Response {
    Answer::NotFound.into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("An invocation panicked; answering 500 so the host retries it.");
    Answer::Internal("internal error; the invocation will be retried").into_response()
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
        .into_response()
}

/// Reads the body, decodes it off the async workers, forwards it: the pipeline does the
/// rest, and [`Answer`] chooses the status.
async fn run_invocation(
    handler: Arc<Handler>,
    invocation_id: Option<String>,
    body: Body,
) -> Answer {
    let started = Instant::now();
    let settings = &handler.settings;
    let limit = settings.max_body_bytes;
    // Held until the invocation is answered: its share of AUDIT_MAX_BYTES_IN_FLIGHT.
    let mut reservation = handler.budget.admit();
    let expected = handler
        .last_body_len
        .load(Ordering::Relaxed)
        .min(limit)
        .min(MOST_RESERVED_AHEAD);
    let read = read_body(body, limit, expected, &handler.pool, &mut reservation);
    let (bytes, loan) = match tokio::time::timeout(settings.body_read_timeout, read).await {
        Ok(Ok((bytes, loan))) => {
            handler.last_body_len.store(bytes.len(), Ordering::Relaxed);
            (bytes, loan)
        }
        Ok(Err(error)) if too_large(&error) => return Answer::BodyTooLarge(limit),
        Ok(Err(error)) => return Answer::BodyUnreadable(error.to_string()),
        Err(_) => {
            if reservation.waited() {
                tracing::warn!(
                    "The body waited for memory: AUDIT_MAX_BYTES_IN_FLIGHT was spent by other invocations."
                );
            }
            return Answer::BodyTimeout(settings.body_read_timeout);
        }
    };
    let decode = move || {
        decode_invocation(bytes).map(|mut invocation| {
            invocation.bodies = std::mem::take(&mut invocation.bodies).on_loan(loan);
            invocation
        })
    };
    let invocation = match tokio::task::spawn_blocking(decode).await {
        Ok(Ok(invocation)) => invocation,
        Ok(Err(error)) => return Answer::Malformed(error),
        Err(join_error) => {
            tracing::error!(error = %join_error, "Decoding the invocation panicked.");
            return Answer::Internal("internal error while decoding the invocation");
        }
    };
    match handler
        .forwarder
        .forward(invocation, invocation_id, started)
        .await
    {
        Ok(outcome) => Answer::Forwarded {
            outcome: Box::new(outcome),
            binding: settings.deadletter_binding.clone(),
        },
        Err(error) => {
            tracing::error!(%error, "Decoding the invocation panicked.");
            Answer::Internal("internal error while decoding the invocation")
        }
    }
}

/// The request body, appended chunk by chunk to one buffer as it arrives, up to `limit` bytes.
/// (`axum::body::to_bytes` keeps every chunk until the end and then copies them into one
/// buffer: twice the request at its peak.)
/// The buffer starts with room for the body's `Content-Length`, or else for `expected` bytes
/// (the last body's length): growing it by doubling would move or remap it a dozen times and
/// fault in fresh pages each time. Room not written to is address space, not memory.
/// The buffer is lent by `pool` when it has room (and returned with its loan).
/// Each chunk is reserved from the process-wide budget before it is kept.
async fn read_body(
    body: Body,
    limit: usize,
    expected: usize,
    pool: &Arc<BodyPool>,
    reservation: &mut Reservation,
) -> Result<(Vec<u8>, Option<Loan>), axum::Error> {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;
    let announced = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let mut limited = http_body_util::Limited::new(body, limit);
    let (mut buffer, loan) = pool.lend(announced.unwrap_or(expected).min(limit));
    while let Some(frame) = limited.frame().await {
        if let Ok(data) = frame.map_err(axum::Error::new)?.into_data() {
            reservation.grow(data.len()).await;
            buffer.extend_from_slice(&data);
        }
    }
    let loan = loan.and_then(|loan| loan.settle(&buffer, buffer.capacity()));
    Ok((buffer, loan))
}

/// Whether reading failed because the body is over the limit.
fn too_large(error: &axum::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The floor run as a Functions custom handler: the reference process the load harness
//! (`examples/load.rs`) measures the handler against, started and driven exactly like it.
//!
//! An HTTP/1.1 server on 127.0.0.1:`FUNCTIONS_CUSTOMHANDLER_PORT` that answers `GET /` and, for
//! `POST /EventHubForwarder`, collects the body and does the floor's work
//! (`tools::floor::floor_batches`: parse the host JSON and unescape `Data.events`, base64-decode
//! each body, read `records[].properties.log`, validate each Event into `IgnoredAny`,
//! concatenate `EventList`s of at most 400 Events), POSTs those bodies to `AUDIT_WEBHOOK_URL`
//! with one pooled reqwest client, 4 in flight (the handler's default
//! `AUDIT_WEBHOOK_CONCURRENCY`), and answers 200 with an empty invocation result (500 when a
//! POST fails). It shares no code with the handler's pipeline: no field checks, Policy,
//! annotations, routes, retries, dead letters or logging.
//!
//! Run by the harness; by hand: `FUNCTIONS_CUSTOMHANDLER_PORT=7071
//! AUDIT_WEBHOOK_URL=http://127.0.0.1:7765/k8s_audit cargo run --release --example floor_handler`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use aks_audit_forwarder::tools::floor::floor_batches;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt as _;

/// What the host reads from a successful answer: no outputs, no logs.
const EMPTY_RESULT: &str = r#"{"Outputs":{},"Logs":[],"ReturnValue":null}"#;

/// Largest `EventList`, as the handler's default `AUDIT_BATCH_MAX_EVENTS`.
const MAX_EVENTS: usize = 400;

/// POSTs in flight per invocation, as the handler's default `AUDIT_WEBHOOK_CONCURRENCY`.
const IN_FLIGHT: usize = 4;

struct Floor {
    client: reqwest::Client,
    webhook: String,
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("FUNCTIONS_CUSTOMHANDLER_PORT: a port number");
    let webhook = std::env::var("AUDIT_WEBHOOK_URL").expect("AUDIT_WEBHOOK_URL: a URL");
    let state = Arc::new(Floor {
        client: reqwest::Client::new(),
        webhook,
    });
    let router = Router::new()
        .route("/", get(|| async { "ready" }))
        .route("/EventHubForwarder", post(invoke))
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("bind the port");
    axum::serve(listener, router).await.expect("serve");
}

async fn invoke(State(floor): State<Arc<Floor>>, body: Bytes) -> Response {
    let batches = tokio::task::spawn_blocking(move || floor_batches(&body, MAX_EVENTS)).await;
    let Ok(Ok((batches, _))) = batches else {
        return (StatusCode::BAD_REQUEST, "not a host request").into_response();
    };
    let delivered = futures::stream::iter(batches)
        .map(|batch| floor.client.post(&floor.webhook).body(batch).send())
        .buffer_unordered(IN_FLIGHT)
        .all(|sent| async move { sent.is_ok_and(|r| r.status().is_success()) })
        .await;
    let status = if delivered {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        EMPTY_RESULT,
    )
        .into_response()
}

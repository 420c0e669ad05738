//! A local audit webhook receiver: what Sysdig's `:7765/k8s_audit` or Falco's `k8s-audit`
//! endpoint would see, for the demo, for tests and for checking a real deployment.
//!
//! It accepts what those receivers accept (an `EventList`, a single `Event`, or a JSON array of
//! Events, on any path), refuses what they refuse (a body that is not JSON, a non-JSON content
//! type, an Event without `stageTimestamp`: the whole payload, as Sysdig does), and keeps every
//! accepted Event. A script of canned answers (`503`, `429` with `Retry-After`, a hang) can be
//! queued ahead of normal service to exercise the forwarder's retries.
//!
//! The `receive` command runs it with [`Receiver::keep_last`]: Events go to the `--out` file
//! as they arrive, exact bytes, and memory holds only counts and the last few Events, however
//! much is received.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use super::describe::{describe, DESCRIBE_HEADER};
pub use super::scripted::Scripted;

/// One accepted POST.
#[derive(Debug, Clone)]
pub struct ReceivedBatch {
    /// The request path.
    pub path: String,
    /// `EventList`, `Event` or `array`.
    pub shape: &'static str,
    /// The Events, as parsed JSON.
    pub events: Vec<Value>,
    /// The request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

/// Counters over everything received so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReceiverStats {
    /// POSTs accepted.
    pub batches: u64,
    /// Events accepted.
    pub events: u64,
    /// Accepted Events whose `(auditID, stage)` was seen before.
    pub duplicates: u64,
    /// POSTs refused as malformed (400).
    pub refused: u64,
    /// Canned failures served from the script.
    pub scripted_failures: u64,
    /// POSTs answered 500 because the output file could not be written: the sender keeps
    /// those Events and sends them again.
    pub unwritten: u64,
}

#[derive(Default)]
struct Inner {
    refuse_ids: HashSet<String>,
    max_body: Option<usize>,
    batches: Vec<ReceivedBatch>,
    /// With `keep_last`: the most recent Events only, instead of `batches`.
    recent: Option<(usize, VecDeque<Value>)>,
    /// A 64-bit hash of each `(auditID, stage)` seen: 8 bytes an Event, for duplicates.
    seen: HashSet<u64>,
    stats: ReceiverStats,
    script: VecDeque<Scripted>,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

/// How much the receiver prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Verbosity {
    #[default]
    Quiet,
    /// One line per accepted POST.
    Batches,
    /// One line per accepted Event (and per refused POST).
    Events,
}

/// Shared receiver state.
#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    verbosity: Verbosity,
}

impl Receiver {
    /// A receiver that keeps what it gets in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also prints one line per accepted POST.
    pub fn verbose(mut self) -> Self {
        self.verbosity = Verbosity::Batches;
        self
    }

    /// Also prints one line per accepted Event: stage, verb, resource, name, user, code (see
    /// [`describe`]).
    pub fn print_events(mut self) -> Self {
        self.verbosity = Verbosity::Events;
        self
    }

    /// Keeps only the last `n` Events in memory (and no batches): for long runs, with
    /// [`Receiver::with_output`] holding everything.
    pub fn keep_last(self, n: usize) -> Self {
        self.lock().recent = Some((n, VecDeque::with_capacity(n)));
        self
    }

    /// Also appends every accepted Event to `file` as one JSON line, its exact bytes as sent,
    /// written and flushed before the POST is answered. When the file cannot be written (a
    /// full disk) the POST is answered 500 and not counted, so the sender keeps its Events
    /// and retries instead of the receiver acknowledging Events it did not store.
    pub fn with_output(self, file: std::fs::File) -> Self {
        self.lock().out = Some(std::io::BufWriter::new(file));
        self
    }

    /// Flushes the output file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn flush(&self) -> std::io::Result<()> {
        match self.lock().out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses with 400 any payload holding an Event with one of these `auditID`s, whole, as
    /// Sysdig's receiver does with an Event it cannot use.
    pub fn refuse_audit_ids(&self, ids: impl IntoIterator<Item = String>) {
        self.lock().refuse_ids.extend(ids);
    }

    /// Answers 413 to bodies larger than `bytes`.
    pub fn max_body(&self, bytes: usize) {
        self.lock().max_body = Some(bytes);
    }

    /// Queues canned answers ahead of normal service.
    pub fn push_script(&self, items: impl IntoIterator<Item = Scripted>) {
        self.lock().script.extend(items);
    }

    /// Drops the canned answers not served yet: normal service resumes.
    pub fn clear_script(&self) {
        self.lock().script.clear();
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.lock().stats.clone()
    }

    /// Every accepted POST so far.
    pub fn batches(&self) -> Vec<ReceivedBatch> {
        self.lock().batches.clone()
    }

    /// Every accepted Event so far (only the last few with [`Receiver::keep_last`]), in
    /// arrival order.
    pub fn events(&self) -> Vec<Value> {
        let inner = self.lock();
        if let Some((_, recent)) = &inner.recent {
            return recent.iter().cloned().collect();
        }
        inner
            .batches
            .iter()
            .flat_map(|b| b.events.iter().cloned())
            .collect()
    }

    /// The router, to mount on any listener.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(any(receive))
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(self.clone())
    }

    /// Binds `addr` and serves in the background until the handle is stopped or dropped.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<RunningReceiver> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(RunningReceiver {
            addr,
            receiver: self.clone(),
            stop: Some(stop),
            task,
        })
    }
}

/// A receiver serving in the background.
pub struct RunningReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub receiver: Receiver,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningReceiver {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, lets open requests finish, and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Events of a body the receiver accepted, as their exact text.
fn raw_items(body: &[u8], shape: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct List<'a> {
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
    }
    let text = std::str::from_utf8(body).unwrap_or_default();
    match shape {
        "array" => serde_json::from_str::<Vec<&RawValue>>(text)
            .map(|v| v.iter().map(|r| r.get().to_string()).collect())
            .unwrap_or_default(),
        "EventList" => serde_json::from_str::<List<'_>>(text)
            .map(|l| l.items.iter().map(|r| r.get().to_string()).collect())
            .unwrap_or_default(),
        _ => vec![text.trim().to_string()],
    }
}

/// Appends one line per item and flushes: what is acknowledged is in the file.
fn write_lines(out: &mut std::io::BufWriter<std::fs::File>, raw: &[String]) -> std::io::Result<()> {
    for item in raw {
        out.write_all(item.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn key_hash(event: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    event["auditID"].as_str().unwrap_or_default().hash(&mut h);
    event["stage"].as_str().unwrap_or_default().hash(&mut h);
    h.finish()
}

fn refuse(receiver: &Receiver, message: String) -> Response {
    receiver.lock().stats.refused += 1;
    if receiver.verbosity != Verbosity::Quiet {
        println!("receiver: refused a POST: {message}");
    }
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let next = receiver.lock().script.pop_front();
    match next {
        Some(Scripted::Status(code)) => return scripted(&receiver, code, None),
        Some(Scripted::RetryAfter(code, secs)) => return scripted(&receiver, code, Some(secs)),
        Some(Scripted::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }

    let max_body = receiver.lock().max_body;
    if max_body.is_some_and(|max| body.len() > max) {
        receiver.lock().stats.refused += 1;
        return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if !json_type {
        return refuse(&receiver, "Content-Type must be application/json".into());
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(&receiver, format!("Malformed JSON: {e}")),
    };
    let (shape, events) = match value {
        Value::Array(items) => ("array", items),
        Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("EventList") => {
            match o.get("items") {
                Some(Value::Array(items)) => ("EventList", items.clone()),
                _ => return refuse(&receiver, "EventList without items".into()),
            }
        }
        Value::Object(_) => ("Event", vec![value]),
        _ => {
            return refuse(
                &receiver,
                "expected an Event, an EventList or an array".into(),
            )
        }
    };
    for (i, event) in events.iter().enumerate() {
        if event.get("kind").and_then(Value::as_str) != Some("Event") {
            return refuse(&receiver, format!("item {i}: kind is not Event"));
        }
        if event
            .get("stageTimestamp")
            .and_then(Value::as_str)
            .is_none()
        {
            return refuse(&receiver, format!("item {i}: no stageTimestamp"));
        }
        let id = event
            .get("auditID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if receiver.lock().refuse_ids.contains(id) {
            return refuse(&receiver, format!("item {i}: event {id} refused"));
        }
    }

    let raw = if receiver.lock().out.is_some() {
        raw_items(&body, shape)
    } else {
        Vec::new()
    };
    let mut inner = receiver.lock();
    if let Some(out) = inner.out.as_mut() {
        if let Err(e) = write_lines(out, &raw) {
            // Drop what is still buffered: the sender sends these Events again.
            if let Some(out) = inner.out.take() {
                inner.out = Some(std::io::BufWriter::new(out.into_parts().0));
            }
            inner.stats.unwritten += 1;
            drop(inner);
            eprintln!(
                "receiver: cannot write the output file ({e}); answering 500 so that the sender \
                 keeps these Events and sends them again"
            );
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the receiver cannot store the Events: {e}"),
            )
                .into_response();
        }
    }
    for event in &events {
        if !inner.seen.insert(key_hash(event)) {
            inner.stats.duplicates += 1;
        }
        if receiver.verbosity == Verbosity::Events {
            println!("{}", describe(event));
        }
    }
    inner.stats.batches += 1;
    inner.stats.events += events.len() as u64;
    if let Some((n, recent)) = inner.recent.as_mut() {
        let n = *n;
        for event in events {
            if recent.len() == n {
                recent.pop_front();
            }
            if n > 0 {
                recent.push_back(event);
            }
        }
        return StatusCode::OK.into_response();
    }
    if receiver.verbosity == Verbosity::Batches {
        println!(
            "receiver: {} {} with {} event(s) on {}",
            shape,
            if shape == "EventList" {
                "batch"
            } else {
                "payload"
            },
            events.len(),
            uri.path()
        );
    }
    inner.batches.push(ReceivedBatch {
        path: uri.path().to_string(),
        shape,
        events,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    });
    StatusCode::OK.into_response()
}

fn scripted(receiver: &Receiver, code: u16, retry_after: Option<u64>) -> Response {
    receiver.lock().stats.scripted_failures += 1;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if receiver.verbosity != Verbosity::Quiet {
        println!("receiver: answering {status} as scripted");
    }
    let mut response = (status, format!("scripted {code}")).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    response
}

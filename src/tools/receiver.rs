//! A local audit webhook receiver: what Sysdig's `:7765/k8s_audit` or Falco's `k8s-audit`
//! endpoint would see, for the demo, for tests and for checking a real deployment.
//!
//! It accepts what those receivers accept (an `EventList`, a single `Event`, or a JSON array of
//! Events, on any path), refuses what they refuse (a body that is not JSON, a non-JSON content
//! type, an Event without `stageTimestamp`: the whole payload, as Sysdig does), and keeps every
//! accepted Event. A script of canned answers (`503`, `429` with `Retry-After`, a hang) can be
//! queued ahead of normal service to exercise the forwarder's retries, and chosen Events
//! refused for good (`--refuse`) to make dead letters. How one POST is served is in
//! `receiving.rs`.
//!
//! The `receive` command runs it with [`Receiver::keep_last`]: Events go to the `--out` file
//! as they arrive, exact bytes, and memory holds only counts and the last few Events, however
//! much is received.

use super::falco::FalcoLimits;
use std::collections::{HashSet, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::routing::any;
use axum::Router;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket};
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
    /// The largest accepted POST body, bytes.
    pub largest_body: u64,
    /// With Falco's limits: accepted Events Falco would drop after answering 200.
    pub falco_dropped: u64,
    /// With Falco's limits: the largest accepted Event as Falco measures it, bytes.
    pub falco_largest_event: u64,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) refuse_ids: HashSet<String>,
    pub(super) max_body: Option<usize>,
    pub(super) batches: Vec<ReceivedBatch>,
    /// With `keep_last`: the most recent Events only, instead of `batches`.
    pub(super) recent: Option<(usize, VecDeque<Value>)>,
    /// A 64-bit hash of each `(auditID, stage)` seen: 8 bytes an Event, for duplicates.
    pub(super) seen: HashSet<u64>,
    pub(super) stats: ReceiverStats,
    pub(super) script: VecDeque<Scripted>,
    pub(super) out: Option<std::io::BufWriter<std::fs::File>>,
    /// With `keep_raw`: every accepted Event's exact text, in arrival order.
    pub(super) raw: Option<Vec<String>>,
    /// `receive --profile falco`: Falco's limits (`tools::falco`).
    pub(super) falco: Option<FalcoLimits>,
}

/// How much the receiver prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Verbosity {
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
    pub(super) verbosity: Verbosity,
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

    /// Also keeps the exact text of every accepted Event, as sent (see [`Receiver::raw_events`]).
    pub fn keep_raw(self) -> Self {
        self.lock().raw = Some(Vec::new());
        self
    }

    /// The exact text of every accepted Event so far, in arrival order (empty without
    /// [`Receiver::keep_raw`]).
    pub fn raw_events(&self) -> Vec<String> {
        self.lock().raw.clone().unwrap_or_default()
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

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses with 400 any payload holding an Event with one of these `auditID`s, whole, as
    /// Sysdig's receiver does with an Event it cannot use.
    pub fn refuse_audit_ids(&self, ids: impl IntoIterator<Item = String>) {
        self.lock().refuse_ids.extend(ids);
    }

    /// Holds every POST to Falco's limits (400 for a body over `webhookMaxBatchSize`) and
    /// counts the Events Falco would drop after answering 200 (`tools::falco`).
    pub fn with_falco_limits(self, limits: FalcoLimits) -> Self {
        self.lock().falco = Some(limits);
        self
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
            .fallback(any(super::receiving::receive))
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(self.clone())
    }

    /// Binds `addr` and serves in the background until the handle is stopped or dropped.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<RunningReceiver> {
        let listener = listen(addr)?;
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

/// A listening socket on `addr` with `SO_REUSEADDR` set, as servers set it: a receiver
/// started again right after one that served connections on the same port (`receive`
/// stopped and restarted) binds even while those connections linger in `TIME_WAIT`. It does
/// not let two receivers listen on one port: the second still fails with `EADDRINUSE`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// `receive` stopped and started again at once on the same port: the first receiver served
    /// a keep-alive connection and closed it when it stopped, so that connection lingers in
    /// `TIME_WAIT` on the port; without `SO_REUSEADDR` the second bind fails with
    /// `EADDRINUSE`.
    #[tokio::test]
    async fn restarts_on_its_port_right_after_serving_a_connection() {
        let first = Receiver::new()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = first.addr;
        let body = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#;
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /k8s_audit HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        conn.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        // The receiver closes the idle connection first, so the TIME_WAIT is on its side.
        first.stop().await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut rest),
        )
        .await
        .expect("the stopped receiver closes the connection");
        drop(conn);
        let again = Receiver::new().start(addr).await;
        assert!(again.is_ok(), "restarting on {addr}: {:?}", again.err());
    }

    #[tokio::test]
    async fn a_second_receiver_on_a_port_in_use_is_still_refused() {
        let first = Receiver::new()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let err = Receiver::new().start(first.addr).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}

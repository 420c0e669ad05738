//! A counting audit receiver for load tests: answers every POST with 200 and counts Events
//! by scanning the body's brackets, without parsing Events into values, so the receiver is not
//! what limits a throughput measurement.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::audit::EVENT_LIST_PREFIX;

/// What the receiver has counted so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Events received (`EventList` items, or 1 for a bare Event).
    pub events: AtomicU64,
    /// POSTs received.
    pub posts: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
}

/// A counting receiver serving on 127.0.0.1 until dropped.
pub struct CountingReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The counters.
    pub counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl CountingReceiver {
    /// Binds an ephemeral port on 127.0.0.1 and serves in the background.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let router = Router::new()
            .fallback(any(receive))
            .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
            .with_state(counts.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { addr, counts, task })
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Events counted so far.
    pub fn events(&self) -> u64 {
        self.counts.events.load(Ordering::Relaxed)
    }
}

impl Drop for CountingReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(counts): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    counts
        .events
        .fetch_add(count_events(&body), Ordering::Relaxed);
    counts.posts.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    StatusCode::OK
}

/// Items of an `EventList` body written as kube-apiserver writes it (and the forwarder does),
/// found by counting the commas between top-level items; any other body counts as one Event.
pub fn count_events(body: &[u8]) -> u64 {
    let Some(items) = body.strip_prefix(EVENT_LIST_PREFIX.as_bytes()) else {
        return 1;
    };
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    let (mut count, mut any) = (0u64, false);
    for &b in items {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                if depth == 0 {
                    any = true;
                }
                depth += 1;
            }
            b'}' | b']' if depth == 0 => break,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => count += 1,
            _ => {}
        }
    }
    count + u64::from(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_items_of_event_lists() {
        let list = |items: &str| format!("{EVENT_LIST_PREFIX}{items}]}}");
        assert_eq!(count_events(list("").as_bytes()), 0);
        assert_eq!(count_events(list(r#"{"a":"],{"}"#).as_bytes()), 1);
        assert_eq!(
            count_events(list(r#"{"a":[1,2],"b":"\",}"},{"c":{}},{}"#).as_bytes()),
            3
        );
        assert_eq!(count_events(br#"{"kind":"Event"}"#), 1);
    }
}

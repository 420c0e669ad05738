//! A local stand-in for an alert notifier (a Teams Workflows webhook, a Slack incoming webhook,
//! a SOAR endpoint): records every POST with the moment it arrived and answers a chosen status
//! (`202` as a Teams flow does by default). Used by the tests and the load harness.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One POST the stand-in received.
#[derive(Debug, Clone)]
pub struct Post {
    /// When its body had arrived.
    pub at: Instant,
    /// The request path and query.
    pub uri: String,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl Post {
    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Inner {
    posts: Vec<Post>,
    status: u16,
}

/// A notifier stand-in serving on loopback until dropped.
#[derive(Debug)]
pub struct Notified {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: oneshot::Sender<()>,
}

async fn take(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let post = Post {
        at: Instant::now(),
        uri: uri.to_string(),
        content_type: headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body,
    };
    let mut inner = match inner.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    inner.posts.push(post);
    StatusCode::from_u16(inner.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Notified {
    /// Serves on a free loopback port, answering `status`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(status: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            posts: Vec::new(),
            status,
        }));
        let router = Router::new().fallback(any(take)).with_state(inner.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            inner,
            _stop: stop,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status answered from now on.
    pub fn answer(&self, status: u16) {
        self.lock().status = status;
    }

    /// Every POST so far, in arrival order.
    pub fn posts(&self) -> Vec<Post> {
        self.lock().posts.clone()
    }
}

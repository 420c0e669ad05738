//! The handler's HTTP/1.1 server: the accept loop, a header read timeout on every
//! connection, and a shutdown that waits for the invocations being answered, never for idle
//! or stalled connections.
//!
//! `axum::serve` reads request heads without a time limit (hyper's header read timeout needs
//! a timer, which it does not set) and its graceful shutdown waits for every connection to
//! close: a client that sent half a request line kept a connection open for ever and made
//! SIGTERM wait out the whole grace period.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How often the shutdown looks whether the last invocation was answered.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Pause after a failed accept (out of descriptors, say) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, closes idle
/// and half-read connections, and waits up to `grace` for the requests being answered (their
/// answers written whole). A request head not complete within `header_read_timeout` (an idle
/// keep-alive connection included) closes its connection.
///
/// # Errors
/// None today: accept errors are logged and retried. The `Result` keeps the shape of
/// `axum::serve`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (closing, closed) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = Connection {
                        app: app.clone(),
                        header_read_timeout,
                        in_flight: in_flight.clone(),
                        closed: closed.clone(),
                    };
                    tokio::spawn(connection.run(stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "Accepting a connection failed; retrying.");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async {
        while in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "Invocations still in flight after the shutdown grace period; exiting, the host retries them."
        );
    }
    Ok(())
}

/// One accepted connection and what it shares with the server.
struct Connection {
    app: Router,
    header_read_timeout: Duration,
    in_flight: Arc<AtomicUsize>,
    closed: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let tower = TowerToHyperService::new(self.app.clone());
        let in_flight = self.in_flight.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            use hyper::service::Service as _;
            let guard = InFlight::enter(&in_flight);
            let answer = tower.call(request);
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                    body,
                    _guard: guard,
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = self.closed.wait_for(|closed| *closed) => {}
        }
        // Idle, or a head half read: closed now. A request being answered: finished first.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// Counts a request as in flight until its answer has been written (or dropped).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer body that keeps its request counted in flight until it is written.
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

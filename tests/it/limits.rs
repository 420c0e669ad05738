//! Process-wide bounds: request heads that stall or idle are closed within
//! `AUDIT_BODY_READ_TIMEOUT` and never delay shutdown.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{audit_bodies, spawn_handler};
use crate::rogue::{Act, Rogue};

/// Opens a connection to the handler and sends `bytes` (part of a request head, or nothing).
fn stalled(port: u16, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

const HEADS: [&[u8]; 3] = [
    b"",
    b"POST /EventHubForw",
    b"POST /EventHubForwarder HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-",
];

/// Issue 18 row 16: a connection idle or stalled inside its request line or headers is
/// closed within `AUDIT_BODY_READ_TIMEOUT`; with such connections open, SIGTERM ends the
/// process at once (nothing is in flight), far inside `AUDIT_SHUTDOWN_GRACE`.
#[tokio::test]
async fn stalled_request_heads_time_out_and_never_delay_shutdown() {
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit"),
        ("AUDIT_BODY_READ_TIMEOUT", "1s"),
    ])
    .await;
    let started = Instant::now();
    let streams: Vec<TcpStream> = HEADS.iter().map(|h| stalled(handler.port, h)).collect();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let mut answer = Vec::new();
        // Closed by the handler: the read ends (an answer such as 408 and EOF, or a reset)
        // instead of running into the test's own 10 s timeout.
        let read = stream.read_to_end(&mut answer);
        if let Err(e) = &read {
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "head {i}: still open after {:?}",
                started.elapsed()
            );
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    let mut handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit"),
        ("AUDIT_BODY_READ_TIMEOUT", "60s"),
        ("AUDIT_SHUTDOWN_GRACE", "30s"),
    ])
    .await;
    let _held: Vec<TcpStream> = HEADS.iter().map(|h| stalled(handler.port, h)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    handler.terminate();
    let exit = handler.wait_exit(Duration::from_secs(10));
    assert!(exit.is_some(), "still running 10 s after SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
}

/// An invocation being answered when SIGTERM comes is finished and answered in full before
/// the process exits, while stalled heads are dropped.
#[tokio::test]
async fn sigterm_finishes_the_invocation_in_flight() {
    let rogue = Rogue::start(|_, _| Act::Slow(Duration::from_millis(1500), 200)).await;
    let mut handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_SHUTDOWN_GRACE", "20s"),
        ("AUDIT_BODY_READ_TIMEOUT", "60s"),
    ])
    .await;
    let _held = stalled(handler.port, HEADS[2]);
    let (bodies, _) = audit_bodies("term", 1, 3, 0);
    let pid = nix::unistd::Pid::from_raw(handler.child.id() as i32);
    let signal = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        Instant::now()
    });
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("delivered=3"), "{}", answer.body);
    let signalled = signal.await.unwrap();
    let exit = handler.wait_exit(Duration::from_secs(10));
    assert!(exit.is_some(), "still running 10 s after SIGTERM");
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

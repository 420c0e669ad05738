//! Process-wide bounds: request heads that stall or idle are closed within
//! `AUDIT_BODY_READ_TIMEOUT` and never delay shutdown; webhook connections stay within the
//! open-files limit however many routes there are.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{
    audit_bodies, audit_event, cluster_id, envelope, record_from, spawn_handler, spawn_handler_with,
};
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

/// Issue 18 row 18: 300 routes, each to its own webhook URL, under `ulimit -n 160`. Every
/// route delivers at once and keeps connections alive; the process-wide connection budget
/// keeps the descriptors in use under the limit, so the first try delivers every Event.
#[tokio::test]
async fn three_hundred_routes_fit_a_low_open_files_limit() {
    const ROUTES: usize = 300;
    let rogue = Rogue::start(|_, _| Act::Slow(Duration::from_millis(50), 200)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    let mut doc = String::from("routes:\n");
    for i in 0..ROUTES {
        doc.push_str(&format!(
            "- name: r{i}\n  match: {{clusters: [c{i}]}}\n  webhook: {{url: '{}'}}\n",
            rogue.url(&format!("/k8s_audit/{i}"))
        ));
    }
    std::fs::write(&path, doc).unwrap();
    let handler = spawn_handler_with(
        &[
            ("AUDIT_ROUTES", path.to_str().unwrap()),
            ("AUDIT_DELIVERY_DEADLINE", "20s"),
        ],
        Some(160),
    )
    .await;
    let records = (0..ROUTES)
        .map(|i| {
            record_from(
                &cluster_id(&format!("c{i}")),
                "kube-audit",
                &audit_event(&format!("fd-{i}"), 0),
            )
        })
        .collect();
    let answer = handler.invoke_bodies(&[envelope(records)], "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains(&format!("delivered={ROUTES}")),
        "{}",
        answer.body
    );
    assert_eq!(rogue.kept_unique().len(), ROUTES);
    assert!(
        !handler.log().contains("Too many open files"),
        "{}",
        handler.log()
    );
}

/// Issue 18 row 17: memory of concurrent invocations is bounded process-wide. With
/// `AUDIT_MAX_BYTES_IN_FLIGHT` below two bodies, four invocations sent at once are read one
/// after the other (the host waits on TCP), so the receiver never sees two of them at once;
/// each is answered 200 and nothing is lost.
#[tokio::test]
async fn bodies_in_flight_stay_within_the_byte_budget() {
    const SLOW: Duration = Duration::from_millis(600);
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let seen = arrivals.clone();
    let rogue = Rogue::start(move |_, _| {
        seen.lock().unwrap().push(Instant::now());
        Act::Slow(SLOW, 200)
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_MAX_BYTES_IN_FLIGHT", "4MiB"),
        ("AUDIT_WEBHOOK_TIMEOUT", "5s"),
        ("AUDIT_DELIVERY_DEADLINE", "30s"),
    ])
    .await;
    let invocations: Vec<Vec<Vec<u8>>> = (0..4)
        .map(|p| audit_bodies(&format!("mem{p}"), 1, 30, 100_000).0)
        .collect();
    assert!(invocations[0][0].len() > 3_000_000);
    let handler = &handler;
    let answers = futures::future::join_all(
        invocations
            .iter()
            .enumerate()
            .map(|(p, bodies)| async move { handler.invoke_bodies(bodies, &p.to_string()).await }),
    )
    .await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains("delivered=30"), "{}", answer.body);
    }
    assert_eq!(rogue.kept_unique().len(), 120);
    let arrivals = arrivals.lock().unwrap().clone();
    let together = arrivals
        .iter()
        .map(|t| {
            arrivals
                .iter()
                .filter(|u| **u >= *t && **u < *t + SLOW - Duration::from_millis(50))
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(together, 1, "{arrivals:?}");
}

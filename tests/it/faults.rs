//! Fault injection: a proxy on 127.0.0.1 in front of the real receiver misbehaves on cue
//! (resets mid-body, closes without answering, answers and then loses the answer), the
//! receiver fails in scripted sequences, and the handler process is replaced between a failed
//! attempt and its redelivery. Each test states exactly what arrives.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aks_audit_forwarder::tools::hostsim::SimPartition;
use aks_audit_forwarder::tools::receiver::{Receiver, RunningReceiver, Scripted};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Read part of the request, then reset the connection (RST).
    ResetMidBody,
    /// Read the whole request, then close without answering.
    CloseWithoutAnswer,
    /// Forward the request, let the receiver process it, then drop its answer.
    LoseAnswer,
}

/// A TCP proxy to `upstream` whose next connections suffer `faults`, in order; later ones
/// pass through untouched.
async fn fault_proxy(upstream: SocketAddr, faults: Vec<Fault>) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let faults = Arc::new(Mutex::new(VecDeque::from(faults)));
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let fault = faults.lock().unwrap().pop_front();
            tokio::spawn(handle(client, upstream, fault));
        }
    });
    addr
}

/// Reads one HTTP request (headers and a Content-Length or chunked body) into a buffer.
async fn read_request(client: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_millis(300), client.read(&mut chunk))
            .await
            .unwrap_or(Ok(0))
            .unwrap_or(0);
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            match length {
                Some(len) if buf.len() >= end + 4 + len => return buf,
                None if buf.ends_with(b"0\r\n\r\n") => return buf,
                _ => {}
            }
        }
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, fault: Option<Fault>) {
    match fault {
        Some(Fault::ResetMidBody) => {
            let mut some = [0u8; 256];
            let _ = client.read(&mut some).await;
            let _ = client.set_zero_linger();
            drop(client);
        }
        Some(Fault::CloseWithoutAnswer) => {
            let _ = read_request(&mut client).await;
            let _ = client.shutdown().await;
        }
        Some(Fault::LoseAnswer) => {
            let request = read_request(&mut client).await;
            let mut server = TcpStream::connect(upstream).await.unwrap();
            server.write_all(&request).await.unwrap();
            let mut answer = [0u8; 1024];
            let _ = server.read(&mut answer).await;
            let _ = client.set_zero_linger();
            drop(client);
        }
        None => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}

async fn send(handler: &Handler, prefix: &str, events: usize) -> (u16, String, Vec<String>) {
    let (bodies, expected) = audit_bodies(prefix, 1, events, 0);
    let answer = handler.invoke_bodies(&bodies, "0").await;
    (answer.status, answer.body, expected)
}

/// Sends `events` Events through a proxy suffering `faults` to a fresh receiver; checks the
/// answer is 200 after `attempts` POSTs, and returns the receiver and the expected Events.
async fn through_faults(
    faults: Vec<Fault>,
    prefix: &str,
    events: usize,
    attempts: usize,
) -> (RunningReceiver, Vec<String>) {
    let receiver = start_receiver().await;
    let proxy = fault_proxy(receiver.addr, faults).await;
    let handler =
        spawn_handler(&[("AUDIT_WEBHOOK_URL", &format!("http://{proxy}/k8s_audit"))]).await;
    let (status, body, expected) = send(&handler, prefix, events).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("attempts={attempts}")),
        "every fault was met: {body}"
    );
    (receiver, expected)
}

/// Connection reset in the middle of the request body, twice: retried, delivered once.
#[tokio::test]
async fn reset_mid_body_is_retried_without_loss_or_duplicates() {
    let faults = vec![Fault::ResetMidBody, Fault::ResetMidBody];
    let (receiver, expected) = through_faults(faults, "reset", 50, 3).await;
    assert_same_events(receiver.receiver.events(), &expected);
    assert_eq!(receiver.receiver.stats().duplicates, 0);
}

/// The receiver accepts the request and closes without answering: retried, delivered once.
#[tokio::test]
async fn closed_without_answer_is_retried() {
    let (receiver, expected) =
        through_faults(vec![Fault::CloseWithoutAnswer], "closed", 20, 2).await;
    assert_same_events(receiver.receiver.events(), &expected);
    assert_eq!(receiver.receiver.stats().duplicates, 0);
}

/// The receiver processes the batch but its answer is lost: the forwarder cannot know, so it
/// sends again. Every Event arrives; each of them twice (at-least-once, same auditID+stage).
#[tokio::test]
async fn lost_answer_means_a_duplicate_not_a_loss() {
    let (receiver, expected) = through_faults(vec![Fault::LoseAnswer], "lost", 10, 2).await;
    let events = receiver.receiver.events();
    assert_eq!(receiver.receiver.stats().duplicates, 10);
    assert_same_events(events[..10].to_vec(), &expected);
    assert_same_events(events[10..].to_vec(), &expected);
}

/// A scripted run of failures (500, 503, 429 with Retry-After, 503) before success.
#[tokio::test]
async fn scripted_failure_sequence_then_delivery() {
    let receiver = start_receiver().await;
    receiver.receiver.push_script([
        Scripted::Status(500),
        Scripted::Status(503),
        Scripted::RetryAfter(429, 1),
        Scripted::Status(503),
    ]);
    let handler = spawn_handler(&[("AUDIT_WEBHOOK_URL", &receiver.url("/k8s_audit"))]).await;
    let (status, body, expected) = send(&handler, "sequence", 30).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("attempts=5"), "{body}");
    assert_same_events(receiver.receiver.events(), &expected);
}

/// The handler process dies after a failed attempt (the host restarts it); the redelivery,
/// served by a fresh process, delivers everything exactly once: no state is lost with the
/// process because the checkpoint never moved.
#[tokio::test]
async fn handler_restart_between_failure_and_redelivery() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/k8s_audit");
    let settings = [
        ("AUDIT_WEBHOOK_URL", url.as_str()),
        ("AUDIT_DELIVERY_DEADLINE", "1s"),
    ];
    let (bodies, expected) = audit_bodies("restart", 2, 5, 0);
    let mut partition = SimPartition::new("4");

    let mut first = spawn_handler(&settings).await;
    let answer = first.invoke_as(&bodies, &mut partition, Some(0)).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    first.child.kill().unwrap();
    first.wait_exit(Duration::from_secs(5)).expect("killed");

    let receiver = Receiver::new()
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
    let second = spawn_handler(&settings).await;
    partition.next_sequence = 0;
    let answer = second.invoke_as(&bodies, &mut partition, Some(1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &expected);
    assert_eq!(receiver.receiver.stats().duplicates, 0);
}

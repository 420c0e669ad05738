//! Chaos over the delivery promises (second adversarial review, "Done when"): random mixes of
//! receivers that reset on one Event, refuse one payload with some status, fail at random, or
//! refuse everything, fed Events that share `auditID`s within and across clusters and copies
//! sent under both audit categories. Seeds are fixed, so a failure is reproducible.
//!
//! Invariants: nothing is lost (every Event reaches the receiver or a dead letter), only the
//! Event that causes its failure is dead-lettered, a route that takes other Events never
//! blocks the partition past a bounded number of host retries, and a route that refuses
//! everything dead-letters nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aks_audit_forwarder::tools::hostsim::{build_request, Answer, Shape, SimPartition};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;
use crate::hostile::dead_letters;

/// What the receiver does.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Resets the connection whenever the payload holds the Event with this serial.
    ResetOn(usize),
    /// Answers `status` whenever the payload holds the Event with this serial.
    RefuseOn(usize, u16),
    /// Fails a fixed pseudo-random share (per mille) of requests with 503.
    Flaky(u64, u64),
    /// Answers this status to everything (0: resets).
    RefuseAll(u16),
}

/// The serial of an Event: the number at the end of its `requestURI`.
fn serial(event: &Value) -> usize {
    let uri = event["requestURI"].as_str().unwrap_or_default();
    uri.rsplit('/')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(usize::MAX)
}

/// A receiver keeping the exact text of every Event it takes.
#[derive(Clone, Default)]
struct Receiver {
    kept: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<u64>>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Some(buffer[end + 4..end + 4 + length].to_vec());
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut stream: TcpStream, receiver: Receiver, behaviour: Behaviour) {
    while let Some(body) = read_request(&mut stream).await {
        let n = {
            let mut count = receiver.requests.lock().unwrap();
            *count += 1;
            *count
        };
        let list: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let holds = |s: usize| items.iter().any(|e| serial(e) == s);
        let status = match behaviour {
            Behaviour::ResetOn(s) if holds(s) => 0,
            Behaviour::RefuseOn(s, code) if holds(s) => code,
            Behaviour::Flaky(seed, per_mille) => {
                let x = (n ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33;
                if x % 1000 < per_mille {
                    503
                } else {
                    200
                }
            }
            Behaviour::RefuseAll(code) => code,
            _ => 200,
        };
        if status == 0 {
            let _ = stream.set_zero_linger();
            return;
        }
        if status == 200 {
            let mut kept = receiver.kept.lock().unwrap();
            kept.extend(items.iter().map(Value::to_string));
        }
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn start(behaviour: Behaviour) -> (String, Receiver) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/k8s_audit", listener.local_addr().unwrap());
    let receiver = Receiver::default();
    let state = receiver.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, state.clone(), behaviour.clone()));
        }
    });
    (url, receiver)
}

/// The Events of one scenario: `auditID`s from a pool of 4 (shared within and across two
/// clusters), each Event unique by its `requestURI`; some sent under both categories.
fn scenario_input(rng: &mut fastrand::Rng) -> (Vec<Vec<u8>>, Vec<String>) {
    let count = rng.usize(8..40);
    let mut texts = Vec::new();
    let mut records = Vec::new();
    for s in 0..count {
        let id = format!("shared-{}", rng.usize(0..4));
        let text = audit_event(&id, rng.usize(0..64)).replace(
            "/api/v1/namespaces/shop/configmaps/app",
            &format!("/api/v1/x/{s}"),
        );
        let cluster = cluster_id(if rng.bool() { "c1" } else { "c2" });
        records.push(record_from(&cluster, "kube-audit", &text));
        if rng.u8(0..4) == 0 {
            records.push(record_from(&cluster, "kube-audit-admin", &text));
        }
        texts.push(text);
    }
    let bodies = records.chunks(7).map(|r| envelope(r.to_vec())).collect();
    (bodies, texts)
}

/// The host's try `count` of the invocation. A transport error is a failed try, as the host
/// counts it (it retries the invocation); it is reported, and a handler that died fails the
/// scenario as blocked.
async fn try_count(handler: &Handler, bodies: &[Vec<u8>], count: i64) -> Option<Answer> {
    let mut partition = SimPartition::new("3");
    let request = build_request(Shape::ManyBinary, bodies, &mut partition, Some(count)).unwrap();
    match handler.host.invoke("EventHubForwarder", request).await {
        Ok(answer) => Some(answer),
        Err(e) => {
            eprintln!("chaos: try {count} failed in transport: {e:#}");
            None
        }
    }
}

/// The Events (as JSON values) in a list of texts, compared structurally.
fn values(texts: &[String]) -> BTreeSet<String> {
    texts
        .iter()
        .map(|t| serde_json::from_str::<Value>(t).unwrap().to_string())
        .collect()
}

/// Random receivers and inputs; the invariants of the module documentation hold for each.
#[tokio::test]
async fn chaos_receivers_never_lose_block_or_blame_a_healthy_event() {
    for seed in 1..=12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (bodies, texts) = scenario_input(&mut rng);
        let guilty = rng.usize(0..texts.len());
        let behaviour = match rng.u8(0..4) {
            0 => Behaviour::ResetOn(guilty),
            1 => Behaviour::RefuseOn(guilty, [400, 403, 404, 410, 422, 500, 502][rng.usize(0..7)]),
            2 => Behaviour::Flaky(seed, 400),
            _ => Behaviour::RefuseAll([0, 401, 403, 404, 500, 503][rng.usize(0..6)]),
        };
        let batch = rng.usize(1..8).to_string();
        let (url, receiver) = start(behaviour.clone()).await;
        let handler = spawn_handler(&[
            ("AUDIT_WEBHOOK_URL", &url),
            ("AUDIT_BATCH_MAX_EVENTS", &batch),
            ("AUDIT_DELIVERY_DEADLINE", "3s"),
        ])
        .await;
        let context = format!(
            "seed {seed}: {behaviour:?}, batch {batch}, {} Events",
            texts.len()
        );
        eprintln!("chaos: {context}");
        let mut done = None;
        for count in 0..10 {
            let Some(answer) = try_count(&handler, &bodies, count).await else {
                continue;
            };
            if answer.status == 200 {
                done = Some(answer);
                break;
            }
            assert_eq!(answer.status, 500, "{context}: {}", answer.body);
            assert!(
                dead_letters(&answer).is_empty(),
                "{context}: {}",
                answer.body
            );
            if let Behaviour::RefuseAll(_) = behaviour {
                if count >= 4 {
                    break;
                }
            }
        }
        if let Behaviour::RefuseAll(_) = behaviour {
            assert!(done.is_none(), "{context}: a route refusing everything");
            continue;
        }
        let answer =
            done.unwrap_or_else(|| panic!("{context}: blocked past 10 tries\n{}", handler.log()));
        let dead = dead_letters(&answer);
        let dead_texts: Vec<String> = dead
            .iter()
            .map(|d| d.event.as_ref().expect("an Event").get().to_string())
            .collect();
        let expected_dead: BTreeSet<String> = match behaviour {
            Behaviour::ResetOn(_) | Behaviour::RefuseOn(..) => values(&texts[guilty..=guilty]),
            _ => BTreeSet::new(),
        };
        assert_eq!(
            values(&dead_texts),
            expected_dead,
            "{context}: dead letters"
        );
        let kept = values(&receiver.kept.lock().unwrap());
        let healthy: BTreeSet<String> =
            values(&texts).difference(&expected_dead).cloned().collect();
        let missing: Vec<&String> = healthy.difference(&kept).collect();
        assert!(
            missing.is_empty(),
            "{context}: never delivered: {missing:?}"
        );
    }
}

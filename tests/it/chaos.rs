//! Chaos: a receiver that picks a random behaviour for every request (2xx, a redirect, 400,
//! 500, 429 with a random `Retry-After`, a reset, a 200 that stalls, no answer at all) and
//! random invocations (valid Events, malformed records, bad bytes, other categories, bodies
//! that are not envelopes), retried as the host retries. For every seed: each answer is 200 or
//! 500, never a 4xx; a 200 accounts for every valid Event, delivered or dead-lettered; and once
//! the receiver recovers, the invocation succeeds with nothing lost. Seeds are fixed so a
//! failure replays; `CHAOS_SEED` runs one seed of your choice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aks_audit_forwarder::tools::hostsim::SimPartition;

use crate::helpers::*;
use crate::hostile::dead_letters;
use crate::rogue::{ok, status, Act, Rogue};

/// Tries the receiver misbehaves for before it recovers.
const CHAOTIC_TRIES: i64 = 4;

fn random_act(rng: &mut fastrand::Rng, elsewhere: &str) -> Act {
    match rng.u8(0..12) {
        0..=2 => ok(),
        3 | 4 => Act::Answer(
            302,
            vec![("Location".into(), elsewhere.to_string())],
            String::new(),
        ),
        5 => status(400),
        6 => status(503),
        7 => status(500),
        8 => Act::Answer(
            429,
            vec![("Retry-After".into(), rng.u8(0..3).to_string())],
            String::new(),
        ),
        9 => Act::Reset,
        10 => Act::StallAfterOk,
        _ => Act::Hang,
    }
}

/// A random invocation: its bodies and the `auditID`s of its valid Events.
fn random_input(rng: &mut fastrand::Rng, seed: u64) -> (Vec<Vec<u8>>, BTreeSet<String>) {
    let mut bodies = Vec::new();
    let mut valid = BTreeSet::new();
    for b in 0..rng.usize(1..4) {
        if rng.u8(0..8) == 0 {
            bodies.push(b"not an envelope \xff".to_vec());
            continue;
        }
        let mut records = Vec::new();
        for r in 0..rng.usize(1..30) {
            match rng.u8(0..10) {
                0 => records.push(record("kube-audit", "{\"kind\":\"Event\"")),
                1 => records.push(record("kube-apiserver", "I1130 plain text")),
                2 if rng.bool() => records.push(record("kube-audit", "BAD-BYTE-HERE")),
                _ => {
                    let id = format!("chaos-{seed}-{b}-{r}");
                    records.push(record("kube-audit", &audit_event(&id, rng.usize(0..2000))));
                    valid.insert(id);
                }
            }
        }
        let mut body = envelope(records);
        // A record holding an invalid UTF-8 byte: only that record is set aside.
        while let Some(at) = body.windows(13).position(|w| w == b"BAD-BYTE-HERE") {
            body[at] = 0xff;
        }
        bodies.push(body);
    }
    (bodies, valid)
}

async fn run_seed(seed: u64) {
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
    let healed = Arc::new(AtomicBool::new(false));
    let elsewhere = Rogue::start(|_, _| ok()).await;
    let (rng_r, healed_r, other) = (rng.clone(), healed.clone(), elsewhere.url("/k8s_audit"));
    let rogue = Rogue::start(move |_, _| {
        if healed_r.load(Ordering::SeqCst) {
            ok()
        } else {
            random_act(&mut rng_r.lock().unwrap(), &other)
        }
    })
    .await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_TIMEOUT", "400ms"),
        ("AUDIT_DELIVERY_DEADLINE", "1500ms"),
        ("AUDIT_BATCH_MAX_EVENTS", "8"),
    ])
    .await;
    let (bodies, valid) = random_input(&mut rng.lock().unwrap(), seed);
    let mut partition = SimPartition::new(seed.to_string());
    for count in 0..=CHAOTIC_TRIES {
        if count == CHAOTIC_TRIES {
            healed.store(true, Ordering::SeqCst);
        }
        partition.next_sequence = 0;
        let answer = handler
            .invoke_as(&bodies, &mut partition, Some(count))
            .await;
        assert!(
            answer.status == 200 || answer.status == 500,
            "seed {seed}: {} {}",
            answer.status,
            answer.body
        );
        eprintln!("chaos seed {seed}: try {count} answered {}", answer.status);
        if answer.status == 200 {
            let kept: BTreeSet<String> = rogue.kept_unique().into_iter().collect();
            let dead: BTreeSet<String> = dead_letters(&answer)
                .iter()
                .filter_map(|d| d.event.as_ref())
                .map(|e| {
                    let v: serde_json::Value = serde_json::from_str(e.get()).unwrap();
                    v["auditID"].as_str().unwrap().to_string()
                })
                .collect();
            let missing: Vec<&String> = valid
                .iter()
                .filter(|id| !kept.contains(*id) && !dead.contains(*id))
                .collect();
            let logs = answer
                .result
                .as_ref()
                .map(|r| r.logs.clone())
                .unwrap_or_default();
            assert!(
                missing.is_empty(),
                "seed {seed}: lost {missing:?}\n{logs:?}"
            );
            assert!(
                elsewhere.requests().is_empty(),
                "seed {seed}: followed a redirect"
            );
            return;
        }
    }
    let log = handler.log();
    let tail = &log[log.len().saturating_sub(4000)..];
    panic!("seed {seed}: still failing after the receiver recovered\n{tail}");
}

#[tokio::test]
async fn chaos_receiver_and_input_never_lose_an_event() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => (1..=24).collect(),
    };
    let runs = seeds.into_iter().map(|seed| tokio::spawn(run_seed(seed)));
    for run in futures::future::join_all(runs).await {
        if let Err(e) = run {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

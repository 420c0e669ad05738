//! Chaos: a receiver that picks a random behaviour for every request (2xx, a redirect, 400,
//! 500, 429 with a random `Retry-After`, a reset, a 200 that stalls, no answer at all) and
//! random invocations (valid Events among malformed records, Events with a bad stage, bad
//! bytes, other categories, bodies that are not envelopes), sent as the host sends them: a
//! failed invocation is retried, a delivered one is followed by the next. For every seed the
//! receiver misbehaves for the first [`CHAOTIC_TRIES`] tries and then recovers, so every seed
//! reaches the recovery; a few valid Events are poison, refused with 400 even after it.
//! Invariants: every answer is 200 or 500, never a 4xx; a 200 accounts for every valid Event
//! of its invocation, delivered or dead-lettered, and every poison Event dead-lettered; nothing but valid
//! Events reaches the receiver and nothing reaches a redirect's target; the first try after
//! the recovery succeeds. The test prints how many answers and Events each invariant checked
//! and fails when the run checked too few.
//!
//! Each request's behaviour is drawn from the seed and the request's first Event, so a seed
//! replays the same way as long as the handler sends the same batches. `CHAOS_SEED=n` runs
//! seed n alone; `CHAOS_SEEDS=n` runs seeds 1 to n (a local soak; CI runs [`CI_SEEDS`]).

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aks_audit_forwarder::tools::hostsim::SimPartition;
use futures::StreamExt as _;

use crate::helpers::*;
use crate::hostile::dead_letters;
use crate::rogue::{ok, status, Act, Request, Rogue};

/// Tries the receiver misbehaves for, over all of a seed's invocations, before it recovers.
const CHAOTIC_TRIES: i64 = 5;
/// Seeds run by default (CI).
const CI_SEEDS: u64 = 48;
/// Seeds running at once, each with its own handler and receivers (more starve the other
/// tests on a 2-core machine).
const PARALLEL: usize = 8;

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

/// One invocation: its bodies, the `auditID`s of its valid Events (poison ones included), and
/// how many records in it carry an `auditID` but must not be delivered.
struct Input {
    bodies: Vec<Vec<u8>>,
    valid: BTreeSet<String>,
    invalid: u64,
}

/// Marks the `auditID` of a valid Event the receiver refuses with 400, always.
const POISON: &str = "-poison";

/// A random invocation: 1–3 bodies, each an envelope of 1–29 records starting with a valid
/// Event (or, now and then, text that is no envelope, never all of them).
fn random_input(rng: &mut fastrand::Rng, prefix: &str) -> Input {
    let mut input = Input {
        bodies: Vec::new(),
        valid: BTreeSet::new(),
        invalid: 0,
    };
    let count = rng.usize(1..4);
    for b in 0..count {
        if rng.u8(0..8) == 0 && (b + 1 < count || !input.valid.is_empty()) {
            input.bodies.push(b"not an envelope \xff".to_vec());
            continue;
        }
        let mut records = Vec::new();
        for r in 0..rng.usize(1..30) {
            let poison = if r == 0 && b == 0 {
                rng.u8(..3) == 0
            } else {
                rng.u8(..40) == 0
            };
            let id = format!("{prefix}-{b}-{r}{}", if poison { POISON } else { "" });
            let event = audit_event(&id, rng.usize(0..2000));
            let (category, log, valid) = match if r == 0 { 9 } else { rng.u8(0..10) } {
                0 => ("kube-audit", "{\"kind\":\"Event\"".to_string(), false),
                1 => ("kube-apiserver", event, false),
                2 => (
                    "kube-audit",
                    event.replace("ResponseComplete", "Done"),
                    false,
                ),
                3 => (
                    "kube-audit",
                    event.replace("kubectl/", "BAD-BYTE-HERE"),
                    false,
                ),
                _ => ("kube-audit", event, true),
            };
            if valid {
                input.valid.insert(id);
            } else if log.contains(&id) {
                input.invalid += 1;
            }
            records.push(record(category, &log));
        }
        let mut body = envelope(records);
        // A record holding an invalid UTF-8 byte: only that record is set aside.
        while let Some(at) = body.windows(13).position(|w| w == b"BAD-BYTE-HERE") {
            body[at] = 0xff;
        }
        input.bodies.push(body);
    }
    input
}

/// What the invariants checked, over all seeds.
#[derive(Default)]
struct Checked {
    answers: AtomicU64,
    events_accounted: AtomicU64,
    dead_lettered: AtomicU64,
    poison: AtomicU64,
    invalid_offered: AtomicU64,
    events_kept: AtomicU64,
    redirects: AtomicU64,
    recovered: AtomicU64,
    recovered_after_failure: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A receiver whose behaviour for each request is drawn from `seed`, the request's first
/// Event and how often that batch was seen; a plain 200 once `healed`.
async fn chaotic_receiver(
    seed: u64,
    healed: Arc<AtomicBool>,
    elsewhere: String,
    checked: Arc<Checked>,
) -> Rogue {
    let seen: Mutex<HashMap<(String, usize), u64>> = Mutex::default();
    Rogue::start(move |request: &Request, _| {
        if request.ids.iter().any(|id| id.ends_with(POISON)) {
            return Act::Answer(400, Vec::new(), "this Event is refused".into());
        }
        if healed.load(Ordering::SeqCst) {
            return ok();
        }
        let key = (
            request.ids.first().cloned().unwrap_or_default(),
            request.ids.len(),
        );
        let mut seen = seen.lock().unwrap();
        let times = seen.entry(key.clone()).or_default();
        *times += 1;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (seed, key, *times).hash(&mut hasher);
        let act = random_act(&mut fastrand::Rng::with_seed(hasher.finish()), &elsewhere);
        if matches!(&act, Act::Answer(302, ..)) {
            add(&checked.redirects, 1);
        }
        act
    })
    .await
}

async fn run_seed(seed: u64, checked: Arc<Checked>) {
    let healed = Arc::new(AtomicBool::new(false));
    let elsewhere = Rogue::start(|_, _| ok()).await;
    let target = elsewhere.url("/k8s_audit");
    let rogue = chaotic_receiver(seed, healed.clone(), target, checked.clone()).await;
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &rogue.url("/k8s_audit")),
        ("AUDIT_WEBHOOK_TIMEOUT", "400ms"),
        ("AUDIT_DELIVERY_DEADLINE", "2500ms"),
        ("AUDIT_BATCH_MAX_EVENTS", "8"),
    ])
    .await;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut partition = SimPartition::new(seed.to_string());
    let mut all_valid = BTreeSet::new();
    let (mut invocation, mut retry, mut first) = (0, 0, 0);
    let mut input = random_input(&mut rng, &format!("chaos-{seed}-0"));
    for tries in 0.. {
        let healing = tries == CHAOTIC_TRIES;
        healed.store(healing, Ordering::SeqCst);
        if retry == 0 {
            all_valid.extend(input.valid.iter().cloned());
            add(&checked.invalid_offered, input.invalid);
        }
        partition.next_sequence = first;
        let answer = handler
            .invoke_as(&input.bodies, &mut partition, Some(retry))
            .await;
        add(&checked.answers, 1);
        let context = format!("seed {seed}, invocation {invocation}, try {retry}");
        assert!(
            answer.status == 200 || answer.status == 500,
            "{context}: {} {}",
            answer.status,
            answer.body
        );
        if answer.status != 200 {
            if healing {
                let log = handler.log();
                let tail = &log[log.len().saturating_sub(4000)..];
                panic!("{context}: still failing after the receiver recovered\n{tail}");
            }
            retry += 1;
            continue;
        }
        let kept: BTreeSet<String> = rogue.kept_unique().into_iter().collect();
        let dead: BTreeSet<String> = dead_letters(&answer)
            .iter()
            .filter_map(|d| audit_id(d.event.as_ref()?.get()))
            .collect();
        let lost: Vec<&String> = input
            .valid
            .iter()
            .filter(|id| !kept.contains(*id) && !dead.contains(*id))
            .collect();
        if !lost.is_empty() {
            // What the next occurrence needs to be explained: the handler's own account, and
            // whether anything went where it must not.
            let log = handler.log();
            let from = log.len().saturating_sub(6000);
            let from = (from..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(log.len());
            let tail = &log[from..];
            panic!(
                "{context}: lost {lost:?}\n{}\nredirect target got {} requests\n{tail}",
                answer.body,
                elsewhere.requests().len()
            );
        }
        let poison: Vec<&String> = input
            .valid
            .iter()
            .filter(|id| id.ends_with(POISON))
            .collect();
        for id in &poison {
            assert!(
                dead.contains(*id),
                "{context}: poison {id} not dead-lettered"
            );
        }
        add(&checked.events_accounted, input.valid.len() as u64);
        add(&checked.poison, poison.len() as u64);
        add(&checked.dead_lettered, dead.len() as u64);
        if healing {
            add(&checked.recovered, 1);
            if retry > 0 {
                add(&checked.recovered_after_failure, 1);
            }
            break;
        }
        first = partition.next_sequence;
        invocation += 1;
        retry = 0;
        input = random_input(&mut rng, &format!("chaos-{seed}-{invocation}"));
    }
    let kept = rogue.kept_unique();
    let strangers: Vec<&String> = kept.iter().filter(|id| !all_valid.contains(*id)).collect();
    assert!(strangers.is_empty(), "seed {seed}: delivered {strangers:?}");
    add(&checked.events_kept, kept.len() as u64);
    assert!(
        elsewhere.requests().is_empty(),
        "seed {seed}: followed a redirect"
    );
}

#[tokio::test]
async fn chaos_receiver_and_input_never_lose_an_event() {
    let seeds: Vec<u64> = match (std::env::var("CHAOS_SEED"), std::env::var("CHAOS_SEEDS")) {
        (Ok(seed), _) => vec![seed.parse().expect("CHAOS_SEED is a number")],
        (_, Ok(n)) => (1..=n.parse().expect("CHAOS_SEEDS is a number")).collect(),
        _ => (1..=CI_SEEDS).collect(),
    };
    let checked = Arc::new(Checked::default());
    let runs = futures::stream::iter(seeds.iter().map(|&seed| {
        let checked = checked.clone();
        tokio::spawn(run_seed(seed, checked))
    }))
    .buffer_unordered(PARALLEL)
    .collect::<Vec<_>>()
    .await;
    for run in runs {
        if let Err(e) = run {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let n = seeds.len() as u64;
    eprintln!(
        "chaos: {n} seeds; {} answers, each 200 or 500; {} valid Events accounted for on a 200 \
         ({} of them dead-lettered, {} poison ones among them); {} Events kept by the receiver, all valid, with {} \
         invalid records offered; {} redirects answered, none followed; {n} recoveries reached, \
         {} succeeded, {} of them on a retried invocation",
        get(&checked.answers),
        get(&checked.events_accounted),
        get(&checked.dead_lettered),
        get(&checked.poison),
        get(&checked.events_kept),
        get(&checked.invalid_offered),
        get(&checked.redirects),
        get(&checked.recovered),
        get(&checked.recovered_after_failure),
    );
    assert_eq!(get(&checked.recovered), n, "every seed recovers");
    assert!(
        get(&checked.events_accounted) >= n * 10,
        "too few Events checked"
    );
    assert!(
        get(&checked.invalid_offered) >= n,
        "too few invalid records offered"
    );
    assert!(get(&checked.redirects) >= n, "too few redirects offered");
    assert!(
        get(&checked.poison) * 2 >= n,
        "too few poison Events offered"
    );
    assert!(
        get(&checked.recovered_after_failure) * 4 >= n,
        "too few recoveries of a failed invocation"
    );
}

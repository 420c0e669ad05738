//! Property tests over hostile input, built field by field from valid input (`generate`): the
//! invocation parser, the record converter, the Policy and the JSON editor never panic, and
//! what they give is what the documentation promises, byte for byte. Each property counts the
//! cases that reached each of its checks and fails when one was reached less often than its
//! minimum, so a generator that drifts into input refused at the first byte fails instead of
//! passing on nothing. Case counts are fixed, to keep CI time fixed; seeds are fresh each run,
//! and a failure names its seed. So that chance alone never fails a run, each minimum sits at
//! least 4.5 standard deviations below the count's mean (measured over 40 runs: a check drawn
//! with probability 1/12 per body is reached 50 ± 7 times, so its minimum is 15, not 30).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use aks_audit_forwarder::azure::{convert_body, BodyOrigin, Conversion, NOT_AN_ENVELOPE};
use aks_audit_forwarder::host::decode_invocation;
use aks_audit_forwarder::tools::hostsim::{build_request, Shape, SimPartition};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::generate_bodies::{self, Expect, GenBody};

/// Cases per property.
const CASES: u32 = 300;

/// How many cases (or items) reached each check of one property.
#[derive(Default)]
pub struct Reach(RefCell<BTreeMap<&'static str, u64>>);

impl Reach {
    /// Counts `n` more for `check`.
    pub fn add(&self, check: &'static str, n: u64) {
        *self.0.borrow_mut().entry(check).or_default() += n;
    }

    /// Prints the counts and fails unless each check was reached at least its minimum.
    pub fn require(&self, property: &str, minimums: &[(&'static str, u64)]) {
        let counts = self.0.borrow();
        eprintln!("{property}: {counts:?}");
        for (check, minimum) in minimums {
            let got = counts.get(check).copied().unwrap_or(0);
            assert!(
                got >= *minimum,
                "{property}: {check} reached {got} times, fewer than {minimum}: the generator \
                 no longer reaches it ({counts:?})"
            );
        }
    }
}

/// Runs `case` on `cases` values of `strategy`, counting into the returned [`Reach`].
pub fn run<S: Strategy>(cases: u32, strategy: S, case: impl Fn(S::Value, &Reach)) -> Reach {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let reach = Reach::default();
    let result = TestRunner::new(config).run(&strategy, |value| {
        case(value, &reach);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    reach
}

fn categories() -> BTreeSet<String> {
    ["kube-audit".to_string(), "kube-audit-admin".to_string()].into()
}

pub fn convert_all(bodies: &[Vec<u8>]) -> Conversion {
    let mut conversion = Conversion::default();
    for (index, body) in bodies.iter().enumerate() {
        let origin = BodyOrigin {
            index,
            sequence_number: None,
        };
        convert_body(body, origin, &categories(), &mut conversion);
    }
    conversion
}

/// Checks a conversion of `bodies` against what each body and record must give: the Events
/// in order with their exact bytes, the counts, and one dead letter holding the original
/// bytes of each body that is not an envelope or has a malformed record.
fn check_conversion(bodies: &[GenBody], reach: &Reach) {
    let bytes: Vec<Vec<u8>> = bodies.iter().map(|b| b.bytes.clone()).collect();
    let conversion = convert_all(&bytes);
    let mut events = Vec::new();
    let (mut records, mut malformed, mut skipped) = (0, 0, BTreeMap::<String, u64>::new());
    let mut dead = Vec::new();
    for body in bodies {
        for note in &body.notes {
            reach.add(note, 1);
        }
        let Some(expects) = &body.records else {
            reach.add("bodies that are not envelopes", 1);
            // Dead-lettered only when it could hold an audit record (it names an audit
            // category); anything else is another service's output, counted as skipped.
            if names_audit_category(&body.bytes) {
                dead.push(body.bytes.clone());
            } else {
                *skipped.entry(NOT_AN_ENVELOPE.to_string()).or_default() += 1;
            }
            continue;
        };
        records += expects.len() as u64;
        for expect in expects {
            match expect {
                Expect::Event(text) => events.push(text.clone()),
                Expect::Skip(category) => *skipped.entry(category.clone()).or_default() += 1,
                Expect::Malformed => malformed += 1,
            }
        }
        if expects.contains(&Expect::Malformed) {
            dead.push(body.bytes.clone());
        }
    }
    let got: Vec<&str> = conversion.events.iter().map(|e| e.json()).collect();
    assert_eq!(got, events, "the Events, byte for byte");
    let tally = &conversion.tally;
    assert_eq!(tally.records, records, "records");
    assert_eq!(tally.converted, events.len() as u64, "converted");
    assert_eq!(tally.malformed_records, malformed, "malformed records");
    assert_eq!(tally.skipped, skipped, "skipped, by category");
    let not_envelopes = bodies
        .iter()
        .filter(|b| b.records.is_none() && names_audit_category(&b.bytes))
        .count();
    assert_eq!(
        tally.malformed_bodies, not_envelopes as u64,
        "malformed bodies"
    );
    let kept: Vec<Vec<u8>> = conversion
        .dead_letters
        .iter()
        .map(|d| d.raw_bytes().expect("a dead letter keeps its body"))
        .collect();
    assert_eq!(
        kept, dead,
        "dead letters, each holding its body's exact bytes"
    );
    reach.add("Events delivered exactly", events.len() as u64);
    reach.add("malformed records", malformed);
    reach.add("skipped records", skipped.values().sum());
}

/// Arbitrary bytes as a whole request, as an event body in a valid request, and as the log
/// of a valid record: never a panic; the valid wrapper is always read, the body passed on
/// exactly and the record counted once, as an Event (its exact text) or as malformed.
#[test]
fn arbitrary_bytes_never_panic() {
    let strategy = prop::collection::vec(any::<u8>(), 0..2048);
    let reach = run(CASES, strategy, |data, reach| {
        if let Ok(invocation) = decode_invocation(&data[..]) {
            let _ = convert_all(&invocation.bodies.to_vecs());
        }
        let request = build_request(
            Shape::ManyBinary,
            std::slice::from_ref(&data),
            &mut SimPartition::new("0"),
            None,
        )
        .unwrap();
        let invocation = decode_invocation(request).expect("a valid request");
        assert_eq!(invocation.bodies.to_vecs(), vec![data.clone()]);
        let conversion = convert_all(&invocation.bodies.to_vecs());
        assert_eq!(conversion.tally.bodies, 1);
        reach.add("bodies passed on exactly", 1);

        let text = String::from_utf8_lossy(&data);
        let record = json!({"category": "kube-audit", "properties": {"log": text}});
        let conversion = convert_all(&[json!({ "records": [record] }).to_string().into_bytes()]);
        let tally = &conversion.tally;
        assert_eq!(
            (tally.records, tally.converted + tally.malformed_records),
            (1, 1)
        );
        for event in &conversion.events {
            assert_eq!(event.json(), text.trim());
        }
        reach.add("logs counted once", 1);
    });
    reach.require(
        "arbitrary_bytes_never_panic",
        &[
            ("bodies passed on exactly", CASES as u64),
            ("logs counted once", CASES as u64),
        ],
    );
}

/// Event Hub event bodies built record by record from valid ones, field by field changed:
/// each valid Event is converted with its exact bytes, in order; everything else is counted
/// as documented, and each bad body dead-lettered with its exact bytes.
#[test]
fn envelopes_convert_as_documented() {
    let reach = run(CASES, any::<u64>(), |seed, reach| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let bodies: Vec<GenBody> = (0..rng.usize(1..4))
            .map(|b| generate_bodies::body(&mut rng, &format!("{seed}-{b}")))
            .collect();
        check_conversion(&bodies, reach);
    });
    let minimum = u64::from(CASES);
    reach.require(
        "envelopes_convert_as_documented",
        &[
            ("Events delivered exactly", minimum),
            ("malformed records", minimum),
            ("skipped records", minimum / 3),
            ("bodies that are not envelopes", minimum / 20),
            ("changed Events still valid", minimum / 3),
            ("logs written as an object", minimum / 10),
            ("records with an invalid UTF-8 byte", minimum / 10),
            ("bodies after a byte order mark", minimum / 10),
        ],
    );
}

/// A member of the host request's `Metadata` (or its `Data` binding) removed, nulled, given
/// another type or other text.
fn mutate_member(rng: &mut fastrand::Rng, object: &mut serde_json::Map<String, Value>, key: &str) {
    match rng.u8(..4) {
        0 => {
            object.remove(key);
        }
        1 => {
            object.insert(key.to_string(), Value::Null);
        }
        2 => {
            object.insert(key.to_string(), json!(7));
        }
        _ => {
            object.insert(key.to_string(), json!(["x", {"y": 1}]));
        }
    }
}

/// Host requests of every shape around generated bodies, their `Metadata` changed member by
/// member: the bodies always come through byte for byte (Metadata is read leniently), and
/// each member left intact is read; a request whose trigger value is gone or not a batch is
/// refused.
#[test]
fn host_requests_decode_exactly() {
    let metadata_keys = [
        "PartitionContext",
        "TriggerPartitionContext",
        "SequenceNumberArray",
        "SequenceNumber",
        "EnqueuedTimeUtcArray",
        "RetryContext",
        "OffsetArray",
        "sys",
    ];
    let reach = run(CASES, any::<u64>(), |seed, reach| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let shape = *rng
            .choice(&[
                Shape::ManyBinary,
                Shape::ManyString,
                Shape::OneString,
                Shape::OneBinary,
                Shape::StructuredArray,
            ])
            .unwrap();
        let count = if shape.is_single() {
            1
        } else {
            rng.usize(1..4)
        };
        let bodies: Vec<Vec<u8>> = (0..count)
            .map(|b| generate_bodies::body(&mut rng, &format!("{seed}-{b}")).bytes)
            .collect();
        let retry = rng.bool().then(|| rng.i64(0..9));
        let mut partition = SimPartition::new(rng.u8(..32).to_string());
        partition.next_sequence = rng.i64(0..1_000_000);
        let first = partition.next_sequence;
        let request = build_request(shape, &bodies, &mut partition, retry).unwrap();
        let mut request: Value = serde_json::from_slice(&request).unwrap();
        let mut touched = BTreeSet::new();
        for _ in 0..rng.usize(..4) {
            let key = *rng.choice(&metadata_keys).unwrap();
            let meta = request["Metadata"].as_object_mut().unwrap();
            if meta.contains_key(key) {
                touched.insert(key);
                mutate_member(&mut rng, meta, key);
            }
        }
        let data_intact = rng.u8(..6) > 0;
        if !data_intact {
            let data = request["Data"].as_object_mut().unwrap();
            match rng.u8(..3) {
                0 => {
                    data.remove("events");
                }
                1 => {
                    data.insert("events".into(), Value::Null);
                }
                _ => {
                    data.insert("events".into(), json!(7));
                }
            }
        } else if rng.bool() {
            // The binding by another name, alone: still the trigger value.
            let data = request["Data"].as_object_mut().unwrap();
            let value = data.remove("events").unwrap();
            data.insert("eventHubMessages".into(), value);
        }
        let decoded = decode_invocation(serde_json::to_vec(&request).unwrap());
        if !data_intact {
            assert!(decoded.is_err(), "no trigger value, yet decoded");
            reach.add("requests refused", 1);
            return;
        }
        let invocation = decoded.unwrap_or_else(|e| panic!("{shape:?}, {touched:?}: {e}"));
        let want: Vec<Vec<u8>> = match shape {
            Shape::ManyString | Shape::OneString => bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned().into_bytes())
                .collect(),
            _ => bodies.clone(),
        };
        assert_eq!(invocation.bodies.to_vecs(), want, "{shape:?}: the bodies");
        reach.add("bodies decoded exactly", 1);
        let meta = &invocation.meta;
        let contexts = ["PartitionContext", "TriggerPartitionContext"];
        if !contexts.iter().any(|k| touched.contains(k)) {
            assert_eq!(meta.partition_id, Some(partition.partition_id.clone()));
            reach.add("partition read", 1);
        }
        if !touched.contains("RetryContext") {
            assert_eq!(meta.retry_count, retry, "RetryCount");
            reach.add("retry count read", 1);
        }
        let sequences = if shape.is_single() {
            "SequenceNumber"
        } else {
            "SequenceNumberArray"
        };
        if !touched.contains(sequences) {
            let want: Vec<i64> = (first..first + count as i64).collect();
            assert_eq!(meta.sequence_numbers, want, "sequence numbers");
            reach.add("sequence numbers read", 1);
        }
    });
    let minimum = u64::from(CASES);
    reach.require(
        "host_requests_decode_exactly",
        &[
            ("bodies decoded exactly", minimum / 2),
            ("requests refused", minimum / 20),
            ("partition read", minimum / 3),
            ("retry count read", minimum / 3),
            ("sequence numbers read", minimum / 3),
        ],
    );
}

/// Nesting far past any real Event: skipped over without recursion or refused by the parser's
/// depth limit (128); never a stack overflow, never a panic, never an Event.
#[test]
fn deep_nesting_is_refused_not_fatal() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let request = format!(r#"{{"Data":{{"events":{deep}}}}}"#);
    let invocation = decode_invocation(request.as_bytes()).unwrap();
    let conversion = convert_all(&invocation.bodies.to_vecs());
    assert!(conversion.events.is_empty());
    // No audit category's name in it: another service's output, skipped.
    assert_eq!(conversion.tally.malformed_bodies, 0);
    assert_eq!(conversion.tally.skipped.get(NOT_AN_ENVELOPE), Some(&1));
    let body =
        format!(r#"{{"records":[{{"category":"kube-audit","properties":{{"log":{deep}}}}}]}}"#);
    let conversion = convert_all(&[body.into_bytes()]);
    assert!(conversion.events.is_empty());
    assert_eq!(conversion.tally.malformed_records, 1);
}

/// Whether `bytes` hold an audit category's name (`kube-audit`, any case): the forwarder's
/// test for a body that could hold an audit record.
fn names_audit_category(bytes: &[u8]) -> bool {
    bytes
        .windows(b"kube-audit".len())
        .any(|w| w.eq_ignore_ascii_case(b"kube-audit"))
}

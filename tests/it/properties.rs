//! Property tests over hostile input: the invocation parser, the record converter, the
//! Policy and the JSON editor never panic, on arbitrary bytes and on mutated real envelopes,
//! and whatever they accept is still valid. Bounded case counts keep CI time fixed.

use std::collections::BTreeSet;

use aks_audit_forwarder::audit::jsonedit::{rewrite, Edit};
use aks_audit_forwarder::audit::Policy;
use aks_audit_forwarder::azure::{convert_body, BodyOrigin, Conversion};
use aks_audit_forwarder::host::decode_invocation;
use aks_audit_forwarder::tools::hostsim::{build_request, load_bodies, Shape, SimPartition};
use aks_audit_forwarder::tools::SAMPLES;
use aks_audit_forwarder::AuditEvent;
use proptest::prelude::*;

fn categories() -> BTreeSet<String> {
    ["kube-audit".to_string(), "kube-audit-admin".to_string()].into()
}

fn convert_all(bodies: &[Vec<u8>]) -> Conversion {
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

/// Every Event that conversion lets through is still a valid Event, on its own.
fn check(conversion: &Conversion) {
    for event in &conversion.events {
        assert!(AuditEvent::parse(event.json()).is_ok(), "{}", event.json());
    }
}

fn sample_request(shape: Shape) -> Vec<u8> {
    let bodies = load_bodies(SAMPLES, 50).unwrap();
    let bodies = if shape == Shape::OneString || shape == Shape::OneBinary {
        bodies[..1].to_vec()
    } else {
        bodies
    };
    build_request(shape, &bodies, &mut SimPartition::new("0"), None).unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop::sample::select(vec![
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0xff, b'0',
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), special).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip(i, b) => {
                let i = i % data.len();
                data[i] ^= b | 1;
            }
            Mutation::Truncate(i) => data.truncate(i % data.len()),
            Mutation::Insert(i, b) => {
                let i = i % data.len();
                data.insert(i, b);
            }
            Mutation::Remove(i) => {
                let i = i % data.len();
                data.remove(i);
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Arbitrary bytes as an invocation body: an error or a decoded batch, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(invocation) = decode_invocation(&data[..]) {
            check(&convert_all(&invocation.bodies.to_vecs()));
        }
        check(&convert_all(&[data]));
    }

    /// Real host requests of every shape, mutated: never a panic, and what passes is valid.
    #[test]
    fn mutated_requests_never_panic(
        shape in prop::sample::select(vec![Shape::ManyBinary, Shape::ManyString, Shape::OneString, Shape::OneBinary, Shape::StructuredArray]),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let data = mutate(sample_request(shape), &mutations);
        if let Ok(invocation) = decode_invocation(&data[..]) {
            check(&convert_all(&invocation.bodies.to_vecs()));
        }
    }

    /// Real diagnostic envelopes, mutated, straight into the converter.
    #[test]
    fn mutated_envelopes_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        let bodies = load_bodies(SAMPLES, 50).unwrap();
        let mutated: Vec<Vec<u8>> = bodies.into_iter().map(|b| mutate(b, &mutations)).collect();
        check(&convert_all(&mutated));
    }

    /// The Policy on mutated (but still valid) Events: never a panic; the result is valid.
    #[test]
    fn policy_on_mutated_events(mutations in prop::collection::vec(mutation(), 1..4)) {
        let policy = Policy::parse(include_str!("../../examples/policies/sysdig-general-purpose.yaml"), "p").unwrap();
        let bodies = load_bodies(SAMPLES, 50).unwrap();
        let conversion = convert_all(&bodies);
        for event in &conversion.events {
            let text = mutate(event.json().as_bytes().to_vec(), &mutations);
            if let Ok(event) = AuditEvent::parse(&String::from_utf8_lossy(&text)) {
                if let Ok(Some(out)) = policy.apply(&event) {
                    prop_assert!(AuditEvent::parse(out.json()).is_ok(), "{}", out.json());
                }
            }
        }
    }

    /// The JSON editor on arbitrary text: an error or valid JSON.
    #[test]
    fn json_editor_never_panics(text in ".{0,200}") {
        if let Ok(out) = rewrite(&text, |k, _| if k.len() % 2 == 0 { Edit::Drop } else { Edit::Keep }, &[("added", "1".to_string())]) {
            prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok(), "{out}");
        }
    }
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
    assert_eq!(conversion.tally.malformed_bodies, 1);
    let body =
        format!(r#"{{"records":[{{"category":"kube-audit","properties":{{"log":{deep}}}}}]}}"#);
    let conversion = convert_all(&[body.into_bytes()]);
    assert!(conversion.events.is_empty());
    assert_eq!(conversion.tally.malformed_records, 1);
}

//! Property tests of the two edits the forwarder makes to an Event's text, on Events built
//! field by field (`generate`): the audit Policy changes only the level and the bodies its
//! level and `omitManagedFields` call for, keeps every other member's bytes, and refuses an
//! Event it cannot read; the JSON editor drops, replaces and adds exactly the members it is
//! told to and keeps every other byte. Each counts the cases that reached each check.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use aks_audit_forwarder::audit::jsonedit::{rewrite, Edit};
use aks_audit_forwarder::audit::Policy;
use aks_audit_forwarder::AuditEvent;
use proptest::prelude::*;

use crate::generate::{self, object, quote, Member};
use crate::properties::{run, Reach};

const CASES: u32 = 300;

/// An object's members in order, keys unescaped, values as written.
struct Ordered(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    out.push((key, value.get().to_string()));
                }
                Ok(Ordered(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

fn members(text: &str) -> Vec<(String, String)> {
    serde_json::from_str::<Ordered>(text).expect("an object").0
}

fn get<'a>(members: &'a [(String, String)], key: &str) -> Option<&'a str> {
    members
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const LEVELS: [&str; 4] = ["None", "Metadata", "Request", "RequestResponse"];

fn rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).expect("a level")
}

/// A Policy, the stages it always drops, and whether it strips `managedFields`.
struct Case {
    name: &'static str,
    policy: Policy,
    omitted: &'static [&'static str],
    strips: bool,
}

fn policies() -> Vec<Case> {
    let strip = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\n\
                 omitStages: [ResponseStarted]\nrules:\n\
                 - level: None\n  users: [\"system:kube-proxy\"]\n\
                 - level: Metadata\n  resources: [{group: \"\", resources: [secrets]}]\n\
                 - level: Request\n  verbs: [patch, update]\n\
                 - level: RequestResponse\n";
    let parse = |text: &str, name: &str| Policy::parse(text, name).unwrap();
    vec![
        Case {
            name: "sysdig",
            policy: parse(
                include_str!("../../examples/policies/sysdig-general-purpose.yaml"),
                "sysdig",
            ),
            omitted: &["RequestReceived"],
            strips: false,
        },
        Case {
            name: "metadata-only",
            policy: parse(
                include_str!("../../examples/policies/metadata-only.yaml"),
                "metadata-only",
            ),
            omitted: &["RequestReceived"],
            strips: false,
        },
        Case {
            name: "kube-audit-admin",
            policy: parse(
                include_str!("../../examples/policies/kube-audit-admin.yaml"),
                "kube-audit-admin",
            ),
            omitted: &[],
            strips: false,
        },
        Case {
            name: "strip",
            policy: parse(strip, "strip"),
            omitted: &["ResponseStarted"],
            strips: true,
        },
    ]
}

/// A member the Policy reads given a value kube-apiserver's types cannot hold, or repeated
/// (docs/forwarding.md: "level: 5, a number where a namespace belongs, the same key twice").
fn unreadable(rng: &mut fastrand::Rng, members: &mut Vec<Member>) {
    let find = |members: &[Member], key: &str| members.iter().position(|m| m.name() == key);
    let level = find(members, "level").unwrap();
    match rng.u8(..5) {
        0 => members[level].value = generate::quote("Everything"),
        1 => members[level].value = "5".into(),
        2 => {
            let user = find(members, "user").unwrap();
            members[user].value = r#"{"username":"alice","groups":[1]}"#.into();
        }
        3 => {
            let verb = find(members, "verb").unwrap();
            let copy = members[verb].clone();
            members.insert(verb, copy);
        }
        _ => {
            let value = r#"{"resource":"pods","namespace":5}"#.to_string();
            match find(members, "objectRef") {
                Some(at) => members[at].value = value,
                None => members.push(Member {
                    key: quote("objectRef"),
                    value,
                }),
            }
        }
    }
}

/// `value` without `metadata.managedFields`.
fn without_managed_fields(text: &str) -> Value {
    let mut value: Value = serde_json::from_str(text).unwrap();
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    value
}

/// Checks one Policy's result for `input` (readable), counting what it did.
fn check_policy(case: &Case, input: &AuditEvent, out: Option<AuditEvent>, reach: &Reach) {
    let before = members(input.json());
    let recorded = serde_json::from_str::<String>(get(&before, "level").unwrap()).unwrap();
    let stage = serde_json::from_str::<String>(get(&before, "stage").unwrap()).unwrap();
    let Some(out) = out else {
        if case.name == "metadata-only" {
            assert_eq!(
                stage,
                "RequestReceived",
                "metadata-only dropped {}",
                input.json()
            );
        }
        reach.add("Events dropped", 1);
        return;
    };
    assert!(
        !case.omitted.contains(&stage.as_str()),
        "{}: {stage} kept",
        case.name
    );
    assert!(AuditEvent::parse(out.json()).is_ok(), "{}", out.json());
    let after = members(out.json());
    let level = serde_json::from_str::<String>(get(&after, "level").unwrap()).unwrap();
    assert!(
        rank(&level) >= 1 && rank(&level) <= rank(&recorded),
        "{recorded} to {level}"
    );
    if case.name == "metadata-only" {
        assert_eq!(level, "Metadata");
    }
    let edited = ["level", "requestObject", "responseObject"];
    let rest = |m: &[(String, String)]| -> Vec<(String, String)> {
        m.iter()
            .filter(|(k, _)| !edited.contains(&k.as_str()))
            .cloned()
            .collect()
    };
    assert_eq!(
        rest(&after),
        rest(&before),
        "{}: members it must not touch",
        case.name
    );
    for (body, from) in [("requestObject", 2), ("responseObject", 3)] {
        let kept = get(&after, body);
        match get(&before, body) {
            Some(was) if rank(&level) >= from => {
                let now = kept.unwrap_or_else(|| panic!("{body} dropped at {level}"));
                if now != was {
                    assert!(case.strips, "{}: {body} changed", case.name);
                    assert_eq!(without_managed_fields(now), without_managed_fields(was));
                    reach.add("bodies stripped of managedFields", 1);
                }
            }
            _ => assert!(kept.is_none(), "{body} kept at {level}"),
        }
    }
    if out.json() == input.json() {
        reach.add("Events unchanged", 1);
    } else {
        reach.add("Events edited", 1);
    }
}

/// The Policy on valid Events built field by field, some with a member it cannot read.
#[test]
fn policy_changes_only_what_its_level_calls_for() {
    let cases = policies();
    let reach = run(CASES, any::<u64>(), |seed, reach| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut members = generate::valid_event(&mut rng, &format!("p-{seed}"));
        let bad = rng.u8(..5) == 0;
        if bad {
            unreadable(&mut rng, &mut members);
        }
        if rng.u8(..4) == 0 {
            // A key written with an escape: the same member, read the same.
            let at = rng.usize(..members.len());
            let name = members[at].name();
            members[at].key = format!("\"\\u{:04x}{}", name.as_bytes()[0], &quote(&name)[2..]);
            reach.add("Events with an escaped key", 1);
        }
        let (comma, colon) = *rng.choice(&[(",", ":"), (", ", ": ")]).unwrap();
        let text = object(&members, comma, colon);
        let event = AuditEvent::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        for case in &cases {
            match case.policy.apply(&event) {
                Err(e) => {
                    assert!(bad, "{}: {e}: {text}", case.name);
                    reach.add("unreadable Events refused", 1);
                }
                Ok(out) => {
                    assert!(!bad, "{}: read {text}", case.name);
                    check_policy(case, &event, out, reach);
                }
            }
        }
    });
    let minimum = u64::from(CASES);
    reach.require(
        "policy_changes_only_what_its_level_calls_for",
        &[
            ("Events edited", minimum / 3),
            ("Events unchanged", minimum / 2),
            ("Events dropped", minimum / 2),
            ("bodies stripped of managedFields", minimum / 10),
            ("unreadable Events refused", minimum / 3),
            ("Events with an escaped key", minimum / 10),
        ],
    );
}

/// The JSON editor on objects built member by member (keys plain, escaped, repeated or
/// non-ASCII; values in any spelling; any white space) and on text that is no object:
/// exactly the expected output, or an error.
#[test]
fn json_editor_keeps_every_untouched_byte() {
    let keys = [
        "kind", "level", "added", "ab", "abc", "ключ", "a\"b", "", "x",
    ];
    let values = [
        "1e3",
        "-0",
        "2.50",
        r#""\u00e9\n""#,
        "[1, 2 ,3]",
        r#"{ "x" : null }"#,
        "true",
        r#""<&>""#,
        "null",
    ];
    let not_objects = [
        "[1,2]",
        r#""s""#,
        "42",
        "",
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":"#,
    ];
    let reach = run(CASES, any::<u64>(), |seed, reach| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let edit = |key: &str, _: &RawValue| match key.len() % 3 {
            0 => Edit::Drop,
            1 => Edit::Keep,
            _ => Edit::Replace(r#"["new"]"#.into()),
        };
        let additions = [("added", "1".to_string())];
        if rng.u8(..6) == 0 {
            let text = not_objects[rng.usize(..not_objects.len())];
            assert!(rewrite(text, edit, &additions).is_err(), "{text}");
            reach.add("non-objects refused", 1);
            return;
        }
        let mut members = Vec::new();
        for _ in 0..rng.usize(..8) {
            let name = keys[rng.usize(..keys.len())];
            let mut key = quote(name);
            if !name.is_empty() && rng.u8(..3) == 0 {
                let c = name.chars().next().unwrap();
                key = format!("\"\\u{:04x}{}", c as u32, &key[1 + c.len_utf8()..]);
                reach.add("escaped keys", 1);
            }
            let value = values[rng.usize(..values.len())].to_string();
            members.push(Member { key, value });
        }
        let (comma, colon) = *rng
            .choice(&[(",", ":"), (" , ", " : "), (",\n\t", ":")])
            .unwrap();
        let text = format!(" {} ", object(&members, comma, colon));
        let out = rewrite(&text, edit, &additions).unwrap_or_else(|e| panic!("{e}: {text}"));
        let mut want = Vec::new();
        for m in &members {
            let name = m.name();
            match name.len() % 3 {
                0 => reach.add("members dropped", 1),
                1 => want.push(format!("{}:{}", quote(&name), m.value)),
                _ => {
                    want.push(format!("{}:[\"new\"]", quote(&name)));
                    reach.add("members replaced", 1);
                }
            }
        }
        if !members.iter().any(|m| m.name() == "added") {
            want.push(r#""added":1"#.to_string());
        }
        assert_eq!(out, format!("{{{}}}", want.join(",")), "from {text}");
        assert!(serde_json::from_str::<Value>(&out).is_ok(), "{out}");
        reach.add("objects rewritten exactly", 1);
    });
    let minimum = u64::from(CASES);
    reach.require(
        "json_editor_keeps_every_untouched_byte",
        &[
            ("objects rewritten exactly", minimum * 2 / 3),
            ("non-objects refused", minimum / 15),
            ("members dropped", minimum / 2),
            ("members replaced", minimum / 2),
            ("escaped keys", minimum / 3),
        ],
    );
}

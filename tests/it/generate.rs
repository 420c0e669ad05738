//! Audit Events for the property tests, built field by field from valid ones: some members
//! removed, nulled, retyped, repeated, escaped or given other values. Each comes with what
//! the documentation says of it (docs/forwarding.md: what an Event must hold), so the
//! properties check outcomes, not only the absence of panics. `generate_bodies` wraps them
//! in diagnostic records and Event Hub event bodies.

use fastrand::Rng;
use serde_json::Value;

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// One member of a generated object, key and value as written (JSON text).
#[derive(Clone, Debug)]
pub struct Member {
    pub key: String,
    pub value: String,
}

impl Member {
    fn new(key: &str, value: String) -> Self {
        Self {
            key: quote(key),
            value,
        }
    }

    /// The key, unescaped.
    pub fn name(&self) -> String {
        serde_json::from_str(&self.key).expect("generated keys are JSON strings")
    }
}

/// Writes `members` as an object, with `comma` and `colon` as separators.
pub fn object(members: &[Member], comma: &str, colon: &str) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|m| format!("{}{colon}{}", m.key, m.value))
        .collect();
    format!("{{{}}}", inner.join(comma))
}

/// The members an Event must have, and which string values each accepts: kind `Event`,
/// apiVersion `audit.k8s.io/v1`, a non-empty auditID, a known stage, an RFC 3339
/// stageTimestamp (docs/forwarding.md).
const REQUIRED: [&str; 5] = ["kind", "apiVersion", "auditID", "stage", "stageTimestamp"];
const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];
const GOOD_TIMES: [&str; 4] = [
    "2026-11-23T07:00:00.234567Z",
    "2026-11-23T07:00:00Z",
    "2026-11-23T08:00:00.5+01:00",
    "2026-11-23T07:00:00.123456789Z",
];
const BAD_TIMES: [&str; 5] = [
    "2026-11-23 07:00:00",
    "2026-11-23",
    "yesterday",
    "2026-13-23T07:00:00Z",
    "2026-11-23T07:00:00",
];
/// Free text, some of it as JSON escapes or non-ASCII.
const TEXTS: [&str; 6] = [
    "kubectl/v1.31.2 (linux/amd64) kubernetes/2c7f4d3",
    "<b>sale</b> & more",
    "ünïcødé ✓",
    "quote \" and back\\slash",
    "",
    "tab\tnew\nline",
];

pub fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.usize(..from.len())]
}

/// A string value for the required member `key`, and whether it is acceptable.
fn required_value(rng: &mut Rng, key: &str, id: &str) -> (String, bool) {
    let good = rng.u8(..3) > 0;
    let value = match (key, good) {
        ("kind", true) => "Event".to_string(),
        ("kind", false) => pick(rng, &["EventList", "event", "", "Event "]).to_string(),
        ("apiVersion", true) => "audit.k8s.io/v1".to_string(),
        ("apiVersion", false) => pick(rng, &["audit.k8s.io/v1beta1", "v1", ""]).to_string(),
        ("auditID", true) => format!("{}{id}", pick(rng, &["", "é-", "\"q\"-", "<&>-"])),
        ("auditID", false) => String::new(),
        ("stage", true) => pick(rng, &STAGES).to_string(),
        ("stage", false) => pick(rng, &["responsecomplete", "Done", ""]).to_string(),
        ("stageTimestamp", true) => pick(rng, &GOOD_TIMES).to_string(),
        (_, _) => pick(rng, &BAD_TIMES).to_string(),
    };
    (quote(&value), good)
}

/// A valid Event as kube-apiserver writes it (Go struct order), its fields drawn at random:
/// level, stage, verb, user and groups, resource, namespace, bodies (with managedFields).
pub fn valid_event(rng: &mut Rng, id: &str) -> Vec<Member> {
    let (group, resource) = *rng
        .choice(&[
            ("", "configmaps"),
            ("", "secrets"),
            ("", "pods"),
            ("", "pods/exec"),
            ("apps", "deployments"),
            ("rbac.authorization.k8s.io", "roles"),
            ("", "nodes"),
            ("", "-"),
        ])
        .unwrap();
    let namespace = pick(rng, &["shop", "kube-system", "default"]);
    let verb = pick(
        rng,
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    );
    let (base, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let prefix = if group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group}/v1")
    };
    let uri = match (base, sub) {
        ("-", _) => pick(rng, &["/healthz", "/version", "/api", "/readyz?verbose"]).to_string(),
        ("nodes", _) => format!("{prefix}/nodes/aks-node-1"),
        (_, "") if verb == "list" || verb == "create" => {
            format!("{prefix}/namespaces/{namespace}/{base}")
        }
        (_, "") if verb == "watch" => format!("{prefix}/namespaces/{namespace}/{base}?watch=true"),
        (_, "") => format!("{prefix}/namespaces/{namespace}/{base}/app"),
        _ => format!("{prefix}/namespaces/{namespace}/{base}/app/{sub}?command=ls"),
    };
    let level = pick(rng, &["Metadata", "Request", "RequestResponse"]);
    let user = pick(
        rng,
        &[
            "alice@contoso.com",
            "system:kube-proxy",
            "system:serviceaccount:kube-system:cron",
        ],
    );
    let groups = pick(
        rng,
        &[
            r#"["system:authenticated"]"#,
            "[]",
            r#"["system:masters","system:authenticated"]"#,
        ],
    );
    let body = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"app","managedFields":[{"manager":"kubectl","operation":"Update"}]},"data":{"k":"2.50 \u0026 more"}}"#;
    let mut members = vec![
        Member::new("kind", quote("Event")),
        Member::new("apiVersion", quote("audit.k8s.io/v1")),
        Member::new("level", quote(level)),
        Member::new("auditID", quote(id)),
        Member::new("stage", quote(pick(rng, &STAGES))),
        Member::new("requestURI", quote(&uri)),
        Member::new("verb", quote(verb)),
        Member::new(
            "user",
            format!(r#"{{"username":{},"groups":{groups}}}"#, quote(user)),
        ),
        Member::new("sourceIPs", r#"["20.61.10.4"]"#.to_string()),
        Member::new("userAgent", quote(pick(rng, &TEXTS))),
    ];
    if base != "-" {
        let mut object_ref = format!(r#"{{"resource":{}"#, quote(base));
        if !sub.is_empty() {
            object_ref.push_str(&format!(r#","subresource":{}"#, quote(sub)));
        }
        if base != "nodes" {
            object_ref.push_str(&format!(r#","namespace":{}"#, quote(namespace)));
        }
        if !group.is_empty() {
            object_ref.push_str(&format!(r#","apiGroup":{}"#, quote(group)));
        }
        members.push(Member::new(
            "objectRef",
            format!(r#"{object_ref},"apiVersion":"v1"}}"#),
        ));
    }
    members.push(Member::new(
        "responseStatus",
        r#"{"metadata":{},"code":200}"#.to_string(),
    ));
    if level != "Metadata" {
        members.push(Member::new("requestObject", body.to_string()));
    }
    if level == "RequestResponse" {
        members.push(Member::new(
            "responseObject",
            body.replace("\"k\"", "\"r\""),
        ));
    }
    members.push(Member::new(
        "requestReceivedTimestamp",
        quote("2026-11-23T07:00:00.123456Z"),
    ));
    members.push(Member::new("stageTimestamp", quote(pick(rng, &GOOD_TIMES))));
    match rng.u8(..4) {
        0 => {}
        1 => members.push(Member::new("annotations", "{}".to_string())),
        _ => members.push(Member::new(
            "annotations",
            r#"{"authorization.k8s.io/decision":"allow"}"#.to_string(),
        )),
    }
    members
}

/// A generated Event: its text, whether it is one JSON object, and whether receivers accept
/// it; `edits` says what was changed, for failure messages.
#[derive(Clone, Debug)]
pub struct GenEvent {
    pub text: String,
    pub json: bool,
    pub valid: bool,
    pub edits: Vec<String>,
}

/// A valid Event with up to `max_edits` of its members changed one way each: removed,
/// nulled, given another type, another string (acceptable or not), written with escapes,
/// repeated; or a member added; or, to the whole text, a raw control character or a cut.
pub fn event(rng: &mut Rng, id: &str, max_edits: usize) -> GenEvent {
    let mut members = valid_event(rng, id);
    let mut valid = true;
    let mut json = true;
    let mut edits = Vec::new();
    let mut touched = std::collections::BTreeSet::new();
    for _ in 0..rng.usize(..=max_edits) {
        // Half the edits go to a member every Event must have, each refused some way.
        let required_at: Vec<usize> = (0..members.len())
            .filter(|i| REQUIRED.contains(&members[*i].name().as_str()))
            .collect();
        let at = match rng.bool() {
            true if !required_at.is_empty() => required_at[rng.usize(..required_at.len())],
            _ => rng.usize(..members.len()),
        };
        let name = members[at].name();
        if !touched.insert(name.clone()) {
            continue;
        }
        let required = REQUIRED.contains(&name.as_str());
        let edit = if required && rng.bool() {
            3
        } else {
            rng.u8(..9)
        };
        edits.push(format!("{name}: edit {edit}"));
        match edit {
            0 => {
                members.remove(at);
                valid &= !required;
            }
            1 => {
                members[at].value = "null".into();
                valid &= !required;
            }
            2 => {
                members[at].value = pick(rng, &["5", "2.50", "true", "[]", r#"{"a":1}"#]).into();
                valid &= !required;
            }
            3 if required => {
                let (value, good) = required_value(rng, &name, id);
                members[at].value = value;
                valid &= good;
            }
            3 => members[at].value = quote(pick(rng, &TEXTS)),
            4 => {
                // The same value, its first character written as a JSON escape.
                if let Ok(Value::String(s)) = serde_json::from_str::<Value>(&members[at].value) {
                    if let Some(c) = s.chars().next().filter(|c| (*c as u32) < 0x10000) {
                        let rest = quote(&s[c.len_utf8()..]);
                        members[at].value = format!("\"\\u{:04x}{}", c as u32, &rest[1..]);
                    }
                }
            }
            5 => {
                // The key written with an escape: the same member.
                let c = name.chars().next().unwrap_or('k');
                members[at].key =
                    format!("\"\\u{:04x}{}", c as u32, &quote(&name)[1 + c.len_utf8()..]);
            }
            6 => {
                let copy = members[at].clone();
                members.insert(at + 1, copy);
                valid &= !required;
            }
            7 => members.insert(
                at,
                Member::new(
                    pick(rng, &["futureField", "impersonatedUser", "ünknown"]),
                    pick(
                        rng,
                        &["1e3", r#"{"x":[1,2.50,"é"]}"#, "null", r#""\u00e9""#],
                    )
                    .into(),
                ),
            ),
            _ => {
                json = false;
                valid = false;
            }
        }
    }
    let (comma, colon) = *rng
        .choice(&[(",", ":"), (", ", ": "), (",\n  ", " : ")])
        .unwrap();
    let mut text = object(&members, comma, colon);
    if !json {
        if rng.bool() {
            // A raw control character inside a string: not JSON.
            let at = text.find("\",").unwrap_or(1);
            text.insert(at, '\u{1}');
        } else {
            let mut cut = rng.usize(1..text.len() - 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
    }
    GenEvent {
        text,
        json,
        valid,
        edits,
    }
}

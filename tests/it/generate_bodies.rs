//! Diagnostic records and Event Hub event bodies for the property tests, carrying the
//! generated Events (`generate`), changed field by field too, each with what must come out
//! of it: an Event with its exact bytes, a skipped record, a malformed one, or a body that is
//! no envelope.

use fastrand::Rng;
use serde_json::Value;

use crate::generate::{event, pick, quote};

/// What one record must give, by docs/forwarding.md: an Event with exactly these bytes, a
/// record of another category skipped (counted under its name in lower case), or a
/// malformed record set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Event(String),
    Skip(String),
    Malformed,
}

/// Stands for a `properties.log` written as the Event object itself, replaced by its text.
const OBJECT_LOG: &str = "LOG-OBJECT-HERE";

/// Marks a record whose bytes get an invalid UTF-8 byte once the body is written.
const BAD_BYTE: &str = "BAD-BYTE-MARK";

/// A diagnostic record carrying a generated Event, changed field by field: category (an audit
/// one in any case, another, none, not a string), `resourceId`, `properties.log` (a string
/// with AKS's newline, a byte order mark or spaces around the Event; the Event object itself;
/// absent, null or a number), and now and then an invalid UTF-8 byte.
pub fn record(rng: &mut Rng, id: &str, notes: &mut Vec<&'static str>) -> (String, Expect) {
    let edits = if rng.bool() { 0 } else { 3 };
    let event = event(rng, id, edits);
    let mut record = serde_json::Map::new();
    record.insert("time".into(), Value::from("2026-11-23T07:00:00.0000000Z"));
    // A `resourceId` that is not a string makes an audit record malformed; a record of
    // another category is skipped whatever else it holds.
    let mut bad_resource_id = false;
    match rng.u8(..20) {
        0 => {}
        1 => {
            record.insert("resourceId".into(), Value::from(5));
            bad_resource_id = true;
        }
        _ => {
            let id = pick(rng, &["/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1", "/subscriptions/0000/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks2"]);
            record.insert("resourceId".into(), Value::from(id));
        }
    }
    let category = match rng.u8(..20) {
        0 => None,
        1 => Some(Value::from("")),
        2 => Some(Value::Null),
        3 => Some(Value::from(7)),
        4..=6 => Some(Value::from(pick(
            rng,
            &["kube-apiserver", "Guard", "cluster-autoscaler"],
        ))),
        _ => Some(Value::from(pick(
            rng,
            &[
                "kube-audit",
                "kube-audit-admin",
                "KUBE-AUDIT-ADMIN",
                "Kube-Audit",
            ],
        ))),
    };
    if let Some(category) = &category {
        record.insert("category".into(), category.clone());
    }
    record.insert(
        "operationName".into(),
        Value::from("Microsoft.ContainerService/managedClusters/diagnosticLogs/Read"),
    );
    let with_properties = rng.u8(..20) > 0;
    // The byte goes into `properties.pod`.
    let bad_byte = with_properties && rng.u8(..20) == 0;
    let pod = if bad_byte {
        BAD_BYTE
    } else {
        "kube-apiserver-1"
    };
    let (log, trimmed) = match rng.u8(..20) {
        0 => (None, None),
        1 => (Some(Value::Null), None),
        2 => (Some(Value::from(42)), None),
        // The Event object itself, its text spliced in below.
        3 | 4 if event.json => (Some(Value::from(OBJECT_LOG)), Some(event.text.clone())),
        5 => (
            Some(Value::from(format!("\u{feff}{}\n", event.text))),
            Some(event.text.clone()),
        ),
        6 => (
            Some(Value::from(format!(" \t{} \n", event.text))),
            Some(event.text.clone()),
        ),
        _ => (
            Some(Value::from(format!("{}\n", event.text))),
            Some(event.text.clone()),
        ),
    };
    let mut properties = serde_json::Map::new();
    if let Some(log) = log {
        properties.insert("log".into(), log);
    }
    properties.insert("stream".into(), Value::from("stdout"));
    properties.insert("pod".into(), Value::from(pod));
    if with_properties {
        record.insert("properties".into(), Value::Object(properties));
    }
    let name = category
        .as_ref()
        .and_then(Value::as_str)
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let audit = |c: &str| {
        c.eq_ignore_ascii_case("kube-audit") || c.eq_ignore_ascii_case("kube-audit-admin")
    };
    let has_log = record
        .get("properties")
        .and_then(|p| p.get("log"))
        .is_some_and(|l| !l.is_null());
    if bad_byte {
        notes.push("records with an invalid UTF-8 byte");
    }
    let log = record.get("properties").and_then(|p| p.get("log"));
    let object_log = log.is_some_and(|l| l == OBJECT_LOG);
    if object_log {
        notes.push("logs written as an object");
    }
    if !event.edits.is_empty() && event.valid {
        notes.push("changed Events still valid");
    }
    // A record whose category is readable (a non-empty string) and not an audit one is
    // skipped, whatever its other members or bytes (docs/delivery.md, shared hubs).
    let expect = match name {
        None => Expect::Malformed,
        Some(c) if !audit(&c) => Expect::Skip(c.to_ascii_lowercase()),
        _ if bad_resource_id || bad_byte => Expect::Malformed,
        Some(_) if !has_log || trimmed.is_none() || !event.valid => Expect::Malformed,
        Some(_) => Expect::Event(trimmed.unwrap_or_default()),
    };
    let mut text = Value::Object(record).to_string();
    if object_log {
        text = text.replace(&quote(OBJECT_LOG), &event.text);
    }
    (text, expect)
}

/// One Event Hub event body and what it must give: `None` when it is not a diagnostic
/// envelope (malformed as a whole), otherwise what each record must give.
pub struct GenBody {
    pub bytes: Vec<u8>,
    pub records: Option<Vec<Expect>>,
    /// Which rarer branches of the generator this body took, to count them.
    pub notes: Vec<&'static str>,
}

/// An event body: usually an envelope of 0–6 generated records (sometimes after a byte order
/// mark or another member), else text that is no envelope.
pub fn body(rng: &mut Rng, prefix: &str) -> GenBody {
    let not_envelope: [&[u8]; 5] = [
        b"not an envelope",
        br#"{"records":5}"#,
        b"[]",
        b"{}",
        br#"{"records":[{"category":"kube-audit"}"#,
    ];
    if rng.u8(..12) == 0 {
        return GenBody {
            bytes: not_envelope[rng.usize(..not_envelope.len())].to_vec(),
            records: None,
            notes: Vec::new(),
        };
    }
    let mut texts = Vec::new();
    let mut expects = Vec::new();
    let mut notes = Vec::new();
    for r in 0..rng.usize(..7) {
        let (text, expect) = record(rng, &format!("{prefix}-{r}"), &mut notes);
        texts.push(text);
        expects.push(expect);
    }
    let lead = if rng.u8(..8) == 0 { "\u{feff}" } else { "" };
    let other = if rng.u8(..8) == 0 {
        r#""kind":"x","#
    } else {
        ""
    };
    let mut bytes = format!("{lead}{{{other}\"records\":[{}]}}", texts.join(",")).into_bytes();
    while let Some(at) = bytes
        .windows(BAD_BYTE.len())
        .position(|w| w == BAD_BYTE.as_bytes())
    {
        bytes[at] = 0xff;
    }
    if !lead.is_empty() {
        notes.push("bodies after a byte order mark");
    }
    GenBody {
        bytes,
        records: Some(expects),
        notes,
    }
}

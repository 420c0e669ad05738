//! The floor: the least work any forwarder must do on an invocation, used as the baseline of
//! the criterion bench and the load harness (issue "Forward at the speed of JSON validation").
//!
//! Parse the invocation and unescape the events string, base64-decode each body, read
//! `records[].properties.log` from each envelope, validate each Event with serde_json into
//! `IgnoredAny`, and concatenate the Event texts into `EventList` bodies. No field checks, no
//! Policy, no annotations, no routes, no dead letters: anything the handler does on top of this
//! is what the benchmarks show as the ratio floor / handler.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::audit::encoding::{EVENT_LIST_PREFIX, EVENT_LIST_SUFFIX};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(rename = "Data", borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    events: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(borrow, default)]
    log: Option<Cow<'a, str>>,
}

/// The floor's work on one `many`/`binary` invocation request (the shape the forwarder is
/// deployed with): `EventList` bodies of at most `max_events` Events each, and the number of
/// Events. Bodies, records and Events that do not parse are skipped.
///
/// # Errors
/// When the request is not a host request with `Data.events` holding a JSON array of strings.
pub fn floor_batches(request: &[u8], max_events: usize) -> anyhow::Result<(Vec<Bytes>, usize)> {
    let request: Request<'_> = serde_json::from_slice(request)?;
    let items: Vec<Cow<'_, str>> = serde_json::from_str(&request.data.events)?;
    let mut batches = Vec::new();
    let mut batch: Vec<u8> = Vec::new();
    let mut in_batch = 0;
    let mut total = 0;
    for item in items {
        let Ok(body) = base64::engine::general_purpose::STANDARD.decode(item.as_bytes()) else {
            continue;
        };
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&body) else {
            continue;
        };
        for log in envelope
            .records
            .iter()
            .filter_map(|r| r.properties.as_ref()?.log.as_deref())
        {
            let event = log.trim();
            if serde_json::from_str::<IgnoredAny>(event).is_err() {
                continue;
            }
            if in_batch == 0 {
                batch.extend_from_slice(EVENT_LIST_PREFIX.as_bytes());
            } else {
                batch.push(b',');
            }
            batch.extend_from_slice(event.as_bytes());
            in_batch += 1;
            total += 1;
            if in_batch == max_events {
                batch.extend_from_slice(EVENT_LIST_SUFFIX.as_bytes());
                batches.push(Bytes::from(std::mem::take(&mut batch)));
                in_batch = 0;
            }
        }
    }
    if in_batch > 0 {
        batch.extend_from_slice(EVENT_LIST_SUFFIX.as_bytes());
        batches.push(Bytes::from(batch));
    }
    Ok((batches, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::hostsim::{build_request, Shape, SimPartition};

    #[test]
    fn floor_forwards_every_valid_event_text() {
        let event = r#"{"kind":"Event","auditID":"a","stage":"ResponseComplete"}"#;
        let body = serde_json::json!({"records": [
            {"category": "kube-audit", "properties": {"log": format!("{event}\n")}},
            {"category": "kube-audit", "properties": {"log": "{\"kind\":"}},
            {"category": "kube-audit", "properties": {"log": event}},
        ]})
        .to_string();
        let request = build_request(
            Shape::ManyBinary,
            &[body.into_bytes(), b"not json".to_vec()],
            &mut SimPartition::new("0"),
            None,
        )
        .unwrap();
        let (batches, total) = floor_batches(&request, 1).unwrap();
        assert_eq!(total, 2);
        assert_eq!(batches.len(), 2);
        assert_eq!(
            &batches[0][..],
            format!("{EVENT_LIST_PREFIX}{event}{EVENT_LIST_SUFFIX}").as_bytes()
        );
        assert!(floor_batches(b"{}", 1).is_err());
    }
}

//! The host's `Metadata`: the Event Hub binding data the summary and dead letters use
//! (partition, sequence numbers, enqueued times, `RetryContext`), read leniently: every key is
//! optional, values may be JSON text inside strings or objects, keys match in any case
//! (host-contract §1.3).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::pipeline::InvocationMeta;

/// A metadata value: the host writes scalars and arrays as JSON text inside a JSON string,
/// and objects as objects. Accept both, and a bare string as a last resort.
fn lenient<T: DeserializeOwned>(raw: &RawValue) -> Option<T> {
    if first_byte(raw.get()) == Some(b'"') {
        let text: String = serde_json::from_str(raw.get()).ok()?;
        serde_json::from_str(&text)
            .ok()
            .or_else(|| serde_json::from_value(serde_json::Value::String(text)).ok())
    } else {
        serde_json::from_str(raw.get()).ok()
    }
}

/// Case-insensitive lookup, as the host's binding data dictionary is.
fn member<'a>(meta: &HashMap<String, &'a RawValue>, key: &str) -> Option<&'a RawValue> {
    meta.get(key).copied().or_else(|| {
        meta.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PartitionContext {
    partition_id: Option<String>,
    event_hub_name: Option<String>,
    consumer_group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RetryContext {
    retry_count: Option<i64>,
    max_retry_count: Option<i64>,
}

/// A number that the host may have written as a number or as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Text(String),
}

impl Number {
    fn value(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            Self::Text(s) => s.trim().trim_matches('"').parse().ok(),
        }
    }
}

pub(super) fn decode_meta(meta: &HashMap<String, &RawValue>) -> InvocationMeta {
    let partition: PartitionContext = member(meta, "PartitionContext")
        .or_else(|| member(meta, "TriggerPartitionContext"))
        .and_then(lenient)
        .unwrap_or_default();
    let sequence_numbers = match member(meta, "SequenceNumberArray") {
        Some(raw) => lenient::<Vec<Number>>(raw)
            .unwrap_or_default()
            .iter()
            .filter_map(Number::value)
            .collect(),
        None => member(meta, "SequenceNumber")
            .and_then(lenient::<Number>)
            .and_then(|n| n.value())
            .into_iter()
            .collect(),
    };
    let enqueued: Vec<String> = match member(meta, "EnqueuedTimeUtcArray") {
        Some(raw) => lenient(raw).unwrap_or_default(),
        None => member(meta, "EnqueuedTimeUtc")
            .and_then(lenient::<String>)
            .into_iter()
            .collect(),
    };
    let retry: RetryContext = member(meta, "RetryContext")
        .and_then(lenient)
        .unwrap_or_default();
    InvocationMeta {
        partition_id: partition.partition_id,
        event_hub: partition.event_hub_name,
        consumer_group: partition.consumer_group,
        sequence_numbers,
        enqueued_first: enqueued.first().cloned(),
        enqueued_last: enqueued.last().cloned(),
        retry_count: retry.retry_count,
        max_retry_count: retry.max_retry_count,
    }
}

/// The first byte of `text` that is not JSON white space.
pub(super) fn first_byte(text: &str) -> Option<u8> {
    text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .bytes()
        .next()
}

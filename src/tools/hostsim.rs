//! A stand-in for the Functions host: builds Event Hub trigger invocations in every shape the
//! host sends, probes readiness the way it does, and POSTs invocations with chunked bodies and
//! the host's headers. Used by `demo`, `replay` and the integration tests.

use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::host::InvocationResult;

/// How `function.json` asks the host to encode the trigger value (host-contract §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// `cardinality: many`, `dataType: binary` (the shipped default).
    ManyBinary,
    /// `cardinality: many`, `dataType: string`.
    ManyString,
    /// `cardinality: one`, `dataType: string`.
    OneString,
    /// `cardinality: one`, `dataType: binary`.
    OneBinary,
    /// A plain JSON array of base64 strings, not wrapped in a string.
    StructuredArray,
}

impl Shape {
    /// Whether one invocation carries a single event.
    pub fn is_single(self) -> bool {
        matches!(self, Self::OneString | Self::OneBinary)
    }
}

/// Where a simulated batch comes from.
#[derive(Debug, Clone)]
pub struct SimPartition {
    /// Event hub name.
    pub event_hub: String,
    /// Partition id.
    pub partition_id: String,
    /// Sequence number of the next event.
    pub next_sequence: i64,
}

impl SimPartition {
    /// Partition `id` of hub `aks-audit`, starting at sequence 0.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            event_hub: "aks-audit".into(),
            partition_id: id.into(),
            next_sequence: 0,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn as_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The invocation request body the host would POST for `bodies` (one body for single shapes),
/// advancing the partition's sequence numbers. `retry_count` adds a `RetryContext`.
///
/// # Errors
/// When a single-event shape is given more or fewer than one body.
pub fn build_request(
    shape: Shape,
    bodies: &[Vec<u8>],
    partition: &mut SimPartition,
    retry_count: Option<i64>,
) -> anyhow::Result<Vec<u8>> {
    if shape.is_single() && bodies.len() != 1 {
        bail!("{shape:?} carries exactly one event, not {}", bodies.len());
    }
    let first = partition.next_sequence;
    partition.next_sequence += bodies.len() as i64;
    let sequences: Vec<i64> = (first..partition.next_sequence).collect();
    let enqueued: Vec<String> = sequences
        .iter()
        .map(|s| format!("2026-11-23T07:00:{:02}.{:03}", s % 60, s % 1000))
        .collect();
    let to_json = |v: &Value| v.to_string();
    let data = match shape {
        Shape::ManyBinary => Value::String(to_json(&json!(bodies
            .iter()
            .map(|b| b64(b))
            .collect::<Vec<_>>()))),
        Shape::ManyString => Value::String(to_json(&json!(bodies
            .iter()
            .map(|b| as_text(b))
            .collect::<Vec<_>>()))),
        Shape::OneString => Value::String(to_json(&Value::String(as_text(&bodies[0])))),
        Shape::OneBinary => Value::String(b64(&bodies[0])),
        Shape::StructuredArray => json!(bodies.iter().map(|b| b64(b)).collect::<Vec<_>>()),
    };
    let context = json!({
        "IsCheckpointingAfterInvocation": true,
        "FullyQualifiedNamespace": "evhns-demo.servicebus.windows.net",
        "EventHubName": partition.event_hub,
        "ConsumerGroup": "aks-audit-forwarder",
        "PartitionId": partition.partition_id,
    });
    let mut metadata = json!({
        "TriggerPartitionContext": context,
        "PartitionContext": context,
        "sys": {"MethodName": "EventHubForwarder", "UtcNow": "2026-11-23T07:00:41.1234567Z",
                "RandGuid": "1f0c6a57-2f1e-4a53-9d1c-5a0f3f4b9e11"},
    });
    if shape.is_single() {
        metadata["SequenceNumber"] = json!(first.to_string());
        metadata["Offset"] = json!(format!("\"{}\"", first * 4096));
        metadata["EnqueuedTimeUtc"] = json!(enqueued[0].split('.').next().unwrap_or_default());
    } else {
        metadata["SequenceNumberArray"] = json!(to_json(&json!(sequences)));
        metadata["OffsetArray"] = json!(to_json(&json!(sequences
            .iter()
            .map(|s| (s * 4096).to_string())
            .collect::<Vec<_>>())));
        metadata["EnqueuedTimeUtcArray"] = json!(to_json(&json!(enqueued)));
        metadata["PartitionKeyArray"] = json!(to_json(&json!(vec![Value::Null; bodies.len()])));
    }
    if let Some(count) = retry_count {
        metadata["RetryContext"] =
            json!({"RetryCount": count, "MaxRetryCount": -1, "Exception": null});
    }
    Ok(serde_json::to_vec(
        &json!({"Data": {"events": data}, "Metadata": metadata}),
    )?)
}

/// The handler's answer to one POST.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The parsed body, when it was an invocation result.
    pub result: Option<InvocationResult>,
    /// The raw body.
    pub body: String,
}

impl Answer {
    /// A 2xx with a JSON invocation result, as the host requires.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status) && self.result.is_some()
    }
}

/// Talks to a handler the way the Functions host does.
#[derive(Debug, Clone)]
pub struct HostSim {
    client: reqwest::Client,
    base: String,
}

impl HostSim {
    /// A host for the handler at `base` (e.g. `http://127.0.0.1:7071`).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base.into().trim_end_matches('/').to_string(),
        }
    }

    /// Polls `GET /` every 25 ms until any answer, as the host does; returns the time taken.
    ///
    /// # Errors
    /// When nothing answers within `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if self
                .client
                .get(format!("{}/", self.base))
                .send()
                .await
                .is_ok()
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "the handler at {} did not answer GET / within {limit:?}",
                    self.base
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// POSTs one invocation to `/<function>` with a chunked body and the host's headers.
    ///
    /// # Errors
    /// When the request cannot be sent or the answer cannot be read.
    pub async fn invoke(&self, function: &str, body: Vec<u8>) -> anyhow::Result<Answer> {
        // Chunked, as the host's ObjectContent has no precomputed length.
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .chunks(64 * 1024)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        drop(body);
        let response = self
            .client
            .post(format!("{}/{function}", self.base))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Azure-Functions-HostVersion", "4.1037.0")
            .header("X-Azure-Functions-InvocationId", new_invocation_id())
            .header("User-Agent", "Azure-Functions-Host/4.1037.0")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .with_context(|| format!("POST {}/{function}", self.base))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .text()
            .await
            .context("reading the handler's answer")?;
        let result = serde_json::from_str(&body).ok();
        Ok(Answer {
            status,
            content_type,
            result,
            body,
        })
    }

    /// Invokes like the host with a function-level retry policy: a failed invocation is sent
    /// again, with `RetryContext.RetryCount` raised, after `delay`, up to `max_retries` times.
    /// Returns every answer, the last one first failing or succeeding for good.
    ///
    /// # Errors
    /// When a request cannot be built or sent.
    pub async fn invoke_with_retries(
        &self,
        function: &str,
        shape: Shape,
        bodies: &[Vec<u8>],
        partition: &mut SimPartition,
        max_retries: u32,
        delay: Duration,
    ) -> anyhow::Result<Vec<Answer>> {
        let start = partition.next_sequence;
        let mut answers = Vec::new();
        for retry in 0..=max_retries {
            partition.next_sequence = start;
            let retry_count = Some(i64::from(retry));
            let request = build_request(shape, bodies, partition, retry_count)?;
            let answer = self.invoke(function, request).await?;
            let done = answer.is_success();
            answers.push(answer);
            if done || retry == max_retries {
                break;
            }
            tokio::time::sleep(delay).await;
        }
        Ok(answers)
    }
}

fn new_invocation_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Reads event bodies from replay input:
///
/// - a JSON array: each element is one Event Hub event; an object is sent as its JSON, a
///   string as its text (to replay bodies that are not JSON);
/// - a JSON object: one event (a `{"records":[…]}` envelope), or one record to wrap in one;
/// - JSON lines of records, as diagnostic settings write them to a storage account
///   (`PT1H.json`): grouped into envelopes of `records_per_event` records.
///
/// Every record keeps its exact text (key order, escapes such as `\u0026`, number spelling):
/// an envelope is built around the records' text, never re-serialised. A leading UTF-8 byte
/// order mark (of the file, or of a line) is skipped.
///
/// # Errors
/// When the text is none of these.
pub fn load_bodies(text: &str, records_per_event: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = skip_bom(text);
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) {
        return items
            .into_iter()
            .map(|item| match item.get().as_bytes().first() {
                Some(b'"') => Ok(serde_json::from_str::<String>(item.get())?.into_bytes()),
                _ => Ok(item.get().as_bytes().to_vec()),
            })
            .collect();
    }
    if let Ok(object) = serde_json::from_str::<serde_json::Map<String, Value>>(text) {
        let body = if object.contains_key("records") {
            text.trim().as_bytes().to_vec()
        } else {
            envelope(&[text.trim()])
        };
        return Ok(vec![body]);
    }
    let mut records: Vec<&str> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = skip_bom(line).trim();
        if line.is_empty() {
            continue;
        }
        serde_json::from_str::<&RawValue>(line)
            .with_context(|| format!("line {}: not a JSON record", n + 1))?;
        records.push(line);
    }
    if records.is_empty() {
        bail!("no events found: expected a JSON array of events, one envelope, or JSON lines of records");
    }
    Ok(records
        .chunks(records_per_event.max(1))
        .map(envelope)
        .collect())
}

/// `{"records":[…]}` around the records' exact text.
fn envelope(records: &[&str]) -> Vec<u8> {
    let mut body = String::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 13);
    body.push_str("{\"records\":[");
    body.push_str(&records.join(","));
    body.push_str("]}");
    body.into_bytes()
}

/// `text` without a leading UTF-8 byte order mark.
pub fn skip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::decode_invocation;

    /// Every shape the simulator builds decodes back to the same bodies, with metadata.
    #[test]
    fn every_shape_round_trips_through_the_decoder() {
        let bodies = vec![br#"{"records":[]}"#.to_vec(), vec![0xff, 0x00, b'x']];
        for shape in [Shape::ManyBinary, Shape::StructuredArray] {
            let mut p = SimPartition::new("2");
            let req = build_request(shape, &bodies, &mut p, Some(1)).unwrap();
            let inv = decode_invocation(&req[..]).unwrap();
            assert_eq!(inv.bodies.to_vecs(), bodies, "{shape:?}");
            assert_eq!(inv.meta.sequence_numbers, vec![0, 1]);
            assert_eq!(inv.meta.partition_id.as_deref(), Some("2"));
            assert_eq!(inv.meta.retry_count, Some(1));
        }
        let text = vec![br#"{"records":[]}"#.to_vec(), b"hello".to_vec()];
        let mut p = SimPartition::new("0");
        let inv = decode_invocation(build_request(Shape::ManyString, &text, &mut p, None).unwrap())
            .unwrap();
        assert_eq!(inv.bodies.to_vecs(), text);
        for shape in [Shape::OneString, Shape::OneBinary] {
            let mut p = SimPartition::new("0");
            p.next_sequence = 41;
            let req = build_request(shape, &text[..1], &mut p, None).unwrap();
            let inv = decode_invocation(&req[..]).unwrap();
            assert_eq!(inv.bodies.to_vecs(), text[..1].to_vec(), "{shape:?}");
            assert_eq!(inv.meta.sequence_numbers, vec![41]);
            assert_eq!(p.next_sequence, 42);
        }
        assert!(build_request(Shape::OneString, &text, &mut p, None).is_err());
    }

    #[test]
    fn replay_input_forms() {
        let array = r#"[{"records":[{"category":"kube-audit"}]}, "plain"]"#;
        assert_eq!(
            load_bodies(array, 10).unwrap(),
            vec![
                br#"{"records":[{"category":"kube-audit"}]}"#.to_vec(),
                b"plain".to_vec()
            ]
        );
        let one = r#"{"records":[]}"#;
        assert_eq!(load_bodies(one, 10).unwrap(), vec![one.as_bytes().to_vec()]);
        assert_eq!(
            load_bodies(r#"{"category":"a"}"#, 10).unwrap(),
            vec![br#"{"records":[{"category":"a"}]}"#.to_vec()]
        );
        let lines = "{\"category\":\"a\"}\n{\"category\":\"b\"}\n\n{\"category\":\"c\"}\n";
        let got = load_bodies(lines, 2).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], br#"{"records":[{"category":"c"}]}"#.to_vec());
        assert!(load_bodies("{\"a\":1}\nnope\n", 2).is_err());
        assert!(load_bodies("", 2).is_err());
    }

    /// A `properties.log` given as an object keeps its exact text through `replay` input, in
    /// every form (JSON lines, one record, BOM-prefixed): key order and `\u0026` survive, as
    /// they do through an invocation.
    #[test]
    fn replay_input_keeps_each_records_exact_text() {
        use crate::azure::{convert_body, BodyOrigin, Conversion};
        let log = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x-1","stage":"ResponseComplete","requestURI":"/api/v1/pods?labelSelector=a%3Db\u0026limit=1","verb":"list","stageTimestamp":"2026-11-23T07:00:00.100000Z","annotations":{"z":"1","a":"2"}}"#;
        let record = format!(
            r#"{{"time":"2026-11-23T07:00:00Z","resourceId":"/SUBSCRIPTIONS/1/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/A","category":"kube-audit","properties":{{"log":{log}}}}}"#
        );
        let inputs = [
            format!("{record}\n{record}\n"),
            record.clone(),
            format!("\u{feff}{record}\n"),
            format!("\u{feff}[{{\"records\":[{record}]}}]"),
        ];
        let categories = ["kube-audit".to_string()].into();
        for input in &inputs {
            let bodies = load_bodies(input, 50).unwrap();
            let mut conversion = Conversion::default();
            for (index, body) in bodies.iter().enumerate() {
                assert!(
                    String::from_utf8_lossy(body).contains(&record),
                    "the record's text is kept: {input}"
                );
                let origin = BodyOrigin {
                    index,
                    sequence_number: None,
                };
                convert_body(body, origin, &categories, &mut conversion);
            }
            assert!(!conversion.events.is_empty(), "{input}");
            for event in &conversion.events {
                assert_eq!(event.json(), log, "{input}");
            }
        }
    }
}

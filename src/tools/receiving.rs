//! How the local audit receiver serves one request: canned answers first, then the checks
//! Sysdig's and Falco's receivers make (JSON content type, an `Event`, `EventList` or array, each
//! item an `Event` with a `stageTimestamp`, none refused by `--refuse`), then the Events are
//! written to the `--out` file, counted and kept. See [`super::receiver`].

use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::describe::describe;
use super::receiver::{ReceivedBatch, Receiver, Verbosity};
use super::scripted::Scripted;

/// The Events of a body the receiver accepted, as their exact text.
fn raw_items(body: &[u8], shape: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct List<'a> {
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
    }
    let text = std::str::from_utf8(body).unwrap_or_default();
    match shape {
        "array" => serde_json::from_str::<Vec<&RawValue>>(text)
            .map(|v| v.iter().map(|r| r.get().to_string()).collect())
            .unwrap_or_default(),
        "EventList" => serde_json::from_str::<List<'_>>(text)
            .map(|l| l.items.iter().map(|r| r.get().to_string()).collect())
            .unwrap_or_default(),
        _ => vec![text.trim().to_string()],
    }
}

/// Appends one line per item and flushes: what is acknowledged is in the file.
fn write_lines(out: &mut std::io::BufWriter<std::fs::File>, raw: &[String]) -> std::io::Result<()> {
    for item in raw {
        out.write_all(item.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn key_hash(event: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    event["auditID"].as_str().unwrap_or_default().hash(&mut h);
    event["stage"].as_str().unwrap_or_default().hash(&mut h);
    h.finish()
}

fn refuse(receiver: &Receiver, message: String) -> Response {
    receiver.lock().stats.refused += 1;
    if receiver.verbosity != Verbosity::Quiet {
        outln!("receiver: refused a POST: {message}");
    }
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// Serves one request: canned answers first, then the checks Sysdig's and Falco's receivers
/// make, then the Events are kept (and written to the `--out` file).
pub(super) async fn receive(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        let mut response = (
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an audit.k8s.io/v1 EventList (application/json) to any path\n",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    if let Some(response) = serve_script(&receiver).await {
        return response;
    }
    let (shape, events) = match accept(&receiver, &headers, &body) {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    if let Some(unwritten) = write_out(&receiver, &body, shape) {
        return unwritten;
    }
    let falco = receiver.lock().falco;
    let view = falco.map(|f| f.observe(&raw_items(&body, shape), shape == "Event"));
    {
        let mut inner = receiver.lock();
        inner.stats.largest_body = inner.stats.largest_body.max(body.len() as u64);
        if let Some(view) = view {
            super::falco::count(
                &mut inner.stats,
                &view,
                receiver.verbosity != Verbosity::Quiet,
            );
        }
    }
    keep(&receiver, uri.path(), &headers, shape, events);
    StatusCode::OK.into_response()
}

/// The next canned answer, if one is queued: a status (with `Retry-After`), or a delay before
/// normal service.
async fn serve_script(receiver: &Receiver) -> Option<Response> {
    let next = receiver.lock().script.pop_front();
    match next {
        Some(Scripted::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(canned) => {
            receiver.lock().stats.scripted_failures += 1;
            let response = canned.response();
            if receiver.verbosity != Verbosity::Quiet {
                outln!("receiver: answering {} as scripted", response.status());
            }
            Some(response)
        }
        None => None,
    }
}

/// The shape and Events of a body the receiver takes, or the answer refusing it (counted).
fn accept(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'static str, Vec<Value>), Box<Response>> {
    let max_body = receiver.lock().max_body;
    if max_body.is_some_and(|max| body.len() > max) {
        receiver.lock().stats.refused += 1;
        let too_large = (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
        return Err(Box::new(too_large));
    }
    let falco = receiver.lock().falco;
    if let Some(Err(message)) = falco.map(|f| f.check_body(body.len())) {
        return Err(Box::new(refuse(receiver, message)));
    }
    check_events(receiver, headers, body).map_err(|message| Box::new(refuse(receiver, message)))
}

/// The checks Sysdig's and Falco's receivers make, in their order.
fn check_events(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'static str, Vec<Value>), String> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if !json_type {
        return Err("Content-Type must be application/json".into());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("Malformed JSON: {e}"))?;
    let (shape, events) = match value {
        Value::Array(items) => ("array", items),
        Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("EventList") => {
            match o.get("items") {
                Some(Value::Array(items)) => ("EventList", items.clone()),
                _ => return Err("EventList without items".into()),
            }
        }
        Value::Object(_) => ("Event", vec![value]),
        _ => return Err("expected an Event, an EventList or an array".into()),
    };
    let inner = receiver.lock();
    for (i, event) in events.iter().enumerate() {
        if event.get("kind").and_then(Value::as_str) != Some("Event") {
            return Err(format!("item {i}: kind is not Event"));
        }
        if event
            .get("stageTimestamp")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(format!("item {i}: no stageTimestamp"));
        }
        let id = event
            .get("auditID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if inner.refuse_ids.contains(id) {
            return Err(format!("item {i}: event {id} refused"));
        }
    }
    Ok((shape, events))
}

/// Appends the accepted Events to the output file, if there is one, and keeps their exact
/// text with [`Receiver::keep_raw`]. When the file cannot be written, returns the answer: a
/// 500, so that the sender keeps the Events.
fn write_out(receiver: &Receiver, body: &[u8], shape: &str) -> Option<Response> {
    let (out, keep) = {
        let inner = receiver.lock();
        (inner.out.is_some(), inner.raw.is_some())
    };
    if !out && !keep {
        return None;
    }
    let raw = raw_items(body, shape);
    let mut inner = receiver.lock();
    if let Some(kept) = inner.raw.as_mut() {
        kept.extend(raw.iter().cloned());
    }
    let out = inner.out.as_mut()?;
    let Err(e) = write_lines(out, &raw) else {
        return None;
    };
    // Drop what is still buffered: the sender sends these Events again.
    if let Some(out) = inner.out.take() {
        inner.out = Some(std::io::BufWriter::new(out.into_parts().0));
    }
    inner.stats.unwritten += 1;
    drop(inner);
    eprintln!(
        "receiver: cannot write the output file ({e}); answering 500 so that the sender \
         keeps these Events and sends them again"
    );
    Some(
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the receiver cannot store the Events: {e}"),
        )
            .into_response(),
    )
}

/// Counts and keeps accepted Events, and prints what the verbosity asks for.
fn keep(
    receiver: &Receiver,
    path: &str,
    headers: &HeaderMap,
    shape: &'static str,
    events: Vec<Value>,
) {
    let mut inner = receiver.lock();
    for event in &events {
        if !inner.seen.insert(key_hash(event)) {
            inner.stats.duplicates += 1;
        }
        if receiver.verbosity == Verbosity::Events {
            outln!("{}", describe(event));
        }
    }
    if events.is_empty() && receiver.verbosity != Verbosity::Quiet {
        outln!("receiver: an empty {shape} on {path}, answered 200 (a probe, such as check-config --probe)");
    }
    inner.stats.batches += 1;
    inner.stats.events += events.len() as u64;
    if let Some((n, recent)) = inner.recent.as_mut() {
        let n = *n;
        for event in events {
            if recent.len() == n {
                recent.pop_front();
            }
            if n > 0 {
                recent.push_back(event);
            }
        }
        return;
    }
    if receiver.verbosity == Verbosity::Batches {
        let what = if shape == "EventList" {
            "batch"
        } else {
            "payload"
        };
        outln!(
            "receiver: {shape} {what} with {} event(s) on {path}",
            events.len()
        );
    }
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    inner.batches.push(ReceivedBatch {
        path: path.to_string(),
        shape,
        events,
        headers,
    });
}

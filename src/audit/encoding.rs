//! How Events travel to a webhook: kube-apiserver's `EventList` body, or one bare Event per
//! POST. Bodies are assembled from the Events' original text, never re-serialised.
//!
//! The `EventList` framing follows kube-apiserver's webhook backend
//! (`staging/src/k8s.io/apiserver/plugin/pkg/audit/webhook/webhook.go`), which always POSTs
//! `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[…]}`.

use crate::audit::AuditEvent;

/// How Events are wrapped for the webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"apiVersion":"audit.k8s.io/v1","kind":"EventList","items":[…]}`, as kube-apiserver sends.
    EventList,
    /// One bare Event per POST, for receivers that want that.
    Event,
}

impl WebhookFormat {
    /// Reads `eventlist` or `event`, any case; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "eventlist" => Some(Self::EventList),
            "event" => Some(Self::Event),
            _ => None,
        }
    }
}

/// Start of an `EventList` body, as kube-apiserver's webhook backend writes it.
pub const EVENT_LIST_PREFIX: &str =
    r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#;
/// End of an `EventList` body.
pub const EVENT_LIST_SUFFIX: &str = "]}";

/// Bytes that a batch of `count` Events of total length `events_len` takes once encoded.
pub fn encoded_len(format: WebhookFormat, count: usize, events_len: usize) -> usize {
    match format {
        WebhookFormat::EventList => {
            EVENT_LIST_PREFIX.len() + EVENT_LIST_SUFFIX.len() + events_len + count.saturating_sub(1)
        }
        WebhookFormat::Event => events_len,
    }
}

/// Encodes Events for one POST. With [`WebhookFormat::Event`] the slice holds one Event.
pub fn encode(format: WebhookFormat, events: &[AuditEvent]) -> bytes::Bytes {
    let len = encoded_len(
        format,
        events.len(),
        events.iter().map(AuditEvent::len).sum(),
    );
    let mut out = Vec::with_capacity(len);
    match format {
        WebhookFormat::EventList => {
            out.extend_from_slice(EVENT_LIST_PREFIX.as_bytes());
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(event.json().as_bytes());
            }
            out.extend_from_slice(EVENT_LIST_SUFFIX.as_bytes());
        }
        WebhookFormat::Event => {
            for event in events {
                out.extend_from_slice(event.json().as_bytes());
            }
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::event_json;

    #[test]
    fn encodes_event_list_like_kube_apiserver() {
        let events: Vec<_> = ["a", "b"]
            .iter()
            .map(|id| AuditEvent::parse(&event_json(id)).unwrap())
            .collect();
        let body = encode(WebhookFormat::EventList, &events);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["kind"], "EventList");
        assert_eq!(value["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(value["items"].as_array().unwrap().len(), 2);
        assert_eq!(value["items"][1]["auditID"], "b");
        let sum = events.iter().map(AuditEvent::len).sum();
        assert_eq!(body.len(), encoded_len(WebhookFormat::EventList, 2, sum));

        let empty = encode(WebhookFormat::EventList, &[]);
        assert_eq!(empty.len(), encoded_len(WebhookFormat::EventList, 0, 0));
        let single = encode(WebhookFormat::Event, &events[..1]);
        assert_eq!(&single[..], events[0].json().as_bytes());
    }
}

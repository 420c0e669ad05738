//! The `resend` command: send the Events of dead-letter files again through the same routes,
//! Policy and webhook settings as the handler, once the cause is fixed.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::audit::AuditEvent;
use crate::deadletter::{from_json_lines, to_json_lines, DeadLetter};
use crate::pipeline::{Forwarder, Settings};

/// Totals of one resend.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResendReport {
    /// Dead letters read.
    pub read: u64,
    /// Malformed items (no Event to send): left for an operator to fix.
    pub skipped: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Items still undeliverable, written back out.
    pub remaining: u64,
}

/// Sends the Events of dead-letter files (JSON lines) again, through the routes, Policy and
/// webhook `settings`. Items that fail again are written to `out`.
///
/// # Errors
/// When the input cannot be read or the output written.
pub async fn resend(settings: Settings, input: &Path, out: &Path) -> anyhow::Result<ResendReport> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let items = from_json_lines(&text).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let mut report = ResendReport {
        read: items.len() as u64,
        ..ResendReport::default()
    };
    let mut events = Vec::new();
    let mut left = Vec::new();
    for item in items {
        let Some(raw) = &item.event else {
            report.skipped += 1;
            left.push(item);
            continue;
        };
        match AuditEvent::parse(raw.get()) {
            Ok(event) => {
                let source: Arc<str> = Arc::from(item.cluster.as_deref().unwrap_or(""));
                events.push(
                    event
                        .with_source(source)
                        .with_sequence_number(item.sequence_number),
                );
            }
            Err(_) => {
                report.skipped += 1;
                left.push(item);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + settings.delivery_deadline;
    let forwarder = Forwarder::new(settings)?;
    let mut dead_letters = Vec::new();
    let (routed, _) = forwarder.route(events, &mut dead_letters);
    let (delivery, _, poison) = forwarder.deliver(&routed, deadline).await;
    report.delivered = delivery.delivered_events;
    if delivery.failed_events > 0 {
        // Transient failures: keep the whole set for another try, minus nothing we can tell
        // apart here; receivers de-duplicate what did arrive.
        for events in &routed {
            for event in events {
                let item = DeadLetter::for_event(
                    event,
                    "unsent",
                    delivery.last_failure.clone().unwrap_or_default(),
                );
                left.push(item);
            }
        }
        report.delivered = 0;
    }
    left.extend(dead_letters);
    left.extend(poison);
    report.remaining = left.len() as u64;
    if !left.is_empty() {
        std::fs::write(out, to_json_lines(&left))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(report)
}

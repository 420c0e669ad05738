//! The `resend` command: send the Events of dead letters again through the same routes,
//! Policy and webhook settings as the handler, once the cause is fixed. What is still not
//! delivered is written back, each item exactly once: Events refused again with the new
//! reason, Events still undelivered at the deadline as they were read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::alerts::Alerter;
use crate::audit::AuditEvent;
use crate::deadletter::{to_json_lines, DeadLetter};
use crate::pipeline::{Forwarder, InvocationMeta, Routed, Settings};

/// Options of `resend`.
#[derive(Debug, clap::Args)]
pub struct ResendArgs {
    /// A dead-letter file (JSON lines), as written to the audit-deadletter container.
    #[arg(
        long,
        required_unless_present = "container",
        conflicts_with = "container"
    )]
    pub input: Option<PathBuf>,
    /// Read the dead-letter container directly instead (e.g. audit-deadletter), with
    /// --account or AZURE_STORAGE_CONNECTION_STRING.
    #[arg(long)]
    pub container: Option<String>,
    #[command(flatten)]
    pub storage: super::storage::StorageArgs,
    /// With --container: only blobs of this day or later (RFC 3339; blobs are
    /// `<yyyy-MM-dd>/<guid>.jsonl`).
    #[arg(long, value_parser = super::backfill::rfc3339, requires = "container")]
    pub since: Option<time::OffsetDateTime>,
    /// With --container: delete each blob once all its items are delivered, and rewrite the
    /// others with only what remains (with the new reason). Without it the container is
    /// left as it is and what remains goes to --out.
    #[arg(long, requires = "container")]
    pub delete_delivered: bool,
    /// Where items that still cannot be delivered are written (replaced).
    #[arg(long, default_value = "deadletter-remaining.jsonl")]
    pub out: PathBuf,
}

/// Totals of one resend.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResendReport {
    /// Dead-letter blobs read (with `--container`).
    pub blobs: u64,
    /// Dead letters read.
    pub read: u64,
    /// Items without an Event to send (malformed records and bodies): left for an operator.
    pub skipped: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Events dropped by the Policy or a dropping route: done, nothing to keep.
    pub dropped: u64,
    /// Items still undeliverable, written back out.
    pub remaining: u64,
}

/// Reads dead letters, one JSON object a line (blank lines skipped).
///
/// # Errors
/// `line N is not UTF-8 text` or `line N is not a dead-letter item (…)` for the first bad
/// line: an operator fixes or removes it and runs again.
pub fn parse_items(bytes: &[u8]) -> anyhow::Result<Vec<DeadLetter>> {
    // A byte order mark some editors write at the start is not part of the first item.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut items = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let n = n + 1;
        let Ok(line) = std::str::from_utf8(line) else {
            anyhow::bail!("line {n} is not UTF-8 text, so it is not a dead-letter item");
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<DeadLetter>(line) {
            Ok(item) => items.push(item),
            Err(e) if e.is_data() => {
                // "missing field `reason` at line 1 column 40": keep the field, drop the place.
                let text = e.to_string();
                let what = text.split(" at line ").next().unwrap_or(&text).to_string();
                anyhow::bail!("line {n} is not a dead-letter item ({what})");
            }
            Err(_) => anyhow::bail!("line {n} is not a dead-letter item (not a JSON object)"),
        }
    }
    Ok(items)
}

impl ResendReport {
    /// The one-line account of a resend.
    pub fn summary(&self, args: &ResendArgs) -> String {
        let source = match &args.container {
            Some(_) => format!(" from {} blob(s)", self.blobs),
            None => String::new(),
        };
        let whereto = match (&args.container, args.delete_delivered) {
            _ if self.remaining == 0 => String::new(),
            (Some(container), true) => format!(" (kept in container {container})"),
            _ => format!(" (written to {})", args.out.display()),
        };
        format!(
            "resend: {} item(s) read{source}, {} delivered, {} dropped by Policy or route, {} without an Event kept, {} remaining{whereto}",
            self.read, self.delivered, self.dropped, self.skipped, self.remaining
        )
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Self) {
        self.blobs += other.blobs;
        self.read += other.read;
        self.skipped += other.skipped;
        self.delivered += other.delivered;
        self.dropped += other.dropped;
        self.remaining += other.remaining;
    }
}

/// Runs `resend`: from the `--input` file or the `--container`; what remains goes to `--out`
/// (or, with `--delete-delivered`, back to the container).
///
/// # Errors
/// Reading, parsing, storage or writing errors.
pub async fn run(args: &ResendArgs, settings: Settings) -> anyhow::Result<ResendReport> {
    if let Some(input) = &args.input {
        return resend(settings, input, &args.out).await;
    }
    let (report, left) = super::resend_storage::resend_container(args, settings).await?;
    if !args.delete_delivered {
        write_remaining(&args.out, &left)?;
    }
    Ok(report)
}

fn write_remaining(out: &Path, left: &[DeadLetter]) -> anyhow::Result<()> {
    if left.is_empty() {
        if out.exists() {
            std::fs::remove_file(out).with_context(|| format!("removing {}", out.display()))?;
        }
        return Ok(());
    }
    std::fs::write(out, to_json_lines(left)).with_context(|| format!("writing {}", out.display()))
}

/// Sends the Events of a dead-letter file (JSON lines) again, through the routes, Policy and
/// webhook `settings`. What is still not delivered is written to `out` (replaced), each item
/// once.
///
/// # Errors
/// When the input cannot be read or parsed, or the output written.
pub async fn resend(settings: Settings, input: &Path, out: &Path) -> anyhow::Result<ResendReport> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let items = parse_items(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let (report, left) = resend_items(settings, items).await?;
    write_remaining(out, &left)?;
    Ok(report)
}

/// Sends the Events of `items` again; returns the totals and the items still not delivered.
///
/// # Errors
/// When the HTTP clients cannot be built.
pub async fn resend_items(
    settings: Settings,
    items: Vec<DeadLetter>,
) -> anyhow::Result<(ResendReport, Vec<DeadLetter>)> {
    let mut report = ResendReport {
        read: items.len() as u64,
        ..ResendReport::default()
    };
    let deadline = tokio::time::Instant::now() + settings.delivery_deadline;
    let alerter = match &settings.alerts {
        Some(rules) => Some(Alerter::new(
            rules.clone(),
            settings.retry,
            settings.delivery_deadline,
        )?),
        None => None,
    };
    let forwarder = Forwarder::new(settings)?;
    let mut left = Vec::new();
    // Alerts go back to their notifier, not to an audit webhook.
    let (alerts, items): (Vec<DeadLetter>, Vec<DeadLetter>) = items
        .into_iter()
        .partition(|i| i.kind == crate::alerts::DEAD_LETTER_KIND);
    if !alerts.is_empty() {
        match &alerter {
            Some(alerter) => {
                let (sent, unsent) = alerter.resend(alerts, deadline).await;
                report.delivered += sent;
                left.extend(unsent);
            }
            None => left.extend(alerts.into_iter().map(|mut item| {
                item.reason = "resend: AUDIT_ALERTS is not set, so its notifier is unknown".into();
                item
            })),
        }
    }
    // Routed one item at a time so that each routed Event maps back to the item it came from.
    let mut routed = Routed::new(forwarder.routes().len());
    let mut origin: Vec<Vec<usize>> = vec![Vec::new(); forwarder.routes().len()];
    let mut unrouted = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(event) = item
            .event
            .as_ref()
            .and_then(|raw| AuditEvent::parse(raw.get()).ok())
        else {
            report.skipped += 1;
            left.push(item.clone());
            continue;
        };
        let source: Arc<str> = Arc::from(item.cluster.as_deref().unwrap_or(""));
        let event = event
            .with_source(source)
            .with_sequence_number(item.sequence_number);
        let before = unrouted.len();
        let (one, _) = forwarder.route(vec![event], &mut unrouted);
        let mut taken = unrouted.len() > before;
        for (route, events) in one.into_per_route().into_iter().enumerate() {
            for event in events {
                routed.push(route, event);
                origin[route].push(index);
                taken = true;
            }
        }
        if !taken {
            report.dropped += 1;
        }
    }
    let outcome = forwarder
        .deliver(&InvocationMeta::standalone(), &routed, deadline)
        .await;
    report.delivered += outcome.total.delivered_events;
    let reason = outcome
        .total
        .last_failure
        .clone()
        .unwrap_or_else(|| "undelivered at the deadline".into());
    // An item routed to several routes and unsent on more than one is still written once.
    let origin = &origin;
    let mut unsent: Vec<usize> = outcome
        .unsent
        .iter()
        .enumerate()
        .flat_map(|(route, indices)| indices.iter().map(move |&i| origin[route][i]))
        .collect();
    unsent.sort_unstable();
    unsent.dedup();
    for index in unsent {
        let mut item = items[index].clone();
        item.reason = format!("resend: still undelivered: {reason}");
        left.push(item);
    }
    left.extend(unrouted);
    left.extend(outcome.poison);
    report.remaining = left.len() as u64;
    Ok((report, left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_name_the_line() {
        let good = r#"{"reason":"r","kind":"poison"}"#;
        let e = parse_items(format!("{good}\n\nnope\n").as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3 is not a dead-letter item (not a JSON object)"
        );
        let e = parse_items(b"{\"kind\":\"poison\"}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1 is not a dead-letter item (missing field `reason`)"
        );
        let mut bytes = format!("{good}\n").into_bytes();
        bytes.extend_from_slice(b"{\"reason\":\"\xff\"}\n");
        let e = parse_items(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2 is not UTF-8 text, so it is not a dead-letter item"
        );
        assert_eq!(
            parse_items(format!("{good}\n{good}").as_bytes())
                .unwrap()
                .len(),
            2
        );
    }

    /// Issue 18 row 20: a dead-letter file an editor saved with a byte order mark is read
    /// (the docs promise it), and only a leading one is skipped.
    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let good = r#"{"reason":"r","kind":"poison"}"#;
        let items = parse_items(format!("\u{feff}{good}\n{good}\n").as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert!(parse_items(format!("{good}\n\u{feff}{good}\n").as_bytes()).is_err());
    }
}

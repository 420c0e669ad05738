//! The end-to-end demo and the `replay` command: the real handler binary, started as the
//! Functions host starts it, fed host-shaped invocations, delivering to a real receiver.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::app::FUNCTION_NAME;
use crate::config::DEFAULT_CATEGORIES;
use crate::diagnostics::{convert_body, BodyOrigin, Conversion, ConvertTally};
use crate::hostsim::{load_bodies, HostSim, Shape, SimPartition};
use crate::receiver::{Receiver, Scripted};

/// The sample AKS diagnostic events bundled with the binary.
pub const SAMPLES: &str = include_str!("../samples/aks-diagnostics.json");

/// How the host would wait for a handler to come up (`customHandler.initializationTimeout`).
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// What to replay, and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// A file of events (see [`load_bodies`]); the bundled samples when `None`.
    pub input: Option<PathBuf>,
    /// The trigger encoding to simulate.
    pub shape: Shape,
    /// Event Hub events per invocation (`maxEventBatchSize`).
    pub events_per_invocation: usize,
    /// Records per event when the input is JSON lines of records.
    pub records_per_event: usize,
    /// Retries of a failed invocation, as a function-level retry policy would.
    pub retries: u32,
    /// Delay between those retries.
    pub retry_delay: Duration,
}

impl ReplayOptions {
    fn load(&self) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
        let (name, text) = match &self.input {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => ("the bundled samples".to_string(), SAMPLES.to_string()),
        };
        Ok((name, load_bodies(&text, self.records_per_event)?))
    }
}

/// Totals of one replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Invocations made (retries not counted).
    pub invocations: u64,
    /// Of those, how many finally succeeded.
    pub succeeded: u64,
    /// POSTs made, retries included.
    pub posts: u64,
}

/// Sends the input to the handler at `handler` as host-shaped invocations, printing each
/// answer's log lines.
///
/// # Errors
/// When the input cannot be read or the handler cannot be reached.
pub async fn replay(handler: &str, options: &ReplayOptions) -> anyhow::Result<ReplayReport> {
    let (name, bodies) = options.load()?;
    let host = HostSim::new(handler);
    let per = if options.shape.is_single() {
        1
    } else {
        options.events_per_invocation.max(1)
    };
    println!(
        "replay: sending {} event(s) from {name} to {handler}/{FUNCTION_NAME} as {:?} invocations of up to {per}",
        bodies.len(),
        options.shape
    );
    let mut partition = SimPartition::new("0");
    let mut report = ReplayReport::default();
    for chunk in bodies.chunks(per) {
        let answers = host
            .invoke_with_retries(
                FUNCTION_NAME,
                options.shape,
                chunk,
                &mut partition,
                options.retries,
                options.retry_delay,
            )
            .await?;
        report.invocations += 1;
        report.posts += answers.len() as u64;
        for answer in &answers {
            let lines = answer
                .result
                .as_ref()
                .map(|r| r.logs.join(" | "))
                .unwrap_or_default();
            let error = answer
                .result
                .as_ref()
                .and_then(|r| r.error.clone())
                .unwrap_or_default();
            println!("replay: handler answered {} {lines}{error}", answer.status);
            let dead = answer
                .result
                .as_ref()
                .and_then(|r| r.outputs.get("deadletter"))
                .and_then(|v| v.as_str())
                .map_or(0, |lines| lines.lines().count());
            if dead > 0 {
                println!(
                    "replay: {dead} dead letter(s) returned in Outputs.deadletter (the host writes them to the audit-deadletter container)"
                );
            }
        }
        if answers.last().is_some_and(|a| a.is_success()) {
            report.succeeded += 1;
        }
    }
    Ok(report)
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// What to replay.
    pub replay: ReplayOptions,
    /// Canned receiver failures to show retries (`503,503`).
    pub script: Vec<Scripted>,
}

/// Runs the demo. Returns an error when what the receiver got differs from what the input
/// holds.
///
/// # Errors
/// When a step fails or the counts disagree.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let receiver = Receiver::new();
    receiver.push_script(options.script.clone());
    let running = receiver
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("starting the local audit receiver")?;
    let webhook = running.url("/k8s_audit");
    println!("demo: audit receiver listening on {webhook} (stands in for Sysdig / Falco)");

    let port = free_port()?;
    let mut handler = spawn_handler(port, &webhook)?;
    let base = format!("http://127.0.0.1:{port}");
    let ready = HostSim::new(&base).wait_ready(STARTUP_LIMIT).await;
    let ready = match ready {
        Ok(d) => d,
        Err(e) => {
            let _ = handler.kill().await;
            return Err(e);
        }
    };
    println!(
        "demo: handler started with FUNCTIONS_CUSTOMHANDLER_PORT={port}; answered GET / after {} ms",
        ready.as_millis()
    );

    let result = replay(&base, &options.replay).await;
    stop_handler(&mut handler).await;
    let report = result?;

    // What the input holds, computed independently of the handler.
    let (_, bodies) = options.replay.load()?;
    let expected = expected_tally(&bodies);
    let stats = receiver.stats();
    let events = receiver.events();
    println!(
        "demo: the receiver got {} POST(s) with {} event(s):",
        stats.batches, stats.events
    );
    for event in &events {
        println!("  {}", describe(event));
    }
    println!(
        "demo: input: {} Event Hub event(s), {} record(s): {} audit event(s), {} skipped by category, {} malformed record(s), {} malformed event(s)",
        expected.bodies,
        expected.records,
        expected.converted,
        expected.skipped_total(),
        expected.malformed_records,
        expected.malformed_bodies
    );
    println!(
        "demo: delivered {} of {} audit event(s) in {} POST(s); {} invocation(s), {} POST(s) to the handler; receiver refused {}, answered {} scripted failure(s)",
        stats.events,
        expected.converted,
        stats.batches,
        report.invocations,
        report.posts,
        stats.refused,
        stats.scripted_failures
    );
    running.stop().await;
    if stats.events != expected.converted || report.succeeded != report.invocations {
        bail!("the receiver did not get exactly the audit events of the input");
    }
    println!("demo: OK — every audit event arrived once, nothing else did");
    Ok(())
}

fn expected_tally(bodies: &[Vec<u8>]) -> ConvertTally {
    let categories: BTreeSet<String> = DEFAULT_CATEGORIES.split(',').map(str::to_owned).collect();
    let mut conversion = Conversion::default();
    // The demo's own check: silence the converter's warnings, the handler already printed them.
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    for (index, body) in bodies.iter().enumerate() {
        let origin = BodyOrigin {
            index,
            sequence_number: None,
        };
        convert_body(body, origin, &categories, &mut conversion);
    }
    conversion.tally
}

/// `stage verb resource namespace/name user code`, one line.
fn describe(event: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let obj = &event["objectRef"];
    let mut resource = s(&obj["resource"]);
    if let Some(sub) = obj["subresource"].as_str() {
        resource = format!("{resource}/{sub}");
    }
    let target = match (obj["namespace"].as_str(), obj["name"].as_str()) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_string(),
        (Some(ns), None) => format!("{ns}/*"),
        (None, None) => s(&event["requestURI"]),
    };
    format!(
        "{:<16} {:<7} {:<20} {:<36} {:<58} {}",
        s(&event["stage"]),
        s(&event["verb"]),
        resource,
        target,
        s(&event["user"]["username"]),
        event["responseStatus"]["code"]
    )
}

/// A port nobody listens on now, picked as the host picks one.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn spawn_handler(port: u16, webhook: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the handler binary")?;
    Command::new(exe)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("AUDIT_WEBHOOK_URL", webhook)
        .env("AUDIT_DELIVERY_DEADLINE", "20s")
        .env("AUDIT_RETRY_INITIAL_BACKOFF", "200ms")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the handler")
}

/// SIGTERM, as the host does on shutdown, then wait for a graceful exit.
async fn stop_handler(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled samples hold every case the demo claims to show.
    #[test]
    fn samples_cover_each_case() {
        let bodies = load_bodies(SAMPLES, 50).unwrap();
        let t = expected_tally(&bodies);
        assert_eq!(t.bodies, 3);
        assert_eq!(t.converted, 8);
        assert_eq!(t.skipped_total(), 2);
        assert_eq!(t.malformed_records, 1);
        assert_eq!(t.malformed_bodies, 1);
    }
}

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
/// webhook settings of `config`. Items that fail again are written to `out`.
///
/// # Errors
/// When the input cannot be read or the output written.
pub async fn resend(
    config: crate::Config,
    input: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<ResendReport> {
    use crate::deadletter::{from_json_lines, to_json_lines};
    use crate::routes::ClusterId;
    use std::sync::Arc;

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
        match crate::AuditEvent::parse(raw.get()) {
            Ok(event) => {
                let cluster = Arc::new(ClusterId::parse(item.cluster.as_deref().unwrap_or("")));
                events.push(
                    event
                        .with_cluster(cluster)
                        .with_sequence_number(item.sequence_number),
                );
            }
            Err(_) => {
                report.skipped += 1;
                left.push(item);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + config.delivery_deadline;
    let forwarder = crate::Forwarder::new(config)?;
    let mut dead_letters = Vec::new();
    let (routed, _) = forwarder.route(events, &mut dead_letters);
    let (delivery, _, poison) = forwarder.deliver(&routed, deadline).await;
    report.delivered = delivery.delivered_events;
    if delivery.failed_events > 0 {
        // Transient failures: keep the whole set for another try, minus nothing we can tell
        // apart here; receivers de-duplicate what did arrive.
        for events in &routed {
            for event in events {
                let item = crate::deadletter::DeadLetter::for_event(
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

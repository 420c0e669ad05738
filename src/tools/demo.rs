//! The end-to-end demo: the real handler binary, started as the Functions host starts it, fed
//! the bundled samples as host-shaped invocations, delivering to a real receiver.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

use super::hostsim::HostSim;
use super::receiver::{describe, Receiver, Scripted, DESCRIBE_HEADER};
use super::replay::{replay, ReplayOptions};
use crate::azure::{convert_body, BodyOrigin, Conversion, ConvertTally, DEFAULT_CATEGORIES};

/// How the host would wait for a handler to come up (`customHandler.initializationTimeout`).
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

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

    if options.replay.input.is_none() {
        println!(
        "demo: the samples hold a truncated record, an event body that is not JSON and both audit \
         categories of one cluster on purpose: the three warnings about them below are expected \
         (the first two become dead letters)"
        );
    }
    let replay_options = ReplayOptions {
        echo_logs: false,
        ..options.replay.clone()
    };
    let result = replay(&base, &replay_options).await;
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
    println!("  {DESCRIBE_HEADER}");
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
    use crate::tools::hostsim::load_bodies;
    use crate::tools::SAMPLES;

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

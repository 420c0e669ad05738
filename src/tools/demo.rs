//! The end-to-end demo: the real handler binary, started as the Functions host starts it, fed
//! the bundled samples as host-shaped invocations, delivering to a real receiver. It checks
//! what arrived against what the samples hold, read here without the handler's converter, and
//! ends with the pipeline drawn with its counts.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::demo_check::Expectation;
use super::demo_view::{fit, print_picture, row, Style, HEADER};
use super::describe::columns;
use super::hostsim::HostSim;
use super::receiver::{Receiver, Scripted};
use super::replay::{replay, ReplayOptions, ReplayReport};

/// How the host would wait for a handler to come up (`customHandler.initializationTimeout`).
const STARTUP_LIMIT: Duration = Duration::from_secs(30);
use super::demo_view::WIDTH;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// What to replay.
    pub replay: ReplayOptions,
    /// Canned receiver failures to show retries (`503,503`).
    pub script: Vec<Scripted>,
}

/// Runs the demo. Returns an error when what the receiver got differs from what the input
/// holds: an audit Event missing, arriving twice or changed, or anything else arriving.
///
/// # Errors
/// When a step fails or the check finds a difference.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let style = Style::detect();
    let receiver = Receiver::new().keep_raw();
    receiver.push_script(options.script.clone());
    let running = receiver
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("starting the local audit receiver")?;
    let webhook = running.url("/k8s_audit");
    outln!("demo: audit receiver listening on {webhook} (stands in for Sysdig / Falco)");
    let samples = options.replay.input.is_none();
    let (report, relayed) = run_handler(&options, &webhook, samples, style).await?;
    let (_, bodies) = options.replay.load()?;
    let expected = Expectation::of(&bodies);
    let stats = receiver.stats();
    running.stop().await;

    outln!();
    if stats.scripted_failures > 0 {
        outln!(
            "demo: the receiver answered {} scripted failure(s) first; the handler retried",
            stats.scripted_failures
        );
    }
    outln!(
        "demo: the receiver took {} Event(s) in {} POST(s):",
        stats.events,
        stats.batches
    );
    outln!("  {}", style.bold(&row(&HEADER.map(str::to_string))));
    for event in receiver.events() {
        outln!("  {}", row(&columns(&event)));
    }
    let mut problems = expected.compare(&receiver.raw_events());
    if report.succeeded != report.invocations {
        problems.push(format!(
            "{} of {} invocation(s) failed",
            report.invocations - report.succeeded,
            report.invocations
        ));
    }
    // A script's failures make the handler warn about its retries: expected too.
    if samples && options.script.is_empty() && relayed.unexpected_warnings > 0 {
        problems.push(format!(
            "{} warning(s) nobody expected",
            relayed.unexpected_warnings
        ));
    }
    outln!();
    print_picture(&expected, &report, stats.events, style);
    outln!();
    if !problems.is_empty() {
        for problem in &problems {
            outln!("demo: {} {problem}", style.red("FAILED"));
        }
        bail!("the receiver did not get exactly the audit Events of the input, once each");
    }
    outln!(
        "demo: {} the receiver got each of the {} audit Event(s) of the input once, byte for byte,",
        style.green("OK"),
        expected.events.len()
    );
    outln!("      and nothing else");
    super::demo_alert::print_alert_card(&bodies)
}

/// Starts the handler as the host does, replays the input to it, stops it; its log lines are
/// relayed, the expected warnings tagged.
async fn run_handler(
    options: &DemoOptions,
    webhook: &str,
    samples: bool,
    style: Style,
) -> anyhow::Result<(ReplayReport, Relayed)> {
    let port = free_port()?;
    let mut handler = spawn_handler(port, webhook)?;
    let expected = Expected {
        samples,
        retries: !options.script.is_empty(),
    };
    let relay = relay_logs(&mut handler, expected, style);
    let base = format!("http://127.0.0.1:{port}");
    let ready = match HostSim::new(&base).wait_ready(STARTUP_LIMIT).await {
        Ok(d) => d,
        Err(e) => {
            let _ = handler.kill().await;
            return Err(e);
        }
    };
    outln!(
        "demo: handler started with FUNCTIONS_CUSTOMHANDLER_PORT={port}; answered GET / after {} ms",
        ready.as_millis()
    );
    outln!("demo: AUDIT_CLUSTER_ANNOTATIONS=off: Events arrive as the API server wrote them");
    if samples {
        outln!("demo: the samples hold, on purpose, a truncated record, an event body that is not");
        outln!(
            "      JSON and one cluster streaming both audit categories: the handler warns about"
        );
        outln!("      each, and the demo tags those three warnings as expected");
    }
    let replay_options = ReplayOptions {
        echo_logs: false,
        ..options.replay.clone()
    };
    let result = replay(&base, &replay_options).await;
    stop_handler(&mut handler).await;
    let relayed = relay.await.unwrap_or_default();
    Ok((result?, relayed))
}

/// Which of the handler's warnings the demo expects.
#[derive(Debug, Clone, Copy)]
struct Expected {
    /// The bundled samples' three.
    samples: bool,
    /// Retries after the receiver's scripted failures (`--script`).
    retries: bool,
}

/// What the relay of the handler's log saw.
#[derive(Debug, Default, Clone, Copy)]
struct Relayed {
    unexpected_warnings: u64,
}

/// Relays the handler's standard output and error line by line until it exits.
fn relay_logs(
    handler: &mut Child,
    expected: Expected,
    style: Style,
) -> tokio::task::JoinHandle<Relayed> {
    let out = handler.stdout.take();
    let err = handler.stderr.take();
    tokio::spawn(async move {
        let (a, b) = tokio::join!(relay(out, expected, style), relay(err, expected, style));
        Relayed {
            unexpected_warnings: a + b,
        }
    })
}

/// Prints each line of `stream` as [`shown`] says; returns the warnings not expected.
async fn relay(stream: Option<impl AsyncRead + Unpin>, expected: Expected, style: Style) -> u64 {
    let Some(stream) = stream else { return 0 };
    let mut lines = BufReader::new(stream).lines();
    let mut unexpected = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        let (text, tagged) = shown(&line, expected, style);
        if line.contains(" WARN ") && !tagged {
            unexpected += 1;
        }
        outln!("{text}");
    }
    unexpected
}

/// Why each warning the samples cause is expected: (what the message contains, the reason).
const EXPECTED_WARNINGS: [(&str, &str); 3] = [
    (
        "not a diagnostic-settings envelope",
        "the sample event body cut short in transit: a dead letter",
    ),
    (
        "malformed diagnostic records",
        "the sample's truncated record: its event is a dead letter",
    ),
    (
        "streams both kube-audit and kube-audit-admin",
        "the sample cluster streams both categories; each Event is sent once",
    ),
];

/// One handler log line as the demo shows it, and whether it is an expected warning. The
/// samples' warnings become their first sentence and the reason they are expected; the
/// summary line keeps its counts, other information its first sentence; warnings and errors
/// nobody expected are shown whole.
fn shown(line: &str, expected: Expected, style: Style) -> (String, bool) {
    let Some((level, message)) = parse_log_line(line) else {
        return (line.to_string(), false);
    };
    let sentence = message
        .split(". ")
        .next()
        .unwrap_or(message)
        .trim_end_matches('.');
    let retry = (
        "retrying",
        "the receiver's scripted failure (--script): the handler retries",
    );
    let why = EXPECTED_WARNINGS
        .iter()
        .filter(|_| expected.samples)
        .chain(std::iter::once(&retry).filter(|_| expected.retries))
        .find(|(m, _)| message.contains(m))
        .map(|(_, why)| why);
    if level == "WARN" {
        if let Some(why) = why {
            let head = fit(&format!("  WARN (expected) {sentence}"), WIDTH);
            return (
                format!(
                    "{}\n{}",
                    style.yellow(&head),
                    fit(&format!("                  {why}"), WIDTH)
                ),
                true,
            );
        }
    }
    if level == "INFO" && message.contains("Invocation delivered") {
        let counts: Vec<&str> = ["events=", "records=", "delivered=", "dead_lettered="]
            .iter()
            .filter_map(|key| {
                message
                    .split_whitespace()
                    .find(|w| w.starts_with(key) && !w.ends_with(')'))
            })
            .collect();
        let text = format!("  handler: Invocation delivered: {}", counts.join(" "));
        return (fit(&text, WIDTH), false);
    }
    if level == "INFO" {
        return (fit(&format!("  handler: {sentence}"), WIDTH), false);
    }
    (line.to_string(), false)
}

/// `(level, the rest)` of a line in the handler's log format: `<time> <LEVEL> <message>`, with
/// the span (`invocation{…}: `) left out.
fn parse_log_line(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.splitn(2, char::is_whitespace);
    let time = parts.next()?;
    if !time.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let rest = parts.next()?.trim_start();
    let (level, message) = rest.split_once(' ')?;
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return None;
    }
    let message = message.trim_start();
    let message = match message.split_once("}: ") {
        Some((span, after)) if !span.contains(' ') || span.starts_with("invocation{") => after,
        _ => message,
    };
    Some((level, message))
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
        .env("AUDIT_CLUSTER_ANNOTATIONS", "off")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

    const SAMPLES_ONLY: Expected = Expected {
        samples: true,
        retries: false,
    };
    const NONE: Expected = Expected {
        samples: false,
        retries: false,
    };

    /// Expected warnings are tagged and shortened to their first sentence, with no fix for
    /// a sample cluster; other lines are shown whole.
    #[test]
    fn expected_warnings_are_tagged() {
        let style = Style { colour: false };
        let line = "2026-11-23T07:00:00.000001Z  WARN This cluster streams both kube-audit and \
                    kube-audit-admin, so every Event but get and list arrives twice. Fix: stream \
                    one category. cluster=AKS-DEMO";
        let (text, expected) = shown(line, SAMPLES_ONLY, style);
        assert!(expected);
        assert!(
            text.starts_with("  WARN (expected) This cluster streams both"),
            "{text}"
        );
        assert!(!text.contains("Fix"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        let other = "2026-11-23T07:00:00.000001Z  WARN Something else happened. x=1";
        assert_eq!(
            shown(other, SAMPLES_ONLY, style),
            (other.to_string(), false)
        );
        assert!(
            !shown(line, NONE, style).1,
            "only the bundled samples' warnings are expected"
        );
    }
}

//! The `aks-audit-forwarder` binary: the Functions custom handler (run without arguments, as the
//! host runs it), plus the `demo`, `receive` and `replay` tools.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use aks_audit_forwarder::tools::demo::{self, DemoOptions};
use aks_audit_forwarder::tools::hostsim::Shape;
use aks_audit_forwarder::tools::receiver::{Receiver, Scripted};
use aks_audit_forwarder::tools::replay::{self, ReplayOptions};
use aks_audit_forwarder::tools::resend;
use aks_audit_forwarder::{host, telemetry, Config, Forwarder};

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve Functions host invocations (the default without arguments).
    Serve,
    /// Run the whole path locally: a receiver, the handler as the host starts it, and the
    /// bundled sample AKS records replayed as Event Hub invocations.
    Demo {
        #[command(flatten)]
        replay: ReplayArgs,
        /// Canned receiver failures first, to watch retries: e.g. `503,503` or `429:1`.
        #[arg(long, value_delimiter = ',')]
        script: Vec<Scripted>,
    },
    /// Run an audit webhook receiver and print what arrives.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7765")]
        listen: SocketAddr,
        /// Append every received Event to this file as JSON lines.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Canned failures to answer first: e.g. `503,429:2,sleep:40s`.
        #[arg(long, value_delimiter = ',')]
        script: Vec<Scripted>,
    },
    /// Send the Events of dead-letter files again, once the cause is fixed. Uses the same
    /// AUDIT_* settings as the handler (AUDIT_WEBHOOK_URL or AUDIT_ROUTES, TLS, credentials).
    Resend {
        /// A dead-letter file (JSON lines), as written to the audit-deadletter container.
        #[arg(long)]
        input: PathBuf,
        /// Where items that still cannot be delivered are written.
        #[arg(long, default_value = "deadletter-remaining.jsonl")]
        out: PathBuf,
    },
    /// Send events to a running handler as the Functions host would.
    Replay {
        /// The handler's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        handler: String,
        #[command(flatten)]
        replay: ReplayArgs,
    },
}

#[derive(Args)]
struct ReplayArgs {
    /// Events to send: a JSON array of Event Hub event bodies, one envelope, or JSON lines of
    /// records (a diagnostic-settings `PT1H.json` blob). Default: the bundled samples.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The trigger encoding to simulate.
    #[arg(long, value_enum, default_value = "many-binary")]
    shape: Shape,
    /// Event Hub events per invocation (host.json `maxEventBatchSize`).
    #[arg(long, default_value_t = 100)]
    events_per_invocation: usize,
    /// Records per Event Hub event when the input is JSON lines of records.
    #[arg(long, default_value_t = 50)]
    records_per_event: usize,
    /// Times a failed invocation is sent again, as a retry policy would.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Delay between those retries.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    retry_delay: Duration,
}

impl From<ReplayArgs> for ReplayOptions {
    fn from(a: ReplayArgs) -> Self {
        Self {
            input: a.input,
            shape: a.shape,
            events_per_invocation: a.events_per_invocation,
            records_per_event: a.records_per_event,
            retries: a.retries,
            retry_delay: a.retry_delay,
        }
    }
}

/// Runs the command; an error is printed as its chain of causes (`error: cause: …`), never
/// with a backtrace (users see that when `RUST_BACKTRACE` is set), and the exit code is 1.
#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve().await,
        Cmd::Demo { replay, script } => {
            demo::run(DemoOptions {
                replay: replay.into(),
                script,
            })
            .await
        }
        Cmd::Receive {
            listen,
            out,
            script,
        } => receive(listen, out, script).await,
        Cmd::Resend { input, out } => {
            let config = Config::from_env().context("invalid configuration")?;
            let report = resend::resend(config.forwarder, &input, &out).await?;
            println!(
                "resend: {} item(s) read, {} delivered, {} malformed skipped, {} remaining{}",
                report.read,
                report.delivered,
                report.skipped,
                report.remaining,
                if report.remaining > 0 {
                    format!(" (written to {})", out.display())
                } else {
                    String::new()
                }
            );
            anyhow::ensure!(report.remaining == 0, "some items were not delivered");
            Ok(())
        }
        Cmd::Replay { handler, replay } => {
            let report = replay::replay(&handler, &replay.into()).await?;
            println!(
                "replay: {} of {} invocation(s) succeeded ({} POSTs)",
                report.succeeded, report.invocations, report.posts
            );
            anyhow::ensure!(
                report.succeeded == report.invocations,
                "some invocations failed"
            );
            Ok(())
        }
    }
}

/// The port the host gave us.
fn port_from_env() -> anyhow::Result<u16> {
    for var in ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"] {
        if let Ok(value) = std::env::var(var) {
            return value.trim().parse::<u16>().with_context(|| {
                format!("{var}={value:?} is invalid: expected a TCP port number")
            });
        }
    }
    anyhow::bail!(
        "FUNCTIONS_CUSTOMHANDLER_PORT is not set: the Functions host sets it when it starts the \
         handler; to try the handler locally, run `aks-audit-forwarder demo`"
    )
}

async fn serve() -> anyhow::Result<()> {
    let port = port_from_env()?;
    let config = Config::from_env().context("invalid configuration")?;
    let forwarder = Forwarder::new(config.forwarder)?;
    // The host always connects to 127.0.0.1; nothing else should reach the handler.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    tracing::info!(
        port,
        routes = %forwarder.describe_routes(),
        policy = forwarder.settings().policy.is_some(),
        "Handler ready."
    );
    host::serve(listener, forwarder, config.host, shutdown_signal()).await?;
    tracing::info!("Handler stopped.");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("Shutting down: finishing in-flight invocations.");
}

async fn receive(
    listen: SocketAddr,
    out: Option<PathBuf>,
    script: Vec<Scripted>,
) -> anyhow::Result<()> {
    let mut receiver = Receiver::new().verbose();
    if let Some(path) = &out {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        receiver = receiver.with_output(file);
    }
    receiver.push_script(script);
    let running = receiver
        .start(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    println!(
        "receiver: listening on {} (POST any path: /k8s_audit, /k8s-audit); Ctrl-C to stop",
        running.url("")
    );
    shutdown_signal().await;
    let stats = running.receiver.stats();
    running.stop().await;
    println!(
        "receiver: {} POST(s), {} event(s), {} duplicate(s), {} refused",
        stats.batches, stats.events, stats.duplicates, stats.refused
    );
    Ok(())
}

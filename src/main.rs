//! The `aks-audit-forwarder` binary: the Functions custom handler (run without arguments, as the
//! host runs it), plus the tools: `demo`, `receive`, `replay`, `resend`, `backfill`,
//! `check-config` and `convert`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use aks_audit_forwarder::config::vars;
use aks_audit_forwarder::tools::backfill::{self, BackfillArgs};
use aks_audit_forwarder::tools::check_config::{self, CheckConfigArgs};
use aks_audit_forwarder::tools::convert::{self, ConvertArgs};
use aks_audit_forwarder::tools::demo::{self, DemoOptions};
use aks_audit_forwarder::tools::hostsim::Shape;
use aks_audit_forwarder::tools::receiver::{Receiver, Scripted};
use aks_audit_forwarder::tools::replay::{self, ReplayOptions};
use aks_audit_forwarder::tools::resend::{self, ResendArgs};
use aks_audit_forwarder::{host, telemetry, Config, Forwarder};

/// The environment section of `--help`.
const ENVIRONMENT: &str = "\
Environment (the handler, and the tools that deliver: resend, backfill, check-config):
  AUDIT_WEBHOOK_URL             where Events go, e.g. http://sysdig-agent.sysdig:7765/k8s_audit
  AUDIT_ROUTES                  per-cluster routes, instead of AUDIT_WEBHOOK_URL
  AUDIT_POLICY_FILE             an audit.k8s.io/v1 Policy to apply (optional)
  FUNCTIONS_CUSTOMHANDLER_PORT  the port to serve on; the Functions host sets it
One of AUDIT_WEBHOOK_URL and AUDIT_ROUTES is required. Every AUDIT_* setting, with its
default: docs/configuration.md. `aks-audit-forwarder check-config` validates them.";

#[derive(Parser)]
#[command(version, about, long_about = None, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve Functions host invocations (the default without arguments).
    #[command(after_help = ENVIRONMENT)]
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
    /// Run an audit webhook receiver and print one line per Event that arrives.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7765")]
        listen: SocketAddr,
        /// Append every received Event to this file as JSON lines, exact bytes.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print only the counts when stopped, not a line per Event.
        #[arg(long)]
        quiet: bool,
        /// Canned failures to answer first: e.g. `503,429:2,sleep:40s`.
        #[arg(long, value_delimiter = ',')]
        script: Vec<Scripted>,
    },
    /// Send the Events of dead-letter files again, once the cause is fixed. Uses the same
    /// AUDIT_* settings as the handler (AUDIT_WEBHOOK_URL or AUDIT_ROUTES, TLS, credentials).
    #[command(after_help = ENVIRONMENT)]
    Resend(ResendArgs),
    /// Send events to a running handler as the Functions host would.
    Replay {
        /// The handler's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        handler: String,
        #[command(flatten)]
        replay: ReplayArgs,
        /// Append the dead letters the handler returns to this file (JSON lines), for `resend`.
        #[arg(long)]
        deadletter_out: Option<PathBuf>,
    },
    /// Deliver the Events of a storage-account archive of AKS diagnostic logs (PT1H.json
    /// blobs) through the handler's pipeline. Resumable with --checkpoint.
    #[command(after_help = ENVIRONMENT)]
    Backfill(BackfillArgs),
    /// Validate the AUDIT_* settings as the handler does, print them with secrets masked,
    /// and with --probe send an empty EventList to each webhook.
    #[command(after_help = ENVIRONMENT)]
    CheckConfig(CheckConfigArgs),
    /// Turn diagnostic files into audit Events (JSON lines or an EventList), applying a Policy.
    Convert(ConvertArgs),
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
            deadletter_out: None,
            echo_logs: true,
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
            quiet,
            script,
        } => receive(listen, out, quiet, script).await,
        Cmd::Resend(args) => {
            let config = Config::from_env().context("invalid configuration")?;
            let report = resend::run(&args, config.forwarder).await?;
            println!("{}", report.summary(&args));
            let failing = report.remaining.saturating_sub(report.skipped);
            anyhow::ensure!(
                report.remaining == 0,
                "{} item(s) remain: {} without an Event (malformed records or event bodies, \
                 which resend cannot send: their `raw` is the text AKS wrote, for a person to \
                 read), {failing} Event(s) still not delivered (their `reason` says why; run \
                 resend again on what remains once the cause is fixed)",
                report.remaining,
                report.skipped
            );
            Ok(())
        }
        Cmd::Replay {
            handler,
            replay,
            deadletter_out,
        } => {
            let options = ReplayOptions {
                deadletter_out,
                ..replay.into()
            };
            let report = replay::replay(&handler, &options).await?;
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
        Cmd::Backfill(args) => {
            let config = if args.dry_run && !webhook_configured() {
                // Nothing is sent in a dry run: count with the other settings as they are.
                let mut env: Vec<(String, String)> = std::env::vars().collect();
                env.push((
                    vars::WEBHOOK_URL.into(),
                    "http://127.0.0.1:9/dry-run".into(),
                ));
                Config::from_vars(env)
            } else {
                Config::from_env()
            }
            .context("invalid configuration")?;
            let report = backfill::run(&args, config.forwarder).await?;
            for (hour, events) in &report.per_hour {
                println!("backfill: {hour}  {events} Event(s)");
            }
            println!("{}", report.summary(&args));
            anyhow::ensure!(!report.interrupted, "interrupted");
            Ok(())
        }
        Cmd::CheckConfig(args) => {
            let from_env_without_webhook = args.settings.is_none() && !webhook_configured();
            check_config::run(&args).await.map_err(|e| {
                if from_env_without_webhook {
                    anyhow::anyhow!(
                        "{e:#} (check-config reads the environment; to check a settings file \
                         instead: aks-audit-forwarder check-config --settings local.settings.json)"
                    )
                } else {
                    e
                }
            })
        }
        Cmd::Convert(args) => {
            let report = convert::run(&args)?;
            eprintln!(
                "convert: {} record(s): {} Event(s) written, {} dropped by the Policy, {} unreadable by the Policy, {} other category, {} malformed record(s), {} malformed event(s)",
                report.tally.records,
                report.written,
                report.policy_dropped,
                report.policy_unreadable,
                report.tally.skipped_total(),
                report.tally.malformed_records,
                report.tally.malformed_bodies
            );
            Ok(())
        }
    }
}

/// Whether a webhook is configured at all.
fn webhook_configured() -> bool {
    [vars::WEBHOOK_URL, vars::ROUTES]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
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
    let stopping = async {
        shutdown_signal().await;
        tracing::info!("Shutting down: finishing in-flight invocations.");
    };
    host::serve(listener, forwarder, config.host, stopping).await?;
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
}

/// Events `receive` keeps in memory: counts and the last few only, however much arrives.
const RECEIVE_KEEP: usize = 5;

async fn receive(
    listen: SocketAddr,
    out: Option<PathBuf>,
    quiet: bool,
    script: Vec<Scripted>,
) -> anyhow::Result<()> {
    let mut receiver = Receiver::new().keep_last(RECEIVE_KEEP);
    if !quiet {
        receiver = receiver.print_events();
    }
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
    if !quiet {
        println!("{}", aks_audit_forwarder::tools::receiver::DESCRIBE_HEADER);
    }
    shutdown_signal().await;
    println!("receiver: stopping");
    running.stop().await;
    let stats = receiver_stats_after_flush(&receiver, out.as_deref())?;
    println!(
        "receiver: {} POST(s), {} event(s), {} duplicate(s), {} refused",
        stats.batches, stats.events, stats.duplicates, stats.refused
    );
    anyhow::ensure!(
        stats.unwritten == 0,
        "{} POST(s) were answered 500 because the --out file could not be written",
        stats.unwritten
    );
    Ok(())
}

fn receiver_stats_after_flush(
    receiver: &Receiver,
    out: Option<&std::path::Path>,
) -> anyhow::Result<aks_audit_forwarder::tools::receiver::ReceiverStats> {
    if let Some(path) = out {
        receiver
            .flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(receiver.stats())
}

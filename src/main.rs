//! The `aks-audit-forwarder` binary: the Functions custom handler (run without arguments, as the
//! host runs it), plus the tools: `demo`, `receive`, `replay`, `resend`, `backfill`,
//! `check-config` and `convert`.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use aks_audit_forwarder::tools::backfill::BackfillArgs;
use aks_audit_forwarder::tools::check_config::CheckConfigArgs;
use aks_audit_forwarder::tools::cli::{self, DemoArgs, ReceiveArgs, ReplayCommandArgs};
use aks_audit_forwarder::tools::convert::ConvertArgs;
use aks_audit_forwarder::tools::resend::ResendArgs;
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
    Demo(DemoArgs),
    /// Run an audit webhook receiver and print one line per Event that arrives.
    Receive(ReceiveArgs),
    /// Send the Events of dead-letter files again, once the cause is fixed. Uses the same
    /// AUDIT_* settings as the handler (AUDIT_WEBHOOK_URL or AUDIT_ROUTES, TLS, credentials).
    #[command(after_help = ENVIRONMENT)]
    Resend(ResendArgs),
    /// Send events to a running handler as the Functions host would.
    Replay(ReplayCommandArgs),
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

/// Each command's entry: the handler, or a tool's entry in `tools::cli`.
async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve().await,
        Cmd::Demo(args) => cli::demo(args).await,
        Cmd::Receive(args) => cli::receive(args, shutdown_signal()).await,
        Cmd::Resend(args) => cli::resend(args).await,
        Cmd::Replay(args) => cli::replay(args).await,
        Cmd::Backfill(args) => cli::backfill(args).await,
        Cmd::CheckConfig(args) => cli::check_config(args).await,
        Cmd::Convert(args) => cli::convert(&args),
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

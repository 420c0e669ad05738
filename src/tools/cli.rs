//! The command line of each tool: its arguments where they are not the tool's own, and its
//! entry, which reads the configuration the tool needs, runs it, prints its report and turns
//! the outcome into the exit status. `main.rs` calls one entry per command.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::backfill::{self, BackfillArgs};
use super::check_config::{self, CheckConfigArgs};
use super::convert::{self, ConvertArgs};
use super::demo::{self, DemoOptions};
use super::hostsim::Shape;
use super::receiver::{Receiver, ReceiverStats, Scripted, DESCRIBE_HEADER};
use super::replay::{self, ReplayOptions};
use super::resend::{self, ResendArgs};
use crate::config::{self, parse_duration_within, Config, Purpose};

/// What to replay and how: shared by `demo` and `replay`.
#[derive(Args)]
pub struct ReplayArgs {
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
    /// Delay between those retries (at most 10m).
    #[arg(long, default_value = "1s", value_parser = retry_delay)]
    retry_delay: Duration,
}

/// `--retry-delay`: zero to ten minutes, as the host's `delayInterval` allows at most.
fn retry_delay(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, config::vars::MAX_SETTING_DURATION)
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

/// Options of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    replay: ReplayArgs,
    /// Canned receiver failures first, to watch retries: e.g. `503,503` or `429:1`.
    #[arg(long, value_delimiter = ',')]
    script: Vec<Scripted>,
}

/// Options of `receive`.
#[derive(Args)]
pub struct ReceiveArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7765")]
    listen: SocketAddr,
    /// Append every received Event to this file as JSON lines, exact bytes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print only the counts when stopped, not a line per Event.
    #[arg(long)]
    quiet: bool,
    /// Canned answers to serve first, in order: a status (`503`), a status with Retry-After in
    /// seconds (`429:2`), or a delay before normal service (`sleep:40s`).
    #[arg(long, value_delimiter = ',')]
    script: Vec<Scripted>,
    /// Refuse with 400, for good, every POST holding an Event with this auditID (repeatable or
    /// comma-separated), as Sysdig refuses a payload with an Event it cannot use: the forwarder
    /// isolates that Event and dead-letters it, which makes dead letters to try `resend` on.
    #[arg(long, value_delimiter = ',', value_name = "AUDIT_ID")]
    refuse: Vec<String>,
    /// Hold every POST to a receiver's limits: `falco` refuses bodies over 12 MiB with 400
    /// and counts the Events Falco's k8saudit plugin would drop after answering 200.
    #[arg(long, value_parser = ["falco"])]
    profile: Option<String>,
}

/// Options of `replay`.
#[derive(Args)]
pub struct ReplayCommandArgs {
    /// The handler's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    handler: String,
    #[command(flatten)]
    replay: ReplayArgs,
    /// Append the dead letters the handler returns to this file (JSON lines), for `resend`.
    #[arg(long)]
    deadletter_out: Option<PathBuf>,
}

/// `demo`.
///
/// # Errors
/// As [`demo::run`].
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    demo::run(DemoOptions {
        replay: args.replay.into(),
        script: args.script,
    })
    .await
}

/// `resend`: fails while items remain, saying which kind and why.
///
/// # Errors
/// An invalid configuration, a failed resend, or items left.
pub async fn resend(args: ResendArgs) -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    let report = resend::run(&args, config.forwarder).await?;
    outln!("{}", report.summary(&args));
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

/// `replay`: fails when an invocation did not finally succeed.
///
/// # Errors
/// As [`replay::replay`], or failed invocations.
pub async fn replay(args: ReplayCommandArgs) -> anyhow::Result<()> {
    let options = ReplayOptions {
        deadletter_out: args.deadletter_out,
        ..args.replay.into()
    };
    let report = replay::replay(&args.handler, &options).await?;
    outln!(
        "replay: {} of {} invocation(s) succeeded ({} POSTs)",
        report.succeeded,
        report.invocations,
        report.posts
    );
    anyhow::ensure!(
        report.succeeded == report.invocations,
        "some invocations failed"
    );
    Ok(())
}

/// `backfill`. A dry run sends nothing, so it needs no webhook ([`Purpose::Count`]).
///
/// # Errors
/// An invalid configuration, a failed backfill, or an interruption.
pub async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let purpose = if args.dry_run {
        Purpose::Count
    } else {
        Purpose::Deliver
    };
    let config = Config::from_env_for(purpose).context("invalid configuration")?;
    let report = backfill::run(&args, config.forwarder).await?;
    for (hour, events) in &report.per_hour {
        outln!("backfill: {hour}  {events} Event(s)");
    }
    outln!("{}", report.summary(&args));
    anyhow::ensure!(!report.interrupted, "interrupted");
    Ok(())
}

/// `check-config`; read from the environment with no webhook set, its error says how to check
/// a settings file instead.
///
/// # Errors
/// As [`check_config::run`].
pub async fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let from_env_without_webhook = args.settings.is_none() && !config::webhook_in_env();
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

/// `convert`: the tally on standard error, the Events on standard output or a file. When the
/// reader of standard output stops early (`convert … | head`), it stops quietly and succeeds,
/// as `cat` or `grep` would: convert opens no socket, so a closed pipe can only be its output.
///
/// # Errors
/// As [`convert::run`].
pub fn convert(args: &ConvertArgs) -> anyhow::Result<()> {
    let report = match convert::run(args) {
        Ok(report) => report,
        Err(e) if args.out.is_none() && closed_pipe(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
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

/// Whether `error` was caused by writing to a pipe whose reader has gone.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(super::output::is_closed_pipe)
    })
}

/// Events `receive` keeps in memory: counts and the last few only, however much arrives.
const RECEIVE_KEEP: usize = 5;

/// `receive`: a receiver until `stop` completes (Ctrl-C or SIGTERM), then its counts.
///
/// # Errors
/// When it cannot listen, or the `--out` file cannot be opened or written.
pub async fn receive(args: ReceiveArgs, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut receiver = Receiver::new().keep_last(RECEIVE_KEEP);
    let falco = args.profile.is_some();
    if falco {
        receiver = receiver.with_falco_limits(Default::default());
    }
    if !args.quiet {
        receiver = receiver.print_events();
    }
    if let Some(path) = &args.out {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        receiver = receiver.with_output(file);
    }
    receiver.push_script(args.script);
    receiver.refuse_audit_ids(args.refuse);
    let listen = args.listen;
    let running = receiver
        .start(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    outln!(
        "receiver: listening on {} (POST any path: /k8s_audit, /k8s-audit); Ctrl-C to stop",
        running.url("")
    );
    if !args.quiet {
        outln!("{DESCRIBE_HEADER}");
    }
    stop.await;
    outln!("receiver: stopping");
    running.stop().await;
    let stats = stats_after_flush(&receiver, args.out.as_deref())?;
    outln!(
        "receiver: {} POST(s), {} event(s), {} duplicate(s), {} refused, {} scripted answer(s)",
        stats.batches,
        stats.events,
        stats.duplicates,
        stats.refused,
        stats.scripted_failures
    );
    if falco {
        outln!(
            "receiver: Falco would drop {} event(s); largest event as Falco measures it: {} bytes; largest body: {} bytes",
            stats.falco_dropped, stats.falco_largest_event, stats.largest_body
        );
    }
    anyhow::ensure!(
        stats.unwritten == 0,
        "{} POST(s) were answered 500 because the --out file could not be written",
        stats.unwritten
    );
    Ok(())
}

fn stats_after_flush(receiver: &Receiver, out: Option<&Path>) -> anyhow::Result<ReceiverStats> {
    if let Some(path) = out {
        receiver
            .flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(receiver.stats())
}

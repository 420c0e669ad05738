//! The `replay` command: send events from a file (or the bundled samples) to a running handler
//! as the Functions host would, with a retry policy's retries.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::hostsim::{build_request, load_bodies, Answer, HostSim, Shape, SimPartition};
use super::SAMPLES;
use crate::host::FUNCTION_NAME;

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
    /// Where to append the dead letters the handler returns in `Outputs.deadletter` (what
    /// the host would write to the dead-letter container), ready for `resend --input`.
    pub deadletter_out: Option<PathBuf>,
    /// Print the log lines of each answer (the demo does not: the handler it started prints
    /// them itself).
    pub echo_logs: bool,
}

impl ReplayOptions {
    pub(super) fn load(&self) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
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
    /// Dead letters the handler returned for successful invocations.
    pub dead_letters: u64,
}

/// Checks that `handler` is an http(s) URL, with the fix when it is not.
///
/// # Errors
/// When it is not.
pub fn check_handler_url(handler: &str) -> anyhow::Result<()> {
    match url::Url::parse(handler) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => bail!(
            "--handler {handler:?} is not an http URL: add http:// (for example http://{})",
            handler.trim_start_matches("//")
        ),
    }
}

/// Sends the input to the handler at `handler` as host-shaped invocations, printing each
/// answer's status (and log lines with `echo_logs`). A failed invocation, or one that could
/// not reach the handler, is sent again up to `retries` times, as a retry policy would.
///
/// # Errors
/// When `handler` is not an http URL, the input cannot be read, the handler cannot be
/// reached after every retry, or the dead letters cannot be written.
pub async fn replay(handler: &str, options: &ReplayOptions) -> anyhow::Result<ReplayReport> {
    check_handler_url(handler)?;
    let (name, bodies) = options.load()?;
    let host = HostSim::new(handler);
    let per = if options.shape.is_single() {
        1
    } else {
        options.events_per_invocation.max(1)
    };
    outln!(
        "replay: sending {} event(s) from {name} to {handler}/{FUNCTION_NAME} as {:?} invocations of up to {per}",
        bodies.len(),
        options.shape
    );
    let mut deadletter_out = match &options.deadletter_out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => None,
    };
    let mut partition = SimPartition::new("0");
    let mut report = ReplayReport::default();
    for chunk in bodies.chunks(per) {
        let answers = invoke_with_retries(&host, options, chunk, &mut partition).await?;
        report.invocations += 1;
        report.posts += answers.len() as u64;
        for answer in &answers {
            let lines = answer
                .result
                .as_ref()
                .filter(|_| options.echo_logs)
                .map(|r| r.logs.join(" | "))
                .unwrap_or_default();
            let error = answer
                .result
                .as_ref()
                .and_then(|r| r.error.clone())
                .unwrap_or_default();
            outln!("replay: handler answered {} {lines}{error}", answer.status);
        }
        let Some(last) = answers.last().filter(|a| a.is_success()) else {
            continue;
        };
        report.succeeded += 1;
        // The host writes output bindings only for a successful invocation.
        let dead = last
            .result
            .as_ref()
            .and_then(|r| r.outputs.get("deadletter"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let count = dead.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        if count == 0 {
            continue;
        }
        report.dead_letters += count;
        match (&mut deadletter_out, &options.deadletter_out) {
            (Some(file), Some(path)) => {
                file.write_all(dead.as_bytes())
                    .and_then(|()| if dead.ends_with('\n') { Ok(()) } else { file.write_all(b"\n") })
                    .with_context(|| format!("writing {}", path.display()))?;
                outln!("replay: {count} dead letter(s) appended to {}", path.display());
            }
            _ => outln!(
                "replay: {count} dead letter(s) returned in Outputs.deadletter (the host writes them to the dead-letter container; --deadletter-out FILE keeps them)"
            ),
        }
    }
    Ok(report)
}

/// One invocation with a retry policy's retries: a failed answer or a connection error is
/// retried after `retry_delay`, `retries` times at most.
async fn invoke_with_retries(
    host: &HostSim,
    options: &ReplayOptions,
    bodies: &[Vec<u8>],
    partition: &mut SimPartition,
) -> anyhow::Result<Vec<Answer>> {
    let start = partition.next_sequence;
    let mut answers = Vec::new();
    for retry in 0..=options.retries {
        partition.next_sequence = start;
        let request = build_request(options.shape, bodies, partition, Some(i64::from(retry)))?;
        match host.invoke(FUNCTION_NAME, request).await {
            Ok(answer) => {
                let done = answer.is_success();
                answers.push(answer);
                if done {
                    break;
                }
            }
            Err(e) if retry < options.retries => {
                outln!(
                    "replay: could not reach the handler ({e:#}); retry {} of {} in {:?}",
                    retry + 1,
                    options.retries,
                    options.retry_delay
                );
            }
            Err(e) => {
                return Err(e.context(format!(
                    "the handler did not answer after {} retries",
                    options.retries
                )))
            }
        }
        if retry < options.retries {
            tokio::time::sleep(options.retry_delay).await;
        }
    }
    Ok(answers)
}

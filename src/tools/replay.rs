//! The `replay` command: send events from a file (or the bundled samples) to a running handler
//! as the Functions host would, with a retry policy's retries.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::hostsim::{load_bodies, HostSim, Shape, SimPartition};
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

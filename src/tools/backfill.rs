//! The `backfill` command: deliver the Events of a storage-account archive of AKS diagnostic
//! logs (`PT1H.json` blobs of JSON lines, one record a line) through the same pipeline as the
//! handler: category filter, Policy, routes, annotations, batching, retries, dead letters,
//! exact bytes. Resumable with a checkpoint file; Ctrl-C stops after the batch in flight.
//!
//! Delivery is at least once, as the handler's: after an interruption or a failure, the
//! batch in flight is sent again on the rerun. Receivers de-duplicate by `auditID` and stage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use object_store::{GetOptions, GetRange, ObjectStore};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::archive::{Batch, LineSplitter};
use super::checkpoint::{BlobHead, BlobProgress, Checkpoint, HEAD_BYTES};
use super::progress::Progress;
use super::storage::{
    check_container, cluster_prefix, open, storage_error, ArchivePath, StorageArgs,
};
use crate::deadletter::{to_json_lines, DeadLetter};
use crate::pipeline::{Forwarder, Invocation, InvocationMeta, Settings};

/// Options of `backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The archive container: insights-logs-kube-audit or insights-logs-kube-audit-admin.
    #[arg(long, default_value = "insights-logs-kube-audit")]
    pub container: String,
    /// Only this cluster: its resource id, or its name.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only records at or after this time (RFC 3339, e.g. 2026-11-23T07:00:00Z).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<OffsetDateTime>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<OffsetDateTime>,
    /// Record progress here; a rerun with the same file continues where this one stopped.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Count what would be sent, per cluster and hour, without sending.
    #[arg(long)]
    pub dry_run: bool,
    /// Where dead letters (malformed records, refused and unrouted Events) are appended.
    #[arg(long, default_value = "backfill-deadletter.jsonl")]
    pub deadletter_out: PathBuf,
    /// Records per delivery batch (also bounded by AUDIT_MAX_RECORDS_PER_EVENT).
    #[arg(long, default_value_t = 500)]
    pub records_per_batch: usize,
}

/// Reads an RFC 3339 time for a command-line option.
pub(super) fn rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|e| day_start(text).ok_or(e))
        .map_err(|e| {
            format!(
                "{text:?} is not an RFC 3339 time such as 2026-11-23T07:00:00Z, nor a day such as \
                 2026-11-23: {e}"
            )
        })
}

/// A day written `YYYY-MM-DD`, taken as its start in UTC.
fn day_start(text: &str) -> Option<OffsetDateTime> {
    let mut parts = text.trim().splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc())
}

/// Totals of one backfill.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Archive blobs selected by cluster and hour.
    pub blobs: u64,
    /// Of those, already done according to the checkpoint.
    pub blobs_done_before: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Records (lines) read.
    pub records: u64,
    /// Records outside `--since`/`--until`.
    pub outside_time: u64,
    /// Records turned into audit Events.
    pub converted: u64,
    /// Records of other categories.
    pub other_category: u64,
    /// Lines that are not JSON records, or records whose log is not an Event.
    pub malformed: u64,
    /// Blobs whose last line is incomplete (the hour still being written): left for a rerun.
    pub truncated_tails: u64,
    /// Events delivered (or, with `--dry-run`, that would be sent).
    pub delivered: u64,
    /// Events dropped by the Policy or a dropping route.
    pub dropped: u64,
    /// Dead letters written.
    pub dead_letters: u64,
    /// With `--dry-run`: Events per cluster and hour (`NAME 2026-11-23T07`).
    pub per_hour: BTreeMap<String, u64>,
    /// Stopped by Ctrl-C; the checkpoint holds the position.
    pub interrupted: bool,
}

/// Runs the back-fill with the handler's pipeline `settings`.
///
/// # Errors
/// Storage errors, a webhook still failing at the deadline (the checkpoint keeps the
/// position), or a dead-letter file that cannot be written.
pub async fn run(args: &BackfillArgs, settings: Settings) -> anyhow::Result<BackfillReport> {
    check_container(&args.container)?;
    let store = open(&args.storage, &args.container)?;
    let mut checkpoint = Checkpoint::open(args.checkpoint.as_deref(), &args.container)?;
    let blobs = select_blobs(store.as_ref(), args).await?;
    let per_batch = args
        .records_per_batch
        .clamp(1, settings.max_records_per_event.max(1));
    let forwarder = Forwarder::new(settings)?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("backfill: stopping after the batch in flight (Ctrl-C again to abort)");
                stop.store(true, Ordering::SeqCst);
                let _ = tokio::signal::ctrl_c().await;
                std::process::exit(130);
            }
        })
    };
    let mut report = BackfillReport {
        blobs: blobs.len() as u64,
        ..BackfillReport::default()
    };
    let todo: u64 = blobs
        .iter()
        .map(|(p, _, size)| size.saturating_sub(checkpoint.get(p.as_ref()).bytes))
        .sum();
    let mut progress = Progress::new("backfill", blobs.len() as u64, todo);
    let mut sink = DeadLetterSink::new(args.deadletter_out.clone());
    let mut run = Run {
        args,
        forwarder: &forwarder,
        report: &mut report,
        sink: &mut sink,
        progress: &mut progress,
    };
    let result = async {
        for (path, archive, size) in &blobs {
            if stop.load(Ordering::SeqCst) {
                run.report.interrupted = true;
                break;
            }
            let done = checkpoint.get(path.as_ref());
            // Done only at exactly its size: an offset past the end is no checkpoint of this
            // blob, and reading it refuses the checkpoint (`Checkpoint::bind`).
            if done.bytes == *size {
                run.report.blobs_done_before += 1;
                run.progress.blob_done();
                continue;
            }
            run.blob(
                store.as_ref(),
                path,
                archive,
                done,
                per_batch,
                &mut checkpoint,
                &stop,
            )
            .await?;
            run.progress.blob_done();
        }
        anyhow::Ok(())
    }
    .await;
    watcher.abort();
    progress.finish();
    result?;
    Ok(report)
}

type Selected = Vec<(object_store::path::Path, ArchivePath, u64)>;

/// The archive blobs of `--cluster` whose hour overlaps `--since`..`--until`, in path order
/// (per cluster, oldest first).
async fn select_blobs(store: &dyn ObjectStore, args: &BackfillArgs) -> anyhow::Result<Selected> {
    let prefix = cluster_prefix(args.cluster.as_deref());
    let listed: Vec<_> = store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(|e| {
            storage_error(
                &format!("listing container {}", args.container),
                &e,
                "a diagnostic setting that archives kube-audit to a storage account writes to \
                 insights-logs-kube-audit, kube-audit-admin to insights-logs-kube-audit-admin \
                 (--container); check the account too",
            )
        })?;
    let mut blobs = Vec::new();
    let mut others = std::collections::BTreeSet::new();
    let mut of_cluster = 0;
    for meta in listed {
        let Some(archive) = ArchivePath::parse(meta.location.as_ref()) else {
            continue;
        };
        if args
            .cluster
            .as_deref()
            .is_some_and(|c| !archive.matches_cluster(c))
        {
            others.insert(archive.cluster);
            continue;
        }
        of_cluster += 1;
        let end = archive.hour + time::Duration::HOUR;
        if args.since.is_some_and(|since| end <= since)
            || args.until.is_some_and(|until| archive.hour >= until)
        {
            continue;
        }
        blobs.push((meta.location, archive, meta.size));
    }
    if let (Some(cluster), 0) = (&args.cluster, of_cluster) {
        // A misspelt cluster would otherwise be a successful run that sends nothing.
        let container = &args.container;
        if prefix.is_some() {
            anyhow::bail!(
                "no archive blob of --cluster {cluster} in container {container}: check the \
                 subscription and resource group in the resource id, or pass the cluster's name"
            );
        }
        let there = if others.is_empty() {
            "none".to_string()
        } else {
            others.into_iter().collect::<Vec<_>>().join(", ")
        };
        anyhow::bail!(
            "no archive blob of --cluster {cluster} in container {container}; clusters archived \
             there: {there}"
        );
    }
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(blobs)
}

/// Appends dead letters to a file, opened on first use.
struct DeadLetterSink {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl DeadLetterSink {
    fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    fn write(&mut self, items: &[DeadLetter]) -> anyhow::Result<()> {
        use std::io::Write as _;
        if items.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            self.file = Some(file);
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(to_json_lines(items).as_bytes())
                .and_then(|()| file.sync_data())
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }
}

struct Run<'a> {
    args: &'a BackfillArgs,
    forwarder: &'a Forwarder,
    report: &'a mut BackfillReport,
    sink: &'a mut DeadLetterSink,
    progress: &'a mut Progress,
}

impl Run<'_> {
    /// Reads one blob from `done`, delivering batches of `per_batch` records and recording
    /// progress after each.
    #[allow(clippy::too_many_arguments)]
    async fn blob(
        &mut self,
        store: &dyn ObjectStore,
        path: &object_store::path::Path,
        archive: &ArchivePath,
        done: BlobProgress,
        per_batch: usize,
        checkpoint: &mut Checkpoint,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        checkpoint.bind(path.as_ref(), blob_head(store, path).await?)?;
        let options = GetOptions {
            range: (done.bytes > 0).then_some(GetRange::Offset(done.bytes)),
            ..GetOptions::default()
        };
        let got = store
            .get_opts(path, options)
            .await
            .with_context(|| format!("reading {path}"))?;
        let mut stream = got.into_stream();
        let mut lines = LineSplitter::new(done);
        loop {
            let chunk = stream
                .try_next()
                .await
                .with_context(|| format!("reading {path}"))?;
            let last = chunk.is_none();
            match chunk {
                Some(bytes) => lines.push(&bytes),
                None => lines.finish(),
            }
            while let Some(batch) = lines.next_batch(per_batch, last) {
                self.batch(archive, path.as_ref(), batch, checkpoint)
                    .await?;
                if stop.load(Ordering::SeqCst) {
                    self.report.interrupted = true;
                    return Ok(());
                }
            }
            if last {
                break;
            }
        }
        if lines.truncated_tail() {
            self.report.truncated_tails += 1;
            tracing::warn!(blob = %path, "The last line of this blob is incomplete (the hour is still being written); a rerun with the checkpoint reads it once complete.");
        }
        Ok(())
    }

    async fn batch(
        &mut self,
        archive: &ArchivePath,
        path: &str,
        batch: Batch,
        checkpoint: &mut Checkpoint,
    ) -> anyhow::Result<()> {
        let (body, mut dead, counts) = batch.body(self.args.since, self.args.until, path);
        self.report.records += counts.records;
        self.report.outside_time += counts.outside_time;
        self.report.malformed += counts.malformed;
        self.report.bytes += batch.bytes();
        let invocation = Invocation {
            bodies: body.into_iter().collect(),
            ..Invocation::default()
        };
        // An event over AUDIT_MAX_RECORDS_PER_EVENT is dead-lettered, not an error.
        let converted = self.forwarder.prepare(invocation);
        self.report.converted += converted.tally.converted;
        self.report.other_category += converted.tally.skipped_total();
        self.report.malformed +=
            converted.tally.malformed_records + converted.tally.malformed_bodies;
        self.report.dropped += converted.steps.policy_dropped + converted.steps.route_dropped;
        let events = converted.routed.total() as u64;
        for mut item in converted.dead_letters {
            // The pipeline names records by their place in the body; an operator needs the
            // blob and line.
            let lines: Vec<String> = item
                .records
                .iter()
                .filter_map(|r| counts.lines.get(r.index).map(u64::to_string))
                .collect();
            if !lines.is_empty() {
                let s = if lines.len() == 1 { "" } else { "s" };
                item.reason = format!("{path} line{s} {}: {}", lines.join(", "), item.reason);
            }
            dead.push(item);
        }
        if self.args.dry_run {
            let h = archive.hour;
            let key = format!(
                "{} {:04}-{:02}-{:02}T{:02}",
                archive.cluster,
                h.year(),
                u8::from(h.month()),
                h.day(),
                h.hour()
            );
            *self.report.per_hour.entry(key).or_default() += events;
            self.report.delivered += events;
            self.report.dead_letters += dead.len() as u64;
        } else {
            let deadline =
                tokio::time::Instant::now() + self.forwarder.settings().delivery_deadline;
            let outcome = self
                .forwarder
                .deliver(&InvocationMeta::standalone(), &converted.routed, deadline)
                .await;
            self.report.delivered += outcome.total.delivered_events;
            dead.extend(outcome.poison);
            let unsent: usize = outcome.unsent.iter().map(Vec::len).sum();
            if unsent > 0 {
                // What is dead-lettered so far is kept; the batch is sent again on the rerun.
                self.sink.write(&dead)?;
                anyhow::bail!(
                    "{unsent} Event(s) of {path} still undelivered at the deadline ({}); the checkpoint keeps the position: fix the webhook and run again",
                    outcome.total.last_failure.unwrap_or_default()
                );
            }
            self.sink.write(&dead)?;
            self.report.dead_letters += dead.len() as u64;
            checkpoint.set(path, batch.end())?;
        }
        self.progress.advance(batch.bytes(), events);
        Ok(())
    }
}

/// The blob's size and first bytes, to check a checkpoint against.
async fn blob_head(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> anyhow::Result<BlobHead> {
    let size = store
        .head(path)
        .await
        .with_context(|| format!("reading {path}"))?
        .size;
    let bytes = match size.min(HEAD_BYTES) {
        0 => Vec::new(),
        n => store.get_range(path, 0..n).await?.to_vec(),
    };
    Ok(BlobHead { size, bytes })
}

impl BackfillReport {
    /// The one-line account, like the handler's invocation summary.
    pub fn summary(&self, args: &BackfillArgs) -> String {
        let (dry_run, deadletter_out) = (args.dry_run, &args.deadletter_out);
        let verb = if dry_run { "would send" } else { "delivered" };
        let mut line = format!(
            "backfill: {} blob(s) ({} done before), {} bytes, {} record(s): {} converted, {} other category, {} outside --since/--until, {} malformed, {} incomplete last line(s); {verb} {} Event(s), {} dropped by Policy or route, {} dead letter(s)",
            self.blobs,
            self.blobs_done_before,
            self.bytes,
            self.records,
            self.converted,
            self.other_category,
            self.outside_time,
            self.malformed,
            self.truncated_tails,
            self.delivered,
            self.dropped,
            self.dead_letters,
        );
        if self.dead_letters > 0 && !dry_run {
            line.push_str(&format!(" (appended to {})", deadletter_out.display()));
        }
        if self.interrupted {
            line.push_str(match args.checkpoint {
                Some(_) => "; INTERRUPTED: run again with the same --checkpoint to continue",
                None => "; INTERRUPTED: without --checkpoint a rerun starts over",
            });
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--since`/`--until` take an RFC 3339 time, or a whole day taken from its start in UTC.
    #[test]
    fn times_are_rfc3339_or_a_day_in_utc() {
        assert_eq!(
            rfc3339("2026-11-23").unwrap(),
            rfc3339("2026-11-23T00:00:00Z").unwrap()
        );
        assert!(rfc3339("2026-11-23T07:00:00+01:00").is_ok());
        let err = rfc3339("yesterday").unwrap_err();
        assert!(err.contains("2026-11-23"), "{err}");
    }
}

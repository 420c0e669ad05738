//! `resend --container`: read the dead-letter container directly (the `deadletter` output
//! binding writes `audit-deadletter/<yyyy-MM-dd>/<guid>.jsonl`), send each blob's Events
//! again, and, with `--delete-delivered`, delete a blob once all its items are delivered or
//! rewrite it with what remains. Without that option nothing in the container changes and
//! what remains goes to the `--out` file.

use futures::TryStreamExt as _;
use object_store::{ObjectStore, PutPayload};

use super::progress::Progress;
use super::resend::{parse_items, resend_items, ResendArgs, ResendReport};
use super::storage::{check_container, open, read_all, storage_error};
use crate::deadletter::{to_json_lines, DeadLetter};
use crate::pipeline::Settings;

/// Resends every dead-letter blob of `args.container` (from `args.since` on). Returns the
/// totals and what remains.
///
/// # Errors
/// Storage errors, or a blob whose line is not a dead-letter item (named with the blob).
pub async fn resend_container(
    args: &ResendArgs,
    settings: Settings,
) -> anyhow::Result<(ResendReport, Vec<DeadLetter>)> {
    let container = args.container.as_deref().unwrap_or("audit-deadletter");
    check_container(container)?;
    let store = open(&args.storage, container)?;
    let since = args
        .since
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()));
    let mut blobs: Vec<_> = store
        .list(None)
        .try_filter(|meta| {
            let day = meta.location.as_ref().split('/').next().unwrap_or("");
            let keep = meta.location.as_ref().ends_with(".jsonl")
                && since.as_deref().is_none_or(|since| day >= since);
            futures::future::ready(keep)
        })
        .try_collect()
        .await
        .map_err(|e| {
            storage_error(
                &format!("listing container {container}"),
                &e,
                "no dead letter has been written to it yet, or --container or the account is not \
                 the one of the deadletter binding (function.json: audit-deadletter)",
            )
        })?;
    blobs.sort_by(|a, b| a.location.cmp(&b.location));
    let total: u64 = blobs.iter().map(|m| m.size).sum();
    let mut progress = Progress::new("resend", blobs.len() as u64, total);
    let mut report = ResendReport::default();
    let mut remaining = Vec::new();
    for meta in &blobs {
        let path = &meta.location;
        let bytes = read_all(store.as_ref(), path).await?;
        let items = parse_items(&bytes).map_err(|e| anyhow::anyhow!("{container}/{path}: {e}"))?;
        let (mut one, left) = resend_items(settings.clone(), items).await?;
        one.blobs = 1;
        progress.advance(meta.size, one.delivered);
        if args.delete_delivered {
            if left.is_empty() {
                store
                    .delete(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("deleting {container}/{path}: {e}"))?;
            } else if one.delivered > 0 || one.dropped > 0 {
                let payload = PutPayload::from(to_json_lines(&left).into_bytes());
                store
                    .put(path, payload)
                    .await
                    .map_err(|e| anyhow::anyhow!("rewriting {container}/{path}: {e}"))?;
            }
        }
        report.add(&one);
        remaining.extend(left);
        progress.blob_done();
    }
    progress.finish();
    Ok((report, remaining))
}

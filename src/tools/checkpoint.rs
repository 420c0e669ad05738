//! The `backfill --checkpoint` file: for each archive blob, how many bytes (and lines) are
//! done. Written after every delivered batch (to a temporary file, then renamed, so a crash
//! leaves the old or the new file, never half of one). A rerun skips what is done and reads
//! each blob from its recorded byte offset, which also picks up lines Azure Monitor appended
//! to the current hour's blob since.
//!
//! Each blob's entry also records what it was when last read: its size and a fingerprint of
//! its first bytes. A checkpoint whose offset is past the blob's end, or whose blob shrank or
//! starts with other bytes, is not this blob's and is refused (an archive blob is only ever
//! appended to; its ETag changes with every append, so the ETag alone cannot tell a grown
//! blob from a replaced one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Progress through one blob.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobProgress {
    /// Bytes from the start of the blob whose records are delivered (or dead-lettered).
    pub bytes: u64,
    /// Lines in those bytes.
    pub lines: u64,
}

/// The checkpoint file's content.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The container the blobs are in: a checkpoint is refused for another one.
    pub container: String,
    /// Blob path → progress.
    pub blobs: BTreeMap<String, BlobProgress>,
    /// Blob path → what the blob was when its progress was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, BlobIdentity>,
    #[serde(skip)]
    path: Option<PathBuf>,
    /// The blob being read and what it holds now, to stamp its progress with.
    #[serde(skip)]
    reading: Option<(String, BlobHead)>,
}

/// Bytes at the start of a blob that identify it.
pub const HEAD_BYTES: u64 = 4096;

/// What a blob was when its progress was recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobIdentity {
    /// Its size in bytes.
    pub size: u64,
    /// How many of its first bytes `head` covers (at most [`HEAD_BYTES`]).
    pub head_bytes: u64,
    /// FNV-1a (64 bits) of those bytes.
    pub head: u64,
}

/// A blob as it is now: its size and its first [`HEAD_BYTES`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobHead {
    /// Size in bytes.
    pub size: u64,
    /// The first bytes (fewer when the blob is shorter).
    pub bytes: Vec<u8>,
}

/// FNV-1a, 64 bits: stable across versions and platforms.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Checkpoint {
    /// Reads `path`, or starts empty when it does not exist; `None` keeps nothing.
    ///
    /// # Errors
    /// When the file exists but cannot be read, is not a checkpoint, or is for another
    /// container.
    pub fn open(path: Option<&Path>, container: &str) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self {
                container: container.into(),
                ..Self::default()
            });
        };
        let mut checkpoint = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Self>(&bytes)
                .with_context(|| format!("{} is not a backfill checkpoint file", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self {
                container: container.into(),
                ..Self::default()
            },
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        anyhow::ensure!(
            checkpoint.container == container,
            "{} is the checkpoint of container {}, not {container}",
            path.display(),
            checkpoint.container
        );
        checkpoint.path = Some(path.to_path_buf());
        Ok(checkpoint)
    }

    /// Starts reading `blob`, which is `now`: refuses the recorded progress when it cannot be
    /// this blob's (an offset past its end, a blob that shrank or starts with other bytes),
    /// and stamps progress recorded from now on with what the blob is.
    ///
    /// # Errors
    /// Naming the blob, the checkpoint and what differs.
    pub fn bind(&mut self, blob: &str, now: BlobHead) -> anyhow::Result<()> {
        let done = self.get(blob);
        let file = self
            .path
            .as_deref()
            .map_or_else(|| "the checkpoint".to_string(), |p| p.display().to_string());
        let refuse = |why: String| {
            anyhow::anyhow!(
                "{file} is not the checkpoint of {blob} as it is now: {why}; remove the blob's entries from the checkpoint to read it from the start"
            )
        };
        if done.bytes > now.size {
            return Err(refuse(format!(
                "it records {} bytes done, the blob holds {}",
                done.bytes, now.size
            )));
        }
        if let Some(was) = self.identities.get(blob) {
            if now.size < was.size {
                return Err(refuse(format!(
                    "the blob held {} bytes, now {}",
                    was.size, now.size
                )));
            }
            let n = usize::try_from(was.head_bytes).unwrap_or(usize::MAX);
            if now.bytes.len() < n || fingerprint(&now.bytes[..n]) != was.head {
                return Err(refuse(format!("its first {n} bytes differ")));
            }
        }
        self.reading = Some((blob.to_string(), now));
        Ok(())
    }

    /// Progress through `blob` so far.
    pub fn get(&self, blob: &str) -> BlobProgress {
        self.blobs.get(blob).copied().unwrap_or_default()
    }

    /// Records progress through `blob` and writes the file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn set(&mut self, blob: &str, progress: BlobProgress) -> anyhow::Result<()> {
        self.blobs.insert(blob.to_string(), progress);
        if let Some((_, now)) = self.reading.as_ref().filter(|(b, _)| b == blob) {
            let n = now
                .bytes
                .len()
                .min(usize::try_from(progress.bytes).unwrap_or(usize::MAX));
            let identity = BlobIdentity {
                size: now.size.max(progress.bytes),
                head_bytes: n as u64,
                head: fingerprint(&now.bytes[..n]),
            };
            self.identities.insert(blob.to_string(), identity);
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_rerun_and_refuses_another_container() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(Some(&file), "insights-logs-kube-audit").unwrap();
        assert_eq!(cp.get("a"), BlobProgress::default());
        cp.set(
            "a",
            BlobProgress {
                bytes: 10,
                lines: 2,
            },
        )
        .unwrap();
        let again = Checkpoint::open(Some(&file), "insights-logs-kube-audit").unwrap();
        assert_eq!(
            again.get("a"),
            BlobProgress {
                bytes: 10,
                lines: 2
            }
        );
        assert!(Checkpoint::open(Some(&file), "insights-logs-kube-audit-admin").is_err());
        std::fs::write(&file, "nope").unwrap();
        assert!(Checkpoint::open(Some(&file), "insights-logs-kube-audit").is_err());
    }

    /// A checkpoint whose offset is past the blob's end, or whose blob shrank or starts with
    /// other bytes, is refused; a blob that only grew is read on.
    #[test]
    fn a_checkpoint_of_another_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.json");
        let head = |text: &str, size: u64| BlobHead {
            size,
            bytes: text.as_bytes().to_vec(),
        };
        let mut cp = Checkpoint::open(Some(&file), "c").unwrap();
        cp.bind("a", head("line one\nline two\n", 18)).unwrap();
        cp.set("a", BlobProgress { bytes: 9, lines: 1 }).unwrap();
        let reopen = || Checkpoint::open(Some(&file), "c").unwrap();
        // Grown by an append: read on.
        reopen()
            .bind("a", head("line one\nline two\nline 3\n", 25))
            .unwrap();
        for (now, why) in [
            (head("line", 4), "bytes done"),
            (head("line one\n", 9), "held 18 bytes"),
            (head("LINE ONE\nline two\n", 18), "first 9 bytes differ"),
        ] {
            let err = reopen().bind("a", now).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("cp.json"), "{err}");
        }
        // An offset past the end is refused even without a recorded identity.
        let mut old = reopen();
        old.identities.clear();
        assert!(old.bind("a", head("li", 2)).is_err());
    }
}

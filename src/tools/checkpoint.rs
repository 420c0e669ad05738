//! The `backfill --checkpoint` file: for each archive blob, how many bytes (and lines) are
//! done. Written after every delivered batch (to a temporary file, then renamed, so a crash
//! leaves the old or the new file, never half of one). A rerun skips what is done and reads
//! each blob from its recorded byte offset, which also picks up lines Azure Monitor appended
//! to the current hour's blob since.

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
    #[serde(skip)]
    path: Option<PathBuf>,
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
}

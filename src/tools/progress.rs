//! Progress of the long-running tools (`backfill`, `resend --container`): an `indicatif` bar
//! on a terminal (blobs, Events, bytes, rate, ETA), plain periodic lines otherwise, so that a
//! log file or CI output stays readable.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Progress over a known number of bytes and blobs.
pub struct Progress {
    label: &'static str,
    bar: Option<ProgressBar>,
    total_bytes: u64,
    total_blobs: u64,
    bytes: u64,
    blobs: u64,
    events: u64,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts progress over `total_blobs` blobs holding `total_bytes` bytes.
    pub fn new(label: &'static str, total_blobs: u64, total_bytes: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total_bytes);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label);
            bar
        });
        let now = Instant::now();
        Self {
            label,
            bar,
            total_bytes,
            total_blobs,
            bytes: 0,
            blobs: 0,
            events: 0,
            start: now,
            last_line: now,
        }
    }

    /// Counts `bytes` read and `events` handled.
    pub fn advance(&mut self, bytes: u64, events: u64) {
        self.bytes += bytes;
        self.events += events;
        self.show();
    }

    /// Counts one blob finished.
    pub fn blob_done(&mut self) {
        self.blobs += 1;
        self.show();
    }

    fn show(&mut self) {
        let msg = format!(
            "blobs {}/{}, Events {}",
            self.blobs, self.total_blobs, self.events
        );
        if let Some(bar) = &self.bar {
            bar.set_position(self.bytes);
            bar.set_message(msg);
            return;
        }
        if self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            eprintln!("{}", self.line(&msg));
        }
    }

    fn line(&self, msg: &str) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        format!(
            "{}: {msg}, {} of {} bytes, {:.0} bytes/s",
            self.label,
            self.bytes,
            self.total_bytes,
            self.bytes as f64 / secs
        )
    }

    /// Clears the bar (the caller prints the summary).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

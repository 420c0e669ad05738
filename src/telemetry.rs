//! Log setup: plain one-line records the Functions host captures from the process streams.
//!
//! The host logs the handler's stdout at Information and its stderr at Error, so records of
//! level INFO and below go to stdout and WARN/ERROR go to stderr: each lands in Application
//! Insights at a matching severity. `RUST_LOG` sets the filter (default `info`).

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it again is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = std::io::stderr
        .with_max_level(Level::WARN)
        .or_else(std::io::stdout);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

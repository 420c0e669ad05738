//! Standard output of the tools, for a reader that may stop early (`demo | head`): once the
//! reader has closed the pipe, further output is discarded instead of panicking as `println!`
//! does, and the tool carries on, so its exit status still says how it ended.

use std::fmt;
use std::io::{ErrorKind, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once standard output failed: nothing more is written to it.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to standard output, as `print!` does, unless it is closed. A closed pipe
/// (`EPIPE`) ends the output silently; any other write error is named once on standard error
/// and also ends it.
pub fn write(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        closed(&e);
    }
}

/// Records that writing standard output failed with `error`: silently for a closed pipe,
/// named once on standard error otherwise. Later [`write`]s are discarded.
pub fn closed(error: &std::io::Error) {
    if !CLOSED.swap(true, Ordering::Relaxed) && !is_closed_pipe(error) {
        eprintln!("standard output: {error}; no more output is written there");
    }
}

/// Whether `error` says the reader of a pipe has gone (`EPIPE`).
pub fn is_closed_pipe(error: &std::io::Error) -> bool {
    error.kind() == ErrorKind::BrokenPipe
}

/// Whether standard output has been given up on.
pub fn is_closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

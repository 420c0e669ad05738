//! Tools for developers and operators, apart from what runs in Azure: the end-to-end demo, a
//! local audit receiver, the host stand-in that sends host-shaped invocations (used by the
//! demo, `replay`, the tests, benches and the load harness), `resend` for dead letters,
//! `backfill` from the storage archive, `check-config` and `convert`, and the floor baseline
//! and counting receiver of the benchmarks. Production code never imports this module.

/// `print!` for the tools: discarded once standard output is closed ([`output::write`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::tools::output::write(format_args!($($arg)*))
    };
}

/// `println!` for the tools: discarded once standard output is closed ([`output::write`]).
macro_rules! outln {
    () => {
        $crate::tools::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::tools::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod archive;
pub mod backfill;
pub mod check_config;
pub mod checkpoint;
pub mod cli;
pub mod convert;
pub mod counter;
pub mod demo;
mod demo_alert;
mod demo_check;
mod demo_view;
pub mod describe;
pub mod falco;
pub mod floor;
pub mod hostsim;
pub mod notified;
pub mod output;
pub mod progress;
pub mod receiver;
mod receiving;
pub mod replay;
pub mod resend;
pub mod resend_storage;
pub mod scripted;
pub mod storage;

/// The sample AKS diagnostic events bundled with the binary (`samples/aks-diagnostics.json`):
/// both audit categories, other categories, a truncated log and a body that is not JSON.
pub const SAMPLES: &str = include_str!("../../samples/aks-diagnostics.json");

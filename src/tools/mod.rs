//! Tools for developers and operators, apart from what runs in Azure: the end-to-end demo, a
//! local audit receiver, the host stand-in that sends host-shaped invocations (used by the
//! demo, `replay`, the tests, benches and the load harness), and `resend` for dead letters.
//! Production code never imports this module.

pub mod demo;
pub mod hostsim;
pub mod receiver;
pub mod replay;
pub mod resend;

/// The sample AKS diagnostic events bundled with the binary (`samples/aks-diagnostics.json`):
/// both audit categories, other categories, a truncated log and a body that is not JSON.
pub const SAMPLES: &str = include_str!("../../samples/aks-diagnostics.json");

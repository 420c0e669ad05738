//! Tools for developers and operators, apart from what runs in Azure: the end-to-end demo, a
//! local audit receiver, the host stand-in that sends host-shaped invocations (used by the
//! demo, `replay`, the tests, benches and the load harness), and `resend` for dead letters.
//! Production code never imports this module.

pub mod demo;
pub mod hostsim;
pub mod receiver;
pub mod replay;
pub mod resend;

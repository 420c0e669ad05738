//! Integration tests: the real binary, started as the Functions host starts it, serving
//! host-shaped invocations and delivering to a real receiver on 127.0.0.1.

// The whole crate is test code: unwrapping is how a test fails.
#![allow(clippy::unwrap_used)]

mod alerts;
mod azurite;
mod backfill_exact;
mod chaos;
mod chaos_delivery;
mod closed_stdout;
mod delivery;
mod edit_properties;
mod faults;
mod fidelity;
mod generate;
mod generate_bodies;
mod hardening;
mod helpers;
mod hostile;
mod invoke;
mod limits;
mod no_loss;
mod process;
mod properties;
mod receivers;
mod rogue;
mod routing;
mod secrets;
mod settings;
mod shared_hub;
mod tls;
mod tool_cli;
mod tools;

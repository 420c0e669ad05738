//! Integration tests: the real binary, started as the Functions host starts it, serving
//! host-shaped invocations and delivering to a real receiver on 127.0.0.1.

mod delivery;
mod helpers;
mod invoke;
mod process;

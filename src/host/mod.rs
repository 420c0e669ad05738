//! The Functions host edge: the wire format of invocations and answers, and the HTTP routes
//! the host calls (`GET /`, `POST /EventHubForwarder`). Statuses are chosen here and only here.

mod answer;
pub mod app;
mod inplace;
pub mod limits;
mod metadata;
pub mod server;
pub mod wire;

pub use app::{router, serve, FUNCTION_NAME};
pub use wire::{decode_invocation, HostError, InvocationResult};

/// Settings of the host edge, built once at start-up.
#[derive(Clone, Debug)]
pub struct HostSettings {
    /// Largest invocation body accepted, in bytes (`AUDIT_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Bytes of invocation bodies held at once, all invocations together
    /// (`AUDIT_MAX_BYTES_IN_FLIGHT`); see [`limits`].
    pub max_bytes_in_flight: usize,
    /// The blob output binding that receives dead letters (`AUDIT_DEADLETTER_BINDING`);
    /// `None` logs them instead.
    pub deadletter_binding: Option<String>,
    /// Longest time to receive one invocation body (`AUDIT_BODY_READ_TIMEOUT`); a stalled
    /// request is answered 500 and its memory freed.
    pub body_read_timeout: std::time::Duration,
    /// Longest time in-flight invocations get after SIGTERM (`AUDIT_SHUTDOWN_GRACE`); the
    /// process then exits and the host retries what was not answered.
    pub shutdown_grace: std::time::Duration,
}

//! Getting Events to the receivers: routes per cluster, batches bounded by count and bytes,
//! the webhook client with its TLS and credentials, and the retry loop around every POST.

pub mod batch;
pub mod client;
pub mod connections;
pub mod learned;
pub mod profile;
pub mod retry;
pub mod routes;
pub mod tls;
pub mod webhook;

pub use batch::{plan, BatchLimits};
pub use client::{Bearer, ClientOptions, SecretPem};
pub use profile::{ReceiverProfile, Refusal, Shaped, Shaping, TruncateOverrides, Truncation};
pub use retry::{Delivery, RetrySettings};
pub use routes::{Destination, Matcher, RouteConfig};
pub use webhook::Webhook;

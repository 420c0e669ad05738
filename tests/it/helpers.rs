//! Test harness: the real handler binary started as the Functions host starts it, a real
//! receiver on 127.0.0.1, and builders for AKS diagnostic events.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use aks_audit_forwarder::tools::hostsim::{build_request, Answer, HostSim, Shape, SimPartition};
use aks_audit_forwarder::tools::receiver::{Receiver, RunningReceiver};
use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_aks-audit-forwarder");

/// A handler process, killed when dropped.
pub struct Handler {
    pub child: Child,
    pub port: u16,
    pub host: HostSim,
    /// Time from spawn until `GET /` answered.
    pub startup: Duration,
    log: tempfile::NamedTempFile,
}

impl Handler {
    /// POSTs `bodies` as one `many`+`binary` invocation from partition `partition`.
    pub async fn invoke_bodies(&self, bodies: &[Vec<u8>], partition: &str) -> Answer {
        self.invoke_as(bodies, &mut SimPartition::new(partition), None)
            .await
    }

    /// POSTs `bodies` as the next `many`+`binary` invocation of `partition`, with a
    /// `RetryContext` when `retry` is set.
    pub async fn invoke_as(
        &self,
        bodies: &[Vec<u8>],
        partition: &mut SimPartition,
        retry: Option<i64>,
    ) -> Answer {
        let request = build_request(Shape::ManyBinary, bodies, partition, retry).unwrap();
        self.host
            .invoke("EventHubForwarder", request)
            .await
            .unwrap()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        let mut file = self.log.reopen().expect("log file");
        file.read_to_string(&mut text).expect("read log");
        text
    }

    /// SIGTERM, as the host sends on shutdown.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("--- handler log ---\n{}", self.log());
        }
    }
}

/// An append-mode handle, so stdout and stderr interleave instead of overwriting each other.
fn append(log: &tempfile::NamedTempFile) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .expect("open log")
}

/// A port that nothing listens on now (the host picks its port the same way).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Starts the binary with the host's port variables, the given settings, and fast retries
/// unless overridden; waits for `GET /` as the host does.
pub async fn spawn_handler(settings: &[(&str, &str)]) -> Handler {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "test-worker")
        .env("AUDIT_RETRY_INITIAL_BACKOFF", "50ms")
        .env("AUDIT_RETRY_MAX_BACKOFF", "200ms")
        .env("AUDIT_DELIVERY_DEADLINE", "10s")
        // Events compare byte for byte unless a test turns the cluster annotations on.
        .env("AUDIT_CLUSTER_ANNOTATIONS", "off")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(append(&log))
        .stderr(append(&log));
    for (key, value) in settings {
        command.env(key, value);
    }
    let started = std::time::Instant::now();
    let child = command.spawn().expect("spawn handler");
    let host = HostSim::new(format!("http://127.0.0.1:{port}"));
    let mut handler = Handler {
        child,
        port,
        host,
        startup: Duration::ZERO,
        log,
    };
    if let Err(e) = handler.host.wait_ready(Duration::from_secs(30)).await {
        panic!("{e}\n{}", handler.log());
    }
    handler.startup = started.elapsed();
    handler
}

/// A receiver on a random loopback port.
pub async fn start_receiver() -> RunningReceiver {
    Receiver::new()
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("receiver")
}

/// An audit Event as kube-apiserver writes it, with `pad` extra bytes of request body.
pub fn audit_event(id: &str, pad: usize) -> String {
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/configmaps/app",
        "verb": "update",
        "user": {"username": "alice@contoso.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["20.61.10.4"],
        "userAgent": "kubectl/v1.31.2",
        "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "app", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"kind": "ConfigMap", "data": {"blob": "x".repeat(pad)}},
        "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
        "stageTimestamp": "2026-11-23T07:00:00.234567Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
    .to_string()
}

/// The resource id Azure Monitor writes for cluster `name` (upper-cased, as it does).
pub fn cluster_id(name: &str) -> String {
    format!("/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG-{name}/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{name}")
        .to_uppercase()
}

/// One diagnostic record of `category` carrying `log`, from cluster AKS1.
pub fn record(category: &str, log: &str) -> Value {
    record_from(&cluster_id("aks1"), category, log)
}

/// One diagnostic record of `category` carrying `log`, from the cluster `resource_id`.
pub fn record_from(resource_id: &str, category: &str, log: &str) -> Value {
    json!({
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "category": category,
        "resourceId": resource_id,
        "properties": {"log": format!("{log}\n"), "stream": "stdout", "pod": "kube-apiserver-1"},
        "time": "2026-11-23T07:00:00.0000000Z"
    })
}

/// An Event Hub event body holding `records`.
pub fn envelope(records: Vec<Value>) -> Vec<u8> {
    json!({ "records": records }).to_string().into_bytes()
}

/// `n` bodies of `per_body` kube-audit records each, Event ids `<prefix>-<body>-<record>`;
/// returns the bodies and the Events' JSON.
pub fn audit_bodies(
    prefix: &str,
    n: usize,
    per_body: usize,
    pad: usize,
) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut bodies = Vec::new();
    let mut events = Vec::new();
    for b in 0..n {
        let mut records = Vec::new();
        for r in 0..per_body {
            let event = audit_event(&format!("{prefix}-{b}-{r}"), pad);
            records.push(record("kube-audit", &event));
            events.push(event);
        }
        bodies.push(envelope(records));
    }
    (bodies, events)
}

/// The received Events, sorted by `auditID`, compared as JSON with the expected texts.
pub fn assert_same_events(received: Vec<Value>, expected: &[String]) {
    let mut got = received;
    let mut want: Vec<Value> = expected
        .iter()
        .map(|e| serde_json::from_str(e).expect("expected event"))
        .collect();
    let key = |v: &Value| v["auditID"].as_str().unwrap_or_default().to_string();
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got.len(), want.len(), "event count");
    assert!(got == want, "received events differ from the input events");
}

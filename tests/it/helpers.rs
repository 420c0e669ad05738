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

/// The binary started as the host starts it, on `port` and delivering to `webhook`, its output
/// discarded and nothing waited for: for tools that must cope with a handler still starting.
pub fn spawn_handler_on(port: u16, webhook: &str) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUDIT_WEBHOOK_URL", webhook)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the handler")
}

/// Starts the binary with the host's port variables, the given settings, and fast retries
/// unless overridden; waits for `GET /` as the host does.
///
/// A free port can be taken by another test's server before the handler binds it; `GET /`
/// would then be answered by that server. So the handler must also log that it is ready
/// (it does right after binding), and a handler that could not bind is started again on
/// another port.
pub async fn spawn_handler(settings: &[(&str, &str)]) -> Handler {
    spawn_handler_with(settings, None).await
}

/// [`spawn_handler`] under a limit of `open_files` descriptors (`ulimit -n`), when given.
pub async fn spawn_handler_with(settings: &[(&str, &str)], open_files: Option<u64>) -> Handler {
    for _ in 0..5 {
        let mut handler = spawn_on(free_port(), settings, open_files).await;
        let waiting = std::time::Instant::now();
        while waiting.elapsed() < Duration::from_secs(10) {
            if handler.log().contains("Handler ready.") {
                return handler;
            }
            if handler.child.try_wait().expect("try_wait").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = handler.log();
        if !log.contains("binding 127.0.0.1") {
            // Not a lost port: a handler that never logs at info, or one that failed to start.
            assert!(
                handler.child.try_wait().expect("try_wait").is_none(),
                "{log}"
            );
            return handler;
        }
    }
    panic!("the handler could not bind a free port in 5 tries");
}

async fn spawn_on(port: u16, settings: &[(&str, &str)], open_files: Option<u64>) -> Handler {
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let mut command = match open_files {
        None => Command::new(BIN),
        Some(n) => {
            let mut shell = Command::new("bash");
            shell.args(["-c", &format!("ulimit -n {n} && exec \"$0\""), BIN]);
            shell
        }
    };
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
        // Events keep their bytes unless a test turns the cluster annotations on.
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

/// An audit Event spelt as kube-apiserver writes it (Go's `encoding/json`): members in the
/// order of the Go struct, not sorted, and `<`, `>`, `&` escaped as `\u003c`, `\u003e`,
/// `\u0026`. Anything that re-serialises an Event changes these bytes. `pad` extra bytes go
/// into the request body.
pub fn audit_event(id: &str, pad: usize) -> String {
    let id = Value::String(id.to_string());
    format!(
        concat!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":{id},"#,
            r#""stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps/app","#,
            r#""verb":"update","user":{{"username":"alice@contoso.com","groups":["system:authenticated"]}},"#,
            r#""sourceIPs":["20.61.10.4"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/2c7f4d3","#,
            r#""objectRef":{{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"}},"#,
            r#""responseStatus":{{"metadata":{{}},"code":200}},"requestObject":{request},"#,
            r#""requestReceivedTimestamp":"2026-11-23T07:00:00.123456Z","#,
            r#""stageTimestamp":"2026-11-23T07:00:00.234567Z","#,
            r#""annotations":{{"authorization.k8s.io/decision":"allow","#,
            r#""authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"shop-editors/shop\" of ClusterRole \"edit\" to Group \"system:authenticated\""}}}}"#
        ),
        id = id,
        request = request_object(pad),
    )
}

/// The `requestObject` of [`audit_event`], as kube-apiserver writes it.
pub fn request_object(pad: usize) -> String {
    format!(
        r#"{{"kind":"ConfigMap","apiVersion":"v1","metadata":{{"name":"app","namespace":"shop"}},"data":{{"banner":"\u003cb\u003esale\u003c/b\u003e \u0026 more","blob":"{}"}}}}"#,
        "x".repeat(pad)
    )
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

/// A receiver that also keeps every Event it accepts exactly as it was sent, one per line in
/// a file (the receiver's `--out`), for byte comparisons. Dereferences to the receiver.
pub struct ExactReceiver {
    running: RunningReceiver,
    out: tempfile::NamedTempFile,
}

impl std::ops::Deref for ExactReceiver {
    type Target = RunningReceiver;
    fn deref(&self) -> &RunningReceiver {
        &self.running
    }
}

impl ExactReceiver {
    /// The Events accepted so far, in arrival order, each exactly as the forwarder sent it.
    pub fn sent(&self) -> Vec<String> {
        self.running
            .receiver
            .flush()
            .expect("flush the receiver's output");
        let text = std::fs::read_to_string(self.out.path()).expect("read the receiver's output");
        text.lines().map(str::to_string).collect()
    }
}

/// A receiver on a random loopback port that keeps the exact bytes of what it accepts.
pub async fn start_exact_receiver() -> ExactReceiver {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let file = out.reopen().expect("reopen");
    let running = Receiver::new()
        .with_output(file)
        .start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("receiver");
    ExactReceiver { running, out }
}

/// The text of every `properties.log` string in the envelopes `bodies`, as the API server
/// wrote it: unescaped, less the surrounding white space and a leading byte order mark,
/// which docs/forwarding.md says are dropped. Bodies that are not envelopes are skipped.
pub fn logged_texts(bodies: &[Vec<u8>]) -> Vec<String> {
    let mut texts = Vec::new();
    for body in bodies {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let Ok(envelope) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        let records = envelope["records"].as_array().cloned().unwrap_or_default();
        for record in records {
            if let Some(log) = record["properties"]["log"].as_str() {
                let log = log.trim();
                texts.push(log.strip_prefix('\u{feff}').unwrap_or(log).to_string());
            }
        }
    }
    texts
}

/// The `auditID` of an Event's text, when it is JSON with one.
pub fn audit_id(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value["auditID"].as_str().map(str::to_string)
}

/// Asserts the receiver was sent exactly the Events `expected` names (by `auditID`, each
/// once), each with the very bytes its record held in `properties.log` in `bodies` after
/// `edit`, the documented change asked for (the cluster annotations splice, a Policy's
/// level; `str::to_string` when none is).
pub fn assert_exact_events(
    sent: &[String],
    bodies: &[Vec<u8>],
    expected: &[String],
    edit: impl Fn(&str) -> String,
) {
    let logged = logged_texts(bodies);
    let mut got_ids = Vec::new();
    for text in sent {
        let id = audit_id(text).unwrap_or_else(|| panic!("sent text is not an Event: {text}"));
        let candidates: Vec<String> = logged
            .iter()
            .filter(|l| audit_id(l).as_deref() == Some(id.as_str()))
            .map(|l| edit(l))
            .collect();
        assert!(!candidates.is_empty(), "{id}: no record carried it");
        if !candidates.iter().any(|c| c == text) {
            let want = &candidates[0];
            let at = want
                .bytes()
                .zip(text.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(text.len()));
            let near = |t: &str| {
                String::from_utf8_lossy(
                    &t.as_bytes()[at.saturating_sub(40)..(at + 40).min(t.len())],
                )
                .into_owned()
            };
            panic!(
                "{id}: the bytes sent differ from properties.log (with the documented edits) at byte {at}:\n  expected: {:?}\n  sent:     {:?}",
                near(want),
                near(text)
            );
        }
        got_ids.push(id);
    }
    let mut want_ids: Vec<String> = expected
        .iter()
        .map(|e| audit_id(e).expect("expected Event"))
        .collect();
    got_ids.sort();
    want_ids.sort();
    assert_eq!(got_ids, want_ids, "the Events sent, by auditID");
}

/// Where the value of the top-level member `key` lies in the object `text`.
pub fn member_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let members: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(text).ok()?;
    let value = members.get(key)?.get();
    let start = value.as_ptr() as usize - text.as_ptr() as usize;
    Some(start..start + value.len())
}

/// `text` with the value of member `key` replaced by the JSON text `value`.
pub fn replace_member(text: &str, key: &str, value: &str) -> String {
    let span = member_span(text, key).unwrap_or_else(|| panic!("no {key} in {text}"));
    format!("{}{value}{}", &text[..span.start], &text[span.end..])
}

/// `text` without the member `key` (written `,"key":` after another member) and its comma.
pub fn drop_member(text: &str, key: &str) -> String {
    let span = member_span(text, key).unwrap_or_else(|| panic!("no {key} in {text}"));
    let lead = format!(",\"{key}\":");
    let start = span.start - lead.len();
    assert_eq!(
        &text[start..span.start],
        lead,
        "{key} is not written compactly after another member"
    );
    format!("{}{}", &text[..start], &text[span.end..])
}

/// The members the forwarder splices into an Event's `annotations` for the cluster
/// `resource_id` (docs/forwarding.md, "Cluster identity"): its id lower-cased and its name,
/// and its type for a resource that is not a managed cluster.
pub fn cluster_members(resource_id: &str, name: &str, kind: Option<&str>) -> String {
    let mut members = format!(
        r#""aks.azure.com/cluster-resource-id":{},"cluster_name":{}"#,
        Value::String(resource_id.to_lowercase()),
        Value::String(name.to_string())
    );
    if let Some(kind) = kind {
        members.push_str(&format!(
            r#","aks.azure.com/cluster-resource-type":{}"#,
            Value::String(kind.to_string())
        ));
    }
    members
}

/// The documented cluster annotations splice: `members` appended inside the Event's
/// `annotations` object, or `"annotations":{<members>}` appended to an Event without one.
/// Nothing else of the text changes.
pub fn splice_cluster(text: &str, members: &str) -> String {
    match member_span(text, "annotations") {
        Some(span) if text[span.clone()].starts_with('{') => {
            let inside = text[span.start + 1..span.end - 1].trim();
            let comma = if inside.is_empty() { "" } else { "," };
            let at = span.end - 1;
            format!("{}{comma}{members}{}", &text[..at], &text[at..])
        }
        Some(_) => replace_member(text, "annotations", &format!("{{{members}}}")),
        None => format!(
            r#"{},"annotations":{{{members}}}}}"#,
            &text[..text.len() - 1]
        ),
    }
}

/// A count from the invocation summary in `answer` (`name=N`, e.g. `dead_lettered`).
/// Panics when the answer carries no summary with that count.
pub fn summary_count(answer: &Answer, name: &str) -> u64 {
    let result = answer
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("no invocation result: {}", answer.body));
    let key = format!(" {name}=");
    result
        .logs
        .iter()
        .find_map(|line| {
            let at = line.find(&key)? + key.len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {name}= in the summary: {}", answer.body))
}

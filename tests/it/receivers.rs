//! What each receiver can take: kube-apiserver's truncation, the `falco` and `sysdig`
//! profiles, and routes that match non-ASCII resource groups, against the real binary and a
//! real receiver on 127.0.0.1.

use aks_audit_forwarder::audit::measure::falco_size;
use aks_audit_forwarder::tools::falco::FalcoLimits;
use aks_audit_forwarder::tools::hostsim::Answer;
use serde_json::{json, Value};

use crate::helpers::*;

/// A `RequestResponse` create of a ConfigMap whose data is `kib` KiB, in both objects.
fn large_event(id: &str, kib: usize) -> String {
    let data = json!({"blob": "d".repeat(kib * 1024 / 2)});
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/configmaps",
        "verb": "create",
        "user": {"username": "alice@contoso.com"},
        "sourceIPs": ["20.61.10.4"],
        "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "big", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "ConfigMap", "data": data},
        "responseObject": {"kind": "ConfigMap", "data": data},
        "requestReceivedTimestamp": "2026-11-23T07:00:00.123456Z",
        "stageTimestamp": "2026-11-23T07:00:00.234567Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
    .to_string()
}

fn dead_letters(answer: &Answer) -> Vec<aks_audit_forwarder::deadletter::DeadLetter> {
    let result = answer.result.as_ref().unwrap();
    match result.outputs.get("deadletter").and_then(Value::as_str) {
        Some(lines) => aks_audit_forwarder::deadletter::from_json_lines(lines).unwrap(),
        None => Vec::new(),
    }
}

/// A 300 KiB `RequestResponse` Event arrives whole by default, and under
/// `AUDIT_TRUNCATE_ENABLED=true` without its objects, annotated, every other field intact;
/// the summary counts it and carries `lag_ms`.
#[tokio::test]
async fn a_300kib_event_is_truncated_when_enabled_and_whole_by_default() {
    let event = large_event("big-1", 300);
    assert!(event.len() > 300 * 1024);
    let small = audit_event("small-1", 10);
    let bodies = vec![envelope(vec![
        record("kube-audit", &event),
        record("kube-audit", &small),
    ])];

    let receiver = start_receiver().await;
    let url = receiver.url("/k8s_audit");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &url),
        ("AUDIT_CLUSTER_ANNOTATIONS", "off"),
    ])
    .await;
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &[event.clone(), small.clone()]);
    assert!(!answer.body.contains("truncated="), "{}", answer.body);

    let receiver = start_receiver().await;
    let url = receiver.url("/k8s_audit");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &url),
        ("AUDIT_CLUSTER_ANNOTATIONS", "off"),
        ("AUDIT_TRUNCATE_ENABLED", "true"),
    ])
    .await;
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("truncated=1"), "{}", answer.body);
    // lag_ms: from the oldest enqueued time the host sent (the simulated host writes
    // 2026-11-23T07:00:SS.mmm) to the end of delivery.
    let enqueued = time::OffsetDateTime::parse(
        "2026-11-23T07:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let lag: u128 = answer
        .body
        .split("lag_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lag_ms in {}", answer.body));
    let since = (time::OffsetDateTime::now_utc() - enqueued).whole_milliseconds() as u128;
    assert!(
        lag <= since && lag + 60_000 + 30_000 >= since,
        "lag_ms={lag}, {since} ms since"
    );
    let mut want: Value = serde_json::from_str(&event).unwrap();
    let object = want.as_object_mut().unwrap();
    object.remove("requestObject");
    object.remove("responseObject");
    want["annotations"]["audit.k8s.io/truncated"] = json!("true");
    assert_same_events(receiver.receiver.events(), &[want.to_string(), small]);
    assert!(
        handler.log().contains("truncated"),
        "one warning per invocation"
    );
}

/// An Event still over the limit without its objects is dead-lettered whole, as it came;
/// its neighbours are delivered.
#[tokio::test]
async fn an_event_still_too_big_is_dead_lettered() {
    let mut huge: Value = serde_json::from_str(&large_event("huge-1", 4)).unwrap();
    huge["annotations"]["note"] = json!("n".repeat(4096));
    let huge = huge.to_string();
    let small = audit_event("small-2", 10);
    let bodies = vec![envelope(vec![
        record("kube-audit", &huge),
        record("kube-audit", &small),
    ])];
    let receiver = start_receiver().await;
    let url = receiver.url("/k8s_audit");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &url),
        ("AUDIT_CLUSTER_ANNOTATIONS", "off"),
        ("AUDIT_TRUNCATE_ENABLED", "true"),
        ("AUDIT_TRUNCATE_MAX_EVENT_SIZE", "2KiB"),
    ])
    .await;
    let answer = handler.invoke_bodies(&bodies, "3").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("too_large=1"), "{}", answer.body);
    assert!(answer.body.contains("dead_lettered=1"), "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &[small]);
    let items = dead_letters(&answer);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, "too-large");
    assert!(
        items[0].reason.contains("AUDIT_TRUNCATE_MAX_EVENT_SIZE"),
        "{}",
        items[0].reason
    );
    assert_eq!(
        items[0].event.as_ref().unwrap().get(),
        huge,
        "kept as it came"
    );
}

/// Under `AUDIT_RECEIVER=falco` no Event is over 262,144 bytes as Falco measures it and no
/// body is over 12 MiB, checked by a receiver holding Falco's limits; the same Events sent
/// with the `generic` profile are what Falco would lose.
#[tokio::test]
async fn falco_profile_keeps_every_event_and_body_within_falcos_limits() {
    // 60 Events of 200 KiB (12 MiB together), one of 300 KiB, and one pretty-printed Event
    // whose bytes are over 256 KiB but whose content is small.
    let mut events: Vec<String> = (0..60)
        .map(|i| audit_event(&format!("mid-{i}"), 200 * 1024))
        .collect();
    events.push(large_event("big-2", 300));
    let spaced =
        audit_event("spaced-1", 10).replace(",\"", &format!(",{}\"", " ".repeat(40 * 1024)));
    assert!(spaced.len() > 256 * 1024 && falco_size(&spaced, false) < 4096);
    events.push(spaced);
    let bodies: Vec<Vec<u8>> = events
        .chunks(4)
        .map(|chunk| envelope(chunk.iter().map(|e| record("kube-audit", e)).collect()))
        .collect();

    let mut lost = 0;
    for profile in ["falco", "generic"] {
        let receiver = start_falco_receiver().await;
        let url = receiver.url("/k8s-audit");
        let handler = spawn_handler(&[
            ("AUDIT_WEBHOOK_URL", &url),
            ("AUDIT_RECEIVER", profile),
            ("AUDIT_BATCH_MAX_BYTES", "64MiB"),
        ])
        .await;
        let answer = handler.invoke_bodies(&bodies, "1").await;
        let stats = receiver.receiver.stats();
        if profile == "generic" {
            lost = stats.falco_dropped + stats.refused;
            continue;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains("truncated=1"), "{}", answer.body);
        assert_eq!(stats.events, events.len() as u64);
        assert_eq!((stats.falco_dropped, stats.refused), (0, 0));
        assert!(
            stats.falco_largest_event <= 262_144,
            "{}",
            stats.falco_largest_event
        );
        assert!(
            stats.largest_body <= 12 * 1024 * 1024,
            "{}",
            stats.largest_body
        );
        assert!(
            stats.largest_body > 10 * 1024 * 1024,
            "bodies fill Falco's limit"
        );
    }
    assert!(lost > 0, "without the profile Falco would lose Events");
}

/// A receiver that refuses bodies over Falco's limit with 400 and counts what Falco would
/// drop.
async fn start_falco_receiver() -> aks_audit_forwarder::tools::receiver::RunningReceiver {
    aks_audit_forwarder::tools::receiver::Receiver::new()
        .with_falco_limits(FalcoLimits::default())
        .start(std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            0,
        )))
        .await
        .expect("receiver")
}

/// Under `AUDIT_RECEIVER=sysdig` an Event whose `stageTimestamp` the agent cannot read is
/// dead-lettered alone instead of sinking its batch.
#[tokio::test]
async fn sysdig_profile_keeps_one_bad_timestamp_from_sinking_a_payload() {
    let good = audit_event("good-1", 10);
    let odd = audit_event("odd-1", 10)
        .replace("2026-11-23T07:00:00.234567Z", "2026-11-23 07:00:00.234567Z");
    let bodies = vec![envelope(vec![
        record("kube-audit", &good),
        record("kube-audit", &odd),
    ])];
    let receiver = start_receiver().await;
    let url = receiver.url("/k8s_audit");
    let handler = spawn_handler(&[
        ("AUDIT_WEBHOOK_URL", &url),
        ("AUDIT_CLUSTER_ANNOTATIONS", "off"),
        ("AUDIT_RECEIVER", "sysdig"),
    ])
    .await;
    let answer = handler.invoke_bodies(&bodies, "2").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(receiver.receiver.events(), &[good]);
    let items = dead_letters(&answer);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, "receiver-invalid");
    assert!(items[0].reason.contains("sysdig"), "{}", items[0].reason);
}

/// Azure Monitor upper-cases the resource id; a route for a resource group with non-ASCII
/// letters, written in lower case, still takes the cluster.
#[tokio::test]
async fn a_route_for_a_non_ascii_resource_group_matches_the_upper_cased_id() {
    let munich = start_receiver().await;
    let rest = start_receiver().await;
    let routes = format!(
        "routes:\n- name: munich\n  match: {{resourceGroups: ['rg-münchen-straße']}}\n  webhook: {{url: '{}'}}\n- name: rest\n  webhook: {{url: '{}'}}\n",
        munich.url("/k8s_audit"),
        rest.url("/k8s_audit")
    );
    let handler = spawn_handler(&[
        ("AUDIT_ROUTES", &routes),
        ("AUDIT_CLUSTER_ANNOTATIONS", "off"),
    ])
    .await;
    let id = "/subscriptions/0000/resourceGroups/rg-München-Straße/providers/Microsoft.ContainerService/managedClusters/aks-muc".to_uppercase();
    assert!(id.contains("RG-MÜNCHEN-STRASSE"), "{id}");
    let event = audit_event("muc-1", 10);
    let bodies = vec![envelope(vec![record_from(&id, "kube-audit", &event)])];
    let answer = handler.invoke_bodies(&bodies, "0").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_same_events(munich.receiver.events(), &[event]);
    assert_eq!(rest.receiver.stats().events, 0);
}

/// `receive --profile falco` refuses a body over Falco's 12 MiB and counts the Events Falco
/// would drop after answering 200, so a user sees locally what their Falco would lose.
#[tokio::test(flavor = "multi_thread")]
async fn receive_profile_falco_counts_what_falco_would_drop() {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = std::process::Command::new(BIN)
        .args([
            "receive",
            "--quiet",
            "--profile",
            "falco",
            "--listen",
            &listen,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let url = format!("http://{listen}/k8s-audit");
    let list = |events: &[String]| {
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
            events.join(",")
        )
    };
    let client = reqwest::Client::new();
    let post = |body: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let start = std::time::Instant::now();
            loop {
                let sent = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if let Ok(answer) = sent {
                    return answer.status().as_u16();
                }
                assert!(start.elapsed().as_secs() < 30, "receive did not start");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    // Falco answers 200, then drops the 300 KiB Event; the small one stays.
    let accepted = list(&[large_event("big-3", 300), audit_event("ok-3", 10)]);
    assert_eq!(post(accepted).await, 200);
    // A body over 12 MiB is refused whole.
    let events: Vec<String> = (0..50)
        .map(|i| audit_event(&format!("m-{i}"), 250 * 1024))
        .collect();
    assert_eq!(post(list(&events)).await, 400);

    let process = child.0.take().unwrap();
    let pid = nix::unistd::Pid::from_raw(process.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = process.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("1 POST(s), 2 event(s), 0 duplicate(s), 1 refused"),
        "{out}"
    );
    assert!(out.contains("Falco would drop 1 event(s)"), "{out}");
}

/// A `receive` child, killed if a failing test leaves it running.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `check-config` prints each route's receiver and the limits in force on it; an unknown
/// receiver stops it naming `AUDIT_RECEIVER`.
#[test]
fn check_config_prints_the_limits_of_each_route() {
    let routes = "routes:\n- name: falco\n  match: {clusters: ['a*']}\n  receiver: falco\n  webhook: {url: 'http://127.0.0.1:9/k8s-audit'}\n- name: sysdig\n  webhook: {url: 'http://127.0.0.1:9/k8s_audit'}\n";
    let run = |settings: &[(&str, &str)]| {
        let mut command = std::process::Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") {
                command.env_remove(key);
            }
        }
        command.arg("check-config").envs(settings.iter().copied());
        let output = command.output().unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, out) = run(&[("AUDIT_ROUTES", routes), ("AUDIT_RECEIVER", "sysdig")]);
    assert!(ok, "{out}");
    assert!(
        out.contains("receiver falco: truncation on: Events over 262144 bytes (as Falco re-marshals it) lose requestObject and responseObject; bodies of at most 10485760 bytes"),
        "{out}"
    );
    assert!(
        out.contains("receiver sysdig: truncation off; bodies of at most 10485760 bytes"),
        "{out}"
    );
    let (ok, out) = run(&[
        ("AUDIT_ROUTES", routes),
        ("AUDIT_TRUNCATE_ENABLED", "true"),
        ("AUDIT_TRUNCATE_MAX_EVENT_SIZE", "50KiB"),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("receiver falco: truncation on: Events over 51200 bytes (as Falco"),
        "{out}"
    );
    assert!(
        out.contains("receiver generic: truncation on: Events over 51200 bytes (bytes as sent)"),
        "{out}"
    );
    let (ok, out) = run(&[
        ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/"),
        ("AUDIT_RECEIVER", "splunk"),
    ]);
    assert!(!ok && out.contains("AUDIT_RECEIVER"), "{out}");
}

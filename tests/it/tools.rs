//! The operator tools against real parts: `backfill` reading archive blobs written into
//! Azurite through the storage API in Azure Monitor's path layout, `resend` and `receive`,
//! each delivering to (or being) a real receiver on 127.0.0.1.

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aks_audit_forwarder::tools::receiver::Scripted;
use aks_audit_forwarder::tools::storage::{open, ArchivePath, StorageArgs};
use object_store::path::Path as BlobPath;
use object_store::ObjectStore as _;
use secrecy::SecretString;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::azurite::Azurite;
use super::helpers::{
    assert_same_events, audit_event, cluster_id, free_port, record_from, start_receiver, BIN,
};

pub const CONTAINER: &str = "insights-logs-kube-audit";

/// The binary with a clean `AUDIT_*` environment, fast retries, and `settings`.
pub fn tool(args: &[&str], settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("AZURE_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .env("AUDIT_RETRY_INITIAL_BACKOFF", "50ms")
        .env("AUDIT_RETRY_MAX_BACKOFF", "200ms")
        .env("AUDIT_CLUSTER_ANNOTATIONS", "off")
        .stdin(Stdio::null());
    for (key, value) in settings {
        command.env(key, value);
    }
    command
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A record line as Azure Monitor archives it, at `time`.
pub fn line(resource_id: &str, category: &str, log: &str, time: &str) -> String {
    let mut record = record_from(resource_id, category, log);
    record["time"] = Value::String(time.into());
    record.to_string()
}

/// Writes the archive: cluster AKS1 hours 07 and 08, cluster AKS2 hour 07, each with audit
/// records, one record of another category and one line that is not JSON; AKS1's 08 blob ends
/// in an incomplete line (the hour still being written). Returns the expected Events by
/// cluster and hour.
async fn write_archive(azurite: &Azurite, per_blob: usize) -> Vec<(String, u8, Vec<String>)> {
    let args = StorageArgs {
        account: None,
        connection_string: Some(SecretString::from(azurite.connection_string())),
        managed_identity: false,
    };
    let store = open(&args, CONTAINER).unwrap();
    let mut expected = Vec::new();
    for (cluster, hour) in [("aks1", 7u8), ("aks1", 8), ("aks2", 7)] {
        let id = cluster_id(cluster);
        let at = OffsetDateTime::parse(&format!("2026-11-23T{hour:02}:00:00Z"), &Rfc3339).unwrap();
        let mut lines = Vec::new();
        let mut events = Vec::new();
        for n in 0..per_blob {
            let event = audit_event(&format!("{cluster}-{hour}-{n}"), 10);
            let time = format!("2026-11-23T{hour:02}:{:02}:00.1234567Z", n % 60);
            lines.push(line(&id, "kube-audit", &event, &time));
            events.push(event);
        }
        lines.insert(
            3,
            line(
                &id,
                "kube-apiserver",
                "I1123 started",
                "2026-11-23T07:00:00Z",
            ),
        );
        lines.insert(5, "this line is not JSON".to_string());
        let mut blob = lines.join("\n") + "\n";
        if (cluster, hour) == ("aks1", 8) {
            blob.push_str(r#"{"category":"kube-audit","time":"2026-11-23T08:59:"#);
        }
        // Azure Monitor's layout, spelled out rather than taken from the code under test.
        let path = format!("resourceId={id}/y=2026/m=11/d=23/h={hour:02}/m=00/PT1H.json");
        assert_eq!(path, ArchivePath::blob_path(&id, at));
        let path = BlobPath::from(path);
        store.put(&path, blob.into_bytes().into()).await.unwrap();
        expected.push((cluster.to_string(), hour, events));
    }
    expected
}

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["auditID"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `resend` against a receiver that accepts the first batch and then fails until the
/// deadline: the remaining file holds exactly the unsent items, each once.
#[tokio::test(flavor = "multi_thread")]
async fn resend_keeps_each_unsent_item_exactly_once() {
    let receiver = start_receiver().await;
    receiver.receiver.push_script(
        std::iter::once(Scripted::Delay(Duration::ZERO))
            .chain((0..500).map(|_| Scripted::Status(503))),
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dead.jsonl");
    let out = dir.path().join("left.jsonl");
    let mut lines = String::new();
    for n in 0..6 {
        let event = audit_event(&format!("dl-{n}"), 0);
        lines.push_str(&format!(
            "{{\"reason\":\"HTTP 400\",\"kind\":\"poison\",\"cluster\":\"{}\",\"event\":{event}}}\n",
            cluster_id("aks1")
        ));
    }
    std::fs::write(&input, lines).unwrap();
    let url = receiver.url("/k8s_audit");
    let output = tool(
        &[
            "resend",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[
            ("AUDIT_WEBHOOK_URL", url.as_str()),
            ("AUDIT_BATCH_MAX_EVENTS", "2"),
            ("AUDIT_WEBHOOK_CONCURRENCY", "1"),
            ("AUDIT_DELIVERY_DEADLINE", "2s"),
        ],
    )
    .output()
    .unwrap();
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("2 delivered"), "{log}");
    assert!(
        !log.contains("host retries"),
        "handler wording in a tool: {log}"
    );
    let delivered = ids(&receiver.receiver.events());
    assert_eq!(delivered.len(), 2, "{log}");
    let left = std::fs::read_to_string(&out).unwrap();
    let left: Vec<String> = left
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["event"]["auditID"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
    let unique: BTreeSet<String> = left.iter().cloned().collect();
    assert_eq!(unique.len(), 4, "an item was written twice: {left:?}");
    assert!(
        unique.is_disjoint(&delivered),
        "delivered items kept: {left:?}"
    );
}

/// `receive --out` writes every Event's exact bytes and keeps only counts in memory; it
/// prints one line per Event.
#[tokio::test(flavor = "multi_thread")]
async fn receive_streams_events_to_the_out_file() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let listen = format!("127.0.0.1:{port}");
    let mut child = tool(
        &[
            "receive",
            "--listen",
            &listen,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/k8s_audit");
    let start = std::time::Instant::now();
    let mut sent = Vec::new();
    for batch in 0..20 {
        let events: Vec<String> = (0..10)
            .map(|n| {
                audit_event(&format!("r-{batch}-{n}"), 5)
                    .replace("\"level\"", "\"z\":1.50,\"level\"")
            })
            .collect();
        let body = format!(
            "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{}]}}",
            events.join(",")
        );
        loop {
            let sent_ok = client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if sent_ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "receive did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent.extend(events);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{stdout}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        sent,
        "exact bytes, in order"
    );
    assert!(
        stdout.contains("20 POST(s), 200 event(s), 0 duplicate(s)"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("ResponseComplete").count(), 200, "{stdout}");
    assert!(stdout.contains("STAGE"), "{stdout}");
    assert!(
        !stdout.contains("invocations"),
        "handler wording in a tool: {stdout}"
    );
}

/// With `keep_last`, the receiver holds the last few Events and no batches, however many
/// arrive: what keeps `receive` bounded.
#[tokio::test]
async fn a_streaming_receiver_keeps_only_the_last_events() {
    use aks_audit_forwarder::tools::receiver::Receiver;
    let running = Receiver::new()
        .keep_last(3)
        .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for n in 0..10 {
        let body = format!("[{}]", audit_event(&format!("k-{n}"), 0));
        let status = client
            .post(running.url("/k8s_audit"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
    }
    let kept: Vec<String> = running
        .receiver
        .events()
        .iter()
        .map(|e| e["auditID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, ["k-7", "k-8", "k-9"]);
    assert!(running.receiver.batches().is_empty());
    assert_eq!(running.receiver.stats().events, 10);
}

/// The tests that need Azurite's blob service (backfill, resend --container). On a machine
/// without npm, `cargo test --locked -- --skip azurite::` leaves them out: libtest then counts
/// them as filtered out, never as passed.
mod azurite {
    use super::*;

    /// Back-fill of a whole archive, interrupted with Ctrl-C and resumed from the checkpoint:
    /// every Event arrives, none twice, bad lines are dead-lettered, the incomplete tail waits.
    #[tokio::test(flavor = "multi_thread")]
    async fn backfill_from_azurite_survives_an_interrupt_and_resumes() {
        let azurite = Azurite::start().await;
        azurite.create_container(CONTAINER).await;
        let expected = write_archive(&azurite, 40).await;
        let all: BTreeSet<String> = expected
            .iter()
            .flat_map(|(_, _, e)| e.iter())
            .map(|e| {
                serde_json::from_str::<Value>(e).unwrap()["auditID"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let receiver = start_receiver().await;
        // Slow the receiver so that the interrupt lands mid-run.
        receiver
            .receiver
            .push_script((0..400).map(|_| Scripted::Delay(Duration::from_millis(100))));
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("checkpoint.json");
        let dead = dir.path().join("dead.jsonl");
        let url = receiver.url("/k8s_audit");
        let conn = azurite.connection_string();
        let settings = [
            ("AUDIT_WEBHOOK_URL", url.as_str()),
            ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str()),
            ("AUDIT_BATCH_MAX_EVENTS", "5"),
            ("AUDIT_WEBHOOK_CONCURRENCY", "1"),
        ];
        let args = [
            "backfill",
            "--container",
            CONTAINER,
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--deadletter-out",
            dead.to_str().unwrap(),
            "--records-per-batch",
            "10",
        ];
        let child = tool(&args, &settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while receiver.receiver.stats().events < 20 {
            assert!(start.elapsed() < Duration::from_secs(60), "no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let first = child.wait_with_output().unwrap();
        let first_text = text(&first);
        assert!(!first.status.success(), "{first_text}");
        assert!(first_text.contains("INTERRUPTED"), "{first_text}");
        let after_first = receiver.receiver.stats().events;
        assert!(
            after_first < all.len() as u64,
            "interrupted too late: {first_text}"
        );
        assert!(checkpoint.exists());

        receiver.receiver.clear_script();
        let second = tool(&args, &settings).output().unwrap();
        let second_text = text(&second);
        assert!(second.status.success(), "{second_text}");
        let stats = receiver.receiver.stats();
        assert_eq!(ids(&receiver.receiver.events()), all, "{second_text}");
        let texts: Vec<String> = expected
            .iter()
            .flat_map(|(_, _, e)| e.iter().cloned())
            .collect();
        assert_same_events(receiver.receiver.events(), &texts);
        assert_eq!(stats.duplicates, 0, "{first_text}\n{second_text}");
        assert_eq!(stats.events, all.len() as u64);
        // Three bad lines and the other category, counted, never fatal; the incomplete tail waits.
        let dead_text = std::fs::read_to_string(&dead).unwrap();
        assert_eq!(dead_text.lines().count(), 3, "{dead_text}");
        assert!(
            dead_text.contains("line 6: not a JSON record"),
            "{dead_text}"
        );
        assert!(
            second_text.contains("1 incomplete last line(s)"),
            "{second_text}"
        );

        // A third run has nothing left to do.
        let third = tool(&args, &settings).output().unwrap();
        assert!(third.status.success(), "{}", text(&third));
        assert_eq!(receiver.receiver.stats().events, all.len() as u64);
        assert!(
            text(&third).contains("3 blob(s) (2 done before)"),
            "{}",
            text(&third)
        );
    }

    /// `--dry-run` with `--cluster` and a time window counts per cluster and hour, sends nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn backfill_dry_run_counts_by_cluster_and_hour() {
        let azurite = Azurite::start().await;
        azurite.create_container(CONTAINER).await;
        write_archive(&azurite, 20).await;
        let conn = azurite.connection_string();
        let dry_run = |cluster: &str| {
            let output = tool(
                &[
                    "backfill",
                    "--dry-run",
                    "--cluster",
                    cluster,
                    "--since",
                    "2026-11-23T07:30:00Z",
                    "--until",
                    "2026-11-23T08:10:00Z",
                ],
                &[("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())],
            )
            .output()
            .unwrap();
            let out = text(&output);
            assert!(output.status.success(), "{out}");
            out
        };
        let out = dry_run("AKS1");
        // Hour 07: records at minutes 30..19? n % 60 with n < 20 is minutes 0..19: none from 07:30.
        // Hour 08: minutes 0..9 are before 08:10.
        assert!(out.contains("AKS1 2026-11-23T08  10 Event(s)"), "{out}");
        assert!(out.contains("AKS1 2026-11-23T07  0 Event(s)"), "{out}");
        assert!(!out.contains("AKS2"), "{out}");
        assert!(out.contains("would send 10 Event(s)"), "{out}");

        // The cluster's resource id, in any case, lists only its folder and counts the same.
        let by_id = dry_run(&cluster_id("aks1").to_lowercase());
        assert!(by_id.contains("AKS1 2026-11-23T08  10 Event(s)"), "{by_id}");
        assert!(by_id.contains("backfill: 2 blob(s)"), "{by_id}");
    }

    /// `resend --container --delete-delivered` reads the dead-letter container through the
    /// storage API: a blob whose items are all delivered is deleted, a blob with an Event the
    /// receiver still refuses is rewritten with only that item and the new reason.
    #[tokio::test(flavor = "multi_thread")]
    async fn resend_from_the_deadletter_container() {
        let azurite = Azurite::start().await;
        let container = "audit-deadletter";
        azurite.create_container(container).await;
        let args = StorageArgs {
            account: None,
            connection_string: Some(SecretString::from(azurite.connection_string())),
            managed_identity: false,
        };
        let store = open(&args, container).unwrap();
        let item = |id: &str| {
            format!(
                "{{\"reason\":\"HTTP 503\",\"kind\":\"poison\",\"event\":{}}}\n",
                audit_event(id, 0)
            )
        };
        let all_good = BlobPath::from("2026-11-23/0b9c.jsonl");
        let one_bad = BlobPath::from("2026-11-24/77aa.jsonl");
        let old = BlobPath::from("2026-11-01/0001.jsonl");
        store
            .put(&all_good, (item("a1") + &item("a2")).into_bytes().into())
            .await
            .unwrap();
        store
            .put(&one_bad, (item("b1") + &item("bad")).into_bytes().into())
            .await
            .unwrap();
        store
            .put(&old, item("old").into_bytes().into())
            .await
            .unwrap();
        let receiver = start_receiver().await;
        receiver.receiver.refuse_audit_ids(["bad".to_string()]);
        let url = receiver.url("/k8s_audit");
        let conn = azurite.connection_string();
        let output = tool(
            &[
                "resend",
                "--container",
                container,
                "--since",
                "2026-11-20T00:00:00Z",
                "--delete-delivered",
            ],
            &[
                ("AUDIT_WEBHOOK_URL", url.as_str()),
                ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str()),
            ],
        )
        .output()
        .unwrap();
        let log = text(&output);
        assert!(!output.status.success(), "{log}");
        assert!(
            log.contains("4 item(s) read from 2 blob(s), 3 delivered"),
            "{log}"
        );
        let got = ids(&receiver.receiver.events());
        let want: BTreeSet<String> = ["a1", "a2", "b1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
        assert!(
            store.head(&all_good).await.is_err(),
            "delivered blob not deleted"
        );
        let left = aks_audit_forwarder::tools::storage::read_all(store.as_ref(), &one_bad)
            .await
            .unwrap();
        let left = String::from_utf8(left.to_vec()).unwrap();
        assert_eq!(left.lines().count(), 1, "{left}");
        let v: Value = serde_json::from_str(left.trim()).unwrap();
        assert_eq!(v["event"]["auditID"], "bad");
        assert_eq!(v["status"], 400, "{left}");
        assert!(
            store.head(&old).await.is_ok(),
            "--since must leave older days alone"
        );
    }

    /// A container that does not exist is named as such, once, with what to check — not the
    /// storage service's XML answer repeated for every error layer.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_missing_container_is_named_with_what_to_check() {
        let azurite = Azurite::start().await;
        let connection = azurite.connection_string();
        let settings = [
            ("AZURE_STORAGE_CONNECTION_STRING", connection.as_str()),
            ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit"),
        ];
        for args in [
            &["backfill", "--dry-run"][..],
            &["resend", "--container", "audit-deadletter"],
        ] {
            let output = tool(args, &settings).output().unwrap();
            let out = text(&output);
            assert!(!output.status.success(), "{args:?}: {out}");
            assert!(
                out.contains("the container does not exist in this storage account"),
                "{args:?}: {out}"
            );
            assert!(!out.contains("<?xml"), "{args:?}: {out}");
            assert_eq!(out.lines().count(), 1, "{args:?}: {out}");
        }
    }

    /// A `--cluster` with no archive blob (a misspelt name) is an error naming the clusters that
    /// are there, not a run that succeeds having sent nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn backfill_names_the_clusters_when_cluster_matches_none() {
        let azurite = Azurite::start().await;
        azurite.create_container(CONTAINER).await;
        write_archive(&azurite, 5).await;
        let connection = azurite.connection_string();
        let settings = [("AZURE_STORAGE_CONNECTION_STRING", connection.as_str())];
        let output = tool(&["backfill", "--dry-run", "--cluster", "aks3"], &settings)
            .output()
            .unwrap();
        let out = text(&output);
        assert!(!output.status.success(), "{out}");
        assert!(
        out.contains("no archive blob of --cluster aks3 in container insights-logs-kube-audit; clusters archived there: AKS1, AKS2"),
        "{out}"
    );
        let output = tool(&["backfill", "--dry-run", "--cluster", "aks2"], &settings)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }

    /// A record whose `properties.log` is not an audit Event (a truncated log) is dead-lettered
    /// naming its blob and line, as a line that is not JSON is (the pipeline alone knows only its
    /// place in the batch).
    #[tokio::test(flavor = "multi_thread")]
    async fn backfill_dead_letters_name_the_blob_and_line() {
        let azurite = Azurite::start().await;
        azurite.create_container(CONTAINER).await;
        let conn = azurite.connection_string();
        let store = open(
            &StorageArgs {
                account: None,
                connection_string: Some(SecretString::from(conn.clone())),
                managed_identity: false,
            },
            CONTAINER,
        )
        .unwrap();
        let id = cluster_id("aks1");
        let time = "2026-11-23T07:00:01Z";
        let good = line(&id, "kube-audit", &audit_event("good-1", 0), time);
        let truncated = line(&id, "kube-audit", r#"{"kind":"Event","apiVer"#, time);
        let path = format!("resourceId={id}/y=2026/m=11/d=23/h=07/m=00/PT1H.json");
        let blob = format!("{good}\n{good}\n{truncated}\n");
        store
            .put(&BlobPath::from(path.clone()), blob.into_bytes().into())
            .await
            .unwrap();
        let receiver = start_receiver().await;
        let url = receiver.url("/k8s_audit");
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        let settings = [
            ("AUDIT_WEBHOOK_URL", url.as_str()),
            ("AZURE_STORAGE_CONNECTION_STRING", conn.as_str()),
        ];
        let output = tool(
            &["backfill", "--deadletter-out", dead.to_str().unwrap()],
            &settings,
        )
        .output()
        .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        let items: Vec<Value> = std::fs::read_to_string(&dead)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["kind"], "malformed-record");
        assert!(items[0]["raw"].as_str().unwrap().contains(&truncated));
        let reason = items[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with(&format!("{path} line 3: ")), "{reason}");
    }
}

//! What a new user meets first in the tools: `--help`, `demo`'s output, `replay`'s errors and
//! retries, `replay --deadletter-out`, `check-config`, `convert`, as the real binary.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::helpers::{free_port, spawn_handler_on, start_receiver, BIN};

fn run(args: &[&str], settings: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("FUNCTIONS_") || key.starts_with("RUST_") {
            command.env_remove(key);
        }
    }
    command.args(args).stdin(Stdio::null());
    for (key, value) in settings {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_lists_the_environment() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["backfill", "--help"],
    ] {
        let out = text(&run(args, &[]));
        assert!(out.contains("AUDIT_WEBHOOK_URL"), "{args:?}: {out}");
        assert!(out.contains("docs/configuration.md"), "{args:?}: {out}");
    }
}

/// The demo prints a table with headers within 100 columns, tags exactly the three warnings the
/// samples cause as expected (and tells no one to fix the sample cluster), prints the handler's
/// summary once, no colour when not on a terminal, and ends with the pipeline and its counts.
#[test]
fn demo_output_reads_well() {
    let output = run(&["demo"], &[]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("STAGE            VERB     RESOURCE"), "{out}");
    assert!(
        out.contains("tags those three warnings as expected"),
        "{out}"
    );
    assert_eq!(out.matches(" WARN ").count(), 3, "{out}");
    assert_eq!(out.matches("WARN (expected)").count(), 3, "{out}");
    assert!(!out.contains("Fix:"), "{out}");
    assert!(!out.contains('\x1b'), "colour without a terminal: {out}");
    assert_eq!(out.matches("Invocation delivered").count(), 1, "{out}");
    for line in out.lines().filter(|l| !l.starts_with("replay:")) {
        assert!(line.chars().count() <= 100, "{line}");
    }
    assert!(
        out.contains("3 event(s), 11 record(s) ──▶ handler ── 8 Event(s) ──▶ receiver"),
        "{out}"
    );
    assert!(
        out.contains("2 dead letter(s): 1 malformed record(s), 1 not JSON"),
        "{out}"
    );
    assert!(
        out.contains("2 record(s) of other categories, skipped"),
        "{out}"
    );
    assert!(
        out.contains("demo: OK the receiver got each of the 8 audit Event(s)"),
        "{out}"
    );
}

#[test]
fn replay_says_to_add_the_scheme() {
    let output = run(&["replay", "--handler", "127.0.0.1:8080"], &[]);
    let out = text(&output);
    assert!(!output.status.success());
    assert!(
        out.contains("add http:// (for example http://127.0.0.1:8080)"),
        "{out}"
    );
    assert!(!out.contains("relative URL"), "{out}");
}

/// A handler that is not up yet: `replay` retries the connection, then delivers; the dead
/// letters it returns land in `--deadletter-out`, ready for `resend`.
#[tokio::test(flavor = "multi_thread")]
async fn replay_retries_until_the_handler_is_up_and_keeps_dead_letters() {
    let receiver = start_receiver().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let handler_url = format!("http://127.0.0.1:{port}");
    let dead_arg = dead.to_str().unwrap().to_string();
    let replay = tokio::task::spawn_blocking(move || {
        run(
            &[
                "replay",
                "--handler",
                &handler_url,
                "--retries",
                "50",
                "--retry-delay",
                "100ms",
                "--deadletter-out",
                &dead_arg,
            ],
            &[],
        )
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut handler = spawn_handler_on(port, &receiver.url("/k8s_audit"));
    let output = replay.await.unwrap();
    let _ = handler.kill().await;
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("could not reach the handler"), "{out}");
    assert!(out.contains("1 of 1 invocation(s) succeeded"), "{out}");
    assert_eq!(receiver.receiver.stats().events, 8);
    let items =
        aks_audit_forwarder::tools::resend::parse_items(&std::fs::read(&dead).unwrap()).unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["malformed-record", "malformed-event"], "{out}");
}

#[test]
fn check_config_names_the_bad_setting_and_masks_secrets() {
    let output = run(
        &["check-config"],
        &[
            ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:7765/k8s_audit"),
            ("AUDIT_BATCH_MAX_EVENTS", "lots"),
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("AUDIT_BATCH_MAX_EVENTS"),
        "{}",
        text(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("local.settings.json");
    let settings = serde_json::json!({
        "IsEncrypted": false,
        "Values": {
            "AUDIT_WEBHOOK_URL": "https://audit.internal:7765/k8s_audit?code=hunter2",
            "AUDIT_WEBHOOK_BEARER_TOKEN": "tok-s3cret",
            "AUDIT_CATEGORIES": "kube-audit"
        }
    });
    std::fs::write(&file, settings.to_string()).unwrap();
    let output = run(&["check-config", "--settings", file.to_str().unwrap()], &[]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        !out.contains("hunter2") && !out.contains("tok-s3cret"),
        "{out}"
    );
    assert!(out.contains("bearer token set"), "{out}");
    assert!(out.contains("categories             kube-audit\n"), "{out}");

    // A misspelled setting in the file is refused, as the handler refuses it.
    let mut typo = settings.clone();
    typo["Values"]["AUDIT_BATCH_MAX_EVENT"] = "5".into();
    std::fs::write(&file, typo.to_string()).unwrap();
    let output = run(&["check-config", "--settings", file.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("AUDIT_BATCH_MAX_EVENT "),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_probes_each_webhook() {
    let receiver = start_receiver().await;
    let url = receiver.url("/k8s_audit");
    let output = tokio::task::spawn_blocking(move || {
        run(
            &["check-config", "--probe"],
            &[("AUDIT_WEBHOOK_URL", url.as_str())],
        )
    })
    .await
    .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("accepted"), "{out}");
    assert!(out.contains("plain http (no TLS)"), "{out}");
    let batches = receiver.receiver.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].shape, "EventList");
    assert!(batches[0].events.is_empty());

    let closed = format!("http://127.0.0.1:{}/k8s_audit", free_port());
    let output = run(
        &["check-config", "--probe", "--probe-timeout", "1s"],
        &[("AUDIT_WEBHOOK_URL", closed.as_str())],
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("did not accept the probe"),
        "{}",
        text(&output)
    );
}

/// `check-config` with nothing set says where it looked and how to check a settings file.
#[test]
fn check_config_without_settings_says_where_it_looked() {
    let output = run(&["check-config"], &[]);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("AUDIT_WEBHOOK_URL"), "{out}");
    assert!(out.contains("--settings local.settings.json"), "{out}");
}

/// `resend` of an item without an Event: kept, and the error says why it cannot be sent.
#[test]
fn resend_says_what_remains_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dead.jsonl");
    std::fs::write(
        &input,
        "{\"reason\":\"not JSON\",\"kind\":\"malformed-event\",\"raw\":\"plain text\"}\n",
    )
    .unwrap();
    let rest = dir.path().join("rest.jsonl");
    let output = run(
        &[
            "resend",
            "--input",
            input.to_str().unwrap(),
            "--out",
            rest.to_str().unwrap(),
        ],
        &[("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit")],
    );
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains("1 item(s) remain: 1 without an Event"),
        "{out}"
    );
    assert!(out.contains("0 Event(s) still not delivered"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&rest).unwrap(),
        std::fs::read_to_string(&input).unwrap()
    );
}

#[test]
fn convert_applies_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources:\n  - group: \"\"\n    resources: [\"secrets\"]\n- level: Metadata\n",
    )
    .unwrap();
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/aks-diagnostics.json");
    let output = run(
        &[
            "convert",
            "--input",
            samples,
            "--policy",
            policy.to_str().unwrap(),
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 7, "{out}");
    assert!(events
        .iter()
        .all(|e| e["objectRef"]["resource"] != "secrets"));
    assert!(events.iter().all(|e| e["level"] == "Metadata"));
    assert!(
        text(&output).contains("1 dropped by the Policy"),
        "{}",
        text(&output)
    );
}

/// POSTs `body` to a `receive` just started, until it listens; returns the answer's status.
async fn post_when_listening(url: &str, body: &str) -> u16 {
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        let sent = client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if let Ok(answer) = sent {
            return answer.status().as_u16();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "receive did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `receive` child, killed if a failing test leaves it running.
struct Receiving(Option<std::process::Child>);

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn receive(out: &str) -> (Receiving, String) {
    receive_with(&["--quiet", "--out", out])
}

fn receive_with(args: &[&str]) -> (Receiving, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(BIN)
        .args(["receive", "--listen", &listen])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (Receiving(Some(child)), format!("http://{listen}/k8s_audit"))
}

fn interrupt(mut receiving: Receiving) -> Output {
    let child = receiving.0.take().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    child.wait_with_output().unwrap()
}

/// `receive --out`: an acknowledged Event is in the file at once, while the receiver runs
/// (`tail -f`, `jq` on it), not only when it stops.
#[tokio::test(flavor = "multi_thread")]
async fn receive_out_holds_each_event_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let (child, url) = receive(out.to_str().unwrap());
    let event = super::helpers::audit_event("live-1", 0);
    let body =
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{event}]}}"#);
    assert_eq!(post_when_listening(&url, &body).await, 200);
    let written = std::fs::read_to_string(&out).unwrap();
    let output = interrupt(child);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(written, format!("{event}\n"), "file while running");
}

/// `receive --out` on a full disk: the POST is answered 500, so the sender keeps and resends
/// the Events, instead of 200 for Events that were never stored; the exit code says so.
#[tokio::test(flavor = "multi_thread")]
async fn receive_refuses_events_it_cannot_store() {
    let (child, url) = receive("/dev/full");
    let event = super::helpers::audit_event("lost-1", 0);
    let body =
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{event}]}}"#);
    assert_eq!(post_when_listening(&url, &body).await, 500);
    let output = interrupt(child);
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("0 POST(s), 0 event(s)"), "{out}");
    assert!(out.contains("could not be written"), "{out}");
}

/// `receive --refuse`: the chosen Event's POST is refused for good (what makes dead letters to
/// try `resend` on), scripted answers come first and are counted, an empty `EventList` (a
/// probe) is printed as such, and a GET is answered 405, not 400.
#[tokio::test(flavor = "multi_thread")]
async fn receive_refuses_chosen_events_and_counts_what_it_answered() {
    let (child, url) = receive_with(&["--refuse", "bad-1,bad-2", "--script", "503"]);
    let list = |id: &str| {
        let event = super::helpers::audit_event(id, 0);
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{event}]}}"#)
    };
    assert_eq!(
        post_when_listening(&url, &list("good-1")).await,
        503,
        "scripted"
    );
    assert_eq!(
        post_when_listening(&url, &list("bad-2")).await,
        400,
        "refused"
    );
    assert_eq!(post_when_listening(&url, &list("good-1")).await, 200);
    let probe = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#;
    assert_eq!(post_when_listening(&url, probe).await, 200, "probe");
    let get = reqwest::get(&url).await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let output = interrupt(child);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("item 0: event bad-2 refused"), "{out}");
    assert!(out.contains("an empty EventList on /k8s_audit"), "{out}");
    assert!(
        out.contains("2 POST(s), 1 event(s), 0 duplicate(s), 1 refused, 1 scripted answer(s)"),
        "{out}"
    );
}

/// `backfill --account` on a machine without the Azure CLI stops at once and says how to sign
/// in, instead of asking the instance metadata endpoint only Azure hosts have.
#[test]
fn backfill_without_a_cli_login_says_how_to_sign_in() {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDIT_") || key.starts_with("AZURE_") || key.ends_with("_ENDPOINT") {
            command.env_remove(key);
        }
    }
    let started = std::time::Instant::now();
    let output = command
        .env("PATH", empty.path())
        .env("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/k8s_audit")
        .args([
            "backfill",
            "--account",
            "stauditarchive",
            "--cluster",
            "prod-weu",
        ])
        .args(["--since", "2026-11-01", "--dry-run"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("az login"), "{out}");
    assert!(out.contains("AZURE_STORAGE_CONNECTION_STRING"), "{out}");
    assert!(out.contains("--managed-identity"), "{out}");
    assert!(!out.contains("metadata"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
}
